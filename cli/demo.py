"""``wardwatch demo``: the whole system on the embedded stack, with a live terminal view.

broker + Redis (embedded unless configured) → worker process(es) → simulator → alerts,
printed as they arrive; a summary (JSON on request) when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition

from simulator.publish import PublishStats, publish_simulation
from wardwatch.settings import Settings
from wardwatch.stack import embedded_stack, free_port, stop_process_group
from wardwatch.topics import ensure_topics

COLORS = {"high": "\033[1;31m", "medium": "\033[33m", "low": "\033[36m"}
RESET = "\033[0m"


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that gives a child process the same settings."""
    env = dict(os.environ)
    env["WARDWATCH_KAFKA_URL"] = settings.kafka_url or ""
    env["WARDWATCH_REDIS_URL"] = settings.redis_url or ""
    env["WARDWATCH_REDIS_PREFIX"] = settings.redis_prefix
    env["WARDWATCH_APP_ID"] = settings.app_id
    env["WARDWATCH_DATA_DIR"] = str(settings.data_dir)
    env["WARDWATCH_PARTITIONS"] = str(settings.partitions)
    env["WARDWATCH_LOG_LEVEL"] = settings.log_level
    env["WARDWATCH_TIME_SCALE"] = str(settings.time_scale)
    env["WARDWATCH_API_TOKEN"] = settings.api_token.get_secret_value()
    env["WARDWATCH_MODEL_REGISTRY"] = str(settings.resolved_model_registry().resolve())
    env["WARDWATCH_MODEL_NAME"] = settings.model_name
    for role, name in settings.topics.all().items():
        env[f"WARDWATCH_TOPICS__{role.upper()}"] = name
    return env


@dataclass
class WorkerProcess:
    settings: Settings
    web_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> None:
        env = settings_env(self.settings)
        env["WARDWATCH_WEB_PORT"] = str(self.web_port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "cli.main", "worker"],
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}); see {self.log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.25)
        raise RuntimeError(f"worker not ready after {timeout_s:.0f} s; see {self.log_path}")

    def metrics(self) -> dict[str, float]:
        """The worker's metrics now (or the last ones read, if it does not answer)."""
        try:
            with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
                self.last_metrics = parse_metrics(resp.read().decode())
        except OSError:
            pass
        return self.last_metrics

    def stop(self, timeout_s: float = 20.0) -> int | None:
        return None if self.proc is None else stop_process_group(self.proc, timeout_s)


