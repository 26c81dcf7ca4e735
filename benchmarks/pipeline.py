"""The worker's scoring stage alone: ``ScoringPipeline.process`` on a real Redis.

The same simulated ward as ``bench e2e`` (``benchmarks.e2e.simulated_events``), decoded
and validated by the worker's own decoder before the clock starts, cut into batches of
``WARDWATCH_BATCH_SIZE`` in log order (each event on its patient's partition), and scored
by a pipeline built as the worker builds it: the Redis store on a private
``redis-server`` (``wardwatch.stack.embedded_redis``), the promoted ONNX model, the alert
policy from the settings. No Kafka: what it measures is the scoring stage's own cost.

Reported: events/s over the whole run, seconds per sub-stage (Redis load, model stage,
Redis commit, and the rest of the pipeline: applying events, NEWS2, qSOFA, fusion, the
alert policy), Redis round trips, and Redis bytes per patient (``MEMORY USAGE`` over
every key of the store, and per key kind). ``python -m benchmarks.pipeline --profile``
also prints the top entries of a cProfile of the run; ``--in-process`` scores the same
batches without Redis (``MemoryStateStore(serialize=False)``), with and without the alert
policy in turn, and reports events per CPU second of each (:func:`in_process`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import ScoringPipeline
from alerts import PolicyConfig
from benchmarks.e2e import simulated_events
from models.runtime import DeteriorationModel
from simulator.publish import encode_vitals
from wardwatch.ingest import Decoded, decode_vitals
from wardwatch.settings import Settings
from wardwatch.stack import embedded_redis
from wardwatch.store import RedisStateStore
from wardwatch.store_api import MemoryStateStore
from wardwatch.topics import partition_for

DEFAULT_EVENTS = 50_000
QUICK_EVENTS = 3_000
PREFIX = "benchpipe"
KINDS = ("p", "h", "ctx", "a", "aid", "ob")


def decoded_batches(events: list[dict[str, Any]], settings: Settings) -> list[list[Incoming]]:
    """The events as the worker hands them to the pipeline: decoded from their bytes,
    with event ids and partitions, in batches of the configured size."""
    now = datetime.now(UTC)
    items: list[Incoming] = []
    for offset, ev in enumerate(events):
        decoded = decode_vitals(encode_vitals(ev), now=now)
        if not isinstance(decoded, Decoded):
            continue
        part = partition_for(ev["patient_id"], settings.partitions)
        for i, vitals in enumerate(decoded.events):
            items.append(Incoming(vitals, f"vitals:{part}:{offset}:{i}", None, part))
    size = settings.batch_size
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Timed:
    """Seconds and calls per named coroutine method, wrapped on an instance."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        inner: Callable[..., Awaitable[Any]] = getattr(obj, attr)

        async def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await inner(*args, **kw)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        setattr(obj, attr, timed)


def _redis_bytes(url: str, patients: int) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(url)
    try:
        total = keys = 0
        by_kind: dict[str, int] = defaultdict(int)
        for key in r.scan_iter(match=f"{PREFIX}:*", count=1000):
            size = int(r.memory_usage(key, samples=0) or 0)
            total += size
            keys += 1
            parts = key.decode().split(":")
            kind = parts[2] if len(parts) > 3 else parts[-1]
            by_kind[kind] += size
    finally:
        r.close()
    return {
        "keys": keys,
        "bytes": total,
        "bytes_per_patient": round(total / max(patients, 1)),
        "bytes_per_patient_by_kind": {
            k: round(v / max(patients, 1)) for k, v in sorted(by_kind.items())
        },
    }


def _server_stats(url: str, reset: bool = False) -> dict[str, float]:
    """The server's own load so far: commands served, microseconds spent in them
    (``INFO commandstats``) and its CPU seconds (``INFO cpu``); ``reset`` zeroes the
    command counts first (``CONFIG RESETSTAT``)."""
    import redis

    r = redis.Redis.from_url(url)
    try:
        if reset:
            r.config_resetstat()
        stats = r.info("commandstats")
        cpu = r.info("cpu")
    finally:
        r.close()
    return {
        "calls": float(sum(int(v["calls"]) for v in stats.values())),
        "usec": float(sum(float(v["usec"]) for v in stats.values())),
        "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
    }


