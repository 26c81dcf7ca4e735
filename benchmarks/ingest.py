"""Ingest decoder throughput: messages per second on one core.

``run()`` returns JSON-able figures for three message shapes (a plain JSON event, a single
FHIR Observation, a 7-Observation FHIR Bundle) decoded by :func:`wardwatch.ingest.decode_vitals`
on its fast path and with full ``fhir.resources`` validation, plus ``fhir.resources`` parsing
alone (no mapping) for reference. No printing, no timing asserts.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from wardwatch.ingest import Decoded, decode_vitals

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
VARIANTS = 64  # distinct messages per shape, cycled, so nothing is cached by identity


def _ts(i: int) -> str:
    return (NOW - timedelta(minutes=5 + i)).isoformat().replace("+00:00", "Z")


def _coding(code: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://loinc.org", "code": code}]}


def _quantity(value: float, ucum: str) -> dict[str, Any]:
    return {"value": value, "unit": ucum, "system": "http://unitsofmeasure.org", "code": ucum}


def _observation(i: int, code: str, **value: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs-{i}-{code}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": _coding(code),
        "subject": {"reference": f"Patient/bench-{i % 16}"},
        "effectiveDateTime": _ts(i),
        **value,
    }


def json_event(i: int) -> bytes:
    return json.dumps(
        {
            "patient_id": f"bench-{i % 16}",
            "ts": _ts(i),
            "heart_rate_bpm": 80 + i % 20,
            "respiratory_rate_per_min": 16,
            "spo2_pct": 96,
            "on_oxygen": False,
            "systolic_bp_mmhg": 120,
            "diastolic_bp_mmhg": 80,
            "temperature_c": 37.1,
            "consciousness": "A",
        }
    ).encode()


def fhir_observation(i: int) -> bytes:
    return json.dumps(
        _observation(i, "8867-4", valueQuantity=_quantity(80 + i % 20, "/min"))
    ).encode()


def fhir_bundle(i: int) -> bytes:
    bp = _observation(
        i,
        "85354-9",
        component=[
            {"code": _coding("8480-6"), "valueQuantity": _quantity(120, "mm[Hg]")},
            {"code": _coding("8462-4"), "valueQuantity": _quantity(80, "mm[Hg]")},
        ],
    )
    observations = [
        _observation(i, "8867-4", valueQuantity=_quantity(80 + i % 20, "/min")),
        _observation(i, "9279-1", valueQuantity=_quantity(16, "/min")),
        _observation(i, "59408-5", valueQuantity=_quantity(96, "%")),
        bp,
        _observation(i, "8310-5", valueQuantity=_quantity(37.1, "Cel")),
        _observation(i, "3151-8", valueQuantity=_quantity(0, "L/min")),
        _observation(i, "67775-7", valueCodeableConcept={"text": "Alert"}),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{i:06d}{k:06d}", "resource": o}
            for k, o in enumerate(observations)
        ],
    }
    return json.dumps(bundle).encode()


def _rate(fn: Callable[[bytes], object], messages: list[bytes], seconds: float) -> float:
    """Messages/s: repeat passes over ``messages`` for at least ``seconds``; best of 3."""
    for m in messages:  # warm up (and lazy imports)
        fn(m)
    best = 0.0
    for _ in range(3):
        n = 0
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds / 3:
            for m in messages:
                fn(m)
            n += len(messages)
            elapsed = time.perf_counter() - start
        best = max(best, n / elapsed)
    return round(best, 1)


def _fast(raw: bytes) -> object:
    return decode_vitals(raw, now=NOW)


def _full(raw: bytes) -> object:
    return decode_vitals(raw, now=NOW, fhir_validation="full")


def run(quick: bool = False) -> dict[str, Any]:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.observation import Observation

    seconds = 0.3 if quick else 2.0
    shapes: dict[str, tuple[Callable[[int], bytes], int, Any]] = {
        "json_event": (json_event, 1, None),
        "fhir_observation": (fhir_observation, 1, Observation),
        "fhir_bundle_7": (fhir_bundle, 1, Bundle),
    }
    results: dict[str, Any] = {}
    for name, (make, expected_events, model) in shapes.items():
        messages = [make(i) for i in range(VARIANTS)]
        for m in messages:  # the benchmark is meaningless if decoding fails
            for decode in (_fast, _full):
                out = decode(m)
                if not (isinstance(out, Decoded) and len(out.events) == expected_events):
                    raise RuntimeError(f"{name}: unexpected decode result {out!r}")
        figures: dict[str, Any] = {
            "bytes": sum(map(len, messages)) // len(messages),
            "fast_msgs_per_s": _rate(_fast, messages, seconds),
        }
        if model is not None:
            figures["fhir_resources_msgs_per_s"] = _rate(_full, messages, seconds)
            figures["fhir_resources_parse_only_msgs_per_s"] = _rate(
                model.model_validate_json, messages, seconds
            )
            figures["speedup_fast_vs_fhir_resources"] = round(
                figures["fast_msgs_per_s"] / figures["fhir_resources_msgs_per_s"], 1
            )
        results[name] = figures
    return {
        "benchmark": "ingest",
        "unit": "messages/s, one core, best of 3",
        "quick": quick,
        "python": platform.python_version(),
        "fhir_model": "fhir.resources.R4B",
        "results": results,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
