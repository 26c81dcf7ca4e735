"""The escalation timer on shadow alerts: a patient gone silent while event time moves on
gets, on the shadow side, the same timer-driven transition the live side gets (when the
two models agree), exactly once; the live path's outputs stay what they are without a
shadow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import BatchResult, ScoringPipeline
from agents.shadow import MemoryShadowStore, Shadow, ShadowHolder
from alerts import AlertState
from models.runtime import DeteriorationModel
from tests.unit.observations import NORMAL
from tests.unit.test_alert_policy import N5
from tests.unit.test_shadow import Broken, Counts
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
REGISTRY = Settings().resolved_model_registry()
CPU = ["CPUExecutionProvider"]
DECIDED = ("patient_id", "transition_id", "alert_id", "transition", "priority", "reason", "ts_ms")


@pytest.fixture(scope="module")
def model() -> DeteriorationModel:
    return DeteriorationModel.from_registry(REGISTRY, "deterioration", "v2", providers=CPU)


def _event(pid: str, minute: int, **changes: Any) -> VitalsEvent:
    return VitalsEvent.model_validate(
        {"patient_id": pid, "ts": T0 + timedelta(minutes=minute), **NORMAL, **changes}
    )


def silent_after_hold() -> tuple[list[Incoming], list[Incoming]]:
    """``held``: normal sets, then one isolated SpO2 of 84 % (held as a possible
    artifact) and nothing more; ``medium``: one NEWS2 5 set and nothing more (a repeat is
    due within the hour); ``clock``: normal sets every 15 min for 5 h, which move the
    partition's event time on. Split where the hold has not run out yet."""
    events = [_event("held", 15 * i) for i in range(4)]
    events.append(_event("held", 62, spo2_pct=84))
    events.append(_event("medium", 60, **N5))
    events += [_event("clock", 15 * i) for i in range(20)]
    events.sort(key=lambda e: e.ts)
    items = [Incoming(e, f"vitals:0:{i}", partition=0) for i, e in enumerate(events)]
    cut = next(i for i, e in enumerate(events) if e.ts >= T0 + timedelta(minutes=63))
    return items[:cut], items[cut:]


class Failing(Broken):
    """A candidate whose every call fails: the shadow scores with the rules only."""

    thresholds = None


def _clock() -> float:
    return (T0 + timedelta(hours=6)).timestamp()


