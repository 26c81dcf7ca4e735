"""Fault injection: the Kafka broker restarts, twice, while the scenario streams.

The broker keeps its log in an object store (Tansu on S3, a local moto server), so a
restart on the same port and storage finds its topics, messages and committed offsets
again, as a Kafka cluster's restarted broker does. The worker must ride through both
outages (its Kafka calls are retried) and the run must give what the no-fault run gives.
"""

from __future__ import annotations

import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.demo_workers import WorkerProcess, metric_sum
from tests.fault.conftest import private_settings
from tests.fault.scenario import (
    Harness,
    Outcome,
    Scenario,
    assert_as_expected,
    row,
    run_scenario,
)
from tests.integration.helpers import redis_client
from wardwatch.patient import PatientState
from wardwatch.settings import Settings
from wardwatch.stack import ChildProcess, embedded_broker, free_port
from wardwatch.store import redis_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "tansu"
RESTARTS = 2
DOWN_S = 5.0


@dataclass
class DurableBroker:
    """A private Tansu whose log lives in a local S3 bucket."""

    broker: ChildProcess
    settings: Settings

    def restart(self, down_s: float = DOWN_S) -> None:
        """Stop the broker (SIGTERM), wait, start it again on the same port and storage."""
        self.broker.stop()
        time.sleep(down_s)
        self.broker.start()


def _create_bucket(endpoint: str, bucket: str) -> None:
    req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        assert resp.status == 200, resp.status


def _scored(settings: Settings, patients: list[str]) -> int:
    """Events applied so far, summed over the patients' stored states."""
    r = redis_client(settings)
    try:
        raw = [r.hget(redis_key(settings.redis_prefix, "p", pid), "s") for pid in patients]
    finally:
        r.close()
    return sum(PatientState.from_json(x).n_events for x in raw)


def _wait_scored(settings: Settings, patients: list[str], n: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while _scored(settings, patients) < n:
        assert time.monotonic() < deadline, f"fewer than {n} events scored"
        time.sleep(0.05)


@pytest.fixture
def durable_broker(tmp_path: Path, redis_url: str) -> Iterator[DurableBroker]:
    pytest.importorskip("moto", reason="the S3 server for the broker's storage (dev extra)")
    s3_port = free_port()
    s3 = ChildProcess(
        "s3 (moto)",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        "127.0.0.1",
        s3_port,
        tmp_path / "s3.log",
    )
    s3.start(30)
    endpoint = f"http://127.0.0.1:{s3_port}"
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ACCESS_KEY_ID": "wardwatch",
        "AWS_SECRET_ACCESS_KEY": "wardwatch",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    broker = embedded_broker(tmp_path / "broker", storage_url=f"s3://{BUCKET}/", env=env)
    try:
        _create_bucket(endpoint, BUCKET)
        broker.start()
        settings = private_settings(
            f"kafka://127.0.0.1:{broker.port}", redis_url, tmp_path / "data"
        )
        yield DurableBroker(broker, settings)
    finally:
        broker.stop()
        s3.stop()


def test_broker_restarts_while_streaming_change_nothing(
    durable_broker: DurableBroker, scenario: Scenario, reference: Outcome, tmp_path: Path
) -> None:
    workers: list[WorkerProcess] = []
    at_restart: list[tuple[int, int]] = []  # (scored, published) as the broker stops

    def restart_twice(h: Harness) -> None:
        workers.append(h.start_worker())
        first, *rest = scenario.chunks(RESTARTS + 1)
        h.publish(first)
        last = first
        for chunk in rest:
            # the broker goes away with the worker halfway through what was just published
            _wait_scored(h.settings, scenario.patients, h.published - len(last) // 2)
            at_restart.append((_scored(h.settings, scenario.patients), h.published))
            durable_broker.restart()
            h.publish(chunk)
            last = chunk

    out = run_scenario(durable_broker.settings, tmp_path, scenario, restart_twice)
    row("broker restart", f"{RESTARTS} restarts", out)
    assert_as_expected(out, reference)
    assert out.events_in == len(scenario.messages)
    print(f"BROKER-RESTART (scored, published) as the broker stopped: {at_restart}")
    # the worker rode through both outages: the one started is the one that was stopped
    # at the end (a worker that gave up exits 70), and it scored every event
    (worker,) = workers
    assert worker.proc is not None and worker.proc.returncode == 0, worker.proc
    assert metric_sum(out.metrics, "wardwatch_events_scored_total") >= out.events_in
