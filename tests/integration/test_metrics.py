"""/metrics of a running worker: every metric present with sane values, no patient ids."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from agents.metrics import Metrics
from tests.integration.helpers import consume, hours_ago, publish_sick_and_well, start_worker
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_every_metric_is_exposed_with_sane_values_and_no_patient_ids(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"api_token": SecretStr("tok")})
    ensure_topics(settings)
    worker = start_worker(settings, tmp_path)
    try:
        sick, well = publish_sick_and_well(
            settings, "MRN-777001", "MRN-777002", hours_ago(3), extra=[("x", b"{oops")]
        )
        alerts = consume(settings, settings.topics.alerts, until=lambda m: len(m) > 0)
        req = urllib.request.Request(
            f"{worker.url}/api/alerts/{alerts[0]['alert_id']}/ack",
            data=b"{}",
            method="POST",
            headers={"Authorization": "Bearer tok", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 202 and json.loads(resp.read())["status"] == "accepted"
        acked = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition"] == "ACKNOWLEDGED" for a in m),
        )
        assert [a["alert_id"] for a in acked if a["transition"] == "ACKNOWLEDGED"] == [
            alerts[0]["alert_id"]
        ]

        def get(path: str) -> dict:
            r = urllib.request.Request(worker.url + path, headers={"Authorization": "Bearer tok"})
            with urllib.request.urlopen(r, timeout=5) as resp:
                return json.loads(resp.read())

        issue = get(f"/api/alerts/{alerts[0]['alert_id']}/fhir")
        assert issue["resourceType"] == "DetectedIssue"
        assert issue["patient"]["reference"] == "Patient/MRN-777001"
        audit = get("/api/audit")["transitions"]
        assert audit[0]["transition"] == "ACKNOWLEDGED" and audit[0]["actor"] == "service:api"
        time.sleep(11)  # one timer tick: lag, patients monitored, open alerts gauges
        families = _scrape(worker.url)
    finally:
        worker.stop()

    expected = {  # an Info family is exposed as a gauge named <name>_info
        m.name + ("_info" if m.type == "info" else "")
        for m in Metrics(CollectorRegistry()).registry.collect()
    }
    missing = expected - set(families)
    assert not missing, f"not exposed: {missing}"

    def value(family: str, suffix: str = "", **labels: str) -> float:
        return sum(
            s.value
            for s in families[family]
            if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items())
        )

    vitals = settings.topics.vitals
    assert value("wardwatch_events_consumed", "_total", topic=vitals) == len(sick) + len(well) + 1
    assert value("wardwatch_events_scored", "_total", topic=vitals) == len(sick) + len(well)
    assert value("wardwatch_dead_letter", "_total", reason="malformed_json") == 1
    assert value("wardwatch_alert_transitions", "_total", transition="OPEN") >= 1
    assert value("wardwatch_alert_transitions", "_total", transition="ACKNOWLEDGED") == 1
    assert value("wardwatch_event_to_alert_seconds", "_count") >= 1
    assert (
        0
        < value("wardwatch_event_to_alert_seconds", "_sum")
        / value("wardwatch_event_to_alert_seconds", "_count")
        < 10
    )
    assert value("wardwatch_time_to_acknowledge_seconds", "_count") == 1
    assert value("wardwatch_commands", "_total", action="ack", outcome="applied") == 1
    assert value("wardwatch_batch_size", "_count") >= 1
    assert value("wardwatch_stage_seconds", "_count", stage="score") >= 1
    assert value("wardwatch_redis_seconds", "_count", op="commit") >= 1
    assert value("wardwatch_inference_seconds", "_count", model="deterioration") >= 1
    assert value("wardwatch_patients_monitored") == 2
    assert value("wardwatch_open_alerts") == 1
    lag = [s for s in families["wardwatch_consumer_lag"] if s.labels.get("topic") == vitals]
    assert len(lag) == settings.partitions  # every assigned partition reported ...
    assert value("wardwatch_consumer_lag") == 0  # ... and caught up
    assert time.time() - value("wardwatch_last_vitals_timestamp_seconds") < 60
    assert value("wardwatch_model_unavailable", "_total") == 0
    info = [s.labels for s in families["wardwatch_model_info"]]
    assert info and info[0]["name"] == "deterioration"
    assert any(name.startswith("wardwatch_faust_") for name in families)  # Faust's sensors

    # privacy: no label anywhere carries a patient identifier, and cardinality is bounded
    labels = [v for samples in families.values() for s in samples for v in s.labels.values()]
    assert not any("MRN-777" in v for v in labels)
    assert len(set(labels)) < 200
