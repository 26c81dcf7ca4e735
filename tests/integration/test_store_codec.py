"""The binary state and history in a real Redis: a patient stored as JSON by an earlier
release is read, scored on and rewritten in the binary form; the pipeline scores the same
through Redis as through the in-memory store; and a patient takes a few kilobytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import ScoringPipeline
from models.runtime import DeteriorationModel
from wardwatch.patient import PatientState, apply_event, history_entry
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore, RedisStateStore, redis_key
from wardwatch.store_codec import is_binary

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC) - timedelta(hours=30)


def _event(pid: str, i: int) -> VitalsEvent:
    return VitalsEvent(
        patient_id=pid,
        ts=T0 + timedelta(minutes=15 * i),
        heart_rate_bpm=80.0 + (i * 7) % 41,
        respiratory_rate_per_min=14.0 + i % 11,
        spo2_pct=97.0 - i % 6,
        systolic_bp_mmhg=125.0 - (i * 3) % 40,
        temperature_c=36.6 + (i % 9) / 10,
        on_oxygen=i % 5 == 0,
        consciousness="A",
    )


@pytest.fixture
async def store(redis_settings: Settings) -> AsyncIterator[RedisStateStore]:
    s = RedisStateStore.from_url(redis_settings.redis_url or "", prefix=redis_settings.redis_prefix)
    yield s
    await s.close()


@pytest.fixture(scope="module")
def model() -> DeteriorationModel:
    return DeteriorationModel.from_registry(Settings().resolved_model_registry())


async def test_a_patient_stored_as_json_is_read_and_rewritten_binary(
    store: RedisStateStore,
) -> None:
    pid = "old-1"
    st = PatientState()
    events = [_event(pid, i) for i in range(12)]
    for ev in events[:10]:
        apply_event(st, ev)
    # what an earlier release left: the state and the ring as JSON
    await store.r.hset(store.key("p", pid), mapping={"ver": 4, "s": st.to_json()})
    rows = [history_entry(ev, 1, 0.05) for ev in events[:10]]
    await store.r.lpush(store.key("h", pid), *rows)
    loaded = await store.load([pid])
    assert loaded[pid].state.version == 4 and loaded[pid].state.n_events == 10
    pipe = ScoringPipeline(store)
    res = await pipe.process([Incoming(ev, f"e{i}") for i, ev in enumerate(events[10:])])
    assert len(res.scored) == 2 and not res.conflicts
    raw = await store.r.hget(store.key("p", pid), "s")
    assert is_binary(raw)
    again = PatientState.from_json(raw)
    assert again.n_events == 12
    assert int(await store.r.hget(store.key("p", pid), "ver")) == 5
    history = await store.history(pid, 96)
    assert [r["t"] for r in history] == [ev.ts_ms() for ev in events]
    assert history[:10] == [json.loads(r) for r in rows]  # old rows read as they were
    assert "news2" in history[-1] and "late" not in history[-1]


async def test_the_pipeline_scores_the_same_through_redis_as_in_memory(
    store: RedisStateStore, model: DeteriorationModel
) -> None:
    pids = [f"pt-{i}" for i in range(6)]
    events = sorted((_event(p, i) for p in pids for i in range(40)), key=VitalsEvent.ts_ms)
    items = [Incoming(ev, f"vitals:0:{i}") for i, ev in enumerate(events)]
    out = []
    for kind in ("redis", "memory"):
        s = store if kind == "redis" else MemoryStateStore()
        pipe = ScoringPipeline(s, models=ModelHolder(model))
        scored, emitted = [], []
        for start in range(0, len(items), 37):  # batches across patients' histories
            res = await pipe.process(items[start : start + 37])
            scored += [(x.patient_id, x.ts_ms, x.news2.total, x.model_risk) for x in res.scored]
            emitted += [(e["transition_id"], e["transition"]) for e in res.emitted]
        out.append((scored, emitted, {p: await s.history(p, 96) for p in pids}))
    assert out[0] == out[1]
    # a few kilobytes per patient: the state and the ring (40 rows)
    for pid in pids:
        used = 0
        for kind in ("p", "h"):
            key = redis_key(store.prefix, kind, pid)
            used += int(await store.r.memory_usage(key, samples=0) or 0)
        state = PatientState.from_json(await store.r.hget(redis_key(store.prefix, "p", pid), "s"))
        as_json = len(state.to_json()) + sum(
            len(json.dumps(row, separators=(",", ":"))) for row in await store.history(pid, 96)
        )
        assert used < 6_000 and used < as_json / 2, (used, as_json)
