"""`wardwatch bench e2e --quick` on its own embedded stack: every figure is reported and
every rate is positive (no speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_e2e_quick_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "e2e.json"
    proc = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "cli.main", "bench", "e2e", "--quick", "--events", "3000"]
        + ["--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert json.loads(proc.stdout) == doc
    res = doc["results"]["e2e"]
    assert res["events"] == 3000
    for stage in ("raw_client", "bare_faust", "worker"):
        assert res[stage]["events"] == 3000, stage
        assert res[stage]["events_per_s"] > 0, stage
        assert res[stage]["seconds"] > 0, stage
    worker = res["worker"]
    assert worker["scored"] + worker["dead_lettered"] + worker["skipped"] >= 3000
    assert worker["dead_lettered"] == 0  # simulated events are valid
    assert worker["model_version"]  # scored with the promoted model, not rules only
    assert worker["vmrss_mib"] > 0
    for name in ("bare_over_raw", "worker_over_bare", "worker_over_raw"):
        assert res["ratios"][name] > 0, name
    assert res["redis"]["patients"] > 0
    assert res["redis"]["keys"] > 0
    assert res["redis"]["bytes_per_patient"] > 0
    settings = res["settings"]
    for name in ("partitions", "batch_size", "batch_within_s", "faust_fetch_max_wait_ms"):
        assert name in settings, name
    assert settings["partitions"] == 4
    assert "latency at a fixed offered load" in res["not_measured"]
