"""``wardwatch demo``: the whole system on the embedded stack, with a live terminal view.

broker + Redis (embedded unless configured) → worker process(es) → simulator → alerts,
printed as they arrive; a summary (JSON on request) when it ends.

The worker processes are in :mod:`cli.demo_workers`, the live alert view and the summary
in :mod:`cli.demo_view`; this module runs the demo from start to clean shutdown.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from cli.demo_care import CareTeam, demo_service_token
from cli.demo_view import AlertWatcher, demo_summary, print_progress, write_summary
from cli.demo_workers import WorkerProcess, totals
from simulator.publish import PublishStats, publish_simulation
from wardwatch.settings import Settings
from wardwatch.stack import embedded_stack, free_port
from wardwatch.topics import ensure_topics
from wardwatch.transport import redact_url

__all__ = ["run_demo"]


COMMAND_ROUND_TRIP_S = 2.0
"""Wall-clock seconds a care-team acknowledgement needs to reach the owning worker."""


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
    retired: list[dict[str, float]] = []  # the last metrics of workers that stopped
    restarts = 0
    # Time runs `speed` times faster, but a care team's acknowledgement still takes its
    # wall-clock round trip (page -> nurse -> API -> command topic -> owning worker: about a
    # second, half an hour simulated at 1800x). So on this clock the re-page interval is
    # at least that round trip (else every page would re-page before its acknowledgement
    # could land) and the data-age horizon leaves room for a few seconds of delay.
    repage_s = max(settings.escalate_after_s, COMMAND_ROUND_TRIP_S * speed)
    horizon = max(settings.page_max_data_age_s, 10.0 * speed)
    settings = settings.model_copy(
        update={
            "time_scale": speed,
            "page_max_data_age_s": horizon,
            "escalate_after_s": repage_s,
        }
    )
    if repage_s > 15 * 60:
        print(
            f"  re-pages of unacknowledged alerts after {repage_s / 60:.0f} simulated min "
            f"(a command's round trip, {COMMAND_ROUND_TRIP_S:g} s, at {speed:g}x)",
            file=out,
            flush=True,
        )
    with embedded_stack(settings) as s:
        print(f"  kafka {s.kafka_url}   redis {redact_url(s.redis_url)}", file=out, flush=True)
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
            write_summary(summary_json, demo_summary(pub_stats, {}, None, errors, 0.0))
            return 1

        care = CareTeam(
            lambda: [wp.url for wp in procs if wp.proc is not None and wp.proc.poll() is None],
            demo_service_token(s),
            speed,
            seed=seed,
        )
        watcher = AlertWatcher(s, out, color=tty, on_page=care.on_page)
        watch_thread = threading.Thread(target=watcher.run, name="alerts", daemon=True)
        watch_thread.start()
        care_thread = threading.Thread(target=care.run, name="care-team", daemon=True)
        care_thread.start()

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
            restarts += supervise(procs, retired, out)
            if time.monotonic() - last >= (1.0 if tty else 5.0):
                last = time.monotonic()
                print_progress(
                    out,
                    tty,
                    pub_stats,
                    _totals(procs, retired),
                    watcher,
                    time.monotonic() - t_start,
                )
        stop.set()
        pub_thread.join(15)
        # let the workers drain what was published
        drain_deadline = time.monotonic() + 15
        scored: dict[str, float] = {}
        while time.monotonic() < drain_deadline:
            restarts += supervise(procs, retired, out)
            scored = _totals(procs, retired)
            handled = scored["consumed"]
            if handled >= pub_stats.vitals:
                break
            time.sleep(0.3)
        time.sleep(1.0)  # last alerts reach the watcher
        scored = _totals(procs, retired)
        watcher.stop.set()
        care.stop.set()
        watch_thread.join(5)
        care_thread.join(5)
        for wp in procs:
            code = wp.stop()
            if code not in (0, None, -signal.SIGTERM):
                errors.append(f"worker exited with code {code}; see {wp.log_path}")
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    elapsed = time.monotonic() - t_start
    if pub_stats.failed:
        errors.append(f"{pub_stats.failed} messages failed to publish")
    summary = demo_summary(pub_stats, scored, watcher, errors, elapsed)
    summary["worker_restarts"] = restarts
    summary["care_team"] = care.summary()
    if tty:
        print(file=out)
    print(json.dumps(summary, indent=2), file=out)
    write_summary(summary_json, summary)
    return 0 if not errors else 1


def supervise(procs: list[WorkerProcess], retired: list[dict[str, float]], out: TextIO) -> int:
    """Restart every worker that stopped (a worker stops on purpose, uncommitted, when it
    cannot go on safely: its restart reprocesses what it had not committed). Returns how
    many were restarted; their last metrics go to ``retired``."""
    restarted = 0
    for i, wp in enumerate(procs):
        if wp.proc is None or wp.proc.poll() is None:
            continue
        retired.append(wp.last_metrics)
        print(
            f"  worker {i} stopped (exit {wp.proc.returncode}, see {wp.log_path}); restarting",
            file=out,
            flush=True,
        )
        procs[i] = WorkerProcess(wp.settings, wp.web_port, wp.log_path)
        procs[i].start()
        restarted += 1
    return restarted


def _totals(procs: list[WorkerProcess], retired: list[dict[str, float]]) -> dict[str, float]:
    return totals([*retired, *(wp.metrics() for wp in procs)])
