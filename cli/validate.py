"""``wardwatch validate``: silent mode on a hospital's export (``docs/validation.md``);
``--shadow``: live vs a shadow candidate on Kafka (``docs/operations.md``, shadow mode)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
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
    stdout: IO[str] | None = None,
) -> int:
    """Validate ``export``; write the report as JSON and HTML (``out_dir`` gives both
    their default paths), or print the JSON when nothing is to be written."""
    stdout = stdout or sys.stdout  # looked up now: a test may have replaced it since import
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


def _when(value: str | None) -> int | None:
    if not value:
        return None
    ts = datetime.fromisoformat(value)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def run_validate_shadow(
    settings: Settings,
    *,
    version: str | None,
    since: str | None,
    until: str | None,
    json_path: str | None,
    html_path: str | None,
    horizon_h: float,
    stdout: IO[str] | None = None,
) -> int:
    """Compare ``alerts`` with ``alerts-shadow`` and the outcomes on Kafka over the
    window; record the result in the candidate's registry version (``shadow.json``)."""
    stdout = stdout or sys.stdout
    from trainer.kafka_data import KafkaReadError
    from trainer.validation.shadow import compare, read_shadow, record_shadow, shadow_html

    try:
        data = read_shadow(settings)
    except KafkaReadError as exc:
        print(f"wardwatch validate --shadow: {exc}", file=sys.stderr)
        return 2
    report = compare(
        data["live"],
        data["shadow"],
        data["events"],
        data["outcomes"],
        since_ms=_when(since),
        until_ms=_when(until),
        horizon_h=horizon_h,
        min_priority=settings.webhook_min_priority,
    )
    seen = report["shadow"]["model_versions"]
    candidate = version or (seen[0] if len(seen) == 1 else None) or settings.shadow_model_version
    if not candidate:
        print("wardwatch validate --shadow: no shadow version (pass --model)", file=sys.stderr)
        return 2
    report["candidate"] = {"name": settings.model_name, "version": candidate}
    try:
        where = record_shadow(
            settings.resolved_model_registry(), settings.model_name, candidate, report
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"wardwatch validate --shadow: {exc}", file=sys.stderr)
        return 2
    report["recorded"] = str(where)
    text = json.dumps(report, indent=2) + "\n"
    if json_path:
        Path(json_path).write_text(text)
    if html_path:
        Path(html_path).write_text(shadow_html(report))
    if not json_path and not html_path:
        stdout.write(text)
    else:
        w, live, sh, agree = report["window"], report["live"], report["shadow"], report["agreement"]
        print(
            f"shadow {candidate} over {w['hours']} h ({w['patient_days']} patient-days): "
            f"pages/patient-day live {live['pages_per_patient_day']}, shadow "
            f"{sh['pages_per_patient_day']}; patients paged live {live['patients_paged']}, "
            f"shadow {sh['patients_paged']} (both {agree['paged_by_both']}, only live "
            f"{agree['only_live']}, only shadow {agree['only_shadow']}); sensitivity live "
            f"{live['sensitivity']}, shadow {sh['sensitivity']}; recorded in {where}",
            file=stdout,
        )
    return 0
