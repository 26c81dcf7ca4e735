"""Scoring one CT study in three stages, as MONAI Deploy's operators: **pre-process**
(DICOM series → prepared volume, :func:`prepare_study`), **infer** (the ONNX model,
:func:`infer`), **post-process** (outputs → finding and heatmap, :func:`post_process`).
:func:`score_study` composes them; each stage can be run and tested alone.

A study that cannot be scored raises an :class:`~models.imaging.errors.ImagingError`
(its ``reason`` is the dead letter's); a model that misbehaves, a
:class:`~wardwatch.errors.ModelError`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.imaging.dicom import CTSeries, load_ct_series
from models.imaging.finding import build_finding, write_heatmap
from models.imaging.preprocess import PreparedVolume, preprocess
from models.imaging.runtime import LungNoduleModel


@dataclass(frozen=True)
class PreparedStudy:
    """The pre-processing stage's output: the series (its geometry and slice count) and
    the model's input volume."""

    series: CTSeries
    volume: PreparedVolume


@dataclass(frozen=True)
class Inferred:
    """The inference stage's output for one study."""

    probability: float
    cam: npt.NDArray[np.float32]  # [d, h, w]


def prepare_study(
    path: str | Path, model: LungNoduleModel, series_instance_uid: str | None = None
) -> PreparedStudy:
    """Load the series at ``path`` and prepare it with the model's parameters."""
    series = load_ct_series(path, series_instance_uid)
    return PreparedStudy(series, preprocess(series, model.preprocess))


def infer(model: LungNoduleModel, studies: list[PreparedStudy]) -> list[Inferred]:
    """One ONNX call for all of ``studies``."""
    prob, cam = model.score([s.volume for s in studies])
    return [Inferred(float(prob[n]), cam[n]) for n in range(len(studies))]


def heatmap_stem(study: PreparedStudy) -> str:
    """The heatmap files' name: a digest of the series UID (no identifier in a path)."""
    digest = hashlib.sha256(study.series.series_instance_uid.encode()).hexdigest()[:16]
    return f"heatmap-{digest}"


def post_process(
    model: LungNoduleModel,
    study: PreparedStudy,
    inferred: Inferred,
    out_dir: Path | None,
) -> dict[str, Any]:
    """The finding; with ``out_dir``, the heatmap PNG, JSON and DICOM Secondary Capture
    written there and named in it (``heatmap_png``, ``heatmap_json``, ``heatmap_dcm``)."""
    finding, cam_volume = build_finding(
        inferred.probability,
        inferred.cam,
        study.volume,
        study.series.geometry,
        threshold=model.threshold,
        model={"name": model.name, "version": model.version},
    )
    if out_dir is not None:
        paths = write_heatmap(
            finding,
            cam_volume,
            study.volume,
            out_dir,
            heatmap_stem(study),
            study.series.study_instance_uid,
        )
        for kind, path in paths.items():
            finding[f"heatmap_{kind}"] = str(path)
    return finding


def score_study(
    path: str | Path,
    model: LungNoduleModel,
    out_dir: Path | None,
    series_instance_uid: str | None = None,
) -> dict[str, Any]:
    """Pre-process → infer → post-process one study: its finding (JSON-ready)."""
    study = prepare_study(path, model, series_instance_uid)
    (inferred,) = infer(model, [study])
    return post_process(model, study, inferred, out_dir)