def _decided(msgs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the policy decided, without the re-pages of unacknowledged alerts (the care
    team's, left out of the comparison on both sides)."""
    return sorted(
        tuple(json.dumps(m[k]) for k in DECIDED)
        for m in msgs
        if "unacknowledged" not in m["reason"]
    )


async def _run(
    pipe: ScoringPipeline, store: MemoryStateStore, shadow_store: MemoryShadowStore | None
) -> tuple[list[BatchResult], list[BatchResult], list[BatchResult]]:
    """The two parts of the input, a live and a shadow timer run after each."""
    batches, live_ticks, shadow_ticks = [], [], []
    for part in silent_after_hold():
        batches.append(await pipe.process(part))
        live_ticks.append(await pipe.tick(sorted(store.watch)))
        if shadow_store is not None:
            shadow_ticks.append(await pipe.shadow_tick(await shadow_store.watched()))
    return batches, live_ticks, shadow_ticks


def _live(results: list[BatchResult], store: MemoryStateStore) -> str:
    states = {pid: s if isinstance(s, str) else s.to_json() for pid, s in store.states.items()}
    return json.dumps(
        [[r.emitted for r in results], states, store.emitted, sorted(store.watch)], sort_keys=True
    )


async def test_a_held_reading_is_raised_by_the_shadow_timer_as_by_the_live_one(
    model: DeteriorationModel,
) -> None:
    plain_store = MemoryStateStore()
    plain = await _run(
        ScoringPipeline(plain_store, models=ModelHolder(model), clock=_clock), plain_store, None
    )

    store = MemoryStateStore()
    shadow_store = MemoryShadowStore("v2")
    counts = Counts()
    timers: list[str] = []
    shadow = Shadow(
        shadow_store,
        ShadowHolder("v2", model),  # the live model as candidate: the two agree
        store,
        on_error=counts.error,
        on_would_page=counts.pages.append,
        on_timer=timers.append,
    )
    pipe = ScoringPipeline(store, models=ModelHolder(model), clock=_clock, shadow=shadow)
    batches, live_ticks, shadow_ticks = await _run(pipe, store, shadow_store)

    # the live path's outputs are byte for byte what they are without a shadow
    assert _live(batches + live_ticks, store) == _live(plain[0] + plain[1], plain_store)
    assert all(not r.shadow_emitted for r in live_ticks) and counts.errors == {}

    # the live timer raises the held reading once event time is past the hold ...
    (raised,) = [m for r in live_ticks for m in r.emitted if m["patient_id"] == "held"]
    assert raised["explanation"]["confirmation"]["status"] == "unconfirmed"
    assert [m for r in batches for m in r.emitted if m["patient_id"] == "held"] == []
    # ... and the shadow timer the same transition, in the same tick, once
    first, second = shadow_ticks
    assert first.shadow_emitted == []  # the hold has not run out yet
    (shadow_raised,) = [m for m in second.shadow_emitted if m["patient_id"] == "held"]
    assert _decided([shadow_raised]) == _decided([raised])
    assert shadow_raised["shadow"] is True and shadow_raised["model_version"] == "v2"
    assert shadow_raised["live_model_version"] == "v2"
    assert shadow_raised["would_page"] == raised["page"]
    assert "fused_risk" in shadow_raised and "data_age_s" in shadow_raised
    assert timers == ["held_reading"]
    # everything the shadow decided, event- or timer-driven, is what the live side did
    shadow_all = [m for r in batches + shadow_ticks for m in r.shadow_emitted]
    live_all = [m for r in batches + live_ticks for m in r.emitted]
    assert _decided(shadow_all) == _decided(live_all)
    # in the shadow outbox once; a later tick, however late, adds nothing
    outbox = [e["transition_id"] for _, e in await shadow_store.outbox()]
    assert outbox.count(raised["transition_id"]) == 1
    again = await pipe.shadow_tick(await shadow_store.watched())
    assert again.shadow_emitted == [] and counts.errors == {}


async def test_an_overdue_repeat_pages_on_both_sides_and_the_idle_leave_the_index() -> None:
    """Rules only on both sides (no live model; the candidate's every call fails): the
    medium alert's repeat is overdue, and both timers page it, dated at the wait's end."""
    store = MemoryStateStore()
    shadow_store = MemoryShadowStore("v1")
    counts = Counts()
    timers: list[str] = []
    shadow = Shadow(
        shadow_store, ShadowHolder("v1"), store, on_error=counts.error, on_timer=timers.append
    )
    shadow.holder.current = Failing()  # type: ignore[assignment]
    pipe = ScoringPipeline(store, clock=_clock, shadow=shadow)
    batches, live_ticks, shadow_ticks = await _run(pipe, store, shadow_store)
    live = [m for r in live_ticks for m in r.emitted if "no_repeat_observation" in m["reason"]]
    shadow_msgs = [m for r in shadow_ticks for m in r.shadow_emitted]
    paged = [m for m in shadow_msgs if "no_repeat_observation" in m["reason"]]
    assert "medium" in {m["patient_id"] for m in live} and _decided(paged) == _decided(live)
    assert all(m["would_page"] is True and m["fused_risk"] is None for m in paged)
    assert len(paged) == len({m["transition_id"] for m in paged})  # each once
    assert sorted(timers) == sorted(
        "no_repeat_observation" if m in paged else "held_reading" for m in shadow_msgs
    )
    assert "held_reading" in timers
    assert _decided(shadow_msgs) == _decided([m for r in live_ticks for m in r.emitted])
    assert set(counts.errors) == {"model_error"}  # the candidate's, never the timer's
    # a patient whose shadow alert has nothing left to time leaves the index at a tick
    shadow_store.watch["clock"] = 0  # a stale entry: nothing to time
    await pipe.shadow_tick(await shadow_store.watched())
    assert "clock" not in shadow_store.watch and {"held", "medium"} <= set(shadow_store.watch)


async def test_a_discharge_closes_the_shadow_alert_too_and_no_timer_runs_on_it(
    model: DeteriorationModel,
) -> None:
    """Discharged after the first part (an open alert, a held reading): the shadow closes
    the alert as the live side does (RESOLVED, ``discharged``) and drops what was held;
    its later ticks raise nothing, and the patients leave its timer index."""
    store = MemoryStateStore()
    shadow_store = MemoryShadowStore("v2")
    counts = Counts()
    shadow = Shadow(shadow_store, ShadowHolder("v2", model), store, on_error=counts.error)
    pipe = ScoringPipeline(store, models=ModelHolder(model), clock=_clock, shadow=shadow)
    first, rest = silent_after_hold()
    live: list[dict[str, Any]] = []
    shadowed: list[dict[str, Any]] = []
    r = await pipe.process(first)
    live += r.emitted
    shadowed += r.shadow_emitted
    for pid in ("held", "medium"):
        await store.set_context(pid, {"patient_id": pid, "discharged": True})
        r = await pipe.discharge(pid)
        live += r.emitted
        shadowed += r.shadow_emitted
    (closed,) = [m for m in shadowed if m["transition"] == "RESOLVED"]
    assert closed["patient_id"] == "medium" and closed["reason"] == ["discharged"]
    assert closed["shadow"] is True and closed["would_page"] is False
    r = await pipe.process(rest)
    live += r.emitted
    shadowed += r.shadow_emitted
    live += (await pipe.tick(sorted(store.watch))).emitted
    ticked = await pipe.shadow_tick(await shadow_store.watched())
    assert ticked.shadow_emitted == []
    medium = [m for m in live if m["patient_id"] == "medium"]
    assert _decided(shadowed) == _decided(medium) and counts.errors == {}
    # nothing is held for the discharged patient on the shadow side any more
    assert [m for m in shadowed if m["patient_id"] == "held"] == []
    loaded = await shadow_store.load(["held"])
    assert AlertState.from_json(loaded["held"].alert).pending_candidate is None
    assert not {"held", "medium"} & set(shadow_store.watch)
