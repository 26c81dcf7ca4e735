"""``wardwatch validate``: silent mode on a hospital's export (``docs/validation.md``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

from wardwatch import heap
from wardwatch.settings import Settings


def run_validate(
    settings: Settings,
    export: str,
    *,
    version: str | None,
    out_dir: str | None,
    json_path: str | None,
    html_path: str | None,
    n_boot: int,
    seed: int,
    horizon_h: float,
    stdout: IO[str] = sys.stdout,
) -> int:
    """Validate ``export``; write the report as JSON and HTML (``out_dir`` gives both
    their default paths), or print the JSON when nothing is to be written."""
    from trainer.validation import report_html, validate_export

    heap.settle()
    try:
        report = validate_export(
            Path(export), settings, version=version, n_boot=n_boot, seed=seed, horizon_h=horizon_h
        )
    except FileNotFoundError as exc:
        print(f"wardwatch validate: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2) + "\n"
    js = Path(json_path) if json_path else None
    page = Path(html_path) if html_path else None
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        js = js or Path(out_dir) / "report.json"
        page = page or Path(out_dir) / "report.html"
    if js is not None:
        js.write_text(text)
    if page is not None:
        page.write_text(report_html(report))
    if js is None and page is None:
        stdout.write(text)
    else:
        for name, t in report["tasks"].items():
            d = t["discrimination"]
            fused = d["fused"]["auroc"]["value"] if d.get("fused") else None
            recal = (t.get("discrimination_recalibrated") or {}).get("fused")
            local = recal["auroc"]["value"] if recal else None
            print(
                f"{name}: NEWS2 AUROC {d['news2']['auroc']['value']}, fused {fused} "
                f"(locally recalibrated {local}), "
                f"pages/patient-day {t['alerts'].get('pages_per_patient_day')}, "
                f"sensitivity {t['sensitivity']['sensitivity']}",
                file=stdout,
            )
    return 0
