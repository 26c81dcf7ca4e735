"""Training data read back from the real broker: counts, skips, the same Dataset."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from simulator import SimConfig, simulate_cohort
from simulator.publish import encode_vitals
from trainer.dataset import from_events
from trainer.kafka_data import dataset_from_kafka, read_topics, read_topics_full
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics, producer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)


def test_read_topics_returns_what_was_published_and_builds_the_same_dataset(
    settings: Settings, tmp_path: Path
) -> None:
    cohort = simulate_cohort(40, seed=3, start=START, config=SimConfig(hours=24.0))
    assert cohort.outcomes, "the seed should give some outcomes"
    ensure_topics(settings)
    assert read_topics(settings, timeout_s=20) == ([], [])  # empty partitions end at once
    prod = producer(settings)
    try:
        for ev in cohort.events:
            prod.send(settings.topics.vitals, key=ev["patient_id"], value=encode_vitals(ev))
        junk = [
            b"not json",
            json.dumps({"resourceType": "Observation", "status": "final"}).encode(),
            json.dumps({"patient_id": "x", "ts": START.isoformat(), "pulse": 80}).encode(),
            json.dumps(
                {"patient_id": "x", "ts": START.isoformat(), "heart_rate_bpm": 900.0}
            ).encode(),
            encode_vitals(cohort.events[0]),  # a redelivered duplicate
        ]
        for raw in junk:
            prod.send(settings.topics.vitals, key="junk", value=raw)
        for o in cohort.outcomes:
            prod.send(
                settings.topics.outcomes, key=o.patient_id, value=o.model_dump_json().encode()
            )
        prod.send(settings.topics.outcomes, key="junk", value=b'{"patient_id": "x"}')
        prod.flush(30)
    finally:
        prod.close(5)

    res = read_topics_full(settings, timeout_s=30)
    assert len(res.events) == len(cohort.events)
    assert len(res.outcomes) == len(cohort.outcomes)
    v = res.stats["vitals"]
    assert v["messages"] == len(cohort.events) + len(junk)
    assert v["skipped"] == {
        "not_json": 1,
        "fhir": 1,
        "schema": 1,
        "implausible": 1,
        "duplicate": 1,
    }
    assert res.stats["outcomes"]["skipped"] == {"invalid": 1}
    assert sum(res.end_offsets[settings.topics.vitals].values()) == v["messages"]
    assert len(res.end_offsets[settings.topics.vitals]) == settings.partitions

    events, outcomes = read_topics(settings, timeout_s=30)
    assert (len(events), len(outcomes)) == (len(cohort.events), len(cohort.outcomes))

    ds = dataset_from_kafka(settings, split_seed=3)
    assert ds.source["kind"] == "kafka"
    assert sum(int(p.y.sum()) for p in ds.patients) > 0
    assert len(ds.patients) == 40
    # same labels, features, NEWS2 and splits as building from the cohort directly
    direct = from_events(cohort.events, cohort.outcomes, split_seed=3)
    assert ds.fingerprint() == direct.fingerprint()

    # re-reading up to the recorded end offsets ignores messages published since
    more = producer(settings)
    try:
        more.send(
            settings.topics.vitals,
            key="late",
            value=encode_vitals({**cohort.events[1], "patient_id": "late"}),
        )
        more.flush(10)
    finally:
        more.close(5)
    again = read_topics_full(settings, timeout_s=30, end_offsets=res.end_offsets)
    assert len(again.events) == len(res.events)


def test_train_from_kafka_registers_a_version_that_evaluate_can_rebuild(
    settings: Settings, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from trainer.workflows import evaluate, train

    cohort = simulate_cohort(40, seed=4, start=START, config=SimConfig(hours=24.0))
    ensure_topics(settings)
    prod = producer(settings)
    try:
        for ev in cohort.events:
            prod.send(settings.topics.vitals, key=ev["patient_id"], value=encode_vitals(ev))
        for o in cohort.outcomes:
            prod.send(
                settings.topics.outcomes, key=o.patient_id, value=o.model_dump_json().encode()
            )
        prod.flush(30)
    finally:
        prod.close(5)

    registry = tmp_path / "registry"
    out = train(
        True,
        registry,
        seed=4,
        source="kafka",
        settings=settings,
        epochs=1,
        hidden=8,
        parity_n=4,
    )
    meta = json.loads((Path(out["path"]) / "metadata.json").read_text())
    src = meta["training_data"]["source"]
    assert src["kind"] == "kafka" and src["topics"]["vitals"] == settings.topics.vitals
    assert meta["parity"]["passed"]

    ev = evaluate(registry, out["version"], settings=settings, external=False)
    assert ev["fingerprint_matches"] is True
    assert "external" not in ev
