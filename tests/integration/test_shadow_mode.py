"""Shadow mode on the real stack: a worker with a candidate beside the live model puts its
would-be transitions on ``alerts-shadow``, pages none of them, leaves the live output as
it is; ``validate --shadow`` compares the two and records the result for the gate."""

from __future__ import annotations

import io
import json
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import ScoringPipeline
from agents.shadow import RedisShadowStore, Shadow, ShadowHolder, ShadowState
from alerts.webhook import should_page
from cli.validate import run_validate_shadow
from models.runtime import DeteriorationModel
from tests.fault.scenario import Receiver
from tests.integration.helpers import (
    consume,
    deteriorating,
    hours_ago,
    publish,
    stable,
    start_worker,
)
from tests.unit.test_shadow import _batches, _clock
from trainer import registry as reg
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SHIPPED = Settings().resolved_model_registry()
CPU = ["CPUExecutionProvider"]
DECIDED = (
    "patient_id",
    "ts_ms",
    "transition_id",
    "alert_id",
    "transition",
    "priority",
    "reason",
    "news2_total",
    "page",
)


def _model(version: str) -> DeteriorationModel:
    return DeteriorationModel.from_registry(SHIPPED, "deterioration", version, providers=CPU)


async def _redis_run(settings: Settings, shadow_on: bool) -> tuple[str, RedisStateStore]:
    store = RedisStateStore.from_settings(settings)
    shadow = None
    if shadow_on:
        shadow_store = RedisShadowStore(store.r, prefix=settings.redis_prefix, version="v1")
        shadow = Shadow(shadow_store, ShadowHolder("v1", _model("v1")), store)
    pipe = ScoringPipeline(store, models=ModelHolder(_model("v2")), clock=_clock, shadow=shadow)
    emitted = []
    for batch in _batches():
        res = await pipe.process(batch)
        emitted.append(res.emitted)
    pids = ["sick-1", "sick-2", "well"]
    states = [await store.r.hget(store.key("p", pid), "s") for pid in pids]
    hist = [await store.history(pid, 96) for pid in pids]
    outbox = [e for _, e in await store.outbox()]
    return json.dumps([emitted, [s.hex() for s in states], hist, outbox]), store


async def test_live_redis_state_is_byte_identical_with_shadow(redis_settings: Settings) -> None:
    plain, s1 = await _redis_run(redis_settings, False)
    other = redis_settings.model_copy(update={"redis_prefix": redis_settings.redis_prefix + "s"})
    with_shadow, store = await _redis_run(other, True)
    try:
        assert with_shadow == plain
        shadow_store = RedisShadowStore(store.r, prefix=other.redis_prefix, version="v1")
        loaded = await shadow_store.load(["sick-1"])
        assert loaded["sick-1"].watermark_ms > 0 and loaded["sick-1"].alert
        assert loaded["sick-1"].model and loaded["sick-1"].model["version"] == "v1"
        keys = [k.decode() for k in await store.r.keys(f"{other.redis_prefix}:shadow:*")]
        assert keys and all(k.startswith(f"{other.redis_prefix}:shadow:v1:v2:") for k in keys)
        # each patient's keys in the patient's hash tag; the indexes are the shadow's own
        assert all("{" in k for k in keys if not k.endswith((":outbox", ":watch")))
        pending = await shadow_store.outbox()
        assert pending and all(e["shadow"] for _, e in pending)
        # a writer that loaded an older shadow state (a zombie) changes nothing
        stale = ShadowState(1, None, None, loaded_ms=1)
        from agents.shadow import ShadowWrite

        conflicts, accepted = await shadow_store.commit([ShadowWrite("sick-1", stale, [])])
        assert conflicts == ["sick-1"] and accepted == []
        await shadow_store.done([oid for oid, _ in pending])
        assert await shadow_store.outbox() == []
    finally:
        await s1.close()
        await store.close()


def _strip(msg: dict[str, Any]) -> tuple[Any, ...]:
    """What the policy decided (not when it was sent, nor the events' offsets)."""
    return tuple(json.dumps(msg.get(k)) for k in DECIDED)


def _replay_live(events: list[bytes], settings: Settings) -> list[dict[str, Any]]:
    """The live transitions the same events give without a shadow (memory store)."""
    import asyncio

    from wardwatch.store import MemoryStateStore

    async def run() -> list[dict[str, Any]]:
        pipe = ScoringPipeline(
            MemoryStateStore(), models=ModelHolder(_model("v2")), partitions=settings.partitions
        )
        out: list[dict[str, Any]] = []
        # in publication order: each partition's order on the broker
        parsed = [VitalsEvent.model_validate_json(e) for e in events]
        for i, ev in enumerate(parsed):
            out += (await pipe.process([Incoming(ev, f"r:{i}")])).emitted
        return out

    return asyncio.run(run())


