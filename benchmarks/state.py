"""Per-patient state in a real Redis: memory per patient and batched round trips.

Starts a private redis-server, replays a simulated cohort through the worker's pipeline
with the Redis store at batch size 1 and 256 (events/s of the scoring stage, Redis round
trips included), then reports ``used_memory`` per patient and ``MEMORY USAGE`` per key kind.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.model_stage import Incoming
from agents.pipeline import ScoringPipeline
from agents.replay import batches
from simulator import SimConfig, simulate_cohort
from wardwatch.schemas import VitalsEvent
from wardwatch.stack import embedded_redis
from wardwatch.store import RedisStateStore, redis_key

START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


async def _score(url: str, prefix: str, events: list[VitalsEvent], batch: int) -> dict[str, Any]:
    store = RedisStateStore.from_url(url, prefix=prefix)
    pipe = ScoringPipeline(store)
    items = [Incoming(e, f"b:{i}") for i, e in enumerate(events)]
    t0 = time.perf_counter()
    n = 0
    for chunk in batches(items, batch):
        res = await pipe.process(chunk)
        n += len(res.scored)
    dt = time.perf_counter() - t0
    info = await store.r.info("memory")
    await store.close()
    return {"events": n, "seconds": round(dt, 3), "events_per_s": round(n / dt), "_mem": info}


def run(quick: bool = False) -> dict[str, Any]:
    n, hours = (100, 12.0) if quick else (1000, 24.0)
    cohort = simulate_cohort(n, seed=5, start=START, config=SimConfig(hours=hours))
    events = [VitalsEvent.model_validate(e) for e in cohort.events]
    small = events[: min(len(events), 3000 if quick else 10000)]
    with tempfile.TemporaryDirectory() as tmp:
        server = embedded_redis(Path(tmp))
        server.start()
        url = f"redis://127.0.0.1:{server.port}/0"
        try:
            import redis

            r = redis.Redis.from_url(url)
            base = int(r.info("memory")["used_memory"])
            b1 = asyncio.run(_score(url, "b1", small, 1))
            r.flushdb()
            base = int(r.info("memory")["used_memory"])
            b256 = asyncio.run(_score(url, "b256", events, 256))
            used = int(r.info("memory")["used_memory"]) - base
            kinds = {}
            pid = events[-1].patient_id
            for kind in ("p", "h"):
                kinds[kind] = r.memory_usage(redis_key("b256", kind, pid))
        finally:
            server.stop()
    for d in (b1, b256):
        d.pop("_mem")
    return {
        "patients": n,
        "events": len(events),
        "scoring_batch_1": b1,
        "scoring_batch_256": b256,
        "speedup_batch_256_vs_1": round(b256["events_per_s"] / b1["events_per_s"], 2),
        "redis_used_memory_per_patient_bytes": round(used / n),
        "memory_usage_bytes_by_key_kind": {
            "state hash (p)": kinds["p"],
            "history ring buffer (h, 96 entries max)": kinds["h"],
        },
    }
