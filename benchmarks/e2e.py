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
LATENCY_RATE = 2000.0  # events/s offered
LATENCY_S, QUICK_LATENCY_S = 30.0, 3.0
WARMUP_S = 2.0
NOT_SCORED = ("wardwatch_dead_letter_total", "wardwatch_events_skipped_total")
NOT_MEASURED = [
    "alert envelopes under load",
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


# ---- 2. bare Faust (run in its own process) ------------------------------------------
def bare_child(result_path: Path, n: int, mode: str = "intake") -> int:
    """The bare process: wardwatch's Faust app, decode only, on ``vitals``; writes its
    figures to ``result_path`` once ``n`` events are in. ``mode`` ``intake``: batches
    from the worker's own hand-off (``agents.app.batch_intake``), acknowledged after
    each; ``agent``: a Faust agent's ``take_events`` (Faust's per-message path)."""
    import faust
    from prometheus_client import CollectorRegistry

    from agents.app import batch_intake, build_app

    s = Settings()
    app = build_app(s, CollectorRegistry())
    topic = app.topic(s.topics.vitals, value_serializer="raw", key_serializer="raw")
    seen = {"count": 0, "first_batch": 0, "t_first": 0.0}

    def handle(values: list[bytes]) -> None:
        now = time.perf_counter()
        for value in values:
            json.loads(value)
        if not seen["count"]:
            seen["t_first"], seen["first_batch"] = now, len(values)
        seen["count"] += len(values)
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

    if mode == "agent":

        @app.agent(topic, name="bare")
        async def bare(stream: faust.StreamT) -> None:
            async for events in stream.take_events(s.batch_size, within=s.batch_within_s):  # type: ignore[attr-defined]
                handle([ev.value for ev in events])

    else:
        intake = batch_intake(app, topic)

        @app.task
        async def bare_intake() -> None:
            async for records in intake.batches(s.batch_size, s.batch_within_s):
                handle([r.value for r in records])
                intake.ack(records)

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
        "WARDWATCH_KAFKA_MAX_PARTITION_FETCH_BYTES": str(settings.kafka_max_partition_fetch_bytes),
        "WARDWATCH_KAFKA_FETCH_MAX_BYTES": str(settings.kafka_fetch_max_bytes),
        "WARDWATCH_FAUST_MESSAGE_SENSORS": str(settings.faust_message_sensors).lower(),
        "WARDWATCH_REDIS_PREFIX": settings.redis_prefix,
        "WARDWATCH_DATA_DIR": str(settings.data_dir),
        "WARDWATCH_MODEL_REGISTRY": str(settings.resolved_model_registry().resolve()),
        "WARDWATCH_LOG_LEVEL": "warn",
    }
    if settings.kafka_max_poll_records is not None:
        env["WARDWATCH_KAFKA_MAX_POLL_RECORDS"] = str(settings.kafka_max_poll_records)
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


def _bare(
    settings: Settings,
    n: int,
    workdir: Path,
    timeout_s: float,
    mode: str = "intake",
    **extra_env: str,
) -> dict[str, Any]:
    name = f"bare-{uuid.uuid4().hex[:8]}"
    result = workdir / f"{name}.json"
    env = _child_env(
        settings,
        **extra_env,
        WARDWATCH_APP_ID=f"bench-bare-{uuid.uuid4().hex[:8]}",
        WARDWATCH_WEB_PORT=str(free_port()),
    )
    log_path = workdir / f"{name}.log"
    argv = ["-m", "benchmarks.e2e", "--bare-child", str(result), str(n), mode]
    proc = _spawn(argv, env, log_path)
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


def _spawn_workers(
    settings: Settings, workdir: Path, count: int, tag: str, **extra_env: str
) -> tuple[list[subprocess.Popen[bytes]], list[str], list[Path]]:
    """``count`` worker processes in one fresh consumer group; their processes,
    ``/metrics`` URLs and log files."""
    app_id = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    procs, urls, logs = [], [], []
    for i in range(count):
        port = free_port()
        env = _child_env(settings, WARDWATCH_APP_ID=app_id, WARDWATCH_WEB_PORT=str(port))
        log_path = workdir / f"{tag}-{i}.log"
        procs.append(_spawn(["-m", "cli.main", "worker"], env | extra_env, log_path))
        urls.append(f"http://127.0.0.1:{port}/metrics")
        logs.append(log_path)
    return procs, urls, logs


def _check_alive(procs: list[subprocess.Popen[bytes]], logs: list[Path], deadline: float) -> None:
    for proc, log_path in zip(procs, logs, strict=True):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"worker did not finish (rc {proc.poll()}):\n{tail}")


def _summed_metrics(urls: list[str]) -> dict[str, float]:
    """The workers' ``/metrics`` counters summed (OSError while any is not up)."""
    out: dict[str, float] = {}
    for url in urls:
        for key, value in _metrics(url).items():
            out[key] = out.get(key, 0.0) + value if "info{version=" not in key else value
    return out


