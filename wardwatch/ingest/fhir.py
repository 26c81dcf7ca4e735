"""FHIR messages: a single ``Observation`` or a ``Bundle`` of them, decoded into one
:class:`~wardwatch.schemas.VitalsEvent` per patient and instant. Reads the Bundle's
entries, optionally validates the whole resource with ``fhir.resources``
(``fhir_validation="full"``), and says why nothing mapped when no Observation does."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from wardwatch.ingest.observation import _map_observation, _Mapped, _Skip
from wardwatch.ingest.result import (
    W_FHIR_NON_OBSERVATION_IGNORED,
    W_FHIR_VALUE_ABSENT_SKIPPED,
    Decoded,
    Format,
    ReadingFlag,
    Rejection,
    _fail,
    _Reject,
    _rejection,
    _short,
)
from wardwatch.ingest.validate import _classify_schema_errors, _validate
from wardwatch.schemas import RejectReason, VitalsEvent

FHIR_BUNDLE_TYPES: Final[frozenset[str]] = frozenset(
    {"collection", "batch", "transaction", "message"}
)


def _dedupe(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(codes))


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

        events: list[VitalsEvent] = []
        warnings: list[str] = []
        flags: list[ReadingFlag] = []
        # one VitalsEvent per instant, each checked as a JSON event is; an event with
        # nothing scoreable left rejects the whole message (a Bundle is atomic)
        for index, (event, aside) in enumerate(_group(mapped)):
            checked = _validate(event, now, skew, aside)
            events.append(checked.event)
            warnings.extend(checked.warnings)
            flags.extend(replace(f, event=index) for f in checked.flags)
        if others:
            warnings.append(W_FHIR_NON_OBSERVATION_IGNORED)
        warnings.extend(s.kind for s in skips)
        return Decoded(events, _dedupe(warnings), fmt, flags)
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


def _group(mapped: list[_Mapped]) -> list[tuple[VitalsEvent, list[ReadingFlag]]]:
    """One VitalsEvent per (patient, instant), sorted by time (stable), each with the
    readings its Observations' mapping set aside."""
    groups: dict[tuple[str, datetime], list[_Mapped]] = {}
    for m in mapped:
        groups.setdefault((m.patient_id, m.ts), []).append(m)
    events: list[tuple[VitalsEvent, list[ReadingFlag]]] = []
    for (patient_id, _), members in groups.items():
        values: dict[str, Any] = {}
        devices: list[str] = []
        aside = [f for m in members for f in m.aside]
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
            event = VitalsEvent(
                patient_id=patient_id, ts=members[0].ts, device_id=device_id, **values
            )
        except ValidationError as exc:
            reason, detail = _classify_schema_errors(exc)
            _fail(reason, detail)
        events.append((event, aside))
    events.sort(key=lambda pair: pair[0].ts)
    return events
