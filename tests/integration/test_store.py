"""The Redis state store against a real redis-server and a real 3-primary Redis Cluster
(every test that takes ``store`` runs on both), and its in-memory twin."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.cluster import key_slot

from wardwatch.patient import PatientState
from wardwatch.settings import Settings
from wardwatch.stack import EmbeddedCluster
from wardwatch.store import (
    Emit,
    MemoryStateStore,
    RedisStateStore,
    StateStore,
    Update,
    guard_key,
    redis_key,
)

pytestmark = pytest.mark.integration

ODD = "}bed{7}%"  # braces and a percent sign: still one hash tag, one slot


@pytest.fixture(params=["server", "cluster"])
async def store(
    request: pytest.FixtureRequest, redis_settings: Settings
) -> AsyncIterator[RedisStateStore]:
    if request.param == "cluster":
        cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
        s = RedisStateStore.from_url(cluster.url, cluster=True, prefix=redis_settings.redis_prefix)
    else:
        s = RedisStateStore.from_url(
            redis_settings.redis_url or "", prefix=redis_settings.redis_prefix
        )
    yield s
    await s.close()


def _open(pid: str, tid: str, **extra: object) -> Emit:
    event = {"patient_id": pid, "transition_id": tid, "transition": "OPEN", **extra}
    return Emit(pid, tid, event, open=True)


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_commit_is_conditional_and_emits_each_transition_once(
    kind: str, store: RedisStateStore
) -> None:
    st: StateStore = store if kind == "redis" else MemoryStateStore()
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
    assert await store.r.zscore(store.key("open"), "p1") is None  # the index shrank too


async def test_keys_have_ttl_are_versioned_and_share_the_patients_slot(
    store: RedisStateStore,
) -> None:
    loaded = await store.load([ODD])
    await store.commit([Update(ODD, 0, loaded[ODD].state, ["{}"], seen_ms=1)], [_open(ODD, "t{x}")])
    ttl = await store.r.ttl(store.key("p", ODD))
    assert 0 < ttl <= store.ttl_s
    for kind in ("h", "a", "ob"):
        assert await store.r.ttl(store.key(kind, ODD)) > 0
    assert await store.r.ttl(guard_key(store.prefix, ODD, "t{x}")) > 0
    assert store.key("p", ODD).startswith(f"{store.prefix}:v2:")
    keys = [redis_key(store.prefix, k, ODD) for k in ("p", "h", "ctx", "a", "ob")]
    keys.append(guard_key(store.prefix, ODD, "t{x}"))
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert key_slot(redis_key("ww", "p", "}a").encode()) != key_slot(
        redis_key("ww", "p", "}b").encode()
    )  # two ids beginning with a brace: two tags, not one empty tag


async def test_the_outbox_keeps_each_patients_order_and_cuts_by_commit_time(
    store: RedisStateStore,
) -> None:
    for i in range(5):
        pid = f"o{i % 2}"
        await store.commit([], [_open(pid, f"t-o{i}", i=i)])
    everything = await store.outbox()
    by_patient = {
        pid: [e["i"] for _, e in everything if e["patient_id"] == pid] for pid in ("o0", "o1")
    }
    assert by_patient == {"o0": [0, 2, 4], "o1": [1, 3]}
    assert sorted(await store.outbox_patients()) == ["o0", "o1"]
    assert [e["i"] for _, e in await store.outbox(["o1"])] == [1, 3]
    assert [e["i"] for _, e in await store.outbox(["o0"], count=2)] == [0, 2]
    assert await store.outbox(committed_before_ms=int(time.time() * 1000) - 60_000) == []
    later = int(time.time() * 1000) + 1000
    assert len(await store.outbox(committed_before_ms=later)) == 5


async def test_the_outbox_index_is_trimmed_only_of_empty_settled_patients(
    store: RedisStateStore,
) -> None:
    a = await store.commit([], [_open("x", "t-x")])
    await store.commit([], [_open("y", "t-y")])
    now = int(time.time() * 1000)
    assert await store.outbox_trim(["x", "y"], now - 60_000) == 0  # committed since then
    await store.outbox_done(a.outbox_ids)
    assert await store.outbox_trim(["x", "y"], now + 1000) == 1  # y still holds an entry
    assert await store.outbox_patients() == ["y"]
    # an entry whose index entry was lost (a stalled script that landed late): the next
    # load of the patient puts it back where the sweep looks
    await store.r.zrem(store.key("outbox"), "y")
    await store.load(["y"])
    assert await store.outbox_patients() == ["y"]


async def test_leftovers_are_audited_again_and_read_once(store: RedisStateStore) -> None:
    res = await store.commit([], [_open("l", "t-l")])
    left = await store.outbox()
    await store.outbox_done(res.outbox_ids, audit=[e for _, e in left])
    assert [e["transition_id"] for e in await store.audit()] == ["t-l"]
    assert await store.r.xlen(store.key("audit")) == 2
    assert not await store.r.exists(store.key("ob", "l"))  # the empty stream is gone


async def test_the_v1_outbox_is_drained(store: RedisStateStore) -> None:
    legacy = f"{store.prefix}:v1:outbox"
    await store.r.xadd(legacy, {"tid": "t-v1", "pid": "v", "event": '{"transition_id":"t-v1"}'})
    pending = await store.legacy_outbox()
    assert [e for _, e in pending] == [{"transition_id": "t-v1"}]
    await store.outbox_done([oid for oid, _ in pending])
    assert await store.legacy_outbox() == []


async def test_index_removals_are_fenced_by_version(store: RedisStateStore) -> None:
    loaded = await store.load(["w"])
    state = loaded["w"].state
    await store.commit([Update("w", 0, state, watch=True)], [])
    assert await store.watched() == ["w"]
    # a zombie that still holds version 0 wants it unwatched: refused, index kept
    res = await store.commit([Update("w", 0, state, watch=False)], [])
    assert res.conflicts == ["w"] and await store.watched() == ["w"]
    # a later writer's entry (a higher version) survives this writer's removal
    await store.r.zadd(store.key("watch"), {"w": 7})
    await store.commit([Update("w", 1, state, watch=False)], [])
    assert await store.watched() == ["w"]
    await store.r.zadd(store.key("watch"), {"w": 2})
    await store.commit([Update("w", 2, state, watch=False)], [])
    assert await store.watched() == []


async def test_readers_tolerate_a_superset_and_a_commit_reconciles_it(
    store: RedisStateStore,
) -> None:
    loaded = await store.load(["s"])
    state = loaded["s"].state
    await store.commit(
        [Update("s", 0, state, watch=True)],
        [Emit("s", "t-s", {"patient_id": "s", "transition": "RESOLVED"}, open=False)],
    )
    await store.r.zadd(store.key("open"), {"s": 0})  # left by a failure between stages
    assert await store.open_alerts() == []
    await store.commit([Update("s", 1, state, watch=False)], [])
    assert await store.r.zscore(store.key("open"), "s") is None
    # and an open alert missing from the index is put back by the patient's next commit
    await store.commit([Update("s", 2, state, watch=True)], [_open("s", "t-s2")])
    await store.r.zrem(store.key("open"), "s")
    await store.commit([Update("s", 3, state, watch=True)], [])
    assert [a["transition_id"] for a in await store.open_alerts()] == ["t-s2"]


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_stream_times_only_rise(kind: str, store: RedisStateStore) -> None:
    st: StateStore = store if kind == "redis" else MemoryStateStore()
    assert await st.stream_times() == {}
    await st.commit([], [], stream_ms={0: 1_000, 3: 5_000})
    loaded = await st.load(["t"])
    await st.commit([Update("t", 0, loaded["t"].state)], [], stream_ms={0: 900, 1: 2_000})
    await st.commit([], [], stream_ms={3: 6_000})
    assert await st.stream_times() == {0: 1_000, 1: 2_000, 3: 6_000}


async def test_a_node_that_lost_the_scripts_gets_them_again(store: RedisStateStore) -> None:
    await store.r.script_flush()
    loaded = await store.load(["n1", "n2"])
    ups = [Update(pid, 0, loaded[pid].state, watch=True) for pid in ("n1", "n2")]
    res = await store.commit(ups, [_open("n1", "t-n1")])
    assert res.conflicts == [] and res.accepted == ["t-n1"]
    assert sorted(await store.watched()) == ["n1", "n2"]


async def test_a_batch_of_many_patients_commits_each_on_its_own(store: RedisStateStore) -> None:
    pids = [f"m{i}" for i in range(50)]
    loaded = await store.load(pids)
    stale = "m7"  # another writer got there first
    await store.commit([Update(stale, 0, loaded[stale].state)], [])
    ups = [Update(pid, 0, loaded[pid].state, [f'{{"i":{i}}}'] * 10) for i, pid in enumerate(pids)]
    emits = [_open(pid, f"t-{pid}") for pid in pids[::5]]
    res = await store.commit(ups, emits)
    assert res.conflicts == [stale]
    assert res.accepted == [f"t-{pid}" for pid in pids[::5] if pid != stale]
    assert len(res.outbox_ids) == len(res.accepted)
    again = await store.load(pids)
    assert {pid for pid in pids if again[pid].state.version == 1} == set(pids)
    assert len(await store.history("m3", 96)) == 10


async def test_the_history_ring_keeps_the_newest_rows_of_a_long_batch(
    store: RedisStateStore,
) -> None:
    loaded = await store.load(["long"])
    rows = [f'{{"i":{i}}}' for i in range(2_500)]  # past one LPUSH's thousand rows
    await store.commit([Update("long", 0, loaded["long"].state, rows)], [])
    assert [r["i"] for r in await store.history("long", 96)] == list(range(2_404, 2_500))
    with pytest.raises(ValueError, match="one line"):
        await store.commit([Update("long", 1, loaded["long"].state, ['{\n"i": 1}'])], [])


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
