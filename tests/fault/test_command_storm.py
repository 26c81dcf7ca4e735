"""Acknowledge/resolve storms from both workers' APIs on the same patients while their
vitals stream. Every command travels through the partition that owns its patient, so no
state version conflict happens; every event is scored, every accepted command is handled
once, no alert is opened twice and every page comes. What the vitals decide (each
patient's events, current values, baseline, model state) is what the no-fault run gives;
the alerts differ by design, since people acknowledged and resolved them."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fault.scenario import Harness, Outcome, Scenario, row, run_scenario
from wardwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "storm-token"  # noqa: S105 - a test value


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
    except OSError:
        return 0, {}


def _rebalances(m: dict[str, float]) -> float:
    return sum(v for k, v in m.items() if k == "wardwatch_faust_total_rebalances")


def test_command_storms_while_vitals_stream_conflict_never_and_lose_nothing(
    settings: Settings, tmp_path: Path, scenario: Scenario, reference: Outcome
) -> None:
    settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    accepted: list[str] = []
    stop = threading.Event()
    settled: dict[str, float] = {}

    def fault(h: Harness) -> None:
        w1, w2 = h.start_worker(), h.start_worker()

        def held(m: dict[str, float]) -> set[str]:  # partitions a worker reports lag for
            return {
                k.split('partition="')[1].split('"')[0]
                for k in m
                if k.startswith("wardwatch_consumer_lag{") and h.settings.topics.vitals in k
            }

        deadline = time.monotonic() + 45
        while True:  # the group settled: disjoint halves of the partitions
            h1, h2 = held(w1.metrics()), held(w2.metrics())
            if h1 and h2 and not h1 & h2 and len(h1 | h2) == h.settings.partitions:
                break
            assert time.monotonic() < deadline, f"partitions never split: {h1} {h2}"
            time.sleep(0.5)
        settled["rebalances"] = _rebalances(w1.metrics()) + _rebalances(w2.metrics())

        def storm() -> None:  # both APIs, every alert on the page, ack then resolve
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

        threading.Thread(target=storm, daemon=True).start()
        for chunk in scenario.chunks(8):  # vitals keep arriving while the commands do
            h.publish(chunk)
            time.sleep(1.0)
        time.sleep(3.0)
        settled["rebalances_after"] = _rebalances(w1.metrics()) + _rebalances(w2.metrics())
        stop.set()
        time.sleep(3.0)  # the last commands are applied

    try:
        out = run_scenario(settings, tmp_path, scenario, fault, timeout_s=240)
    finally:
        stop.set()
    row("ack/resolve storm, 2 workers", f"{len(accepted)} commands", out)
    assert out.lost == 0 and out.dead_lettered == 0
    assert len(accepted) >= 20, "the storm sent too few commands to mean anything"
    handled = sum(v for k, v in out.metrics.items() if k.startswith("wardwatch_commands_total"))
    assert handled == len(accepted)  # every accepted command handled once, by one worker
    assert out.opened_twice() == 0 and out.alert_copies_distinct()
    assert set(out.pages) == out.expected_pages()
    conflicts = out.metrics.get('wardwatch_processing_retries_total{stage="conflict"}', 0.0)
    # in a settled group nobody writes a patient another worker owns; only a rebalance (a
    # worker missing heartbeats on a loaded machine) can cause one, and then it is retried
    if settled["rebalances_after"] == settled["rebalances"]:
        assert conflicts == 0, "a command or a timer wrote a patient another worker owns"
    for pid, want in reference.states.items():
        got = out.states[pid]
        assert {k: v for k, v in got.items() if k != "alert"} == {
            k: v for k, v in want.items() if k != "alert"
        }, pid
