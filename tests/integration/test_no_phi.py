"""No patient identifier or observation outside the clinical views: ``wardwatch demo``
runs as the README runs it, and every log line its workers and the demo itself write
(worker logs under the demo's data directory, the demo's stderr) and scrapes of
``/metrics`` taken while it runs are searched for the simulated patients' ids and for
observation payloads. The demo's live alert console (stdout) and the care-team page are
the clinical views and are not searched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS = 10
IDS = [f"sim-{i:05d}" for i in range(PATIENTS)]
ID_PATTERN = re.compile(r"sim-\d{3,}")
# an observation as it travels (JSON fields) or as a person would write it in a log line
VITALS_PATTERN = re.compile(
    r"(heart_rate_bpm|respiratory_rate_per_min|spo2_pct|systolic_bp_mmhg|temperature_c)"
    r"\"?\s*[:=]\s*\d"
    r"|\b(HR|RR|SpO2|SBP|BP|temp)\s*[:=]?\s*\d{2,3}\b"
)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_demo_logs_and_metrics_carry_no_patient_identifiers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDWATCH_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--patients", str(PATIENTS), "--duration", "15"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr: list[str] = []
    drain = threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True)
    drain.start()
    scrapes: list[str] = []
    console: list[str] = []
    metrics_url = None
    try:
        for line in proc.stdout:
            console.append(line)
            m = re.search(r"metrics at (https?://\S+/metrics)", line)
            if m:
                metrics_url = m.group(1)
                break
        assert metrics_url, "".join(console)[-2000:]
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:  # scrapes while patients are scored and paged
            time.sleep(3)
            try:
                scrapes.append(_scrape(metrics_url))
            except OSError:
                break
        console.extend(proc.stdout)
        assert proc.wait(timeout=180) == 0, "".join(stderr)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    drain.join(5)

    # the demo worked: patients were scored and alerted on the console (a clinical view)
    shown = "".join(console)
    assert any(pid in shown for pid in IDS), shown[-2000:]
    assert "OPEN" in shown
    assert scrapes and "wardwatch_events_scored_total" in scrapes[-1]

    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / ".wardwatch").rglob("*.log")}
    assert any(name.startswith("worker-") for name in logs), sorted(logs)
    logs["demo stderr"] = "".join(stderr)
    for i, text in enumerate(scrapes):
        logs[f"/metrics scrape {i}"] = text
    assert sum(len(t.splitlines()) for t in logs.values()) > 20
    for name, text in logs.items():
        for n, line in enumerate(text.splitlines(), 1):
            assert not ID_PATTERN.search(line), f"{name}:{n} names a patient: {line[:300]}"
            assert not VITALS_PATTERN.search(line), f"{name}:{n} carries vitals: {line[:300]}"
