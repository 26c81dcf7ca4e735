"""Malformed, impossible and FHIR messages through the real broker and worker.

Every input is either scored or dead-lettered with the right reason; the counts add up.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.demo_workers import WorkerProcess, metric_sum
from cli.main import cmd_context
from tests.fhir import observation
from tests.integration.helpers import (
    consume,
    hours_ago,
    publish,
    start_worker,
    stored_state,
    vitals,
)
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def fhir_obs(pid: str, ts: datetime, code: str, value: float, unit: str) -> dict:
    return observation(code, value, unit, pid=pid, ts=ts.isoformat())


def _scored(worker: WorkerProcess, n: int, timeout_s: float) -> dict[str, float]:
    """The worker's metrics once it has scored ``n`` events (or at the deadline)."""
    deadline = time.monotonic() + timeout_s
    m = worker.metrics()
    while metric_sum(m, "wardwatch_events_scored_total") < n and time.monotonic() < deadline:
        time.sleep(0.3)
        m = worker.metrics()
    return m


def test_bad_input_is_dead_lettered_with_reasons_and_good_input_scored(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    t = hours_ago(1)
    future = datetime.now(UTC) + timedelta(hours=2)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": fhir_obs("f-1", t, "8867-4", 88, "/min")},
            {"resource": fhir_obs("f-1", t, "8310-5", 98.6, "[degF]")},
            {"resource": fhir_obs("f-1", t + timedelta(minutes=15), "9279-1", 18, "/min")},
        ],
    }
    aside_bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": fhir_obs("f-4", t, "8867-4", 0, "/min")},
            {"resource": fhir_obs("f-4", t, "2708-6", 95, "%")},
        ],
    }
    cases: list[tuple[bytes, str | None]] = [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (json.dumps({"ts": t.isoformat(), "heart_rate_bpm": 80}).encode(), "missing_patient_id"),
        (json.dumps({"patient_id": "x", "heart_rate_bpm": 80}).encode(), "missing_timestamp"),
        (vitals("x", t, heart_rate_bpm="80"), "schema_violation"),
        (vitals("x", t, consciousness="Z"), "schema_violation"),
        (vitals("x", t, heart_rate_bpm=400), "impossible_value"),
        (vitals("x", t, spo2_pct=101), "impossible_value"),
        (vitals("x", t, temperature_c=60), "impossible_value"),
        (vitals("x", future, heart_rate_bpm=80), "future_timestamp"),
        (json.dumps(fhir_obs("f-2", t, "2345-7", 5.5, "mmol/L")).encode(), "fhir_unsupported"),
        (json.dumps(fhir_obs("f-2", t, "8867-4", 88, "furlongs")).encode(), "unit_unsupported"),
        # one reading set aside (no signal, inverted pressures), the rest scored
        (vitals("s-1", t, heart_rate_bpm=80, respiratory_rate_per_min=0), None),
        (vitals("s-2", t, heart_rate_bpm=80, systolic_bp_mmhg=80, diastolic_bp_mmhg=95), None),
        # SBP 36 in shock: scored, to verify
        (vitals("s-3", t, systolic_bp_mmhg=36, diastolic_bp_mmhg=20), None),
        # FHIR alike: the impossible heart rate set aside, the SpO2 of the instant scored
        (json.dumps(aside_bundle).encode(), None),
        (vitals("j-1", t, heart_rate_bpm=80, spo2_pct=97), None),
        (json.dumps(fhir_obs("f-3", t, "2708-6", 95, "%")).encode(), None),
        (json.dumps(bundle).encode(), None),  # two observation times → two scored events
    ]
    worker = start_worker(settings, tmp_path)
    try:
        # keyed by patient as producers must (the bad ones by anything: they go nowhere)
        good = ["s-1", "s-2", "s-3", "f-4", "j-1", "f-3", "f-1"]
        keys = ["k"] * (len(cases) - len(good)) + good
        publish(
            settings,
            settings.topics.vitals,
            list(zip(keys, [raw for raw, _ in cases], strict=True)),
        )
        expected_dead = sum(1 for _, r in cases if r)
        letters = consume(
            settings,
            settings.topics.dead_letter,
            until=lambda m: len(m) >= expected_dead,
            timeout_s=40,
        )
        m = _scored(worker, 8, timeout_s=20)
        states = {pid: stored_state(settings, pid) for pid in ("s-1", "s-2", "s-3", "f-4")}
    finally:
        worker.stop()
    assert sorted(d["reason"] for d in letters) == sorted(r for _, r in cases if r)
    for d in letters:
        assert d["source_topic"] == settings.topics.vitals
        assert d["source_partition"] is not None and d["source_offset"] is not None
        assert d["detail"] and d["original_b64"]
    consumed = metric_sum(m, "wardwatch_events_consumed_total")
    dead = metric_sum(m, "wardwatch_dead_letter_total")
    scored = metric_sum(m, "wardwatch_events_scored_total")
    assert consumed == len(cases)
    assert dead == expected_dead
    assert scored == 8  # s-1..3, f-4, j-1, f-3 and the bundle's two observation sets
    assert consumed - dead == 7  # the seven good messages
    assert set(states["s-1"].latest) == {"heart_rate_bpm"}
    assert set(states["s-2"].latest) == {"heart_rate_bpm"}
    assert states["s-3"].latest["systolic_bp_mmhg"][0] == 36.0
    assert set(states["f-4"].latest) == {"spo2_pct"}
    flagged = "wardwatch_ingest_readings_flagged_total"
    assert metric_sum(m, f'{flagged}{{field="respiratory_rate_per_min",tier="impossible"}}') == 1
    assert metric_sum(m, f'{flagged}{{field="heart_rate_bpm",tier="impossible"}}') == 1
    assert metric_sum(m, f'{flagged}{{field="systolic_bp_mmhg",tier="inconsistent"}}') == 1
    assert metric_sum(m, f'{flagged}{{field="systolic_bp_mmhg",tier="extreme"}}') == 1
    assert metric_sum(m, 'wardwatch_ingest_warnings_total{code="reading_set_aside"}') == 3


