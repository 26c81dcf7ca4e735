"""One deterministic scenario for every fault test, and what it must give under any fault.

The input: a simulated cohort (deteriorating, recovering and stable patients, with
isolated SpO2 drops that the alert policy must hold and then refute or confirm), published
in log order to the vitals topic. The expected outcome is what a worker gives with no
fault at all (the session's reference run, ``tests/fault/conftest.py``). Under a fault
(:class:`Harness` drives it: publishes, starts, kills and stops workers), the run must give:

* every input event scored or dead-lettered (the counts add up exactly: nothing lost);
* the same set of alert transitions (by transition id) and each alert id opened once;
* every page received by the paging receiver (counted by Idempotency-Key);
* the same final state for every patient.

Only what the data decide is compared: re-pages of unacknowledged alerts run on the wall
clock by design, so ``escalate_after_s`` is set out of reach, and event time never falls
back to the wall clock (``stream_idle_s``), so no outcome here depends on timing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alerts.webhook import should_page
from cli.demo_workers import WorkerProcess
from simulator.cohort import simulate_cohort
from simulator.profiles import SimConfig
from tests.integration.helpers import consume, publish, redis_client, start_worker
from wardwatch.patient import PatientState
from wardwatch.settings import Settings
from wardwatch.stack import free_port
from wardwatch.store import redis_key
from wardwatch.topics import ensure_topics

PATIENTS = 32
HOURS = 14


@dataclass(frozen=True)
class Scenario:
    """The input, as (key, value) messages in log order, and the patients it is about."""

    messages: list[tuple[str, bytes]]
    patients: list[str]

    def chunks(self, n: int) -> list[list[tuple[str, bytes]]]:
        """The messages in ``n`` consecutive slices of (nearly) equal size."""
        size = -(-len(self.messages) // n)
        return [self.messages[i : i + size] for i in range(0, len(self.messages), size)]


def _with_artifacts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Isolated SpO2 drops in a few patients' readings: one followed by a normal reading
    (refuted: held, then dropped), two in a row (confirmed)."""
    rows: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        if e.get("spo2_pct") is not None:
            rows.setdefault(e["patient_id"], []).append(i)
    out = [dict(e) for e in events]
    for n, pid in enumerate(sorted(rows)[:12]):
        mid = len(rows[pid]) // 2
        for i in rows[pid][mid : mid + 1 + n % 2]:
            out[i]["spo2_pct"] = 84.0
    return out