def _worker(
    settings: Settings, n: int, workdir: Path, timeout_s: float, workers: int = 1, **env: str
) -> dict[str, Any]:
    """``workers`` worker processes in one fresh group on the pre-loaded topic, until
    every event is accounted for; the rate from their summed ``/metrics`` counters."""
    tag = "worker" if workers == 1 else f"workers{workers}"
    procs, urls, logs = _spawn_workers(settings, workdir, workers, tag, **env)
    vitals = settings.topics.vitals
    scored_key = f"wardwatch_events_scored_total{{topic={vitals}}}"
    consumed_key = f"wardwatch_events_consumed_total{{topic={vitals}}}"
    samples: list[tuple[float, float]] = []  # (time, events scored) once scoring started
    last: dict[str, float] = {}
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            _check_alive(procs, logs, deadline)
            try:
                last = _summed_metrics(urls)
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
        memory = [_proc_memory(proc.pid) for proc in procs]
    finally:
        for proc in procs:
            stop_process_group(proc, 20)
    (t0, s0), (t1, s1) = samples[0], samples[-1]
    model = next(
        (k.split("version=", 1)[1].rstrip("}") for k in last if "info{version=" in k), None
    )
    seconds = max(t1 - t0, 1e-9)
    out: dict[str, Any] = {
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
    }
    if workers == 1:
        return out | memory[0]
    return out | {"workers": workers, "vmrss_mib": [m.get("vmrss_mib") for m in memory]}


