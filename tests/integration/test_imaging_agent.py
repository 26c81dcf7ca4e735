"""Imaging studies through the real broker and a worker with a lung-nodule model: a chest
CT scored to a finding on ``imaging-findings``, a bad event and a non-CT series on
``dead-letter`` with their reasons, and the vitals published at the same time all scored."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from cli.demo_workers import WorkerProcess, metric_sum
from tests.imaging_models import contract_meta, fixed_blob_model, register
from tests.imaging_series import Phantom, write_series
from tests.integration.helpers import consume, hours_ago, publish, stable, start_worker
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics, partition_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def study(pid: str, ph: Phantom, uri: Path, **over: str) -> bytes:
    event = {
        "patient_id": pid,
        "study_instance_uid": ph.study_uid,
        "series_instance_uid": ph.series_uid,
        "modality": "CT",
        "body_part": "CHEST",
        "acquired_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "uri": uri.as_uri(),
        **over,
    }
    return json.dumps(event).encode()


def keyed(settings: Settings, topic: str, timeout_s: float = 10) -> list[tuple[str, int, dict]]:
    """(key, partition, value) of every message on ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap(), enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            polled = consumer.poll(timeout_ms=300)
            if not polled and out:
                break
            for tp, records in polled.items():
                out += [(r.key.decode(), tp.partition, json.loads(r.value)) for r in records]
    finally:
        consumer.close()
    return out


def committed(settings: Settings, topic: str) -> int:
    """The offsets the worker's consumer group has committed on ``topic``, summed (read
    without joining the group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap(),
        group_id=settings.app_id,
        enable_auto_commit=False,
    )
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close()


def _until(worker: WorkerProcess, name: str, n: float, timeout_s: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout_s
    m = worker.metrics()
    while metric_sum(m, name) < n and time.monotonic() < deadline:
        time.sleep(0.3)
        m = worker.metrics()
    return m


def test_studies_scored_beside_vitals(settings: Settings, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(ROOT / "model-registry" / "deterioration", registry / "deterioration")
    register(registry, fixed_blob_model(), contract_meta())  # promoted: imaging on by default
    out_dir = tmp_path / "heatmaps"
    s = settings.model_copy(update={"model_registry": registry, "imaging_output_dir": out_dir})
    ensure_topics(s)
    ct = Phantom(n_slices=30, rows=80, cols=80, slice_mm=2.5)
    write_series(ct, tmp_path / "ct", shuffle_seed=3)
    mr = Phantom(n_slices=4)
    write_series(mr, tmp_path / "mr", modality="MR")
    studies = [
        ("ct-patient-1", study("ct-patient-1", ct, tmp_path / "ct")),
        ("ct-patient-2", study("ct-patient-2", ct, tmp_path / "ct", modality="MR")),
        ("ct-patient-3", study("ct-patient-3", mr, tmp_path / "mr")),  # announced CT, is MR
    ]
    well = [f"ward-{i}" for i in range(4)]
    start = hours_ago(3)
    vitals = [(pid, v) for pid in well for v in stable(pid, start)]
    worker = start_worker(s, tmp_path)
    try:
        publish(s, s.topics.imaging_studies, studies)
        publish(s, s.topics.vitals, vitals)
        letters = consume(s, s.topics.dead_letter, until=lambda m: len(m) >= 2, timeout_s=60)
        findings = consume(s, s.topics.imaging_findings, until=lambda m: len(m) >= 1)
        m = _until(worker, "wardwatch_events_scored_total", len(vitals), timeout_s=30)
        m = _until(worker, "wardwatch_imaging_studies_scored_total", 1, timeout_s=10)
        on_topic = keyed(s, s.topics.imaging_findings)
        deadline = time.monotonic() + 15  # Faust commits acknowledged offsets every second
        while committed(s, s.topics.imaging_studies) < len(studies):
            assert time.monotonic() < deadline, "imaging-studies offsets not committed"
            time.sleep(0.5)
    finally:
        worker.stop()
    log = worker.log_path.read_text()

    assert len(findings) == 1
    ((key, partition, finding),) = on_topic
    assert key == "ct-patient-1" and partition == partition_for(key, s.partitions)
    assert finding["patient_id"] == "ct-patient-1"
    assert finding["study_instance_uid"] == ct.study_uid
    assert finding["series_instance_uid"] == ct.series_uid
    assert finding["model"] == {"name": "lung-nodule", "version": "v1"}
    assert 0 <= finding["probability"] <= 1 and finding["slice_index"] is not None
    assert datetime.fromisoformat(finding["scored_at"]) >= datetime.fromisoformat(
        finding["acquired_at"]
    )
    for kind in ("png", "json", "dcm"):
        path = Path(finding[f"heatmap_{kind}"])
        assert path.parent == out_dir and path.is_file()
        assert "ct-patient" not in path.name

    assert sorted(d["reason"] for d in letters) == ["study_not_ct", "unsupported_modality"]
    for d in letters:
        assert d["source_topic"] == s.topics.imaging_studies
        assert d["source_offset"] is not None and d["original_b64"]
        assert "ct-patient" not in d["detail"]

    assert metric_sum(m, "wardwatch_events_scored_total") == len(vitals)  # none stalled
    assert metric_sum(m, "wardwatch_imaging_studies_consumed_total") == 3
    assert metric_sum(m, "wardwatch_imaging_studies_scored_total") == 1
    dead = "wardwatch_imaging_studies_dead_lettered_total"
    assert metric_sum(m, f'{dead}{{reason="study_not_ct"}}') == 1
    assert metric_sum(m, f'{dead}{{reason="unsupported_modality"}}') == 1
    assert metric_sum(m, 'wardwatch_imaging_scoring_seconds_count{stage="infer"}') == 1
    assert "imaging on: lung-nodule v1" in log
    assert "ct-patient" not in log
