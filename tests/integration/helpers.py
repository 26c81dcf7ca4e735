"""Helpers for tests against the real broker and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, TopicPartition

from cli.demo_workers import WorkerProcess
from wardwatch.patient import PatientState
from wardwatch.settings import Settings
from wardwatch.stack import free_port
from wardwatch.store import RedisStateStore, redis_key
from wardwatch.store_codec import unpack_row
from wardwatch.topics import producer


def wait_for(check: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def start_worker(settings: Settings, tmp_path: Path, name: str = "w0") -> WorkerProcess:
    wp = WorkerProcess(settings, free_port(), tmp_path / f"{name}.log")
    wp.start()
    try:
        wp.wait_ready(90)
    except RuntimeError:
        wp.stop()
        print(wp.log_path.read_text()[-4000:])
        raise
    return wp


def publish(settings: Settings, topic: str, items: Iterable[tuple[str, bytes]]) -> int:
    prod = producer(settings)
    n = 0
    for key, value in items:
        prod.send(topic, key=key, value=value)
        n += 1
    prod.flush(10)
    prod.close(5)
    return n


def redis_client(settings: Settings) -> Any:
    """A synchronous client of the settings' Redis: the server, or the cluster."""
    if settings.redis_cluster:
        return redis.RedisCluster.from_url(settings.redis_url or "")
    return redis.Redis.from_url(settings.redis_url or "")


def stored_state(settings: Settings, pid: str) -> PatientState:
    """A patient's state as the worker committed it to Redis (empty if none)."""
    r = redis_client(settings)
    return PatientState.from_json(r.hget(redis_key(settings.redis_prefix, "p", pid), "s"))


def stored_history(settings: Settings, pid: str) -> list[dict[str, Any]]:
    """A patient's ring buffer in Redis, oldest first."""
    r = redis_client(settings)
    rows = r.lrange(redis_key(settings.redis_prefix, "h", pid), 0, -1)
    return [unpack_row(x) for x in reversed(rows)]


def outbox_left(settings: Settings) -> list[dict[str, Any]]:
    """The transitions still in the outbox of every patient."""

    async def read() -> list[dict[str, Any]]:
        store = RedisStateStore.from_settings(settings)
        try:
            return [e for _, e in await store.outbox()]
        finally:
            await store.close()

    return asyncio.run(read())


def publish_events(settings: Settings, events: Iterable[dict[str, Any]]) -> int:
    """Publish event dicts (ISO ``ts``) to the vitals topic, keyed by patient."""
    items = [(e["patient_id"], json.dumps(e).encode()) for e in events]
    return publish(settings, settings.topics.vitals, items)


def vitals(pid: str, ts: datetime, **values: Any) -> bytes:
    return json.dumps({"patient_id": pid, "ts": ts.isoformat(), **values}).encode()


def consume(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 30.0,
    partitions: int | None = None,
) -> list[dict[str, Any]]:
    """Read ``topic`` from the beginning until ``until(messages)`` or the timeout."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap(),
        enable_auto_commit=False,
        consumer_timeout_ms=200,
    )
    parts = [TopicPartition(topic, p) for p in range(partitions or settings.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(json.loads(r.value) for r in records)
            if until(out):
                break
    finally:
        consumer.close()
    return out


def deteriorating(pid: str, start: datetime, steps: int = 12) -> list[bytes]:
    """A patient worsening from normal to NEWS2 >= 7 over ``steps`` quarter-hours."""
    out = []
    for i in range(steps):
        f = i / (steps - 1)
        out.append(
            vitals(
                pid,
                start + timedelta(minutes=15 * i),
                heart_rate_bpm=round(78 + 45 * f),
                respiratory_rate_per_min=round(15 + 12 * f),
                spo2_pct=round(97 - 7 * f),
                on_oxygen=False,
                systolic_bp_mmhg=round(125 - 35 * f),
                temperature_c=round(36.9 + 2.0 * f, 1),
                consciousness="A",
            )
        )
    return out


STABLE: dict[str, Any] = {
    "heart_rate_bpm": 76,
    "respiratory_rate_per_min": 15,
    "spo2_pct": 97,
    "on_oxygen": False,
    "systolic_bp_mmhg": 124,
    "temperature_c": 36.8,
    "consciousness": "A",
}
"""A stable patient's full observation set (NEWS2 0)."""


def stable(pid: str, start: datetime, steps: int = 12) -> list[bytes]:
    return [
        vitals(pid, start + timedelta(minutes=15 * i), **{**STABLE, "heart_rate_bpm": 72 + i % 3})
        for i in range(steps)
    ]


def publish_sick_and_well(
    settings: Settings,
    sick_pid: str,
    well_pid: str,
    start: datetime,
    extra: Iterable[tuple[str, bytes]] = (),
) -> tuple[list[bytes], list[bytes]]:
    """Publish a deteriorating and a stable patient from ``start`` (plus ``extra``
    messages) to the vitals topic; returns both series."""
    sick, well = deteriorating(sick_pid, start), stable(well_pid, start)
    items = [(sick_pid, v) for v in sick] + [(well_pid, v) for v in well] + list(extra)
    publish(settings, settings.topics.vitals, items)
    return sick, well


def hours_ago(h: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=h)