def _pipeline(
    store: Any, settings: Settings, model: DeteriorationModel, *, alerts: bool = True
) -> ScoringPipeline:
    """A scoring pipeline on ``store`` as the worker builds it from ``settings``."""
    return ScoringPipeline(
        store,
        PolicyConfig.from_settings(settings),
        late_window_s=settings.late_window_s,
        stream_lateness_s=settings.stream_lateness_s,
        stream_idle_s=settings.stream_idle_s,
        partitions=settings.partitions,
        models=ModelHolder(model),
        alerts=alerts,
    )


async def _drive(
    url: str,
    batches: Sequence[Sequence[Incoming]],
    settings: Settings,
    model: DeteriorationModel,
    profile: cProfile.Profile | None,
) -> dict[str, Any]:
    store = RedisStateStore.from_url(url, prefix=PREFIX, ttl_s=settings.state_ttl_s)
    pipe = _pipeline(store, settings, model)
    timed = _Timed()
    timed.wrap(store, "load", "redis_load")
    timed.wrap(store, "commit", "redis_commit")
    timed.wrap(store, "histories", "redis_histories")
    timed.wrap(pipe.model_stage, "scores", "model_stage")
    round_trips = [0]
    real_pipeline = store.r.pipeline

    def counting_pipeline(*args: Any, **kw: Any) -> Any:
        round_trips[0] += 1
        return real_pipeline(*args, **kw)

    store.r.pipeline = counting_pipeline
    # the first batch outside the clock: connection set-up and the scripts' first load
    first = await pipe.process(batches[0])
    await store.outbox_done(first.outbox_ids)
    scored = len(first.scored)
    emitted = len(first.emitted)
    timed.seconds.clear()
    timed.calls.clear()
    round_trips[0] = 0
    server0 = _server_stats(url, reset=True)
    done_trips = 0  # the outbox confirmations' round trips, not the scoring stage's
    if profile is not None:
        profile.enable()
    untimed = 0.0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for batch in batches[1:]:
        res = await pipe.process(batch)
        scored += len(res.scored)
        emitted += len(res.emitted)
        if res.conflicts:
            raise RuntimeError(f"{len(res.conflicts)} conflicts with no other writer")
        # the publish stage's confirmation (not timed: the worker's publish stage)
        t1, trips = time.perf_counter(), round_trips[0]
        if res.outbox_ids:
            await store.outbox_done(res.outbox_ids)
        untimed += time.perf_counter() - t1
        done_trips += round_trips[0] - trips
    dt = time.perf_counter() - t0 - untimed
    cpu = time.process_time() - cpu0  # this process only (the outbox confirmations too)
    if profile is not None:
        profile.disable()
    await store.close()
    server1 = _server_stats(url)
    measured = sum(len(b) for b in batches[1:])
    # (patient, batch) pairs: what the store's load and commit cost scales with (a ward of
    # thousands of beds has about one event per patient in a batch)
    patient_batches = sum(len({inc.event.patient_id for inc in b}) for b in batches[1:])
    stages = {k: round(v, 3) for k, v in timed.seconds.items()}
    inner = sum(v for k, v in timed.seconds.items() if k != "redis_histories")
    stages["apply_rules_policy"] = round(dt - inner, 3)
    return {
        "events": measured,
        "scored": scored,
        "alert_transitions": emitted,
        "batches": len(batches) - 1,
        "mean_batch_events": round(measured / max(len(batches) - 1, 1), 1),
        "seconds": round(dt, 3),
        "events_per_s": round(measured / dt, 1),
        # on a shared machine: events per second of this process's own CPU time
        "cpu_seconds": round(cpu, 3),
        "events_per_cpu_s": round(measured / cpu, 1),
        "stage_seconds": stages,
        "stage_calls": dict(timed.calls),
        "redis_round_trips_per_batch": round(
            (round_trips[0] - done_trips) / max(len(batches) - 1, 1), 2
        ),
        # the server's side of the same batches, the outbox confirmations included (minus
        # the few commands of the two stats calls themselves)
        "redis_server": _server_load(server0, server1, measured, patient_batches),
    }


