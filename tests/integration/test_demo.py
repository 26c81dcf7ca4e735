"""The main job, as the README runs it: `wardwatch demo` on the embedded default stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_runs_scores_alerts_and_exits_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDWATCH_")}
    summary = tmp_path / "s.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "demo",
            "--patients",
            "20",
            "--duration",
            "15",
            "--summary-json",
            str(summary),
        ],
        cwd=tmp_path,  # its own data directory; the shipped model is found beside the source
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(summary.read_text())
    assert s["errors"] == [] and s["worker_restarts"] == 0
    assert s["events_published"] > 0 and s["events_scored"] == s["events_published"]
    assert s["events_model_scored"] == s["events_scored"] and s["model"]
    assert s["alerts_opened"] > 0 and s["duplicate_transitions_seen"] == 0
    assert s["event_to_alert_latency_ms"]["p50"] is not None
    # the simulated care team acknowledges pages through the API while vitals stream:
    # every command reaches the patient's owner, and nothing conflicts
    assert s["care_team"].get("ack accepted", 0) > 0
    assert s["commands"]["applied"] > 0 and s["conflict_retries"] == 0
    assert s["alert_transitions"].get("ACKNOWLEDGED", 0) > 0
    assert "OPEN" in proc.stdout  # alerts printed live
