"""``wardwatch imaging score PATH``: score a CT study offline with the registered
lung-nodule model and print its finding as JSON (no Kafka, no Redis)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from wardwatch.settings import Settings

DEFAULT_OUT = "imaging-findings"


def add_parsers(sub: Any, fn: Callable[[argparse.Namespace, Settings], int]) -> None:
    im = sub.add_parser("imaging", help="chest CT: score a study offline")
    isub = im.add_subparsers(dest="imaging_command", required=True)
    sc = isub.add_parser(
        "score", help="score a DICOM directory or file with the lung-nodule model, print JSON"
    )
    sc.add_argument("path", help="a directory of DICOM files (searched recursively) or one file")
    sc.add_argument(
        "--model-version", default=None, help="registry version (default: the promoted one)"
    )
    sc.add_argument("--series", default=None, help="SeriesInstanceUID (needed if several)")
    sc.add_argument(
        "--out", default=DEFAULT_OUT, help=f"heatmap PNG and JSON here (default {DEFAULT_OUT})"
    )
    sc.add_argument(
        "--no-heatmap", action="store_true", help="print the finding only, write no files"
    )
    sc.add_argument(
        "--registry", default=None, help="model registry root (default WARDWATCH_MODEL_REGISTRY)"
    )
    sc.set_defaults(fn=fn)


def run_imaging_score(
    args: argparse.Namespace, settings: Settings, stdout: IO[str], stderr: IO[str]
) -> int:
    """0 and the finding on ``stdout``; 2 and a message on ``stderr`` when no usable
    lung-nodule model is registered or the study cannot be scored."""
    from models.imaging.errors import ImagingError
    from models.imaging.pipeline import score_study
    from models.imaging.runtime import DEFAULT_NAME, LungNoduleModel
    from models.session import choose_providers
    from wardwatch.errors import ModelError

    root = Path(args.registry) if args.registry else settings.resolved_model_registry()
    try:
        model = LungNoduleModel.from_registry(
            root,
            DEFAULT_NAME,
            args.model_version,
            providers=choose_providers(settings.onnx_provider),
            threads=min(4, os.cpu_count() or 1),
        )
    except ModelError as exc:  # RegistryError is one
        print(f"wardwatch imaging score: {exc}", file=stderr)
        return 2
    out = None if args.no_heatmap else Path(args.out)
    try:
        finding = score_study(Path(args.path), model, out, args.series)
    except ImagingError as exc:
        print(f"wardwatch imaging score: {exc.reason.value}: {exc}", file=stderr)
        return 2
    except ModelError as exc:
        print(f"wardwatch imaging score: {exc}", file=stderr)
        return 2
    finding["provider"] = model.session.provider
    print(json.dumps(finding, indent=2), file=stdout)
    return 0


def cmd_imaging(args: argparse.Namespace, settings: Settings) -> int:
    return run_imaging_score(args, settings, sys.stdout, sys.stderr)
