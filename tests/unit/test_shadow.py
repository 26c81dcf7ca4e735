"""Shadow mode in the scoring pipeline: the candidate's would-be transitions, never a
change to what the live path emits or stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import BatchResult, ScoringPipeline
from agents.shadow import MemoryShadowStore, Shadow, ShadowHolder, ShadowPublisher
from models.runtime import DeteriorationModel
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
REGISTRY = Settings().resolved_model_registry()
CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def live_model() -> DeteriorationModel:
    return DeteriorationModel.from_registry(REGISTRY, "deterioration", "v2", providers=CPU)


@pytest.fixture(scope="module")
def candidate() -> DeteriorationModel:
    return DeteriorationModel.from_registry(REGISTRY, "deterioration", "v1", providers=CPU)


def _event(pid: str, minutes: int, f: float) -> VitalsEvent:
    return VitalsEvent.model_validate(
        {
            "patient_id": pid,
            "ts": T0 + timedelta(minutes=minutes),
            "heart_rate_bpm": round(78 + 45 * f),
            "respiratory_rate_per_min": round(15 + 12 * f),
            "spo2_pct": round(97 - 7 * f),
            "on_oxygen": False,
            "systolic_bp_mmhg": round(125 - 35 * f),
            "temperature_c": round(36.9 + 2.0 * f, 1),
            "consciousness": "A",
        }
    )


def _batches() -> list[list[Incoming]]:
    """Three patients (two deteriorating, one stable) over 12 quarter-hours, 3 batches."""
    items: list[Incoming] = []
    for i in range(12):
        for pid, slope in (("sick-1", 1.0), ("sick-2", 0.8), ("well", 0.0)):
            items.append(Incoming(_event(pid, 15 * i, slope * i / 11), f"vitals:0:{len(items)}"))
    return [items[k : k + 12] for k in range(0, len(items), 12)]


def _clock() -> float:
    return (T0 + timedelta(hours=4)).timestamp()


class Counts:
    def __init__(self) -> None:
        self.errors: dict[str, int] = {}
        self.scored = 0
        self.pages: list[str] = []

    def error(self, reason: str, n: int = 1) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + n

    def score(self, n: int) -> None:
        self.scored += n


def _pipeline(
    model: DeteriorationModel, shadow: Shadow | None, store: MemoryStateStore
) -> ScoringPipeline:
    return ScoringPipeline(store, models=ModelHolder(model), clock=_clock, shadow=shadow)


def _shadow(
    candidate: DeteriorationModel | None, store: MemoryStateStore, counts: Counts
) -> tuple[Shadow, MemoryShadowStore]:
    shadow_store = MemoryShadowStore("v1")
    shadow = Shadow(
        shadow_store,
        ShadowHolder("v1", candidate),
        store,
        on_error=counts.error,
        on_scored=counts.score,
        on_would_page=counts.pages.append,
    )
    return shadow, shadow_store


async def _run(pipe: ScoringPipeline) -> list[BatchResult]:
    return [await pipe.process(b) for b in _batches()]


def _live_bytes(results: list[BatchResult], store: MemoryStateStore) -> tuple[str, str]:
    emitted = json.dumps([r.emitted for r in results], sort_keys=True)
    scored = json.dumps(
        [[(s.patient_id, s.ts_ms, s.model_risk, s.fused_risk) for s in r.scored] for r in results]
    )
    states = json.dumps(
        {pid: s if isinstance(s, str) else s.to_json() for pid, s in store.states.items()},
        sort_keys=True,
    )
    return emitted + scored, states + json.dumps(store.emitted, sort_keys=True)


async def test_live_output_is_byte_identical_with_shadow_on(
    live_model: DeteriorationModel, candidate: DeteriorationModel
) -> None:
    plain_store = MemoryStateStore()
    plain = await _run(_pipeline(live_model, None, plain_store))
    store = MemoryStateStore()
    counts = Counts()
    shadow, shadow_store = _shadow(candidate, store, counts)
    with_shadow = await _run(_pipeline(live_model, shadow, store))
    assert any(r.emitted for r in plain)  # the live path alerts
    assert _live_bytes(with_shadow, store) == _live_bytes(plain, plain_store)
    assert all(not r.shadow_emitted for r in plain)

    shadow_msgs = [m for r in with_shadow for m in r.shadow_emitted]
    assert shadow_msgs, "the candidate's would-be transitions"
    assert counts.scored == 36 and counts.errors == {}
    for m in shadow_msgs:
        assert m["shadow"] is True and m["model_version"] == "v1"
        assert m["live_model_version"] == "v2"
        assert isinstance(m["would_page"], bool) and "news2_total" in m
        assert m["fused_risk"] is None or 0.0 <= m["fused_risk"] <= 1.0
    assert {m["patient_id"] for m in shadow_msgs} <= {"sick-1", "sick-2"}
    assert counts.pages == [m["priority"] for m in shadow_msgs if m["would_page"]]
    # every accepted transition waits in the shadow outbox until published
    assert len(await shadow_store.outbox()) == len(shadow_msgs)


async def test_a_replayed_batch_changes_no_shadow(
    live_model: DeteriorationModel, candidate: DeteriorationModel
) -> None:
    store = MemoryStateStore()
    counts = Counts()
    shadow, shadow_store = _shadow(candidate, store, counts)
    pipe = _pipeline(live_model, shadow, store)
    await _run(pipe)
    states = dict(shadow_store.states)
    again = await _run(pipe)  # a crash before the offsets were committed
    assert all(not r.shadow_emitted and not r.emitted for r in again)
    assert shadow_store.states == states and counts.scored == 36


class Broken:
    """A candidate whose every call fails (a damaged model)."""

    version = "v1"
    name = "deterioration"

    def owns(self, state: Any) -> bool:
        return False

    def score(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("onnx session failed")


class FailingShadowStore(MemoryShadowStore):
    async def load(self, pids: Any) -> Any:
        raise ConnectionError("redis down")


async def test_shadow_failures_never_touch_the_live_path(
    live_model: DeteriorationModel, candidate: DeteriorationModel
) -> None:
    plain_store = MemoryStateStore()
    plain = _live_bytes(await _run(_pipeline(live_model, None, plain_store)), plain_store)

    store = MemoryStateStore()
    counts = Counts()
    shadow, _ = _shadow(None, store, counts)
    shadow.holder.current = Broken()  # type: ignore[assignment]
    results = await _run(_pipeline(live_model, shadow, store))
    assert _live_bytes(results, store) == plain
    assert counts.errors.get("model_error") == 36  # counted per event, never raised

    store = MemoryStateStore()
    counts = Counts()
    broken_store = Shadow(FailingShadowStore("v1"), ShadowHolder("v1", candidate), store)
    broken_store.on_error = counts.error
    results = await _run(_pipeline(live_model, broken_store, store))
    assert _live_bytes(results, store) == plain
    assert counts.errors == {"store": 3} and all(not r.shadow_emitted for r in results)


async def test_shadow_idles_without_a_loaded_candidate(live_model: DeteriorationModel) -> None:
    store = MemoryStateStore()
    counts = Counts()
    shadow, shadow_store = _shadow(None, store, counts)
    results = await _run(_pipeline(live_model, shadow, store))
    assert all(not r.shadow_emitted for r in results) and shadow_store.states == {}


class Topic:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.fail = fail

    async def send(self, key: bytes, value: bytes) -> Any:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((key, value))

        async def acked() -> None:
            return None

        return acked()


async def test_publisher_clears_the_outbox_only_once_the_broker_has_them(
    live_model: DeteriorationModel, candidate: DeteriorationModel
) -> None:
    store = MemoryStateStore()
    counts = Counts()
    shadow, shadow_store = _shadow(candidate, store, counts)
    results = await _run(_pipeline(live_model, shadow, store))
    emitted = [m for r in results for m in r.shadow_emitted]
    ids = [i for r in results for i in r.shadow_outbox_ids]

    down = ShadowPublisher(Topic(fail=True), shadow_store, list, 0.0, on_error=counts.error)
    assert await down.publish(emitted, ids) is False
    assert counts.errors == {"publish": 1} and len(await shadow_store.outbox()) == len(ids)

    topic = Topic()
    up = ShadowPublisher(topic, shadow_store, list, 0.0)
    await up.flush()  # start-up: whatever the outbox holds
    assert await shadow_store.outbox() == []
    assert [json.loads(v)["transition_id"] for _, v in topic.sent] == [
        m["transition_id"] for m in emitted
    ]
    assert all(k == json.loads(v)["patient_id"].encode() for k, v in topic.sent)
