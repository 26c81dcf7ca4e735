"""Scoring pipeline invariants on the in-process store (same code as the worker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.model_stage import Incoming
from agents.pipeline import ScoringPipeline
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
    assert again.duplicates + again.stale == 6
    assert store.states["p"] == state
