"""Scoring pipeline invariants on the in-process store (same code as the worker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agents.model_stage import Incoming
from agents.pipeline import ScoringPipeline
from alerts import AlertState
from tests.unit.observations import NORMAL
from wardwatch.ingest import Decoded, decode_vitals
from wardwatch.schemas import VitalsEvent
from wardwatch.store import MemoryStateStore

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def ev(minutes: int, **values: object) -> VitalsEvent:
    return VitalsEvent.model_validate(
        {"patient_id": "p", "ts": T0 + timedelta(minutes=minutes), **values}
    )


async def test_batch_boundaries_do_not_change_scores() -> None:
    """The device switches the patient to SpO2 scale 2 mid-stream: every event is scored
    with the scale known at that event, however the events are batched."""
    events = [
        ev(0, spo2_pct=89, on_oxygen=False, respiratory_rate_per_min=16),
        ev(15, spo2_pct=89, on_oxygen=False),
        ev(30, spo2_pct=89, on_oxygen=False, spo2_scale=2),
        ev(45, spo2_pct=89, on_oxygen=False),
    ]

    async def totals(size: int) -> list[int | None]:
        pipe = ScoringPipeline(MemoryStateStore())
        out: list[int | None] = []
        for i in range(0, len(events), size):
            res = await pipe.process(
                [Incoming(e, str(i + j)) for j, e in enumerate(events[i : i + size])]
            )
            out += [s.news2.total for s in res.scored]
        return out

    one_by_one, all_at_once = await totals(1), await totals(len(events))
    assert one_by_one == all_at_once == [3, 3, 0, 0]


async def test_replaying_a_batch_changes_nothing() -> None:
    store = MemoryStateStore()
    pipe = ScoringPipeline(store)
    batch = [Incoming(ev(15 * i, heart_rate_bpm=80 + 10 * i), str(i)) for i in range(6)]
    first = await pipe.process(batch)
    state = store.states["p"]
    again = await pipe.process(batch)  # e.g. after a crash before the offsets were committed
    assert len(first.scored) == 6 and again.scored == [] and again.emitted == []
    assert again.duplicates == 6  # all recognised, the older ones among the recent digests
    assert store.states["p"] == state


class SecondWriter(MemoryStateStore):
    """A store on which another writer commits patient ``p`` between this pipeline's load
    and commit, ``times`` times (a zombie worker, or an action from the page)."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times

    async def commit(self, updates, emits, stream_ms=None):  # type: ignore[no-untyped-def]
        if self.times > 0 and any(u.pid == "p" for u in updates):
            self.times -= 1
            self.versions["p"] = self.versions.get("p", 0) + 1  # the other writer's commit
        return await super().commit(updates, emits, stream_ms)


async def test_a_conflict_is_retried_and_every_event_applied() -> None:
    store = SecondWriter(times=2)
    pipe = ScoringPipeline(store)
    batch = [Incoming(ev(15 * i, heart_rate_bpm=80 + i), str(i)) for i in range(4)]
    batch.append(
        Incoming(VitalsEvent.model_validate({"patient_id": "q", "ts": T0, "spo2_pct": 97}), "q")
    )
    result = await pipe.process(batch)
    assert result.conflicts == [] and result.conflict_retries == 2
    assert sorted(s.patient_id for s in result.scored) == ["p", "p", "p", "p", "q"]
    loaded = await store.load(["p", "q"])
    assert loaded["p"].state.n_events == 4 and loaded["q"].state.n_events == 1


async def test_a_conflict_that_persists_is_reported_with_nothing_of_the_patient_counted() -> None:
    pipe = ScoringPipeline(SecondWriter(times=100), conflict_retries=3)
    batch = [Incoming(ev(15 * i, heart_rate_bpm=80 + i), str(i)) for i in range(3)]
    batch.append(Incoming(batch[0].event, "dup"))  # a duplicate of the patient: not counted
    result = await pipe.process(batch)
    assert result.conflicts == ["p"] and result.conflict_retries == 3
    assert result.scored == [] and result.skipped == [] and result.duplicates == 0


async def test_a_reading_set_aside_at_ingest_travels_with_the_score_and_the_alert() -> None:
    """Decoded flags ride on Incoming: the scored record keeps them (late ones too), and an
    alert raised on that observation names the reading set aside and the one to verify."""
    raw = [
        {"heart_rate_bpm": 80, "respiratory_rate_per_min": 16, "spo2_pct": 97},
        # respiratory rate 0 (no signal): set aside; SBP 36 (extreme): scored, 3 points
        {"heart_rate_bpm": 82, "respiratory_rate_per_min": 0, "systolic_bp_mmhg": 36},
        {"heart_rate_bpm": 84, "systolic_bp_mmhg": 38},
    ]
    now = T0 + timedelta(hours=1)
    items: list[Incoming] = []
    for i, values in enumerate(raw):
        msg = {"patient_id": "p", "ts": (T0 + timedelta(minutes=10 * i)).isoformat(), **values}
        decoded = decode_vitals(json.dumps(msg).encode(), now=now)
        assert isinstance(decoded, Decoded)
        items.append(Incoming(decoded.events[0], str(i), flags=decoded.flags_of(0)))
    pipe = ScoringPipeline(MemoryStateStore())
    result = await pipe.process(items)
    flags = [[(f.field, f.tier) for f in s.flags] for s in result.scored]
    assert flags == [
        [],
        [("respiratory_rate_per_min", "impossible"), ("systolic_bp_mmhg", "extreme")],
        [("systolic_bp_mmhg", "extreme")],
    ]
    # the respiratory rate of 0 never reached the patient's state: the 16 is still current
    assert result.scored[1].news2.components["respiration_rate"] == 0
    # a medium alert: on the page at once, paged when the next set bears it out
    opened, confirmed = result.emitted
    assert (opened["transition"], opened["page"]) == ("OPEN", False)
    assert (confirmed["transition"], confirmed["page"]) == ("ESCALATED", True)
    assert confirmed["reason"][0] == "confirmed"
    summary = opened["explanation"]["summary"]
    assert "verify reading: systolic BP 36 mmHg" in summary
    assert "set aside, not scored: respiratory rate 0 /min (outside the possible range)" in summary
    late = Incoming(items[1].event.model_copy(update={"ts": T0 + timedelta(minutes=5)}), "late")
    late.flags = items[1].flags
    (scored_late,) = (await pipe.process([late])).scored
    assert scored_late.late and scored_late.flags == items[1].flags


