"""End to end on the real stack: vitals → Faust worker → Redis state → alerts topic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from models.news2 import news2_from_vitals
from tests.integration.helpers import (
    consume,
    deteriorating,
    hours_ago,
    publish,
    publish_sick_and_well,
    stable,
    start_worker,
    stored_state,
)
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _final_news2(raw: bytes) -> int:
    vitals = {k: v for k, v in json.loads(raw).items() if k not in ("patient_id", "ts")}
    total = news2_from_vitals(vitals).total
    assert total is not None
    return total


def test_deteriorating_patient_alerts_and_stable_patient_does_not(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    worker = start_worker(settings, tmp_path)
    try:
        sick, well = publish_sick_and_well(settings, "bed-1", "bed-2", hours_ago(4))

        def done(msgs: list[dict]) -> bool:
            return any(m["priority"] == "high" for m in msgs)

        alerts = consume(settings, settings.topics.alerts, until=done, timeout_s=45)
        # the high alert can arrive before the other patient's events (another partition)
        # are scored: the counts are read once every event is applied
        deadline = time.monotonic() + 30
        while (
            stored_state(settings, "bed-1").n_events + stored_state(settings, "bed-2").n_events
            < len(sick) + len(well)
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        scored = worker.metrics()
    finally:
        worker.stop()
    assert alerts, f"no alert; worker metrics: {scored}"
    topic = settings.topics.vitals
    assert scored[f'wardwatch_events_scored_total{{topic="{topic}"}}'] == 24
    assert not any("bed-" in name for name in scored), "patient id in a metric label"
    assert {a["patient_id"] for a in alerts} == {"bed-1"}
    assert alerts[0]["transition"] == "OPEN"
    high = [a for a in alerts if a["priority"] == "high"]
    assert high, alerts
    assert high[-1]["news2_total"] >= 7
    # the alert raised by the last observation carries exactly that observation's NEWS2
    last = [a for a in alerts if a["ts_ms"] == max(x["ts_ms"] for x in alerts)][-1]
    assert last["news2_total"] <= _final_news2(sick[-1])
    assert len({a["transition_id"] for a in alerts}) == len(alerts), "duplicate transitions"
    assert stored_state(settings, "bed-2").n_events == len(well)


def test_two_workers_share_partitions_and_apply_every_event_once(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    w1 = start_worker(settings, tmp_path, "w1")
    w2 = start_worker(settings, tmp_path, "w2")
    try:
        start = hours_ago(4)
        patients = [f"p{i:02d}" for i in range(24)]
        items = []
        for i, pid in enumerate(patients):
            series = deteriorating(pid, start) if i % 3 == 0 else stable(pid, start)
            items += [(pid, v) for v in series]
        sent = publish(settings, settings.topics.vitals, items)

        def applied() -> int:
            return sum(stored_state(settings, pid).n_events for pid in patients)

        deadline = time.monotonic() + 60
        while applied() < sent and time.monotonic() < deadline:
            time.sleep(0.5)
        m1, m2 = w1.metrics(), w2.metrics()
    finally:
        w1.stop()
        w2.stop()
    assert applied() == sent  # every event applied exactly once, in effect
    consumed1 = sum(v for k, v in m1.items() if k.startswith("wardwatch_events_consumed_total"))
    consumed2 = sum(v for k, v in m2.items() if k.startswith("wardwatch_events_consumed_total"))
    assert consumed1 > 0 and consumed2 > 0, "both workers should own partitions"
    alerts = consume(
        settings,
        settings.topics.alerts,
        until=lambda m: len({a["patient_id"] for a in m}) >= 8,
        timeout_s=20,
    )
    opened = [a for a in alerts if a["transition"] == "OPEN"]
    assert sorted(a["patient_id"] for a in opened) == [
        p for i, p in enumerate(patients) if i % 3 == 0
    ]
    assert len({a["transition_id"] for a in alerts}) == len(alerts)
