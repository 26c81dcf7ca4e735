"""End-to-end throughput on the embedded stack: raw client, bare Faust, one worker.

One run, one pre-loaded ``vitals`` topic (simulated events keyed by patient, the
project's partition count), read three times, each by its own consumer:

1. ``raw_client``: a plain aiokafka consumer, ``getmany`` and ``json.loads`` only: what
   the client and the broker can deliver;
2. ``bare_faust``: a Faust agent on wardwatch's own app settings (``agents.app.build_app``)
   taking ``take_events(batch_size, within=batch_within_s)`` as the worker does, decode
   only, in its own process: the framework's ceiling;
3. ``worker``: one ``wardwatch worker`` process on a fresh consumer group (decode,
   validate, Redis, NEWS2, ONNX, policy, alerts, commits), its rate read from its own
   ``/metrics`` counters sampled until every event is accounted for.

Rates 1 and 2 are measured from the first event to the last (the group join is left
out); rate 3 between the first and the last ``/metrics`` sample that saw events scored.
Also reported: the ratios, Redis bytes per patient after the worker run (``MEMORY
USAGE`` over the store's keys) and the worker's resident memory. Compare ratios, not
absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from wardwatch.settings import Settings
from wardwatch.stack import embedded_stack, free_port, stop_process_group

DEFAULT_EVENTS = 100_000
QUICK_EVENTS = 5_000
SEED = 11
HOURS = 48.0
NOT_MEASURED = [
    "latency at a fixed offered load",
    "alert envelopes under load",
    "two workers sharing the partitions",
    "the CT stage",
]


# ---- the pre-loaded topic -----------------------------------------------------------------
def simulated_events(n: int, seed: int = SEED) -> list[dict[str, Any]]:
    """The first ``n`` events (by time) of a simulated ward, admitted ``HOURS`` ago so
    that every timestamp is in the past."""
    from simulator import SimConfig, simulate_cohort

    config = SimConfig(hours=HOURS)
    per_patient = HOURS * 60 / (config.obs_interval_min or 15.0) * 0.9  # sets, a little low
    patients = max(1, int(n / per_patient) + 1)
    start = datetime.now(UTC) - timedelta(hours=HOURS, minutes=10)
    while True:
        events = simulate_cohort(patients, seed=seed, start=start, config=config).events
        if len(events) >= n:
            return events[:n]
        patients = int(patients * 1.2) + 1


def preload(settings: Settings, events: list[dict[str, Any]]) -> float:
    """Publish ``events`` to ``vitals`` keyed by patient; seconds taken."""
    from simulator.publish import encode_vitals
    from wardwatch.topics import producer

    prod = producer(settings)
    t0 = time.perf_counter()
    try:
        for ev in events:
            prod.send(settings.topics.vitals, key=ev["patient_id"], value=encode_vitals(ev))
        prod.flush(timeout=120)
    finally:
        prod.close(timeout=10)
    return time.perf_counter() - t0


def _rate(n: int, first_batch: int, t_first: float, t_last: float) -> dict[str, Any]:
    """Events after the first batch over the time from the first event to the last."""
    seconds = max(t_last - t_first, 1e-9)
    return {
        "events": n,
        "seconds": round(seconds, 3),
        "events_per_s": round(max(n - first_batch, 1) / seconds, 1),
    }


# ---- 1. raw client ----------------------------------------------------------------------
async def _raw(settings: Settings, n: int, timeout_s: float) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from agents.kafka_clients import aiokafka_security

    topic = settings.topics.vitals
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **aiokafka_security(settings),
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        count = first_batch = 0
        t_first = t_last = 0.0
        deadline = time.monotonic() + timeout_s
        while count < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for rec in records:
                    json.loads(rec.value or b"")
                if records and not count:
                    t_first, first_batch = time.perf_counter(), len(records)
                count += len(records)
            t_last = time.perf_counter()
    finally:
        await consumer.stop()
    if count < n:
        raise RuntimeError(f"raw consumer read {count} of {n} events in {timeout_s:.0f} s")
    return _rate(count, first_batch, t_first, t_last) | {"fetch": "getmany(), defaults"}


# ---- 2. bare Faust agent (run in its own process) -------------------------------------
def bare_child(result_path: Path, n: int) -> int:
    """The bare agent's process: wardwatch's Faust app, one decode-only agent on
    ``vitals``; writes its figures to ``result_path`` once ``n`` events are in."""
    import faust
    from prometheus_client import CollectorRegistry

    from agents.app import build_app

    s = Settings()
    app = build_app(s, CollectorRegistry())
    topic = app.topic(s.topics.vitals, value_serializer="raw", key_serializer="raw")
    seen = {"count": 0, "first_batch": 0, "t_first": 0.0}

    @app.agent(topic, name="bare")
    async def bare(stream: faust.StreamT) -> None:
        async for events in stream.take_events(s.batch_size, within=s.batch_within_s):  # type: ignore[attr-defined]
            now = time.perf_counter()
            for ev in events:
                json.loads(ev.value)
            if not seen["count"]:
                seen["t_first"], seen["first_batch"] = now, len(events)
            seen["count"] += len(events)
            if seen["count"] >= n and not result_path.exists():
                out = _rate(int(seen["count"]), int(seen["first_batch"]), seen["t_first"], now)
                c = app.conf
                out["faust_conf"] = {
                    "broker_max_poll_records": c.broker_max_poll_records,
                    "consumer_max_fetch_size": c.consumer_max_fetch_size,
                    "broker_commit_every": c.broker_commit_every,
                    "broker_commit_interval_s": c.broker_commit_interval,
                    "stream_buffer_maxsize": c.stream_buffer_maxsize,
                }
                tmp = result_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(out))
                tmp.replace(result_path)

    sys.argv = ["wardwatch-bench-bare", "worker", "--loglevel", "warn"]
    sys.argv += ["--web-port", str(s.web_port), "--web-host", s.web_host]
    app.main()
    return 0


def _child_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDWATCH_")}
    env |= {
        "WARDWATCH_KAFKA_URL": settings.kafka_url or "",
        "WARDWATCH_REDIS_URL": settings.redis_url or "",
        "WARDWATCH_PARTITIONS": str(settings.partitions),
        "WARDWATCH_BATCH_SIZE": str(settings.batch_size),
        "WARDWATCH_BATCH_WITHIN_S": str(settings.batch_within_s),
        "WARDWATCH_KAFKA_FETCH_MAX_WAIT_MS": str(settings.kafka_fetch_max_wait_ms),
        "WARDWATCH_REDIS_PREFIX": settings.redis_prefix,
        "WARDWATCH_DATA_DIR": str(settings.data_dir),
        "WARDWATCH_MODEL_REGISTRY": str(settings.resolved_model_registry().resolve()),
        "WARDWATCH_LOG_LEVEL": "warn",
    }
    return env | extra


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as logf:
        return subprocess.Popen(  # noqa: S603 - our own modules
            [sys.executable, *argv],
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _bare(settings: Settings, n: int, workdir: Path, timeout_s: float) -> dict[str, Any]:
    result = workdir / "bare.json"
    env = _child_env(
        settings,
        WARDWATCH_APP_ID=f"bench-bare-{uuid.uuid4().hex[:8]}",
        WARDWATCH_WEB_PORT=str(free_port()),
    )
    log_path = workdir / "bare.log"
    proc = _spawn(["-m", "benchmarks.e2e", "--bare-child", str(result), str(n)], env, log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while not result.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bare Faust agent did not finish (rc {proc.poll()}):\n{tail}")
            time.sleep(0.1)
        out: dict[str, Any] = json.loads(result.read_text())
    finally:
        stop_process_group(proc, 10)
    return out | {"take_events": settings.batch_size, "within_s": settings.batch_within_s}


# ---- 3. one worker ----------------------------------------------------------------------
def _metrics(url: str) -> dict[str, float]:
    """Counters of a worker's ``/metrics``, summed by name (and vitals-topic only where
    a ``topic`` label exists)."""
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback http
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
            if sample.name == "wardwatch_model_info" and sample.value:
                out[f"wardwatch_model_info{{version={sample.labels.get('version')}}}"] = 1.0
            stage = sample.labels.get("stage")
            if sample.name == "wardwatch_stage_seconds_sum" and stage is not None:
                out[f"stage_seconds{{{stage}}}"] = sample.value
            topic = sample.labels.get("topic")
            if topic is not None:
                key = f"{sample.name}{{topic={topic}}}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _proc_memory(pid: int) -> dict[str, float]:
    """Resident memory (now and peak) of a process, MiB, from /proc."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[f"{key.lower()}_mib"] = round(int(value.split()[0]) / 1024, 1)
    return out


