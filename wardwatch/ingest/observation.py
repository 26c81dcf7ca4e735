"""FHIR Observations: each one mapped to the vitals fields it carries (code, status,
value[x], subject, device, effective time), or to the reason it is skipped."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from wardwatch.ingest.codes import (
    _BP_COMPONENTS,
    _BP_PANEL,
    _O2_FLOW,
    _acvpu,
    _field_label,
    _loinc_codes,
    _observation_kind,
)
from wardwatch.ingest.result import (
    W_FHIR_STATUS_SKIPPED,
    W_FHIR_UNSUPPORTED_CODE_IGNORED,
    W_FHIR_VALUE_ABSENT_SKIPPED,
    W_READING_SET_ASIDE,
    ReadingFlag,
    _fail,
    _fmt,
    _short,
)
from wardwatch.ingest.units import _quantity
from wardwatch.ingest.validate import OXYGEN_FLOW_RANGE_L_PER_MIN
from wardwatch.schemas import RejectReason

_OBS_STATUSES: Final[frozenset[str]] = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
_SKIP_STATUSES: Final[frozenset[str]] = frozenset({"cancelled", "entered-in-error", "registered"})

_PATIENT_REF = re.compile(
    r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_DEVICE_REF = re.compile(
    r"(?:^|/)Device/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)
_FHIR_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?", re.ASCII
)
_FHIR_DATE = re.compile(r"\d{4}(?:-\d{2}(?:-\d{2})?)?", re.ASCII)


class _Skip:
    """Why an Observation contributed nothing (counted for warnings / the final detail)."""

    __slots__ = ("kind", "note")

    def __init__(self, kind: str, note: str) -> None:
        self.kind = kind  # one of the W_FHIR_* codes
        self.note = note


@dataclass(slots=True)
class _Mapped:
    patient_id: str
    ts: datetime
    values: dict[str, Any]
    device_id: str | None
    where: str
    aside: list[ReadingFlag] = field(default_factory=list)  # set aside by the mapping


_VALUE_KEYS: Final[tuple[str, ...]] = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)


def _value_key(o: dict[str, Any], where: str) -> str | None:
    present = [k for k in _VALUE_KEYS if k in o]
    if len(present) > 1:
        _fail(RejectReason.FHIR_INVALID, f"{where}: more than one value[x] ({', '.join(present)})")
    return present[0] if present else None


def _map_observation(o: dict[str, Any], where: str) -> _Mapped | _Skip:
    status = o.get("status")
    if status is None:
        _fail(RejectReason.FHIR_INVALID, f"{where}.status: required")
    if not isinstance(status, str) or status not in _OBS_STATUSES:
        _fail(
            RejectReason.FHIR_INVALID,
            f"{where}.status: {_short(status)} is not an Observation status",
        )
    if status in _SKIP_STATUSES:
        return _Skip(W_FHIR_STATUS_SKIPPED, f"{where} has status {status}")

    kind, codes = _observation_kind(o, where)
    if kind is None:
        seen = ", ".join(codes[:3]) or "none"
        return _Skip(
            W_FHIR_UNSUPPORTED_CODE_IGNORED, f"{where} has no vital-sign code (LOINC: {seen})"
        )

    patient_id = _patient_id(o, where)
    ts = _effective(o, where)

    values: dict[str, Any] = {}
    vkey = _value_key(o, where)
    if kind == _BP_PANEL:
        _bp_components(o, where, values)
    elif vkey is not None:
        value = o[vkey]
        if kind == "consciousness":
            values["consciousness"] = _acvpu(vkey, value, where)
        else:
            if vkey != "valueQuantity":
                _fail(
                    RejectReason.FHIR_UNSUPPORTED,
                    f"{where}: {_field_label(kind)} must be a valueQuantity, not {vkey}",
                )
            v = _quantity(value, kind, f"{where}.valueQuantity")
            if kind == _O2_FLOW:
                lo, hi = OXYGEN_FLOW_RANGE_L_PER_MIN
                if not (math.isfinite(v) and lo <= v <= hi):
                    why = (
                        f"{where}: oxygen flow (3151-8) {_fmt(v)} L/min outside the possible "
                        f"range [{_fmt(lo)}, {_fmt(hi)}]"
                    )
                    flag = ReadingFlag(W_READING_SET_ASIDE, "on_oxygen", v, "impossible", why)
                    return _Mapped(patient_id, ts, {}, _device_id(o, where), where, [flag])
                values["on_oxygen"] = v > 0.0
            else:
                values[kind] = v
    if not values:
        return _Skip(W_FHIR_VALUE_ABSENT_SKIPPED, f"{where} ({_field_label(kind)}) has no value")
    return _Mapped(patient_id, ts, values, _device_id(o, where), where)


def _bp_components(o: dict[str, Any], where: str, values: dict[str, Any]) -> None:
    components = o.get("component")
    if components is None:
        return
    if not isinstance(components, list):
        _fail(RejectReason.FHIR_INVALID, f"{where}.component: must be an array")
    for j, comp in enumerate(components):
        cwhere = f"{where}.component[{j}]"
        if not isinstance(comp, dict):
            _fail(RejectReason.FHIR_INVALID, f"{cwhere}: must be an object")
        ccode = comp.get("code")
        if ccode is None:
            _fail(RejectReason.FHIR_INVALID, f"{cwhere}.code: required")
        fields = {
            _BP_COMPONENTS[c] for c in _loinc_codes(ccode, f"{cwhere}.code") if c in _BP_COMPONENTS
        }
        if len(fields) != 1:
            if len(fields) > 1:
                _fail(RejectReason.FHIR_INVALID, f"{cwhere}.code: both systolic and diastolic")
            continue  # e.g. mean arterial pressure: not a VitalsEvent field
        field = fields.pop()
        vkey = _value_key(comp, cwhere)
        if vkey is None:
            continue  # dataAbsentReason
        if vkey != "valueQuantity":
            _fail(RejectReason.FHIR_UNSUPPORTED, f"{cwhere}: {field} must be a valueQuantity")
        v = _quantity(comp[vkey], field, f"{cwhere}.valueQuantity")
        if field in values and values[field] != v:
            _fail(RejectReason.INCONSISTENT, f"{cwhere}: {field} given twice with different values")
        values[field] = v


def _patient_id(o: dict[str, Any], where: str) -> str:
    subject = o.get("subject")
    if subject is None:
        _fail(RejectReason.MISSING_PATIENT_ID, f"{where}.subject: missing")
    if not isinstance(subject, dict):
        _fail(RejectReason.FHIR_INVALID, f"{where}.subject: must be a Reference object")
    ref = subject.get("reference")
    if ref is None:
        _fail(
            RejectReason.MISSING_PATIENT_ID,
            f"{where}.subject.reference: missing (need Patient/<id>)",
        )
    if not isinstance(ref, str):
        _fail(RejectReason.FHIR_INVALID, f"{where}.subject.reference: must be a string")
    m = _PATIENT_REF.search(ref)
    if m is None:
        _fail(
            RejectReason.MISSING_PATIENT_ID,
            f"{where}.subject.reference: not a Patient/<id> reference",
        )
    return m.group(1)


def _device_id(o: dict[str, Any], where: str) -> str | None:
    device = o.get("device")
    if not isinstance(device, dict):
        return None
    ref = device.get("reference")
    if not isinstance(ref, str):
        return None
    m = _DEVICE_REF.search(ref)
    return m.group(1) if m else None


def _effective(o: dict[str, Any], where: str) -> datetime:
    keys = [
        k
        for k in ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "effectiveTiming")
        if k in o
    ]
    if len(keys) > 1:
        _fail(RejectReason.FHIR_INVALID, f"{where}: more than one effective[x] ({', '.join(keys)})")
    if not keys:
        _fail(
            RejectReason.MISSING_TIMESTAMP,
            f"{where}: no effectiveDateTime, effectiveInstant or effectivePeriod.start",
        )
    key: str = keys[0]
    value = o[key]
    if key == "effectiveTiming":
        _fail(RejectReason.FHIR_UNSUPPORTED, f"{where}.effectiveTiming: not supported")
    if key == "effectivePeriod":
        if not isinstance(value, dict):
            _fail(RejectReason.FHIR_INVALID, f"{where}.effectivePeriod: must be an object")
        key = "effectivePeriod.start"
        value = value.get("start")
        if value is None:
            _fail(RejectReason.MISSING_TIMESTAMP, f"{where}.effectivePeriod.start: missing")
    return _fhir_datetime(value, f"{where}.{key}")


def _fhir_datetime(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        _fail(RejectReason.FHIR_INVALID, f"{where}: must be a string")
    m = _FHIR_DATETIME.fullmatch(value)
    if m is None:
        if _FHIR_DATE.fullmatch(value):
            _fail(RejectReason.SCHEMA, f"{where}: date only; a time with UTC offset is required")
        _fail(RejectReason.FHIR_INVALID, f"{where}: not a FHIR dateTime")
    if m.group(1) is None:
        _fail(RejectReason.SCHEMA, f"{where}: timestamp must include a UTC offset (naive)")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        _fail(RejectReason.FHIR_INVALID, f"{where}: not a valid date/time")
    try:
        dt.astimezone(UTC)  # grouping and sorting compare instants: they must exist in UTC
    except OverflowError:
        _fail(RejectReason.IMPOSSIBLE_VALUE, f"{where}: out of the representable range")
    return dt
