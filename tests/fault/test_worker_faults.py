"""Fault injection on a real worker: a frozen Redis, a poison event, a systematic fault.

Each test counts what went in and checks that every event was applied or dead-lettered
with its reason, and that nothing was acknowledged that was not applied."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path

import pytest
import redis

from cli.demo_workers import metric_sum
from tests.integration.helpers import (
    consume,
    hours_ago,
    outbox_left,
    publish,
    stable,
    start_worker,
    stored_state,
    wait_for,
)
from wardwatch.settings import Settings
from wardwatch.stack import embedded_redis
from wardwatch.store import redis_key
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_frozen_redis_stalls_the_worker_without_crashing_it_or_losing_events(
    settings: Settings, tmp_path: Path
) -> None:
    """Redis stops answering (SIGSTOP: connections stay open, nothing comes back) for
    longer than every timer of the worker, then resumes."""
    server = embedded_redis(tmp_path / "redis")
    server.start()
    settings = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{server.port}/0", "redis_socket_timeout_s": 2.0}
    )
    ensure_topics(settings)
    worker = start_worker(settings, tmp_path)
    events = stable("bed-7", hours_ago(8), steps=30)
    try:
        publish(settings, settings.topics.vitals, [("bed-7", v) for v in events[:10]])
        wait_for(lambda: stored_state(settings, "bed-7").n_events == 10, 30, "first events")
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            publish(settings, settings.topics.vitals, [("bed-7", v) for v in events[10:]])
            time.sleep(30)  # past the escalation tick and several socket timeouts
            assert worker.proc is not None and worker.proc.poll() is None, "worker died"
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        wait_for(lambda: stored_state(settings, "bed-7").n_events == 30, 60, "events after")
        metrics = worker.metrics()
        assert worker.proc.poll() is None
    finally:
        worker.stop()
        server.stop()
    assert metric_sum(metrics, "wardwatch_events_scored_total") == 30
    assert metric_sum(metrics, "wardwatch_processing_retries_total") >= 1


def _corrupt(settings: Settings, pid: str) -> None:
    r = redis.Redis.from_url(settings.redis_url or "")
    r.hset(redis_key(settings.redis_prefix, "p", pid), mapping={"ver": 1, "s": "{not a state"})


def _letters(settings: Settings, n: int) -> list[dict]:
    return consume(settings, settings.topics.dead_letter, until=lambda m: len(m) >= n)


def test_a_poison_event_is_dead_lettered_alone_and_the_rest_applied(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    _corrupt(settings, "bed-bad")
    worker = start_worker(settings, tmp_path)
    start = hours_ago(4)
    good, bad = stable("bed-ok", start, steps=12), stable("bed-bad", start, steps=3)
    mixed = [("bed-ok", v) for v in good[:6]] + [("bed-bad", v) for v in bad]
    try:
        sent = publish(settings, settings.topics.vitals, mixed + [("bed-ok", v) for v in good[6:]])
        wait_for(lambda: stored_state(settings, "bed-ok").n_events == 12, 45, "good events")
        letters = _letters(settings, 3)
        metrics = worker.metrics()
        assert worker.proc is not None and worker.proc.poll() is None, "worker died"
    finally:
        worker.stop()
    assert {(m["reason"], m["source_topic"]) for m in letters} == {
        ("processing_error", settings.topics.vitals)
    }
    assert {base64.b64decode(m["original_b64"]) for m in letters} == set(bad)
    assert all("JSONDecodeError" in m["detail"] for m in letters)
    scored = metric_sum(metrics, "wardwatch_events_scored_total")
    dead = metric_sum(metrics, "wardwatch_dead_letter_total")
    assert (scored, dead) == (12, 3) and scored + dead == sent


def test_a_systematic_fault_stops_the_worker_uncommitted_and_a_restart_applies_it_all(
    settings: Settings, tmp_path: Path
) -> None:
    """Every event fails (every patient's state is corrupt): not poison but a fault. The
    worker stops without committing; repaired and restarted, it applies every event."""
    settings = settings.model_copy(update={"poison_streak_limit": 3})
    ensure_topics(settings)
    pids = [f"bed-{i}" for i in range(6)]
    for pid in pids:
        _corrupt(settings, pid)
    worker = start_worker(settings, tmp_path, "w1")
    items = [(pid, v) for pid in pids for v in stable(pid, hours_ago(4), steps=4)]
    try:
        publish(settings, settings.topics.vitals, items)
        assert worker.proc is not None
        wait_for(lambda: worker.proc.poll() is not None, 45, "the worker did not stop")
        assert worker.proc.returncode == 70
        log = worker.log_path.read_text()
        assert "stopping without committing" in log
        assert not any(pid in log for pid in pids), "patient id in the log"
    finally:
        worker.stop()
    r = redis.Redis.from_url(settings.redis_url or "")
    for pid in pids:  # the fault is repaired
        r.delete(redis_key(settings.redis_prefix, "p", pid))
    again = start_worker(settings, tmp_path, "w2")
    try:
        wait_for(
            lambda: all(stored_state(settings, pid).n_events == 4 for pid in pids),
            60,
            "a restart did not apply every event",
        )
    finally:
        again.stop()


def test_transitions_a_dead_publisher_left_in_the_outbox_are_swept_out(
    settings: Settings, tmp_path: Path
) -> None:
    """Another worker committed a transition and died before publishing it: the worker
    that owns the patient publishes it within the sweep interval, without a restart."""
    import asyncio

    from wardwatch.store import Emit, RedisStateStore

    settings = settings.model_copy(update={"outbox_sweep_s": 1.0})
    ensure_topics(settings)
    worker = start_worker(settings, tmp_path)
    event = {
        "alert_id": "a-left",
        "transition_id": "t-left",
        "patient_id": "bed-left",
        "transition": "OPEN",
        "priority": "high",
        "ts_ms": int(time.time() * 1000),
        "emitted_ms": int(time.time() * 1000),
    }

    async def commit_and_die() -> None:
        store = RedisStateStore.from_settings(settings)
        await store.commit([], [Emit("bed-left", "t-left", event, open=True)])
        await store.close()

    try:
        asyncio.run(commit_and_die())
        alerts = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition_id"] == "t-left" for a in m),
            timeout_s=20,
        )
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert [a["transition_id"] for a in alerts].count("t-left") == 1
    assert metric_sum(metrics, "wardwatch_outbox_swept_total") == 1
    assert outbox_left(settings) == []