async def test_discharge_closes_the_alert_and_later_vitals_are_scored_without_alerts() -> None:
    """A discharge (or transfer out) on the patient's context resolves the open alert with
    reason ``discharged``; the patient's later vitals are scored for the record, no alert
    policy; a new admission's context brings the policy back."""
    store = MemoryStateStore()
    pipe = ScoringPipeline(store)
    sick = {"respiratory_rate_per_min": 26, "spo2_pct": 90, "heart_rate_bpm": 125}
    first = await pipe.process([Incoming(ev(0, **sick), "0")])
    assert [m["transition"] for m in first.emitted] == ["OPEN"]
    alert_id = first.emitted[0]["alert_id"]
    await store.set_context("p", {"patient_id": "p", "discharged": True})
    closed = await pipe.discharge("p")
    (resolved,) = closed.emitted
    assert (resolved["transition"], resolved["reason"], resolved["alert_id"]) == (
        "RESOLVED",
        ["discharged"],
        alert_id,
    )
    assert resolved["page"] is False
    assert (await pipe.discharge("p")).emitted == []  # once only
    later = await pipe.process([Incoming(ev(m, **sick), str(m)) for m in (30, 45, 60)])
    assert len(later.scored) == 3 and all(s.news2.total for s in later.scored)
    assert later.emitted == []
    await store.set_context("p", {"patient_id": "p", "discharged": False})
    readmitted = await pipe.process([Incoming(ev(600, **sick), "600")])
    assert [m["transition"] for m in readmitted.emitted] == ["OPEN"]


async def test_a_reading_held_at_discharge_never_pages_afterwards() -> None:
    """A discharge with a reading held as a possible artifact and no alert open has no
    transition to publish, but what it dropped is written back: the timer, once the hold
    has run out, raises nothing for the patient who left."""
    store = MemoryStateStore()
    pipe = ScoringPipeline(store)
    normal = [Incoming(ev(15 * i, **NORMAL), f"n{i}", partition=0) for i in range(4)]
    held = Incoming(ev(62, **{**NORMAL, "spo2_pct": 84}), "held", partition=0)
    out = await pipe.process([*normal, held])
    assert out.emitted == []

    async def held_now() -> object:
        alert = (await store.load(["p"]))["p"].state.alert
        return AlertState.from_json(alert).pending_candidate

    assert await held_now() is not None
    await store.set_context("p", {"patient_id": "p", "discharged": True})
    assert (await pipe.discharge("p")).emitted == []
    assert await held_now() is None
    # event time moves on past the hold (another patient of the partition)
    clock = [
        Incoming(
            ev(90 + 15 * i, **NORMAL).model_copy(update={"patient_id": "q"}), f"q{i}", partition=0
        )
        for i in range(8)
    ]
    await pipe.process(clock)
    later = await pipe.tick(["p"], now_ms=int((T0 + timedelta(hours=4)).timestamp() * 1000))
    assert later.emitted == []


async def test_every_transition_says_how_old_its_data_were_when_it_was_emitted() -> None:
    """``data_age_s`` on the policy's clock: a reading from 3 h ago raises an alert whose
    data are 3 h old (the pager withholds such pages); the same reading live is fresh."""
    sick = {"respiratory_rate_per_min": 26, "spo2_pct": 90, "heart_rate_bpm": 125}
    now_s = (T0 + timedelta(hours=3)).timestamp()
    pipe = ScoringPipeline(MemoryStateStore(), clock=lambda: now_s)
    (old,) = (await pipe.process([Incoming(ev(0, **sick), "0")])).emitted
    assert old["data_age_s"] == 3 * 3600.0
    assert old["explanation"]["observation_ts_ms"] == int(T0.timestamp() * 1000)
    live = ScoringPipeline(MemoryStateStore(), clock=lambda: T0.timestamp() + 2.5)
    (fresh,) = (await live.process([Incoming(ev(0, **sick), "0")])).emitted
    assert fresh["data_age_s"] == 2.5


async def test_the_patient_s_context_reaches_the_explanation() -> None:
    store = MemoryStateStore()
    await store.set_context("p", {"patient_id": "p", "age_band": "65-79", "conditions": ["copd"]})
    pipe = ScoringPipeline(store)
    sick = {"respiratory_rate_per_min": 26, "spo2_pct": 90, "heart_rate_bpm": 125}
    (opened,) = (await pipe.process([Incoming(ev(0, **sick), "0")])).emitted
    personal = opened["explanation"]["personal"]
    assert personal["age_band"] == "65-79" and personal["conditions"] == ["copd"]
    assert "SpO2 scale 1 in use" in personal["spo2_scale_note"]