def _worker(settings: Settings, n: int, workdir: Path, timeout_s: float) -> dict[str, Any]:
    port = free_port()
    env = _child_env(
        settings,
        WARDWATCH_APP_ID=f"bench-worker-{uuid.uuid4().hex[:8]}",
        WARDWATCH_WEB_PORT=str(port),
    )
    log_path = workdir / "worker.log"
    proc = _spawn(["-m", "cli.main", "worker"], env, log_path)
    url = f"http://127.0.0.1:{port}/metrics"
    vitals = settings.topics.vitals
    scored_key = f"wardwatch_events_scored_total{{topic={vitals}}}"
    consumed_key = f"wardwatch_events_consumed_total{{topic={vitals}}}"
    samples: list[tuple[float, float]] = []  # (time, events scored) once scoring started
    last: dict[str, float] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker did not finish (rc {proc.poll()}):\n{tail}")
            try:
                last = _metrics(url)
            except OSError:
                time.sleep(0.25)
                continue
            now = time.perf_counter()
            scored = last.get(scored_key, 0.0)
            if scored > 0 and (not samples or scored > samples[-1][1]):
                samples.append((now, scored))
            done = (
                scored
                + last.get("wardwatch_dead_letter_total", 0.0)
                + last.get("wardwatch_events_skipped_total", 0.0)
            )
            if last.get(consumed_key, 0.0) >= n and done >= n:
                break
            time.sleep(0.2)
        memory = _proc_memory(proc.pid)
    finally:
        stop_process_group(proc, 20)
    (t0, s0), (t1, s1) = samples[0], samples[-1]
    model = next(
        (k.split("version=", 1)[1].rstrip("}") for k in last if "info{version=" in k), None
    )
    seconds = max(t1 - t0, 1e-9)
    return {
        "events": int(last.get(consumed_key, 0.0)),
        "scored": int(s1),
        "dead_lettered": int(last.get("wardwatch_dead_letter_total", 0.0)),
        "skipped": int(last.get("wardwatch_events_skipped_total", 0.0)),
        "model_unavailable": int(last.get("wardwatch_model_unavailable_total", 0.0)),
        "model_version": model,
        "alert_transitions": int(last.get("wardwatch_alert_transitions_total", 0.0)),
        "seconds": round(seconds, 3),
        "events_per_s": round((s1 - s0) / seconds, 1) if s1 > s0 else 0.0,
        "metrics_samples": len(samples),
        "mean_batch_events": round(
            last.get("wardwatch_batch_size_sum", 0.0)
            / max(last.get("wardwatch_batch_size_count", 0.0), 1.0),
            1,
        ),
        "batches": int(last.get("wardwatch_batch_size_count", 0.0)),
        "stage_seconds": {
            k.split("{", 1)[1].rstrip("}"): round(v, 2)
            for k, v in last.items()
            if k.startswith("stage_seconds{")
        },
        **memory,
    }


