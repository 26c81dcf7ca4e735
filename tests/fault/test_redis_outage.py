"""Fault injection: Redis goes away under a running worker and comes back.

The worker must not lose the events that arrive meanwhile (Faust acknowledges a batch
once the agent moves on, so the worker retries the batch instead of giving up), must say
it is not ready while Redis is down, and must count the retries."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.demo_workers import metric_sum
from tests.integration.helpers import hours_ago, publish, stable, start_worker, stored_state
from wardwatch.settings import Settings
from wardwatch.stack import embedded_redis
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=3) as resp:
            return bool(json.loads(resp.read())["ready"])
    except urllib.error.HTTPError as exc:
        return exc.code == 200
    except OSError:
        return False


def test_redis_outage_delays_but_loses_no_event(settings: Settings, tmp_path: Path) -> None:
    server = embedded_redis(tmp_path / "redis", persist=True)
    server.start()
    url = f"redis://127.0.0.1:{server.port}/0"
    settings = settings.model_copy(update={"redis_url": url})
    ensure_topics(settings)
    worker = start_worker(settings, tmp_path)

    def applied() -> int:
        return stored_state(settings, "bed-9").n_events

    events = stable("bed-9", hours_ago(6), steps=20)
    try:
        publish(settings, settings.topics.vitals, [("bed-9", v) for v in events[:10]])
        deadline = time.monotonic() + 30
        while applied() < 10:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        server.stop()  # Redis goes away (state is on disk: append-only file)
        publish(settings, settings.topics.vitals, [("bed-9", v) for v in events[10:]])
        deadline = time.monotonic() + 20
        while metric_sum(worker.metrics(), "wardwatch_processing_retries_total") < 1:
            assert time.monotonic() < deadline, "the worker did not notice the outage"
            time.sleep(0.3)
        assert not _ready(worker.url)
        restarted = embedded_redis(tmp_path / "redis", port=server.port, persist=True)
        restarted.start()
        try:
            deadline = time.monotonic() + 60
            while applied() < 20:
                assert time.monotonic() < deadline, f"only {applied()} of 20 events applied"
                time.sleep(0.3)
            assert _ready(worker.url)
            metrics = worker.metrics()
        finally:
            worker.stop()
            restarted.stop()
    finally:
        worker.stop()
        server.stop()
    assert metric_sum(metrics, "wardwatch_events_scored_total") == 20
