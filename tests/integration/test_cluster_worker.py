"""A real worker process on a real 3-primary Redis Cluster: scoring, alerting, the
care-team API and the timer read and write the cluster exactly as they do one server."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.demo_workers import metric_sum
from tests.integration.helpers import (
    consume,
    hours_ago,
    outbox_left,
    publish,
    publish_sick_and_well,
    redis_client,
    stable,
    start_worker,
    stored_state,
    wait_for,
)
from wardwatch.settings import Settings
from wardwatch.stack import EmbeddedCluster
from wardwatch.store import redis_key
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _api(url: str, path: str, method: str = "GET") -> dict:
    req = urllib.request.Request(
        url + path,
        data=b"{}" if method == "POST" else None,
        method=method,
        headers={"Authorization": "Bearer tok", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_a_worker_on_a_redis_cluster_alerts_the_deteriorating_patient_only(
    settings: Settings, redis_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={
            "redis_url": redis_cluster.url,
            "redis_cluster": True,
            "api_token": SecretStr("tok"),
        }
    )
    ensure_topics(settings)
    r = redis_client(settings)
    pids = [f"ward-{i}" for i in range(12)]  # spread over the cluster's three nodes
    nodes = {r.get_node_from_key(redis_key(settings.redis_prefix, "p", pid)).name for pid in pids}
    assert len(nodes) == 3
    worker = start_worker(settings, tmp_path)
    start = hours_ago(4)
    try:
        sick, well = publish_sick_and_well(settings, "bed-sick", "bed-well", start)
        others = [(pid, v) for pid in pids for v in stable(pid, start, steps=4)]
        sent = len(sick) + len(well) + publish(settings, settings.topics.vitals, others)
        everyone = ["bed-sick", "bed-well", *pids]
        wait_for(
            lambda: sum(stored_state(settings, pid).n_events for pid in everyone) == sent,
            40,
            "not every event applied",
        )
        alerts = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["priority"] == "high" for a in m),
            timeout_s=20,
        )
        # the page reads the open alert from the cluster; an acknowledgement goes round
        listed = _api(worker.url, "/api/alerts")["alerts"]
        assert [a["patient_id"] for a in listed] == ["bed-sick"]
        _api(worker.url, f"/api/alerts/{listed[0]['alert_id']}/ack", "POST")
        acked = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition"] == "ACKNOWLEDGED" for a in m),
            timeout_s=20,
        )
        wait_for(lambda: outbox_left(settings) == [], 10, "transitions left in the outbox")
        audit = _api(worker.url, "/api/audit")["transitions"]

        def ticked() -> bool:  # the timer read the cluster's indexes
            m = worker.metrics()
            return (m.get("wardwatch_patients_monitored"), m.get("wardwatch_open_alerts")) == (
                len(everyone),
                1,
            )

        wait_for(ticked, 25, "no timer tick with the cluster's counts")
        metrics = worker.metrics()
        assert worker.proc is not None and worker.proc.poll() is None, "worker died"
    finally:
        worker.stop()
        r.close()
    assert {a["patient_id"] for a in alerts} == {"bed-sick"}
    assert alerts[0]["transition"] == "OPEN" and any(a["news2_total"] >= 7 for a in alerts)
    assert len({a["transition_id"] for a in acked}) == len(acked), "duplicate transitions"
    assert audit[0]["transition"] == "ACKNOWLEDGED"
    scored = metric_sum(metrics, "wardwatch_events_scored_total")
    dead = metric_sum(metrics, "wardwatch_dead_letter_total")
    assert (scored, dead) == (sent, 0)
    published = metric_sum(metrics, "wardwatch_alert_transitions_total")
    assert published == len(acked)  # each committed transition published once
    assert metric_sum(metrics, "wardwatch_processing_retries_total") == 0
