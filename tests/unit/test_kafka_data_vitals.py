"""The trainer's reading of vitals messages from Kafka sets an impossible reading aside,
as the worker does, and skips a message only when no vital remains."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("torch")

from trainer.kafka_data import _vitals  # noqa: E402

TS = "2024-06-01T11:55:00Z"


def read(**values: Any) -> tuple[Any, dict[str, int], dict[str, int]]:
    skipped = dict.fromkeys(("not_json", "fhir", "schema", "implausible", "duplicate"), 0)
    readings = {"set_aside": 0}
    raw = json.dumps({"patient_id": "p", "ts": TS, **values}).encode()
    return _vitals(raw, set(), skipped, readings), skipped, readings


def test_one_impossible_reading_is_set_aside_and_the_event_kept() -> None:
    ev, skipped, readings = read(heart_rate_bpm=0.0, respiratory_rate_per_min=18.0)
    assert ev is not None and ev["heart_rate_bpm"] is None
    assert ev["respiratory_rate_per_min"] == 18.0
    assert readings == {"set_aside": 1} and sum(skipped.values()) == 0


def test_an_event_with_nothing_possible_is_skipped_as_implausible() -> None:
    ev, skipped, readings = read(heart_rate_bpm=900.0)
    assert ev is None and skipped["implausible"] == 1 and readings == {"set_aside": 0}


def test_an_extreme_reading_is_kept() -> None:
    ev, _, readings = read(systolic_bp_mmhg=36.0)
    assert ev is not None and ev["systolic_bp_mmhg"] == 36.0 and readings == {"set_aside": 0}