def build_scenario(now: datetime | None = None) -> Scenario:
    """The cohort, ending two hours before ``now`` (so nothing is in the future)."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(hours=HOURS + 2)).replace(second=0, microsecond=0)
    cohort = simulate_cohort(PATIENTS, seed=23, start=start, config=SimConfig(hours=HOURS))
    events = _with_artifacts(cohort.events)
    messages = [
        (e["patient_id"], json.dumps(e, default=datetime.isoformat).encode()) for e in events
    ]
    return Scenario(messages, sorted({e["patient_id"] for e in events}))


def fault_settings(settings: Settings, receiver: Receiver) -> Settings:
    """The test's settings for a scenario run: pages to ``receiver``; no wall-clock
    re-pages and no idle fallback of event time (see the module's docstring)."""
    return settings.model_copy(
        update={
            "webhook_url": receiver.url,
            "escalate_after_s": 1e9,
            "stream_idle_s": 1e9,
            # the scenario replays hours of history on purpose: every page is due
            "page_max_data_age_s": 1e9,
            "redis_socket_timeout_s": 2.0,
        }
    )


class Receiver:
    """A paging system on loopback that can go away and come back on the same port; it
    records the Idempotency-Key of every delivery it accepts (repeats included)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.keys: list[str] = []
        self.server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/page"

    def up(self) -> None:
        keys, lock = self.keys, self._lock

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    keys.append(self.headers.get("Idempotency-Key", ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def received(self) -> list[str]:
        with self._lock:
            return list(self.keys)


@dataclass
class Outcome:
    """What a run gave, read from the broker, Redis and the receiver after it settled."""

    events_in: int
    scored: int  # events applied, summed over the patients' stored states
    dead_lettered: int  # distinct source messages on dead-letter
    alerts: dict[str, dict[str, Any]]  # transition id -> transition (first copy)
    alerts_raw: int  # copies on the alerts topic (at least once: repeats after crashes)
    pages: Counter[str]  # Idempotency-Key -> deliveries accepted by the receiver
    states: dict[str, dict[str, Any]]
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.events_in - self.scored - self.dead_lettered

    def opened_twice(self) -> int:
        opens = Counter(a["alert_id"] for a in self.alerts.values() if a["transition"] == "OPEN")
        return sum(1 for n in opens.values() if n > 1)

    def alert_copies_distinct(self) -> bool:
        """Every copy on the topic was of a distinct transition (undisturbed runs)."""
        return self.alerts_raw == len(self.alerts)

    def expected_pages(self) -> set[str]:
        return {tid for tid, a in self.alerts.items() if should_page(a)}


def state_view(raw: str | bytes | None) -> dict[str, Any]:
    """A patient's stored state for comparison: the commit counter (which counts batches,
    not what they did) zeroed, event ids counted (they name log positions); the model's floats rounded (the ONNX kernels may order a
    sum differently for another batch size)."""
    st = PatientState.from_json(raw)
    st.version = 0
    view: dict[str, Any] = json.loads(st.to_json())
    if view.get("alert"):
        view["alert"] = alert = json.loads(view["alert"])
        # event ids name where the run's log put the event (its private topic, offsets
        # that interleaved input shifts): how many there are is what is compared
        alert["last_event_ids"] = len(alert.get("last_event_ids") or [])
    view["model"] = _rounded(view.get("model"))
    return view


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


class Harness:
    """One scenario run: the workers (processes), the input, the receiver."""

    def __init__(
        self, settings: Settings, tmp_path: Path, scenario: Scenario, receiver: Receiver
    ) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.scenario = scenario
        self.receiver = receiver
        self.workers: list[WorkerProcess] = []
        self.published = 0
        self.extra_in = 0  # messages published besides the scenario's (hostile input)
        self._n = 0
        self.metrics: dict[str, float] = {}

    def start_worker(self) -> WorkerProcess:
        self._n += 1
        w = start_worker(self.settings, self.tmp_path, f"w{self._n}")
        self.workers.append(w)
        return w

    def kill(self, w: WorkerProcess) -> None:
        """SIGKILL: no shutdown, nothing flushed, nothing committed."""
        assert w.proc is not None
        self._keep_metrics(w)
        os.killpg(w.proc.pid, signal.SIGKILL)
        w.proc.wait(10)
        self.workers.remove(w)

    def stop(self, w: WorkerProcess) -> None:
        """A graceful stop (SIGTERM): the worker leaves its group."""
        self._keep_metrics(w)
        w.stop()
        self.workers.remove(w)

    def _keep_metrics(self, w: WorkerProcess) -> None:
        for k, v in w.metrics().items():
            self.metrics[k] = self.metrics.get(k, 0.0) + v

    def publish(self, items: Sequence[tuple[str, bytes]], extra: bool = False) -> None:
        publish(self.settings, self.settings.topics.vitals, items)
        if extra:
            self.extra_in += len(items)
        else:
            self.published += len(items)

    def publish_all(self) -> None:
        self.publish(self.scenario.messages)


def read_outcome(h: Harness, patients: Sequence[str], events_in: int) -> Outcome:
    s = h.settings
    # reading takes time: about 2,000 letters a second (hostile input brings thousands)
    letters = consume(
        s, s.topics.dead_letter, until=lambda m: False, timeout_s=2 + h.extra_in / 1000
    )
    sources = {(d["source_topic"], d["source_partition"], d["source_offset"]) for d in letters}
    raw_alerts = consume(s, s.topics.alerts, until=lambda m: False, timeout_s=2)
    alerts: dict[str, dict[str, Any]] = {}
    for a in raw_alerts:
        alerts.setdefault(a["transition_id"], a)
    r = redis_client(s)
    states = {pid: state_view(r.hget(redis_key(s.redis_prefix, "p", pid), "s")) for pid in patients}
    r.close()
    return Outcome(
        events_in=events_in,
        scored=sum(v["n_events"] for v in states.values()),
        dead_lettered=len(sources),
        alerts=alerts,
        alerts_raw=len(raw_alerts),
        pages=Counter(h.receiver.received()),
        states=states,
    )


def _all_patients(s: Settings) -> list[str]:
    """Every patient with a stored state (hostile input may score patients of its own)."""
    r = redis_client(s)
    return sorted(m.decode() for m in r.zrange(redis_key(s.redis_prefix, "patients"), 0, -1))


def settle(h: Harness, timeout_s: float = 180.0) -> Outcome:
    """Wait until every event is accounted for and every page due is delivered, and
    nothing has changed for a few seconds; then read the outcome."""
    events_in = h.published + h.extra_in
    deadline = time.monotonic() + timeout_s
    last: tuple[int, int, int, int] | None = None
    quiet_since = time.monotonic()
    while True:
        pids = _all_patients(h.settings) if h.extra_in else h.scenario.patients
        out = read_outcome(h, pids, events_in)
        now = (out.scored, out.dead_lettered, len(out.alerts), len(set(out.pages)))
        if now != last:
            last, quiet_since = now, time.monotonic()
        done = out.lost == 0 and out.expected_pages() <= set(out.pages)
        if done and time.monotonic() - quiet_since > 4:
            return out
        assert time.monotonic() < deadline, (
            f"not settled: {out.scored} scored + {out.dead_lettered} dead-lettered of "
            f"{events_in}; {len(out.expected_pages() - set(out.pages))} pages undelivered"
        )
        time.sleep(1.0)


def run_scenario(
    settings: Settings,
    tmp_path: Path,
    scenario: Scenario,
    fault: Callable[[Harness], None] | None = None,
    *,
    receiver: Receiver | None = None,
    timeout_s: float = 240.0,
) -> Outcome:
    """Run ``scenario`` under ``fault`` (which publishes the input and leaves at least one
    worker running; default: one worker, everything published at once), wait for it to
    settle, stop the workers and return the outcome."""
    if receiver is None:  # one that is up; a fault that takes it down passes its own
        receiver = Receiver()
        receiver.up()
    settings = fault_settings(settings, receiver)
    ensure_topics(settings)
    h = Harness(settings, tmp_path, scenario, receiver)
    started = time.monotonic()
    try:
        if fault is None:
            h.start_worker()
            h.publish_all()
        else:
            fault(h)
        assert h.workers, "the fault left no worker running"
        out = settle(h, timeout_s)
        out.seconds = time.monotonic() - started
    finally:
        for w in list(h.workers):
            h.stop(w)
        receiver.down()
    out.metrics = h.metrics
    return out


def assert_as_expected(out: Outcome, reference: Outcome) -> None:
    """The run gave exactly what the no-fault run gave (see the module's docstring)."""
    assert out.lost == 0, f"{out.lost} events neither scored nor dead-lettered"
    assert out.opened_twice() == 0
    assert set(out.alerts) == set(reference.alerts), (
        f"missing {sorted(set(reference.alerts) - set(out.alerts))[:5]}, "
        f"extra {sorted(set(out.alerts) - set(reference.alerts))[:5]}"
    )
    assert set(out.pages) == reference.expected_pages()
    differ = [pid for pid in reference.states if out.states.get(pid) != reference.states[pid]]
    if differ:
        got, want = out.states.get(differ[0]) or {}, reference.states[differ[0]]
        fields = {k: (got.get(k), want.get(k)) for k in want if got.get(k) != want.get(k)}
        if isinstance(got.get("alert"), dict) and isinstance(want.get("alert"), dict):
            a, b = got["alert"], want["alert"]
            fields["alert"] = {k: (a.get(k), b.get(k)) for k in b if a.get(k) != b.get(k)}
        raise AssertionError(
            f"{len(differ)} patients' final states differ, e.g. {str(fields)[:3000]}"
        )


def row(fault: str, injections: str, out: Outcome) -> dict[str, Any]:
    """One line of the fault table (printed; collected by ``pytest -s``)."""
    line = {
        "fault": fault,
        "injections": injections,
        "events_in": out.events_in,
        "scored": out.scored,
        "dead_lettered": out.dead_lettered,
        "lost": out.lost,
        "alerts": len(out.alerts),
        "alert_copies": out.alerts_raw,
        "opened_twice": out.opened_twice(),
        "pages": len(out.pages),
        "page_deliveries": sum(out.pages.values()),
        "conflicts": out.metrics.get('wardwatch_processing_retries_total{stage="conflict"}', 0),
        "seconds": round(out.seconds, 1),
    }
    print("FAULT-ROW " + json.dumps(line))
    return line