def _redis_usage(settings: Settings, patients: int) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(settings.redis_url or "")
    try:
        total = keys = 0
        for key in r.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            total += int(r.memory_usage(key, samples=0) or 0)
            keys += 1
        used = int(r.info("memory")["used_memory"])
    finally:
        r.close()
    return {
        "patients": patients,
        "keys": keys,
        "bytes": total,
        "bytes_per_patient": round(total / max(patients, 1)),
        "server_used_memory_bytes": used,
    }


# ---- the benchmark ----------------------------------------------------------------------
def run(quick: bool = False, events: int | None = None) -> dict[str, Any]:
    """The figures; the settings (batch size, fetch wait, partitions) come from the
    environment (``WARDWATCH_*``) like a worker's, the stack is always embedded."""
    n = events or (QUICK_EVENTS if quick else DEFAULT_EVENTS)
    timeout_s = 120.0 + n / 200  # a generous floor of 200 events/s
    t0 = time.perf_counter()
    evs = simulated_events(n)
    patients = len({e["patient_id"] for e in evs})
    simulate_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="wardwatch-bench-e2e-") as tmp:
        workdir = Path(tmp)
        base = Settings(
            kafka_url=None,
            redis_url=None,
            redis_prefix="bench",
            data_dir=workdir / "data",
            require_model=True,
        )
        with embedded_stack(base, workdir) as settings:
            from wardwatch.topics import ensure_topics

            ensure_topics(settings)
            publish_s = preload(settings, evs)
            raw = asyncio.run(_raw(settings, n, timeout_s))
            bare = _bare(settings, n, workdir, timeout_s)
            worker = _worker(settings, n, workdir, timeout_s)
            redis_usage = _redis_usage(settings, patients)

    def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
        return round(a["events_per_s"] / b["events_per_s"], 4) if b["events_per_s"] else 0.0

    return {
        "benchmark": "e2e",
        "unit": "events/s on the embedded stack (Tansu broker, redis-server), one run",
        "quick": quick,
        "events": n,
        "patients": patients,
        "simulate_s": round(simulate_s, 2),
        "preload_s": round(publish_s, 2),
        "raw_client": raw,
        "bare_faust": bare,
        "worker": worker,
        "ratios": {
            "bare_over_raw": ratio(bare, raw),
            "worker_over_bare": ratio(worker, bare),
            "worker_over_raw": ratio(worker, raw),
        },
        "redis": redis_usage,
        "settings": {
            "partitions": settings.partitions,
            "batch_size": settings.batch_size,
            "batch_within_s": settings.batch_within_s,
            "faust_fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
            **{f"faust_{k}": v for k, v in bare.pop("faust_conf", {}).items()},
            "raw_fetch": "aiokafka defaults (fetch_max_wait_ms 500, max_records unbounded)",
            "model_registry": str(settings.resolved_model_registry().resolve()),
            "require_model": settings.require_model,
        },
        "not_measured": NOT_MEASURED,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--events", type=int, default=None)
    p.add_argument("--bare-child", nargs=2, metavar=("RESULT", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare_child:
        return bare_child(Path(args.bare_child[0]), int(args.bare_child[1]))
    print(json.dumps(run(quick=args.quick, events=args.events), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