async def test_patient_context_switches_the_spo2_scale(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    args = argparse.Namespace(
        patient_id="copd-1",
        spo2_scale=2,
        age_band="65-79",
        condition=["copd"],
        ward=None,
        discharged=False,
    )
    assert cmd_context(args, settings) == 0
    worker = start_worker(settings, tmp_path)
    store = RedisStateStore.from_url(settings.redis_url or "", prefix=settings.redis_prefix)
    try:
        deadline = time.monotonic() + 30
        while (await store.load(["copd-1"]))["copd-1"].context is None:
            assert time.monotonic() < deadline, "context never reached Redis"
            time.sleep(0.2)
        normal = dict(
            respiratory_rate_per_min=16,
            systolic_bp_mmhg=130,
            heart_rate_bpm=80,
            temperature_c=36.8,
            consciousness="A",
            on_oxygen=False,
            spo2_pct=89,
        )
        publish(
            settings,
            settings.topics.vitals,
            [
                ("copd-1", vitals("copd-1", hours_ago(1), **normal)),
                ("other-1", vitals("other-1", hours_ago(1), **normal)),
            ],
        )
        deadline = time.monotonic() + 30
        while len(await store.history("copd-1")) + len(await store.history("other-1")) < 2:
            assert time.monotonic() < deadline, "events not scored"
            time.sleep(0.2)
        copd = (await store.history("copd-1"))[-1]
        other = (await store.history("other-1"))[-1]
    finally:
        worker.stop()
        await store.close()
    assert copd["news2"] == 0  # SpO2 89 % on air is on target on scale 2
    assert other["news2"] == 3  # ... and scores 3 on scale 1


def test_misrouted_events_are_rekeyed_to_their_patients_partition(
    settings: Settings, tmp_path: Path
) -> None:
    """A Bundle holding two patients, an event keyed by another patient and an unkeyed one:
    each event is applied to its patient (via the partition that owns it), none lost."""
    ensure_topics(settings)
    t = hours_ago(2)
    two_patients = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": fhir_obs("rk-1", t, "8867-4", 88, "/min")},
            {"resource": fhir_obs("rk-2", t, "8867-4", 92, "/min")},
        ],
    }
    worker = start_worker(settings, tmp_path)
    try:
        publish(
            settings,
            settings.topics.vitals,
            [
                ("rk-1", json.dumps(two_patients).encode()),  # rk-2's half is misrouted
                ("rk-3", vitals("rk-3", t, heart_rate_bpm=70)),
                # keyed by another patient, and newer: re-keyed, it arrives after the above
                ("rk-1", vitals("rk-3", t + timedelta(minutes=15), heart_rate_bpm=71)),
            ],
        )
        m = _scored(worker, 4, timeout_s=30)
    finally:
        worker.stop()
    assert metric_sum(m, "wardwatch_events_rekeyed_total") == 2
    assert metric_sum(m, "wardwatch_events_scored_total") == 4
    assert metric_sum(m, "wardwatch_dead_letter_total") == 0
    assert [stored_state(settings, p).n_events for p in ("rk-1", "rk-2", "rk-3")] == [1, 1, 2]
