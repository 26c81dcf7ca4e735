"""The Redis state store against a real redis-server, and its in-memory twin."""

from __future__ import annotations

import pytest

from wardwatch.patient import PatientState
from wardwatch.settings import Settings
from wardwatch.store import Emit, MemoryStateStore, RedisStateStore, Update

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(redis_settings: Settings):
    s = RedisStateStore.from_url(redis_settings.redis_url or "", prefix=redis_settings.redis_prefix)
    yield s
    await s.close()


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_commit_is_conditional_and_emits_each_transition_once(
    kind: str, store: RedisStateStore
) -> None:
    st = store if kind == "redis" else MemoryStateStore()
    loaded = await st.load(["a", "b"])
    assert loaded["a"].state.version == 0 and loaded["a"].context is None
    sa = loaded["a"].state
    sa.n_events = 3
    emit = Emit("a", "tid-1", {"patient_id": "a", "transition": "OPEN"}, open=True, opened_ms=5)
    res = await st.commit([Update("a", 0, sa, ['{"t":1}'], seen_ms=1000)], [emit])
    assert res.conflicts == [] and res.accepted == ["tid-1"]
    # the same transition again (a replay) is not emitted twice
    again = await st.load(["a"])
    assert again["a"].state.version == 1 and again["a"].state.n_events == 3
    res = await st.commit([Update("a", 1, again["a"].state)], [emit])
    assert res.accepted == []
    # a stale version (another worker got there first) is refused, with its transitions
    res = await st.commit(
        [Update("a", 1, PatientState())], [Emit("a", "tid-2", {"x": 1}, open=False)]
    )
    assert res.conflicts == ["a"] and res.accepted == []
    assert await st.history("a") == [{"t": 1}]


async def test_outbox_open_alerts_and_context(store: RedisStateStore) -> None:
    await store.set_context("p1", {"spo2_scale": 2})
    loaded = await store.load(["p1"])
    assert loaded["p1"].context == {"spo2_scale": 2}
    ev = {"patient_id": "p1", "transition": "OPEN", "priority": "medium"}
    res = await store.commit(
        [Update("p1", 0, loaded["p1"].state, seen_ms=10)],
        [Emit("p1", "t-open", ev, open=True, opened_ms=10)],
    )
    assert len(res.outbox_ids) == 1
    assert await store.open_alerts() == [ev]
    pending = await store.outbox()
    assert [e for _, e in pending] == [ev]
    await store.outbox_done(res.outbox_ids)
    assert await store.outbox() == []
    assert await store.audit() == [ev]
    resolved = {**ev, "transition": "RESOLVED"}
    await store.commit([], [Emit("p1", "t-res", resolved, open=False)])
    assert await store.open_alerts() == []
    assert await store.current_alert("p1") == resolved


async def test_keys_have_ttl_and_are_versioned(store: RedisStateStore) -> None:
    loaded = await store.load(["z"])
    await store.commit([Update("z", 0, loaded["z"].state, ["{}"], seen_ms=1)], [])
    ttl = await store.r.ttl(store.key("p", "z"))
    assert 0 < ttl <= store.ttl_s
    assert await store.r.ttl(store.key("h", "z")) > 0
    assert store.key("p", "z").startswith(f"{store.prefix}:v1:")


async def test_outbox_pages_by_position_and_commit_time(store: RedisStateStore) -> None:
    import time

    for i in range(5):
        ev = {"patient_id": f"o{i}", "transition": "OPEN", "priority": "high", "i": i}
        await store.commit([], [Emit(f"o{i}", f"t-o{i}", ev, open=True)])
    everything = await store.outbox()
    assert [e["i"] for _, e in everything] == [0, 1, 2, 3, 4]
    first, rest = await store.outbox(count=2), await store.outbox(after=everything[1][0])
    assert [e["i"] for _, e in first] == [0, 1] and [e["i"] for _, e in rest] == [2, 3, 4]
    assert await store.outbox(committed_before_ms=int(time.time() * 1000) - 60_000) == []
    later = int(time.time() * 1000) + 1000
    assert len(await store.outbox(committed_before_ms=later)) == 5


async def test_a_timer_tick_does_not_bring_back_a_patient_whose_state_expired(
    store: RedisStateStore,
) -> None:
    from agents.pipeline import ScoringPipeline

    loaded = await store.load(["gone"])
    await store.commit([Update("gone", 0, loaded["gone"].state, seen_ms=5, watch=True)], [])
    assert await store.watched() == ["gone"]
    await store.r.delete(store.key("p", "gone"))  # the state's TTL ran out
    result = await ScoringPipeline(store).tick(["gone"])
    assert result.emitted == [] and result.conflicts == []
    assert not await store.r.exists(store.key("p", "gone"))  # not written back
    assert await store.watched() == []
    assert await store.r.zscore(store.key("patients"), "gone") is None


async def test_the_monitoring_index_forgets_patients_silent_past_the_ttl(
    store: RedisStateStore,
) -> None:
    now = 10_000_000_000
    await store.r.zadd(store.key("patients"), {"old": now - store.ttl_s * 1000 - 5, "new": now})
    assert await store.trim_patients(now) == 1
    assert await store.patients_monitored(since_ms=0) == 1
