"""Late and early data on a real worker: merged for the record, dead-lettered past the
late window, taken at now when stamped ahead of the clock (docs/delivery.md, time)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.demo_workers import metric_sum
from tests.integration.helpers import (
    STABLE,
    consume,
    hours_ago,
    publish,
    start_worker,
    stored_state,
    vitals,
    wait_for,
)
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics

pytestmark = pytest.mark.integration

SICK = {  # NEWS2 well above 7: would page at once if it were news
    "heart_rate_bpm": 135,
    "respiratory_rate_per_min": 30,
    "spo2_pct": 86,
    "on_oxygen": False,
    "systolic_bp_mmhg": 88,
    "temperature_c": 39.4,
    "consciousness": "A",
}


def test_late_events_are_merged_without_paging_and_too_late_ones_dead_lettered(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    t0 = hours_ago(6)
    steady = [vitals("tm-1", t0 + timedelta(minutes=15 * i), **STABLE) for i in range(9)]
    newest = t0 + timedelta(minutes=15 * 8)
    worker = start_worker(settings, tmp_path)
    try:
        publish(settings, settings.topics.vitals, [("tm-1", v) for v in steady])
        wait_for(lambda: stored_state(settings, "tm-1").n_events == 9, 30, "steady events")
        publish(
            settings,
            settings.topics.vitals,
            [
                # 30 min older than the newest: a monitor reconnecting with a buffered set
                ("tm-1", vitals("tm-1", newest - timedelta(minutes=30), **SICK)),
                # 2 h older, past the 1 h late window: too late to merge
                ("tm-1", vitals("tm-1", newest - timedelta(hours=2), **SICK)),
                # the late one again (a producer's retry): already applied
                ("tm-1", vitals("tm-1", newest - timedelta(minutes=30), **SICK)),
            ],
        )
        letters = consume(
            settings, settings.topics.dead_letter, until=lambda m: len(m) >= 1, timeout_s=30
        )
        wait_for(lambda: stored_state(settings, "tm-1").n_events == 10, 30, "the late event")
        wait_for(
            lambda: metric_sum(worker.metrics(), "wardwatch_events_skipped_total") >= 1,
            30,
            "the duplicate",
        )
        metrics = worker.metrics()
    finally:
        worker.stop()
    state = stored_state(settings, "tm-1")
    assert (state.n_events, state.n_late) == (10, 1)
    assert state.watermark_ms == int(newest.timestamp() * 1000)
    assert json.loads(state.alert or "{}").get("status", "none") == "none"  # never paged
    assert [d["reason"] for d in letters] == ["too_late"]
    assert "older than the patient's newest event" in letters[0]["detail"]
    assert metric_sum(metrics, "wardwatch_events_scored_total") == 10
    assert metric_sum(metrics, "wardwatch_events_late_total") == 1
    assert metric_sum(metrics, "wardwatch_events_skipped_total") == 1
    assert metric_sum(metrics, "wardwatch_alert_transitions_total") == 0


def test_an_event_stamped_ahead_of_the_clock_does_not_hold_back_the_next_ones(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    worker = start_worker(settings, tmp_path)
    try:
        ahead = datetime.now(UTC) + timedelta(seconds=200)  # within the 300 s skew
        publish(settings, settings.topics.vitals, [("tm-2", vitals("tm-2", ahead, **STABLE))])
        wait_for(lambda: stored_state(settings, "tm-2").n_events == 1, 30, "the early event")
        received = stored_state(settings, "tm-2").watermark_ms
        assert received < int(ahead.timestamp() * 1000) - 100_000  # taken at now
        time.sleep(0.5)
        real = datetime.now(UTC)  # the device's next reading, on a correct clock
        publish(settings, settings.topics.vitals, [("tm-2", vitals("tm-2", real, **STABLE))])
        wait_for(lambda: stored_state(settings, "tm-2").n_events == 2, 30, "the next event")
        metrics = worker.metrics()
    finally:
        worker.stop()
    state = stored_state(settings, "tm-2")
    assert state.n_late == 0 and state.watermark_ms == int(real.timestamp() * 1000)
    assert metric_sum(metrics, 'wardwatch_ingest_warnings_total{code="timestamp_ahead"}') == 1
