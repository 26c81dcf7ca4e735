"""FHIR R4 Observation builders for the ingest tests (unit and through the broker)."""

from __future__ import annotations

from typing import Any


def vital_signs_category() -> list[dict[str, Any]]:
    system = "http://terminology.hl7.org/CodeSystem/observation-category"
    return [{"coding": [{"system": system, "code": "vital-signs"}]}]


def coding(code: str, system: str = "http://loinc.org") -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def qty(value: Any, ucum: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if ucum is not None:
        q |= {"unit": ucum, "system": "http://unitsofmeasure.org", "code": ucum}
    return q


def observation(
    code: str | None, value: Any, unit: str | None, *, pid: str, ts: str, **extra: Any
) -> dict[str, Any]:
    """A vital-signs Observation of patient ``pid`` at ``ts`` (LOINC ``code``, UCUM
    ``unit``); ``None`` leaves the code as text only or the value out; an ``extra`` field
    set to ``...`` is removed."""
    o: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": vital_signs_category(),
        "code": coding(code) if code is not None else {"text": "?"},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": ts,
    }
    if value is not None:
        o["valueQuantity"] = qty(value, unit)
    o.update(extra)
    return {k: v for k, v in o.items() if v is not ...}
