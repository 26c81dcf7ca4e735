"""Redis stopped for 30 s (longer than every timer of the worker: the escalation tick, the
outbox sweep, several socket timeouts) while the scenario streams, then restarted from its
append-only file. The worker waits (not ready, retrying with backoff) instead of crashing
or acknowledging what it could not apply, and the run gives exactly what the no-fault run
gives."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.demo_workers import metric_sum
from tests.fault.scenario import (
    Harness,
    Outcome,
    Scenario,
    assert_as_expected,
    row,
    run_scenario,
)
from wardwatch.settings import Settings
from wardwatch.stack import embedded_redis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 30.0


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=3) as resp:
            return bool(json.loads(resp.read())["ready"])
    except urllib.error.HTTPError as exc:
        return exc.code == 200
    except OSError:
        return False


def test_redis_stopped_for_30_s_changes_nothing(
    settings: Settings, tmp_path: Path, scenario: Scenario, reference: Outcome
) -> None:
    server = embedded_redis(tmp_path / "redis", persist=True)
    server.start()
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{server.port}/0"})
    seen: dict[str, object] = {}

    def fault(h: Harness) -> None:
        nonlocal server
        first, second, third = scenario.chunks(3)
        w = h.start_worker()
        h.publish(first)
        time.sleep(2.0)
        server.stop()  # gone: connections refused (its data are in the append-only file)
        h.publish(second)
        time.sleep(OUTAGE_S / 2)
        seen["ready_during"] = _ready(w.url)
        time.sleep(OUTAGE_S / 2)
        assert w.proc is not None and w.proc.poll() is None, "the worker died"
        server = embedded_redis(tmp_path / "redis", port=server.port, persist=True)
        server.start()
        h.publish(third)
        seen["retries"] = metric_sum(w.metrics(), "wardwatch_processing_retries_total")

    try:
        out = run_scenario(settings, tmp_path, scenario, fault, timeout_s=240)
    finally:
        server.stop()
    row("Redis stopped 30 s", "1 outage", out)
    assert seen["ready_during"] is False
    assert float(seen["retries"]) >= 1  # type: ignore[arg-type]
    assert_as_expected(out, reference)
