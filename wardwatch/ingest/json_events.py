"""Plain JSON events: a JSON object with the :class:`~wardwatch.schemas.VitalsEvent`
fields, parsed and validated by the schema. Holds the fast path that decodes a valid event
with one parse, and the JSON type names used in messages."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json

from wardwatch.ingest.result import Decoded, Rejection, _Reject, _rejection
from wardwatch.ingest.validate import _classify_schema_errors, _validate
from wardwatch.schemas import RejectReason, VitalsEvent


def _decode_plain_event(raw: bytes | bytearray, now: datetime, skew: float) -> Decoded | None:
    """Fast path for the common case, a plain JSON event that passes every check: parsed
    and validated once. None for anything else (a rejection, FHIR): the full path then
    decides, with exactly the same reasons and details as always. An event the schema
    accepts is a JSON object without ``resourceType`` (extra fields are forbidden), i.e.
    one the full path would also decode as a JSON event; a NaN or infinite value, which
    the full path rejects as malformed JSON (a ``NaN`` token) or sets aside (``1e400``),
    is left to the full path."""
    try:
        event = VitalsEvent.model_validate_json(raw)
    except ValidationError:
        return None
    try:
        checked = _validate(event, now, skew)
    except _Reject:
        return None
    if checked.flags and any(not math.isfinite(f.value) for f in checked.flags):
        return None
    return Decoded([checked.event], checked.warnings, "json", checked.flags)


def _decode_json_event(
    raw: bytes | bytearray, obj: dict[str, Any], now: datetime, skew: float
) -> Decoded | Rejection:
    pid = obj.get("patient_id")
    pids = (pid,) if isinstance(pid, str) else ()
    try:
        event = VitalsEvent.model_validate_json(raw)
    except ValidationError as exc:
        reason, detail = _classify_schema_errors(exc)
        return _rejection(reason, detail, pids)
    try:
        checked = _validate(event, now, skew)
    except _Reject as r:
        return _rejection(r.reason, r.detail, pids)
    return Decoded([checked.event], checked.warnings, "json", checked.flags)


def parse_json_object(raw: bytes | bytearray) -> dict[str, Any] | tuple[RejectReason, str]:
    """A message's JSON object, or why it is not one (the reason and its detail): empty,
    not UTF-8 JSON (no NaN or infinity), or another JSON value than an object."""
    if not raw.strip():
        return RejectReason.MALFORMED_JSON, "empty message"
    try:
        obj = from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        return RejectReason.MALFORMED_JSON, f"not valid UTF-8 JSON: {exc}"
    if not isinstance(obj, dict):
        return (
            RejectReason.NOT_AN_OBJECT,
            f"top-level JSON value is {json_kind(obj)}, not an object",
        )
    return obj


def json_kind(value: object) -> str:
    """The JSON name of a parsed value's type, for messages ("an array", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