def test_worker_in_shadow_mode_then_validate_shadow(settings: Settings, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(SHIPPED, root)
    # live v2 beside shadow v1: a pair whose transitions differ on these patients, so that
    # shadow-only transitions exist to show they never page (whatever is promoted now)
    (root / "deterioration" / "PROMOTED").write_text("v2\n")
    receiver = Receiver()
    receiver.up()
    settings = settings.model_copy(
        update={
            "model_registry": root,
            "shadow_model_version": "v1",
            "webhook_url": receiver.url,
            "page_max_data_age_s": 24 * 3600.0,  # the test's data are a few hours old
        }
    )
    ensure_topics(settings)
    start = hours_ago(3.5).replace(microsecond=0)
    sick = {
        f"sick-{i}": deteriorating(f"sick-{i}", start + timedelta(minutes=4 * i)) for i in range(3)
    }
    well = {f"well-{i}": stable(f"well-{i}", start) for i in range(2)}
    series = sick | well
    items = [(pid, v) for pid, vs in series.items() for v in vs]
    outcomes = [
        (
            pid,
            json.dumps(
                {"patient_id": pid, "ts": (start + timedelta(hours=3)).isoformat()}
            ).encode(),
        )
        for pid in sick
    ]
    worker = start_worker(settings, tmp_path)
    try:
        publish(settings, settings.topics.vitals, items)
        publish(settings, settings.topics.outcomes, outcomes)
        shadow = consume(
            settings,
            settings.topics.alerts_shadow,
            until=lambda ms: {m["patient_id"] for m in ms} >= set(sick),
            timeout_s=90,
        )
        deadline = time.monotonic() + 60
        while worker.metrics().get("wardwatch_shadow_scored_total", 0) < len(items):
            assert time.monotonic() < deadline, "the shadow did not score every event"
            time.sleep(0.3)
        time.sleep(3)  # the pager's last deliveries
        metrics = worker.metrics()
    finally:
        worker.stop()
        receiver.down()
    live = consume(settings, settings.topics.alerts, until=lambda ms: False, timeout_s=4)
    shadow = consume(settings, settings.topics.alerts_shadow, until=lambda ms: False, timeout_s=4)

    assert shadow and all(m["shadow"] is True and m["model_version"] == "v1" for m in shadow)
    assert {m["patient_id"] for m in shadow} <= set(sick)
    assert metrics["wardwatch_shadow_scored_total"] == len(items)
    assert sum(v for k, v in metrics.items() if k.startswith("wardwatch_shadow_errors_total")) == 0
    would = sum(v for k, v in metrics.items() if k.startswith("wardwatch_shadow_would_page_total"))
    assert would == len({m["transition_id"] for m in shadow if m["would_page"]}) > 0
    # only live pages reach the paging system: every key a live paging transition, each
    # live page delivered, nothing more
    live_pages = {m["transition_id"] for m in live if should_page(m)}
    assert live_pages and set(receiver.received()) == live_pages
    only_shadow = {m["transition_id"] for m in shadow} - {m["transition_id"] for m in live}
    assert only_shadow and not only_shadow & set(receiver.received())
    # the live output is what the same events give without a shadow
    replay = _replay_live([v for _, v in items], settings)
    got = sorted(_strip(m) for m in {m["transition_id"]: m for m in live}.values())
    assert got == sorted(_strip(m) for m in replay)

    out = io.StringIO()
    report_path = tmp_path / "shadow.json"
    rc = run_validate_shadow(
        settings,
        version=None,
        since=start.isoformat(),
        until=None,
        json_path=str(report_path),
        html_path=str(tmp_path / "shadow.html"),
        horizon_h=12.0,
        stdout=out,
    )
    print(out.getvalue())
    assert rc == 0, out.getvalue()
    report = json.loads(report_path.read_text())
    print(json.dumps({k: report[k] for k in ("window", "live", "shadow", "agreement")}, indent=1))
    assert report["candidate"]["version"] == "v1"
    assert report["window"]["patients"] == 5 and report["outcomes"] == 3
    assert report["live"]["pages"] == len(live_pages)
    assert report["shadow"]["model_versions"] == ["v1"]
    agree = report["agreement"]
    assert agree["paged_by_both"] + agree["only_live"] == report["live"]["patients_paged"]
    record = json.loads((root / "deterioration" / "v1" / "shadow.json").read_text())
    assert record["version"] == "v1" and record["window"] == report["window"]
    assert "<svg" in (tmp_path / "shadow.html").read_text()
    # the gate reads it: a window of a few hours is not a 72 h shadow period
    result = reg.gate(root, "deterioration", "v1", min_shadow_h=72)
    assert any(r.startswith("shadow record covers") for r in result.reasons)


@pytest.mark.parametrize("redis", ["server", "cluster"])
@pytest.mark.parametrize("crash", ["after_commit", "before_commit"])
async def test_shadow_timers_on_redis_once_across_a_restart(
    redis: str, crash: str, redis_settings: Settings, request: pytest.FixtureRequest
) -> None:
    """A held reading whose patient then goes silent: the shadow timer raises it as the
    live one does; a worker dying after the shadow timer's commit (before publishing) or
    before it ran, and its successor on the same Redis, leave it on ``alerts-shadow``
    exactly once."""
    from agents.shadow import ShadowPublisher
    from tests.unit.test_shadow import Topic
    from tests.unit.test_shadow_timers import _clock, _decided, silent_after_hold

    url, cluster = redis_settings.redis_url or "", False
    if redis == "cluster":
        url, cluster = request.getfixturevalue("redis_cluster").url, True
    prefix = redis_settings.redis_prefix
    model = _model("v2")

    def worker() -> tuple[RedisStateStore, RedisShadowStore, ScoringPipeline]:
        store = RedisStateStore.from_url(url, cluster=cluster, prefix=prefix)
        shadow_store = RedisShadowStore(store.r, prefix=prefix, version="v2", cluster=cluster)
        shadow = Shadow(shadow_store, ShadowHolder("v2", model), store)  # the two agree
        pipe = ScoringPipeline(store, models=ModelHolder(model), clock=_clock, shadow=shadow)
        return store, shadow_store, pipe

    first_part, rest = silent_after_hold()
    store, shadow_store, pipe = worker()
    await pipe.process(first_part)
    assert (await pipe.shadow_tick(await shadow_store.watched())).shadow_emitted == []
    await pipe.process(rest)
    live = (await pipe.tick(await store.watched())).emitted
    (raised,) = [m for m in live if m["patient_id"] == "held"]
    if crash == "after_commit":
        ticked = await pipe.shadow_tick(await shadow_store.watched())
        assert _decided(ticked.shadow_emitted) == _decided(live)
    await store.close()  # the worker dies: nothing of this tick was published

    store, shadow_store, pipe = worker()
    try:
        pipe.restore_stream(await store.stream_times())  # event time resumes as stored
        again = await pipe.shadow_tick(await shadow_store.watched())
        if crash == "after_commit":
            assert again.shadow_emitted == []  # committed before the crash
        else:
            assert _decided(again.shadow_emitted) == _decided(live)
        topic = Topic()
        await ShadowPublisher(topic, shadow_store, list, 0.0).flush()  # start-up
        sent = [json.loads(v) for _, v in topic.sent]
        assert [m["transition_id"] for m in sent].count(raised["transition_id"]) == 1
        (shadow_raised,) = [m for m in sent if m["transition_id"] == raised["transition_id"]]
        assert shadow_raised["shadow"] is True and shadow_raised["model_version"] == "v2"
        assert _decided([shadow_raised]) == _decided([raised])
        # later ticks add nothing; the patient stays watched while the alert is open
        assert (await pipe.shadow_tick(await shadow_store.watched())).shadow_emitted == []
        assert await shadow_store.outbox() == []
        assert "held" in await shadow_store.watched()
    finally:
        await store.close()


def test_worker_ticks_the_shadow_alert_of_a_silent_patient(
    settings: Settings, tmp_path: Path
) -> None:
    """A worker with the live model as its candidate (the two agree): a patient's last
    reading is held as a possible artifact and nothing follows, while another patient's
    readings move the partition's event time past the hold; the escalation timer raises it
    on ``alerts`` and the shadow timer the same transition on ``alerts-shadow``."""
    from tests.integration.helpers import STABLE, vitals
    from tests.unit.test_shadow_timers import _decided
    from wardwatch.topics import partition_for

    root = tmp_path / "registry"
    shutil.copytree(SHIPPED, root)
    (root / "deterioration" / "PROMOTED").write_text("v2\n")
    settings = settings.model_copy(update={"model_registry": root, "shadow_model_version": "v2"})
    ensure_topics(settings)
    start = hours_ago(3).replace(microsecond=0)
    n = settings.partitions
    clock_pid = "clock-0"
    held_pid = next(
        p
        for p in (f"held-{i}" for i in range(100))
        if partition_for(p, n) == partition_for(clock_pid, n)
    )
    drop = vitals(held_pid, start + timedelta(minutes=62), **{**STABLE, "spo2_pct": 84})
    held = [*stable(held_pid, start, steps=4), drop]
    # in the log after the held reading: event time goes on without the held patient
    items = [(held_pid, v) for v in held] + [(clock_pid, v) for v in stable(clock_pid, start)]

    def raised(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            m for m in ms if m["patient_id"] == held_pid and "unacknowledged" not in m["reason"]
        ]

    worker = start_worker(settings, tmp_path)
    try:
        publish(settings, settings.topics.vitals, items)
        shadow = consume(
            settings, settings.topics.alerts_shadow, until=lambda ms: bool(raised(ms)), timeout_s=90
        )
        time.sleep(1)
        metrics = worker.metrics()
    finally:
        worker.stop()
    live = consume(settings, settings.topics.alerts, until=lambda ms: False, timeout_s=4)
    live_held = list({m["transition_id"]: m for m in raised(live)}.values())
    shadow_held = list({m["transition_id"]: m for m in raised(shadow)}.values())
    assert live_held and live_held[0]["explanation"]["confirmation"]["status"] == "unconfirmed"
    assert _decided(shadow_held) == _decided(live_held)
    assert all(m["shadow"] is True and m["model_version"] == "v2" for m in shadow_held)
    timer = "wardwatch_shadow_timer_transitions_total"
    assert metrics[f'{timer}{{kind="held_reading"}}'] == 1
    assert sum(v for k, v in metrics.items() if k.startswith("wardwatch_shadow_errors_total")) == 0
