"""Acknowledge/resolve storms from the API while the same patients' vitals stream, with two
workers: every command goes through the partition that owns its patient, so no state
version conflict happens, every event is applied, and no transition is emitted twice."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.integration.helpers import (
    consume,
    deteriorating,
    hours_ago,
    publish,
    start_worker,
    stored_state,
)
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "storm-token"


def _call(url: str, path: str, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(
        url + path,
        data=b"{}" if method == "POST" else None,
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_command_storm_while_vitals_stream_causes_no_conflict_and_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    ensure_topics(settings)
    w1, w2 = start_worker(settings, tmp_path, "w1"), start_worker(settings, tmp_path, "w2")
    patients = [f"bed-{i}" for i in range(8)]
    series = {pid: deteriorating(pid, hours_ago(7), steps=24) for pid in patients}
    stop = threading.Event()
    accepted: list[str] = []

    def storm() -> None:  # both workers' APIs, every open alert, ack and resolve
        while not stop.is_set():
            for url in (w1.url, w2.url):
                _, body = _call(url, "/api/alerts")
                for alert in body.get("alerts", []):
                    for action in ("ack", "resolve"):
                        status, out = _call(
                            url, f"/api/alerts/{alert['alert_id']}/{action}", "POST"
                        )
                        if status == 202:
                            accepted.append(out["command_id"])
            time.sleep(0.05)

    def held(m: dict[str, float]) -> set[str]:  # partitions a worker reports lag for
        return {
            k.split('partition="')[1].split('"')[0]
            for k in m
            if k.startswith("wardwatch_consumer_lag{") and settings.topics.vitals in k
        }

    def rebalances(*ms: dict[str, float]) -> float:
        return sum(v for m in ms for k, v in m.items() if k == "wardwatch_faust_total_rebalances")

    storm_thread = threading.Thread(target=storm, daemon=True)
    try:
        # the group settled: the two workers hold disjoint halves of the partitions
        deadline = time.monotonic() + 45
        while True:
            h1, h2 = held(w1.metrics()), held(w2.metrics())
            if h1 and h2 and not h1 & h2 and len(h1 | h2) == settings.partitions:
                break
            assert time.monotonic() < deadline, f"partitions never split: {h1} {h2}"
            time.sleep(0.5)
        settled = rebalances(w1.metrics(), w2.metrics())
        storm_thread.start()
        sent = 0
        for i in range(0, 24, 4):  # vitals keep arriving while the commands do
            sent += publish(
                settings,
                settings.topics.vitals,
                [(pid, v) for pid in patients for v in series[pid][i : i + 4]],
            )
            time.sleep(1.0)
        deadline = time.monotonic() + 60
        while (
            sum(stored_state(settings, pid).n_events for pid in patients) < sent
            and time.monotonic() < deadline
        ):
            time.sleep(0.3)
        time.sleep(2)
        stop.set()
        storm_thread.join(10)
        time.sleep(2)  # the last commands are applied
        m1, m2 = w1.metrics(), w2.metrics()
    finally:
        stop.set()
        w1.stop()
        w2.stop()
    assert sum(stored_state(settings, pid).n_events for pid in patients) == sent
    assert len(accepted) >= 8, "the storm sent too few commands to mean anything"

    def total(m: dict[str, float], prefix: str) -> float:
        return sum(v for k, v in m.items() if k.startswith(prefix))

    conflicts = sum(
        v
        for m in (m1, m2)
        for k, v in m.items()
        if k.startswith("wardwatch_processing_retries_total{") and 'stage="conflict"' in k
    )
    # in a settled group nobody writes a patient another worker owns; a conflict can only
    # come from a rebalance (a worker missing heartbeats on a loaded machine), and then it
    # was retried: every event is applied either way (above)
    if rebalances(m1, m2) == settled:
        assert conflicts == 0, "a command or a timer wrote a patient another worker owns"
    applied = total(m1, "wardwatch_commands_total") + total(m2, "wardwatch_commands_total")
    assert applied == len(accepted)  # every accepted command handled once, by one worker
    transitions = consume(settings, settings.topics.alerts, until=lambda m: False, timeout_s=5)
    assert transitions
    assert len({t["transition_id"] for t in transitions}) == len(transitions)