def parse_metrics(text: str) -> dict[str, float]:
    """Sum Prometheus samples by metric name plus the label set (tiny parser, for the demo)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


def metric_sum(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


@dataclass
class AlertWatcher:
    """Reads the alerts and dead-letter topics from the start, like a care-team client."""

    settings: Settings
    out: TextIO
    color: bool
    transitions: Counter[str] = field(default_factory=Counter)
    by_priority: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    pages: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        t = self.settings.topics
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=200,
            **self.settings.kafka_python_security(),
        )
        parts = [
            TopicPartition(topic, p)
            for topic in (t.alerts, t.dead_letter)
            for p in range(self.settings.partitions)
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        try:
            while not self.stop.is_set():
                batches = consumer.poll(timeout_ms=200)
                for tp, records in batches.items():
                    for rec in records:
                        if tp.topic == t.alerts:
                            self.on_alert(json.loads(rec.value), rec)
                        else:
                            self.dead_letters[json.loads(rec.value).get("reason", "?")] += 1
        finally:
            consumer.close()

    def on_alert(self, msg: dict[str, Any], rec: Any) -> None:
        tid = msg.get("transition_id", "")
        if tid in self.seen:
            self.duplicates += 1
            return
        self.seen.add(tid)
        self.alerts.append(msg)
        transition, priority = msg.get("transition", "?"), msg.get("priority", "?")
        self.transitions[transition] += 1
        self.by_priority[priority] += 1
        if transition in ("OPEN", "ESCALATED") and priority in ("medium", "high"):
            self.pages += 1
        if msg.get("source_ts_ms") and transition in ("OPEN", "ESCALATED"):
            self.latencies_ms.append(max(0.0, time.time() * 1000 - msg["source_ts_ms"]))
        summary = (msg.get("explanation") or {}).get("summary", "")
        color = COLORS.get(priority, "") if self.color else ""
        reset = RESET if self.color else ""
        stamp = time.strftime("%H:%M:%S")
        line = (
            f"{stamp} {color}{transition:<12} {priority.upper():<6}{reset} "
            f"{msg.get('patient_id', '?'):<10} NEWS2 {msg.get('news2_total')!s:>2}  {summary}"
        )
        print("\r\033[K" + line if self.color else line, file=self.out, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


def run_demo(
    settings: Settings,
    *,
    patients: int = 50,
    duration_s: float | None = None,
    speed: float = 1800.0,
    summary_json: Path | None = None,
    workers: int = 1,
    seed: int = 7,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    tty = out.isatty()
    # A simulated stay long enough to show deterioration, and never longer than we run.
    hours = max(6.0, min(48.0, (duration_s or 48 * 3600 / speed) * speed / 3600))
    print(
        f"wardwatch demo: {patients} patients, {hours:.1f} simulated hours at {speed:g}x"
        + (f", {duration_s:g} s" if duration_s else ", Ctrl-C to stop"),
        file=out,
        flush=True,
    )
    stop = threading.Event()
    # Ctrl-C, kill, or the terminal closing: stop and shut every child down cleanly
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in stop_signals}
    errors: list[str] = []
    t_start = time.monotonic()
    pub_stats = PublishStats()
    procs: list[WorkerProcess] = []
    settings = settings.model_copy(update={"time_scale": speed})
    with embedded_stack(settings) as s:
        print(f"  kafka {s.kafka_url}   redis {s.redis_url}", file=out, flush=True)
        ensure_topics(s)
        workdir = Path(s.data_dir)
        try:
            for _ in range(workers):
                wp = WorkerProcess(s, free_port(), workdir / f"worker-{len(procs)}.log")
                wp.start()
                procs.append(wp)
            for wp in procs:
                wp.wait_ready()
            print(
                f"  {workers} worker(s) ready: metrics at {procs[0].url}/metrics",
                file=out,
                flush=True,
            )
        except RuntimeError as exc:
            errors.append(str(exc))
            for wp in procs:
                wp.stop()
            print(f"demo failed: {exc}", file=sys.stderr)
            _write_summary(summary_json, _summary(pub_stats, {}, None, errors, 0.0))
            return 1

        watcher = AlertWatcher(s, out, color=tty)
        watch_thread = threading.Thread(target=watcher.run, name="alerts", daemon=True)
        watch_thread.start()

        def publish() -> None:
            try:
                publish_simulation(
                    s,
                    patients=patients,
                    speed=speed,
                    hours=hours,
                    seed=seed,
                    stop=stop,
                    stats=pub_stats,
                )
            except Exception as exc:  # noqa: BLE001 - reported in the summary
                errors.append(f"simulator: {exc}")

        pub_thread = threading.Thread(target=publish, name="simulator", daemon=True)
        pub_thread.start()

        t_run = time.monotonic()  # the duration counts from when the system is up
        deadline = t_run + duration_s if duration_s else None
        last = 0.0
        while not stop.is_set():
            if deadline and time.monotonic() >= deadline:
                break
            if not pub_thread.is_alive() and not duration_s:
                break
            stop.wait(0.5)
            if time.monotonic() - last >= (1.0 if tty else 5.0):
                last = time.monotonic()
                _progress(out, tty, pub_stats, procs, watcher, time.monotonic() - t_start)
        stop.set()
        pub_thread.join(15)
        # let the workers drain what was published
        drain_deadline = time.monotonic() + 15
        scored: dict[str, float] = {}
        while time.monotonic() < drain_deadline:
            scored = _totals(procs)
            handled = scored["consumed"]
            if handled >= pub_stats.vitals:
                break
            time.sleep(0.3)
        time.sleep(1.0)  # last alerts reach the watcher
        scored = _totals(procs)
        watcher.stop.set()
        watch_thread.join(5)
        for wp in procs:
            code = wp.stop()
            if code not in (0, None, -signal.SIGTERM):
                errors.append(f"worker exited with code {code}; see {wp.log_path}")
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    elapsed = time.monotonic() - t_start
    if pub_stats.failed:
        errors.append(f"{pub_stats.failed} messages failed to publish")
    summary = _summary(pub_stats, scored, watcher, errors, elapsed)
    if tty:
        print(file=out)
    print(json.dumps(summary, indent=2), file=out)
    _write_summary(summary_json, summary)
    return 0 if not errors else 1


def _totals(procs: list[WorkerProcess]) -> dict[str, float]:
    tot = {"consumed": 0.0, "scored": 0.0, "dead": 0.0, "skipped": 0.0, "rules_only": 0.0}
    for wp in procs:
        m = wp.metrics()
        tot["rules_only"] += metric_sum(m, "wardwatch_model_unavailable_total")
        for name in m:
            if name.startswith("wardwatch_model_info{"):
                tot["model"] = name  # type: ignore[assignment]
        tot["consumed"] += metric_sum(m, "wardwatch_events_consumed_total")
        tot["scored"] += metric_sum(m, "wardwatch_events_scored_total")
        tot["dead"] += metric_sum(m, "wardwatch_dead_letter_total")
        tot["skipped"] += metric_sum(m, "wardwatch_events_skipped_total")
    return tot


def _progress(
    out: TextIO,
    tty: bool,
    pub: PublishStats,
    procs: list[WorkerProcess],
    watcher: AlertWatcher,
    elapsed: float,
) -> None:
    tot = _totals(procs)
    pr = watcher.by_priority
    line = (
        f"[{elapsed:5.0f}s] sim {pub.sim_hours:5.1f} h | published {pub.vitals} | "
        f"scored {tot['scored']:.0f} | dead-letter {tot['dead']:.0f} | alerts "
        f"high {pr['high']} medium {pr['medium']} low {pr['low']}"
    )
    if tty:
        print("\r\033[K" + line, end="", file=out, flush=True)
    else:
        print(line, file=out, flush=True)


def _summary(
    pub: PublishStats,
    scored: dict[str, float],
    watcher: AlertWatcher | None,
    errors: list[str],
    elapsed: float,
) -> dict[str, Any]:
    lat = watcher.latencies_ms if watcher else []
    patient_days = pub.patients * pub.sim_hours / 24
    return {
        "elapsed_s": round(elapsed, 1),
        "simulated_hours": round(pub.sim_hours, 2),
        "events_published": pub.vitals,
        "outcomes_published": pub.outcomes,
        "events_consumed": int(scored.get("consumed", 0)),
        "events_scored": int(scored.get("scored", 0)),
        "events_skipped": int(scored.get("skipped", 0)),
        "events_model_scored": int(scored.get("scored", 0) - scored.get("rules_only", 0)),
        "model": _model_label(str(scored.get("model", ""))),
        "dead_lettered": int(scored.get("dead", 0)),
        "dead_letter_reasons": dict(watcher.dead_letters) if watcher else {},
        "alert_transitions": dict(watcher.transitions) if watcher else {},
        "alerts_by_priority": dict(watcher.by_priority) if watcher else {},
        "alerts_opened": watcher.transitions.get("OPEN", 0) if watcher else 0,
        "patient_days": round(patient_days, 2),
        "alerts_opened_per_patient_day": round(
            (watcher.transitions.get("OPEN", 0) if watcher else 0) / patient_days, 3
        )
        if patient_days
        else None,
        "pages_per_patient_day": round((watcher.pages if watcher else 0) / patient_days, 3)
        if patient_days
        else None,
        "duplicate_transitions_seen": watcher.duplicates if watcher else 0,
        "event_to_alert_latency_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99)},
        "errors": errors,
    }


def _model_label(info_sample: str) -> str | None:
    """'deterioration v1' from a wardwatch_model_info sample name."""
    if "version=" not in info_sample:
        return None
    labels = dict(
        part.split("=", 1) for part in info_sample.split("{", 1)[1].rstrip("}").split(",")
    )
    return f"{labels.get('name', '').strip(chr(34))} {labels.get('version', '').strip(chr(34))}"


def _write_summary(path: Path | None, summary: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(summary, indent=2) + "\n")
