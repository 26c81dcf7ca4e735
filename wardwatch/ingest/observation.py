"""FHIR Observations: each one mapped to the vitals fields it carries (code, status,
value[x], subject, device, effective time), or the reason it is skipped; Observations and
Bundles decoded into events."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

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
    W_FHIR_NON_OBSERVATION_IGNORED,
    W_FHIR_STATUS_SKIPPED,
    W_FHIR_UNSUPPORTED_CODE_IGNORED,
    W_FHIR_VALUE_ABSENT_SKIPPED,
    Decoded,
    Format,
    Rejection,
    _fail,
    _fmt,
    _Reject,
    _rejection,
    _short,
)
from wardwatch.ingest.units import _quantity
from wardwatch.ingest.validate import (
    OXYGEN_FLOW_RANGE_L_PER_MIN,
    _classify_schema_errors,
    _validate,
)
from wardwatch.schemas import RejectReason, VitalsEvent

# --------------------------------------------------------------------------------------
# FHIR vocabulary
# --------------------------------------------------------------------------------------

FHIR_BUNDLE_TYPES: Final[frozenset[str]] = frozenset(
    {"collection", "batch", "transaction", "message"}
)

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


# --------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------


def _dedupe(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(codes))


# --------------------------------------------------------------------------------------
# FHIR
# --------------------------------------------------------------------------------------


@functools.cache
def _fhir_models() -> dict[str, Any]:
    # Imported lazily: fhir.resources is heavy and only needed for full validation.
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.observation import Observation

    return {"Observation": Observation, "Bundle": Bundle}


def _full_validate(obj: dict[str, Any], resource_type: str) -> None:
    model = _fhir_models()[resource_type]
    try:
        model.model_validate(obj)
    except ValidationError as exc:
        errs = exc.errors(include_url=False, include_context=False, include_input=False)
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {' '.join(e['msg'].split())}"
            for e in errs[:3]
        ]
        more = f" (+{len(errs) - 3} more)" if len(errs) > 3 else ""
        _fail(RejectReason.FHIR_INVALID, f"{resource_type}: " + "; ".join(parts) + more)
    except Exception as exc:  # fhir.resources raises a few non-pydantic errors
        _fail(RejectReason.FHIR_INVALID, f"{resource_type}: {type(exc).__name__}")


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


def _decode_fhir(
    obj: dict[str, Any], now: datetime, skew: float, full: bool
) -> Decoded | Rejection:
    pids: list[str] = []
    try:
        rt = obj["resourceType"]
        if not isinstance(rt, str):
            _fail(RejectReason.FHIR_INVALID, "resourceType: must be a string")
        fmt: Format
        if rt == "Observation":
            fmt = "fhir-observation"
            if full:
                _full_validate(obj, rt)
            observations: list[tuple[str, dict[str, Any]]] = [("Observation", obj)]
            others = 0
        elif rt == "Bundle":
            fmt = "fhir-bundle"
            if full:
                _full_validate(obj, rt)
            observations, others = _bundle_observations(obj)
        else:
            _fail(
                RejectReason.FHIR_UNSUPPORTED,
                f"resourceType {_short(rt)} not supported (expected Observation or Bundle)",
            )

        mapped: list[_Mapped] = []
        skips: list[_Skip] = []
        for where, o in observations:
            res = _map_observation(o, where)
            if isinstance(res, _Skip):
                skips.append(res)
            else:
                mapped.append(res)
                pids.append(res.patient_id)

        if not mapped:
            _fail(*_nothing_mapped(fmt, len(observations), others, skips))

        events = _group(mapped)
        warnings: list[str] = []
        for event in events:
            warnings.extend(_validate(event, now, skew))
        if others:
            warnings.append(W_FHIR_NON_OBSERVATION_IGNORED)
        warnings.extend(s.kind for s in skips)
        return Decoded(events, _dedupe(warnings), fmt)
    except _Reject as r:
        return _rejection(r.reason, r.detail, pids)


def _nothing_mapped(
    fmt: Format, n_obs: int, others: int, skips: list[_Skip]
) -> tuple[RejectReason, str]:
    if n_obs == 0:
        return (
            RejectReason.FHIR_UNSUPPORTED,
            f"Bundle has no Observation entries ({others} other entries ignored)",
        )
    absent = [s.note for s in skips if s.kind == W_FHIR_VALUE_ABSENT_SKIPPED]
    if absent:
        return RejectReason.NO_VITALS, "no vital sign value present: " + "; ".join(absent[:3])
    notes = "; ".join(s.note for s in skips[:3])
    more = f" (+{len(skips) - 3} more)" if len(skips) > 3 else ""
    what = (
        "the Observation does not map"
        if fmt == "fhir-observation"
        else "no Observation in the Bundle maps"
    )
    return RejectReason.FHIR_UNSUPPORTED, f"{what} to a vital sign: {notes}{more}"


def _bundle_observations(bundle: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    btype = bundle.get("type")
    if btype is None:
        _fail(RejectReason.FHIR_INVALID, "Bundle.type: required")
    if not isinstance(btype, str):
        _fail(RejectReason.FHIR_INVALID, "Bundle.type: must be a string")
    if btype not in FHIR_BUNDLE_TYPES:
        _fail(
            RejectReason.FHIR_UNSUPPORTED,
            f"Bundle.type {_short(btype)} not supported (accepted: {', '.join(sorted(FHIR_BUNDLE_TYPES))})",
        )
    entries = bundle.get("entry")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        _fail(RejectReason.FHIR_INVALID, "Bundle.entry: must be an array")
    observations: list[tuple[str, dict[str, Any]]] = []
    others = 0
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            _fail(RejectReason.FHIR_INVALID, f"Bundle.entry[{i}]: must be an object")
        resource = entry.get("resource")
        if resource is None:
            others += 1
            continue
        if not isinstance(resource, dict):
            _fail(RejectReason.FHIR_INVALID, f"Bundle.entry[{i}].resource: must be an object")
        rt = resource.get("resourceType")
        if not isinstance(rt, str):
            _fail(
                RejectReason.FHIR_INVALID,
                f"Bundle.entry[{i}].resource.resourceType: required string",
            )
        if rt == "Observation":
            observations.append((f"Bundle.entry[{i}].resource", resource))
        else:
            others += 1
    return observations, others


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
                    _fail(
                        RejectReason.IMPOSSIBLE_VALUE,
                        f"{where}: oxygen flow (3151-8) {_fmt(v)} L/min outside [{_fmt(lo)}, {_fmt(hi)}]",
                    )
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


def _group(mapped: list[_Mapped]) -> list[VitalsEvent]:
    """One VitalsEvent per (patient, instant), sorted by time (stable)."""
    groups: dict[tuple[str, datetime], list[_Mapped]] = {}
    for m in mapped:
        groups.setdefault((m.patient_id, m.ts), []).append(m)
    events: list[VitalsEvent] = []
    for (patient_id, _), members in groups.items():
        values: dict[str, Any] = {}
        devices: list[str] = []
        for m in members:
            for field, v in m.values.items():
                if field in values and values[field] != v:
                    _fail(
                        RejectReason.INCONSISTENT,
                        f"{m.where}: {field} given twice for the same patient and time "
                        "with different values",
                    )
                values[field] = v
            if m.device_id is not None:
                devices.append(m.device_id)
        device_id = devices[0] if devices and len(set(devices)) == 1 else None
        try:
            events.append(
                VitalsEvent(patient_id=patient_id, ts=members[0].ts, device_id=device_id, **values)
            )
        except ValidationError as exc:
            reason, detail = _classify_schema_errors(exc)
            _fail(reason, detail)
    events.sort(key=lambda e: e.ts)
    return events
