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
    for stage in ("raw_client", "bare_faust_agent", "bare_faust", "worker", "two_workers"):
        assert res[stage]["events"] == 3000, stage
        assert res[stage]["events_per_s"] > 0, stage
        assert res[stage]["seconds"] > 0, stage
    worker = res["worker"]
    assert worker["scored"] + worker["dead_lettered"] + worker["skipped"] >= 3000
    assert worker["dead_lettered"] == 0  # simulated events are valid
    assert worker["model_version"]  # scored with the promoted model, not rules only
    assert worker["vmrss_mib"] > 0
    assert res["two_workers"]["workers"] == 2
    assert res["two_workers"]["dead_lettered"] == 0
    for name in (
        "bare_over_raw",
        "bare_agent_over_raw",
        "bare_over_bare_agent",
        "worker_over_bare",
        "worker_over_raw",
        "two_workers_over_one",
    ):
        assert res["ratios"][name] > 0, name
    assert res["redis"]["patients"] > 0
    assert res["redis"]["keys"] > 0
    assert res["redis"]["bytes_per_patient"] > 0
    settings = res["settings"]
    for name in ("partitions", "batch_size", "batch_within_s", "faust_fetch_max_wait_ms"):
        assert name in settings, name
    assert settings["partitions"] == 4
    latency = res["latency"]  # a fixed offered load: publish to scored, and to alert
    assert latency["offered_events_per_s"] == 2000
    assert latency["scored_in_window"] >= latency["events"] > 0
    for q in ("p50", "p95", "p99"):
        assert latency["publish_to_scored_ms"][q] > 0, q
    assert latency["publish_to_scored_ms"]["p50"] <= latency["publish_to_scored_ms"]["p99"]
    assert "publish_to_alert_ms" in latency and latency["alerts"] >= 0
    assert "latency at a fixed offered load" not in res["not_measured"]