# ---- 4. latency at a fixed offered load -------------------------------------------------
def _histogram(urls: list[str], name: str) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count) of a histogram, summed."""
    out: dict[float, float] = {}
    for url in urls:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback http
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == f"{name}_bucket":
                    le = float(sample.labels["le"])
                    out[le] = out.get(le, 0.0) + sample.value
    return out


def bucket_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket holding rank ``q``."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def exact_quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _paced(settings: Settings, events: list[dict[str, Any]], topic: str, rate: float) -> float:
    """Publish ``events`` to ``topic`` at ``rate`` per second (each stamped with its send
    time, the record's timestamp); seconds taken."""
    from simulator.publish import encode_vitals
    from wardwatch.topics import producer

    prod = producer(settings, linger_ms=1)
    t0 = time.perf_counter()
    try:
        for i, ev in enumerate(events):
            ahead = t0 + i / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
            prod.send(topic, key=ev["patient_id"], value=encode_vitals(ev))
        prod.flush(timeout=60)
    finally:
        prod.close(timeout=10)
    return time.perf_counter() - t0


def _alert_latencies(settings: Settings, topic: str, since_ms: int) -> list[float]:
    """Seconds from each alert transition's source vitals message (produced at or after
    ``since_ms``) to its publication, read from ``topic`` to its end."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap(),
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        **settings.kafka_python_security(),
    )
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out = []
        for rec in consumer:
            msg = json.loads(rec.value)
            src, pub = msg.get("source_ts_ms"), msg.get("published_ms")
            if src and pub and src >= since_ms:
                out.append(max(0.0, (pub - src) / 1000))
    finally:
        consumer.close()
    return out


def _latency(
    settings: Settings, workdir: Path, rate: float, seconds: float, timeout_s: float
) -> dict[str, Any]:
    """One worker on fresh topics and Redis keys, fed at ``rate`` events/s: a warm-up
    of ``WARMUP_S``, then ``seconds`` measured: publish to scored (the worker's
    ``wardwatch_event_to_scored_seconds``, its bucket counts before and after) and
    publish to alert (each transition's ``published_ms - source_ts_ms`` on ``alerts``)."""
    from wardwatch.topics import ensure_topics

    topics = settings.topics.model_copy(
        update={"vitals": "bench-latency-vitals", "alerts": "bench-latency-alerts"}
    )
    lat_settings = settings.model_copy(update={"topics": topics, "redis_prefix": "bench-lat"})
    ensure_topics(lat_settings)
    warm_n, n = int(rate * WARMUP_S), int(rate * seconds)
    events = simulated_events(warm_n + n, seed=SEED + 1)
    for ev in events:  # patients of their own
        ev["patient_id"] = f"lat-{ev['patient_id']}"
    procs, urls, logs = _spawn_workers(
        lat_settings,
        workdir,
        1,
        "latency",
        WARDWATCH_TOPICS__VITALS=topics.vitals,
        WARDWATCH_TOPICS__ALERTS=topics.alerts,
        WARDWATCH_REDIS_PREFIX="bench-lat",
    )
    scored_key = f"wardwatch_events_scored_total{{topic={topics.vitals}}}"
    name = "wardwatch_event_to_scored_seconds"
    try:
        deadline = time.monotonic() + timeout_s
        while True:  # up and serving /metrics
            _check_alive(procs, logs, deadline)
            try:
                _summed_metrics(urls)
                break
            except OSError:
                time.sleep(0.25)
        _paced(lat_settings, events[:warm_n], topics.vitals, rate)
        while _summed_metrics(urls).get(scored_key, 0.0) < warm_n * 0.99:
            _check_alive(procs, logs, deadline)
            time.sleep(0.2)
        before = _histogram(urls, name)
        since_ms = int(time.time() * 1000)
        sent_s = _paced(lat_settings, events[warm_n:], topics.vitals, rate)
        inf, caught_up = float("inf"), 0
        while True:  # every event handled, and its latency observed (after its publish)
            _check_alive(procs, logs, deadline)
            last = _summed_metrics(urls)
            done = sum(last.get(k, 0.0) for k in (scored_key, *NOT_SCORED))
            after = _histogram(urls, name)
            caught_up += done >= warm_n + n
            if after.get(inf, 0.0) - before.get(inf, 0.0) >= n or caught_up > 5:
                break
            time.sleep(0.2)
        memory = _proc_memory(procs[0].pid)
    finally:
        stop_process_group(procs[0], 20)
    window = {le: after[le] - before.get(le, 0.0) for le in after}
    alerts = _alert_latencies(lat_settings, topics.alerts, since_ms)
    return {
        "offered_events_per_s": rate,
        "achieved_offered_events_per_s": round(n / max(sent_s, 1e-9), 1),
        "seconds": seconds,
        "warmup_s": WARMUP_S,
        "events": n,
        "scored_in_window": int(window.get(float("inf"), 0.0)),
        "publish_to_scored_ms": {
            f"p{q}": _ms(bucket_quantile(window, q / 100)) for q in (50, 95, 99)
        },
        "publish_to_scored_how": "the worker's histogram, linear within its buckets "
        "(5, 10, 20, 30, 40, 50, 75, 100, 150, 250 ms ...)",
        "alerts": len(alerts),
        "publish_to_alert_ms": {
            f"p{q}": _ms(exact_quantile(alerts, q / 100)) for q in (50, 95, 99)
        },
        "worker_vmrss_mib": memory.get("vmrss_mib"),
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
def run(
    quick: bool = False,
    events: int | None = None,
    rate: float = LATENCY_RATE,
    latency_s: float | None = None,
) -> dict[str, Any]:
    """The figures; the settings (batch size, fetch wait, partitions) come from the
    environment (``WARDWATCH_*``) like a worker's, the stack is always embedded."""
    n = events or (QUICK_EVENTS if quick else DEFAULT_EVENTS)
    lat_s = latency_s or (QUICK_LATENCY_S if quick else LATENCY_S)
    timeout_s = 120.0 + n / 200 + lat_s * 3  # a generous floor of 200 events/s
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
            # Faust's per-message path as the worker had it: an agent's take_events, with
            # Faust's per-message sensors
            agent = _bare(
                settings, n, workdir, timeout_s, "agent", WARDWATCH_FAUST_MESSAGE_SENSORS="true"
            )
            bare = _bare(settings, n, workdir, timeout_s, "intake")
            worker = _worker(settings, n, workdir, timeout_s)
            redis_usage = _redis_usage(settings, patients)
            two = _worker(settings, n, workdir, timeout_s, 2, WARDWATCH_REDIS_PREFIX="bench2")
            latency = _latency(settings, workdir, rate, lat_s, timeout_s)

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
        "bare_faust_agent": {k: v for k, v in agent.items() if k != "faust_conf"}
        | {"path": "agent take_events, Faust's message sensors"},
        "bare_faust": bare | {"path": "agents.app.batch_intake (the worker's)"},
        "worker": worker,
        "two_workers": two,
        "latency": latency,
        "ratios": {
            "bare_over_raw": ratio(bare, raw),
            "bare_agent_over_raw": ratio(agent, raw),
            "bare_over_bare_agent": ratio(bare, agent),
            "worker_over_bare": ratio(worker, bare),
            "worker_over_raw": ratio(worker, raw),
            "two_workers_over_one": ratio(two, worker),
        },
        "redis": redis_usage,
        "settings": {
            "partitions": settings.partitions,
            "batch_size": settings.batch_size,
            "batch_within_s": settings.batch_within_s,
            "faust_fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
            "kafka_max_partition_fetch_bytes": settings.kafka_max_partition_fetch_bytes,
            "kafka_fetch_max_bytes": settings.kafka_fetch_max_bytes,
            "kafka_max_poll_records": settings.kafka_max_poll_records,
            "faust_message_sensors": settings.faust_message_sensors,
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
    p.add_argument("--bare-child", nargs=3, metavar=("RESULT", "N", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=LATENCY_RATE, help="offered events/s")
    p.add_argument("--latency-s", type=float, default=None, help="seconds at that rate")
    args = p.parse_args(argv)
    if args.bare_child:
        result, n, mode = args.bare_child
        return bare_child(Path(result), int(n), mode)
    doc = run(quick=args.quick, events=args.events, rate=args.rate, latency_s=args.latency_s)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