def _server_load(
    before: dict[str, float], after: dict[str, float], events: int, patient_batches: int
) -> dict[str, Any]:
    calls = after["calls"] - before["calls"]
    usec = after["usec"] - before["usec"]
    cpu_us = (after["cpu_s"] - before["cpu_s"]) * 1e6
    return {
        "patient_batches": patient_batches,
        "events_per_patient_batch": round(events / max(patient_batches, 1), 2),
        "commands_per_event": round(calls / max(events, 1), 2),
        "commands_per_patient_batch": round(calls / max(patient_batches, 1), 2),
        "command_us_per_event": round(usec / max(events, 1), 1),
        "command_us_per_patient_batch": round(usec / max(patient_batches, 1), 1),
        "cpu_us_per_event": round(cpu_us / max(events, 1), 1),
        "cpu_us_per_patient_batch": round(cpu_us / max(patient_batches, 1), 1),
    }


def run(quick: bool = False, events: int | None = None, profile: bool = False) -> dict[str, Any]:
    n = events or (QUICK_EVENTS if quick else DEFAULT_EVENTS)
    settings = Settings()
    model = DeteriorationModel.from_registry(settings.resolved_model_registry())
    evs = simulated_events(n)
    patients = len({e["patient_id"] for e in evs})
    batches = decoded_batches(evs, settings)
    prof = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory(prefix="wardwatch-bench-pipeline-") as tmp:
        server = embedded_redis(Path(tmp))
        server.start()
        url = f"redis://127.0.0.1:{server.port}/0"
        try:
            scoring = asyncio.run(_drive(url, batches, settings, model, prof))
            usage = _redis_bytes(url, patients)
        finally:
            server.stop()
    out: dict[str, Any] = {
        "benchmark": "pipeline",
        "unit": "events/s of ScoringPipeline.process on a private redis-server, one process",
        "quick": quick,
        "events": n,
        "patients": patients,
        "model": f"{model.name} {model.version}",
        "batch_size": settings.batch_size,
        "scoring": scoring,
        "redis": usage,
    }
    if prof is not None:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        out["_profile"] = text.getvalue()
    return out


async def _drive_in_process(
    batches: Sequence[Sequence[Incoming]],
    settings: Settings,
    model: DeteriorationModel,
    alerts: bool,
) -> float:
    pipe = _pipeline(MemoryStateStore(serialize=False), settings, model, alerts=alerts)
    await pipe.process(batches[0])  # outside the clock, as in _drive
    cpu0 = time.process_time()
    for batch in batches[1:]:
        await pipe.process(batch)
    return time.process_time() - cpu0


def in_process(events: int | None = None, rounds: int = 3) -> dict[str, Any]:
    """The same batches scored in this process without Redis or serialization
    (``MemoryStateStore(serialize=False)``), with the alert policy and without it
    (``alerts=False``, which also skips the model's contributions) in turn, ``rounds``
    times: events per CPU second of each run. On a shared machine compare within a
    round; the gap between the two is what the alert policy costs."""
    n = events or DEFAULT_EVENTS
    settings = Settings()
    model = DeteriorationModel.from_registry(settings.resolved_model_registry())
    batches = decoded_batches(simulated_events(n), settings)
    measured = sum(len(b) for b in batches[1:])
    runs: dict[str, list[float]] = {"with_policy": [], "without_policy": []}
    for _ in range(rounds):
        for key, alerts in (("with_policy", True), ("without_policy", False)):
            cpu = asyncio.run(_drive_in_process(batches, settings, model, alerts))
            runs[key].append(round(measured / cpu, 1))
    return {
        "benchmark": "pipeline_in_process",
        "unit": "events per CPU second of ScoringPipeline.process, in process, no Redis",
        "events": measured,
        "batch_size": settings.batch_size,
        "events_per_cpu_s": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pipeline")
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--profile", action="store_true", help="print cProfile's top entries")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="without Redis: events per CPU second with and without the alert policy",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds of --in-process")
    args = p.parse_args(argv)
    if args.in_process:
        print(json.dumps(in_process(args.events, args.rounds), indent=2))
        return 0
    result = run(args.quick, args.events, args.profile)
    text = result.pop("_profile", None)
    print(json.dumps(result, indent=2))
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
