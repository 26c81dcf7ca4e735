"""Overload: the worker's capacity is measured, then twice that rate is offered for a
bounded time. Lag grows while the input outruns the worker and drains afterwards; the
worker's memory stays bounded (Faust's fetch buffers are bounded, nothing is queued in
memory beyond a batch); every event is scored, and each alert and page comes once."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.demo_workers import WorkerProcess, metric_sum
from tests.fault.scenario import Harness, Scenario, row, run_scenario
from wardwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS = 400
WARMUP = 2000  # events published at once first (start-up, model and caches warm)
MEASURE = 6000  # then these, at once, to measure capacity
OFFER_S = 10.0  # how long twice the capacity is offered
MAX_RSS_GROWTH_MB = 300.0


def _input(minutes: int) -> Scenario:
    """``PATIENTS`` patients with a reading a minute each, in time order (the past)."""
    rng = random.Random(5)
    start = (datetime.now(UTC) - timedelta(minutes=minutes + 60)).replace(microsecond=0)
    messages = []
    for m in range(minutes):
        for p in range(PATIENTS):
            pid = f"load-{p:04d}"
            event = {
                "patient_id": pid,
                "ts": (start + timedelta(minutes=m, seconds=p * 0.1)).isoformat(),
                "heart_rate_bpm": rng.randint(60, 100),
                "respiratory_rate_per_min": rng.randint(12, 20),
                "spo2_pct": rng.randint(95, 99),
                "on_oxygen": False,
                "systolic_bp_mmhg": rng.randint(110, 140),
                "temperature_c": round(rng.uniform(36.2, 37.6), 1),
                "consciousness": "A",
            }
            messages.append((pid, json.dumps(event).encode()))
    return Scenario(messages, [f"load-{p:04d}" for p in range(PATIENTS)])


def _rss_mb(w: WorkerProcess) -> float:
    assert w.proc is not None
    for line in Path(f"/proc/{w.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _scored(w: WorkerProcess) -> float:
    return metric_sum(w.metrics(), "wardwatch_events_scored_total")


def test_twice_the_capacity_for_a_while_lags_then_drains_with_memory_bounded(
    settings: Settings, tmp_path: Path
) -> None:
    scenario = _input(minutes=220)  # 88,000 events: more than the run can use
    figures: dict[str, float] = {}

    def fault(h: Harness) -> None:
        w = h.start_worker()
        messages = iter(scenario.messages)
        rss0 = _rss_mb(w)
        for n, target in ((WARMUP, WARMUP), (MEASURE, WARMUP + MEASURE)):
            began = time.monotonic()
            h.publish([next(messages) for _ in range(n)])
            while _scored(w) < target:
                assert time.monotonic() - began < 120, "a burst was never scored"
                time.sleep(0.1)
        capacity = MEASURE / (time.monotonic() - began)
        rate = 2 * capacity
        offered, peak_lag, peak_rss = 0, 0.0, rss0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < OFFER_S:
            due = int(rate * elapsed) - offered
            if due > 0:
                batch = [m for _, m in zip(range(due), messages, strict=False)]
                h.publish(batch)
                offered += len(batch)
            # the backlog: published, not yet scored (the lag gauge moves on the timer)
            peak_lag = max(peak_lag, WARMUP + MEASURE + offered - _scored(w))
            peak_rss = max(peak_rss, _rss_mb(w))
            time.sleep(0.2)
        offered_for = time.monotonic() - start
        total = WARMUP + MEASURE + offered
        while _scored(w) < total:
            peak_rss = max(peak_rss, _rss_mb(w))
            assert time.monotonic() - start < OFFER_S + 180, "the lag never drained"
            time.sleep(0.2)
        figures.update(
            capacity_per_s=round(capacity),
            offered_per_s=round(offered / offered_for),
            offered=offered,
            peak_lag=peak_lag,
            drained_s=round(time.monotonic() - start - offered_for, 1),
            rss_start_mb=round(rss0),
            rss_peak_mb=round(peak_rss),
        )

    out = run_scenario(settings, tmp_path, scenario, fault, timeout_s=240)
    print("OVERLOAD " + json.dumps(figures))
    row("2x capacity", f"{figures['offered_per_s']:.0f}/s for {OFFER_S:.0f} s", out)
    assert out.lost == 0 and out.dead_lettered == 0
    assert out.opened_twice() == 0 and out.alert_copies_distinct()
    assert set(out.pages) == out.expected_pages()
    assert figures["offered_per_s"] >= 1.5 * figures["capacity_per_s"]  # really overloaded
    assert figures["peak_lag"] > 0
    assert figures["rss_peak_mb"] - figures["rss_start_mb"] < MAX_RSS_GROWTH_MB
