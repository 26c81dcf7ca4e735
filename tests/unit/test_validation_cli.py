"""``wardwatch validate`` end to end: the report's figures on a tiny generic export, the
same JSON and HTML for the same input, a self-contained page, NEWS2 alone without a model,
no torch imported; and (slow) the MIMIC-IV demo's mortality24 task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main
from models.registry import promoted_version
from tests.commands import ROOT, run_command, wardwatch_command
from tests.validation_data import GENERIC_REJECTS, write_generic, write_yaib
from trainer.validation import report_html, validate_export
from wardwatch.settings import Settings

MIMIC = Path(os.environ.get("MIMIC_DEMO_DIR", "/work/shared/data/mimic-iv-demo"))
HAS_MODEL = promoted_version(Settings().resolved_model_registry(), "deterioration") is not None
TASK_KEYS = {
    "source",
    "kind",
    "label",
    "cohort",
    "news2",
    "discrimination",
    "alerts",
    "sensitivity",
    "lead_time",
    "calibration",
    "roc",
    "ingest",
}


def test_report_on_a_generic_export(tmp_path: Path) -> None:
    export = write_generic(tmp_path / "export")
    report = validate_export(export, Settings(), n_boot=100, seed=1, progress=None)
    assert report["report"] == "wardwatch validate" and report["export"]["format"] == ["generic"]
    (name,) = report["tasks"]
    t = report["tasks"][name]
    assert set(t) >= TASK_KEYS
    c = t["cohort"]
    # p-001: 20 scored observations before its death at 20 h, 12 of them within 12 h of it
    assert c["patients"] == 3 and c["positive_patients"] == 1
    assert c["points_evaluated"] == 20 + 24 + 6 and c["positive_points"] == 12
    assert t["ingest"]["rejected"]["by_reason"] == GENERIC_REJECTS
    assert t["rejected_labels"] == {
        "missing_outcome_time": 1,
        "missing_patient_id": 1,
        "unknown_outcome": 1,
    }
    d = t["discrimination"]
    assert 0.5 < d["news2"]["auroc"]["value"] <= 1.0
    assert d["news2"]["auroc"]["defined"] <= 100
    # consciousness is in this export: some NEWS2 sets are complete
    assert t["news2"]["complete_share"] > 0
    a = t["alerts"]
    assert a["pages"] >= 1 and a["pages_per_patient_day"] > 0
    assert a["patient_days"] == pytest.approx((19 + 23 + 20) / 24, abs=1e-3)
    s = t["sensitivity"]
    assert s["window_h"] == 12 and s["positive_points"] == 12
    assert t["lead_time"]["positives"] == 1 and t["lead_time"]["onset"] == "outcome time"
    assert any("positive patients" in n for n in t["notes"])  # too few to say much
    if HAS_MODEL:
        assert d["fused"]["auroc"]["value"] is not None
        assert "difference" in d and t["calibration"]["n"] == c["points_evaluated"]
        assert len(t["calibration"]["bins"]) == 10


def test_cli_writes_the_same_json_and_html_for_the_same_input(tmp_path: Path) -> None:
    export = write_yaib(tmp_path / "mortality24", hourly=False)
    args = ["validate", "--export", str(export), "--bootstrap", "50", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert (
        main([*args, "--json", str(tmp_path / "b.json"), "--html", str(tmp_path / "b.html")]) == 0
    )
    js = (tmp_path / "a" / "report.json").read_bytes()
    page = (tmp_path / "a" / "report.html").read_text()
    assert js == (tmp_path / "b.json").read_bytes()
    assert page == (tmp_path / "b.html").read_text()
    report = json.loads(js)
    assert page == report_html(report)
    t = report["tasks"]["mortality24"]
    assert t["kind"] == "stay" and "discrimination_max" in t
    assert t["lead_time"]["median_h"] is None and t["news2"]["partial"] is True
    assert t["news2"]["missing_share"]["consciousness"] == 1.0
    # self-contained: inline SVG, no scripts, no external assets
    assert page.count("<svg") >= 1 and "<script" not in page
    assert "src=" not in page and "href=" not in page and "url(" not in page
    assert "mortality24" in page


def test_without_a_model_the_report_is_news2_only(tmp_path: Path) -> None:
    export = write_yaib(tmp_path / "mortality24", hourly=False)
    empty = tmp_path / "registry"
    empty.mkdir()
    settings = Settings(model_registry=empty)
    report = validate_export(export, settings, n_boot=20, progress=None)
    assert report["model"]["version"] is None and "no promoted version" in report["model"]["reason"]
    t = report["tasks"]["mortality24"]
    assert t["discrimination"]["fused"] is None and t["calibration"] is None
    assert t["discrimination"]["news2"]["auroc"]["value"] is not None
    assert "no model" in report_html(report)


def test_the_command_prints_json_without_outputs_and_fails_on_no_task(tmp_path: Path) -> None:
    export = write_yaib(tmp_path / "aki", hourly=True)
    cmd = wardwatch_command()
    done = run_command([*cmd, "validate", "--export", str(export), "--bootstrap", "20"], b"")
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["tasks"]["aki"]["kind"] == "hourly"
    (tmp_path / "empty").mkdir()
    done = run_command([*cmd, "validate", "--export", str(tmp_path / "empty")], b"")
    assert done.returncode == 2 and b"no task found" in done.stderr


def test_validation_never_imports_torch() -> None:
    code = (
        "import sys, trainer.validation, cli.validate, trainer.validation.evaluate; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


@pytest.mark.slow
@pytest.mark.skipif(not (MIMIC / "mortality24").is_dir(), reason="MIMIC-IV demo not here")
def test_mimic_demo_mortality24_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "report"
    cmd = [*wardwatch_command(), "validate", "--export", str(MIMIC / "mortality24")]
    done = run_command([*cmd, "--out", str(out), "--bootstrap", "300"], b"", timeout_s=600)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads((out / "report.json").read_text())
    page = (out / "report.html").read_text()
    t = report["tasks"]["mortality24"]
    assert set(t) >= TASK_KEYS and "discrimination_max" in t
    c = t["cohort"]
    assert c["patients"] == 99 and c["positive_patients"] == 21
    assert c["points_evaluated"] >= 95  # a stay with no vitals in its first 24 h has no score
    n2 = t["discrimination"]["news2"]["auroc"]
    assert 0.45 <= n2["value"] <= 0.85  # a partial NEWS2 on ICU stays: weak, not random
    lo, hi = n2["ci"]
    assert lo < n2["value"] < hi and n2["defined"] == 300
    assert t["news2"]["missing_share"]["consciousness"] == 1.0
    g = t["ingest"]
    assert g["rows"] == 2475 and g["messages"] + g["rows_without_vitals"] == g["rows"]
    assert g["accepted"] + g["rejected"]["total"] == g["messages"]
    assert t["alerts"]["patient_days"] > 90 and t["alerts"]["pages_per_patient_day"] is not None
    assert 0 <= t["sensitivity"]["sensitivity"] <= 1
    if HAS_MODEL:
        assert report["model"]["version"] is not None
        assert t["discrimination"]["fused"]["auroc"]["value"] is not None
        assert t["calibration"]["ece"] is not None
        # locally recalibrated (cross-fitted by patient), the fused risk is never worse
        # than NEWS2 beyond its interval: where the model adds nothing it ranks as NEWS2
        recal = t["discrimination_recalibrated"]
        assert recal["difference"]["auroc"]["ci"][1] >= 0
        if not recal["uses_model"]:
            assert recal["fused"]["auroc"]["value"] == n2["value"]
        assert "local recalibration" in page
    assert "<svg" in page and "<script" not in page
