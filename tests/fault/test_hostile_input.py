"""Hostile input at volume: 10,000 malformed, truncated, oversized, wrong-typed,
wrong-encoding and hostile messages (``tests/fault/hostile.py``) interleaved with the
scenario's events on the vitals topic, many on the scenario patients' keys (so they share
their partitions). The scenario's patients must end exactly as with no fault, and every
hostile message must be accounted for: dead-lettered with a known reason, or scored for a
patient of its own."""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fault.hostile import hostile_messages, interleave
from tests.fault.scenario import (
    Harness,
    Outcome,
    Scenario,
    assert_as_expected,
    row,
    run_scenario,
)
from tests.integration.helpers import consume, publish
from wardwatch.ingest import Decoded, decode_vitals
from wardwatch.schemas import MAX_LETTER_ORIGINAL_BYTES, FailureReason, RejectReason
from wardwatch.settings import Settings

N = 10_000
ANCHOR = datetime(2024, 6, 1, 8, 0, tzinfo=UTC)
PATIENTS = [f"sim-{i:05d}" for i in range(32)]


def _anchor(scenario: Scenario) -> datetime:
    return datetime.fromisoformat(json.loads(scenario.messages[0][1])["ts"])


def test_the_hostile_messages_are_the_same_every_time() -> None:
    a = hostile_messages(PATIENTS, ANCHOR, n=2000)
    b = hostile_messages(PATIENTS, ANCHOR, n=2000)
    assert a == b and len(a) == 2000 and len({m.value for m in a}) > 1000


@settings(derandomize=True, max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_each_hostile_message_is_what_it_says_and_never_a_scenario_patients_event(
    seed: int,
) -> None:
    """The decoder's verdict on each message agrees with what the generator says of it: a
    dead one rejected (or, ``too_late``, an event of its scenario patient that the pipeline
    refuses), a valid one decoded to exactly one event of its own (non-scenario) patient."""
    now = datetime.now(UTC)
    msgs = hostile_messages(PATIENTS, ANCHOR, n=300, seed=seed, oversized=1)
    for m in msgs:
        result = decode_vitals(m.value, now=now)
        if m.patient is not None:
            assert isinstance(result, Decoded), (m.kind, m.value[:200], result)
            assert [e.patient_id for e in result.events] == [m.patient]
            assert m.patient not in PATIENTS
        elif m.kind == "too_late":
            assert isinstance(result, Decoded) and result.events[0].patient_id == m.after
        else:
            assert not isinstance(result, Decoded), (m.kind, m.value[:200])


@pytest.mark.integration
@pytest.mark.slow
def test_ten_thousand_hostile_messages_change_nothing_for_the_scenario_and_each_is_accounted_for(
    scenario: Scenario, reference: Outcome, settings: Settings, tmp_path: Path
) -> None:
    hostile = hostile_messages(scenario.patients, _anchor(scenario), n=N)
    mixed = interleave(scenario.messages, hostile)
    assert not {m.patient for m in hostile} & set(scenario.patients)

    def fault(h: Harness) -> None:
        h.start_worker()
        # one producer for the lot, in this order (Harness.publish would open one a run)
        publish(h.settings, h.settings.topics.vitals, cast(Any, [(k, v) for k, v, _ in mixed]))
        h.published += len(scenario.messages)
        h.extra_in += len(hostile)

    out = run_scenario(settings, tmp_path, scenario, fault, timeout_s=240)
    row("hostile input", "10,000 messages", out)
    assert out.events_in == len(scenario.messages) + N
    assert out.lost == 0

    # the scenario's patients: exactly the no-fault outcome
    ours = set(scenario.patients)
    alert_pids = {tid: a["patient_id"] for tid, a in out.alerts.items()}
    theirs = [tid for tid, pid in alert_pids.items() if pid not in ours]
    assert not theirs, f"{len(theirs)} alerts for hostile patients"
    mine = replace(out, states={pid: s for pid, s in out.states.items() if pid in ours})
    assert_as_expected(mine, reference)
    assert sum(s["n_events"] for s in mine.states.values()) == reference.scored

    # every hostile message: scored once for its own patient, or dead-lettered with a reason
    valid = Counter(m.patient for m in hostile if m.patient is not None)
    scored = {pid: s["n_events"] for pid, s in out.states.items() if pid not in ours}
    assert scored == dict(valid)
    letters = _letters(settings)
    known = {r.value for r in RejectReason} | {r.value for r in FailureReason}
    reasons = Counter(d["reason"] for d in letters)
    assert set(reasons) <= known, reasons
    dead = [m for m in hostile if m.patient is None]
    assert len(letters) == len(dead) == out.dead_lettered
    assert reasons[FailureReason.TOO_LATE] == sum(1 for m in dead if m.kind == "too_late")
    kept = Counter(_original(d) for d in letters)
    assert kept == Counter(m.value[:MAX_LETTER_ORIGINAL_BYTES] for m in dead)
    cut = [d for d in letters if d.get("original_truncated")]
    assert cut and all(d["original_size"] > MAX_LETTER_ORIGINAL_BYTES for d in cut)
    print("HOSTILE-REASONS " + json.dumps(dict(reasons.most_common())))


def _letters(s: Settings) -> list[dict[str, Any]]:
    """The dead letters, one per source message (a letter may repeat after a retry)."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for d in consume(s, s.topics.dead_letter, until=lambda m: False, timeout_s=15):
        seen.setdefault((d["source_topic"], d["source_partition"], d["source_offset"]), d)
    return list(seen.values())


def _original(letter: dict[str, Any]) -> bytes:
    return base64.b64decode(letter["original_b64"])
