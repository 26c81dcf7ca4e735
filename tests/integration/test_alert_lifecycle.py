"""The alert lifecycle through a real worker: one alert per episode that escalates as the
patient worsens and resolves when they recover, no duplicates; an artifact pages nobody."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.helpers import STABLE, consume, hours_ago, publish, start_worker, vitals
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _course() -> list[dict]:
    """Quarter-hourly: 2 h normal, worsening over 2 h to NEWS2 >= 7, 1 h there, recovery."""
    rows = [dict(STABLE) for _ in range(8)]
    for i in range(1, 9):
        f = i / 8
        rows.append(
            dict(
                STABLE,
                heart_rate_bpm=round(76 + 40 * f),
                respiratory_rate_per_min=round(15 + 11 * f),
                spo2_pct=round(97 - 6 * f),
                systolic_bp_mmhg=round(124 - 30 * f),
                temperature_c=round(36.8 + 1.8 * f, 1),
            )
        )
    rows += [dict(rows[-1]) for _ in range(4)]
    rows += [dict(STABLE) for _ in range(12)]  # 3 h recovered: past the 1 h hold
    return rows


def test_one_episode_escalates_and_resolves_and_an_artifact_pages_nobody(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"time_scale": 60.0})  # timers on event time
    ensure_topics(settings)
    start = hours_ago(10)
    sick = [
        ("bed-1", vitals("bed-1", start + timedelta(minutes=15 * i), **row))
        for i, row in enumerate(_course())
    ]
    steady = [
        (
            "bed-2",
            vitals(
                "bed-2",
                start + timedelta(minutes=15 * i),
                **dict(STABLE, heart_rate_bpm=72 + i % 3),
            ),
        )
        for i in range(28)
    ]
    probe_off = (
        "bed-2",
        vitals(
            "bed-2", start + timedelta(minutes=15 * 14, seconds=30), spo2_pct=72, on_oxygen=False
        ),
    )
    worker = start_worker(settings, tmp_path)
    try:
        publish(
            settings,
            settings.topics.vitals,
            sorted([*sick, *steady, probe_off], key=lambda kv: kv[1]),
        )
        alerts = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition"] == "RESOLVED" for a in m),
            timeout_s=60,
        )
        time.sleep(3)  # nothing more should follow
        alerts = consume(settings, settings.topics.alerts, until=lambda m: False, timeout_s=3)
    finally:
        worker.stop()
    assert {a["patient_id"] for a in alerts} == {"bed-1"}, alerts
    kinds = [
        (a["transition"], a["priority"])
        for a in alerts
        if a["transition"] != "ESCALATED" or "unacknowledged" not in a["reason"]
    ]
    assert kinds[0][0] == "OPEN"
    assert ("ESCALATED", "high") in kinds
    assert kinds[-1][0] == "RESOLVED"
    assert len({a["alert_id"] for a in alerts}) == 1  # one episode
    assert len({a["transition_id"] for a in alerts}) == len(alerts)  # no duplicates
    assert [k for k, _ in kinds].count("OPEN") == 1


def test_a_discharge_on_patient_context_closes_the_patient_s_alert(
    settings: Settings, tmp_path: Path
) -> None:
    """Through the broker and the worker: a patient with an open alert is discharged (ADT
    on ``patient-context``): the alert is RESOLVED with reason ``discharged`` by the worker
    that owns the patient, and their later vitals raise nothing."""
    ensure_topics(settings)
    start = hours_ago(2)
    sick = dict(STABLE, respiratory_rate_per_min=26, spo2_pct=90, heart_rate_bpm=125)
    worker = start_worker(settings, tmp_path)
    try:
        publish(
            settings,
            settings.topics.vitals,
            [
                ("bed-7", vitals("bed-7", start + timedelta(minutes=15 * i), **sick))
                for i in range(2)
            ],
        )
        consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition"] == "OPEN" for a in m),
            timeout_s=30,
        )
        ctx = {"patient_id": "bed-7", "ts": datetime.now(UTC).isoformat(), "discharged": True}
        publish(settings, settings.topics.patient_context, [("bed-7", json.dumps(ctx).encode())])
        alerts = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition"] == "RESOLVED" for a in m),
            timeout_s=30,
        )
        publish(
            settings,
            settings.topics.vitals,
            [("bed-7", vitals("bed-7", start + timedelta(minutes=15 * i), **sick)) for i in (4, 5)],
        )
        time.sleep(3)
        after = consume(settings, settings.topics.alerts, until=lambda m: False, timeout_s=3)
    finally:
        worker.stop()
    resolved = [a for a in alerts if a["transition"] == "RESOLVED"]
    assert [a["reason"] for a in resolved] == [["discharged"]]
    assert len({a["alert_id"] for a in alerts}) == 1
    assert len(after) == len(alerts)  # nothing new after the discharge
