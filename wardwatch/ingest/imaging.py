"""Imaging-study decoder: one raw ``imaging-studies`` message value -> a validated
:class:`~wardwatch.schemas.ImagingStudyEvent` or a rejection for the dead-letter topic.

Pure like the vitals decoder: no Kafka, no I/O (the URI is checked for its form, never
opened), no clock (the caller passes ``now``). :func:`decode_imaging_study` never raises on
any input bytes; every failure is an :class:`ImagingRejection` with a stable reason (a
general :class:`~wardwatch.schemas.RejectReason` or an imaging
:class:`~wardwatch.schemas.ImagingReason`) and a detail without the patient id.
``docs/imaging.md`` lists the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from wardwatch.ingest.json_events import parse_json_object
from wardwatch.ingest.result import _scrub
from wardwatch.ingest.validate import _check_now
from wardwatch.schemas import ImagingReason, ImagingStudyEvent, RejectReason

MAX_IMAGING_EVENT_BYTES: Final = 64 * 1024
"""An announcement is a few hundred bytes; a larger message carries pixel data or worse."""

_INLINE_NAMES: Final = ("pixel", "dicom", "image", "volume", "7fe00010")
"""An unknown field whose name contains one of these is taken for inline pixel data."""

_INLINE_VALUE_CHARS: Final = 4096

_UID_FIELDS: Final = frozenset({"study_instance_uid", "series_instance_uid"})

# the reason a schema error maps to, by priority (the first one found wins)
_PRIORITY: Final[tuple[RejectReason | ImagingReason, ...]] = (
    ImagingReason.PIXELS_INLINE,
    RejectReason.MISSING_PATIENT_ID,
    RejectReason.MISSING_TIMESTAMP,
    ImagingReason.MISSING_FIELD,
    ImagingReason.BAD_UID,
    ImagingReason.UNSUPPORTED_MODALITY,
    ImagingReason.UNSUPPORTED_BODY_PART,
    ImagingReason.BAD_URI,
    RejectReason.SCHEMA,
)


@dataclass(frozen=True, slots=True)
class ImagingRejection:
    """Why an imaging-study message was not accepted."""

    reason: RejectReason | ImagingReason
    detail: str  # human-readable, never contains the patient id


def decode_imaging_study(
    raw: bytes, *, now: datetime, max_future_skew_s: float = 300.0
) -> ImagingStudyEvent | ImagingRejection:
    """Decode one ``imaging-studies`` message value, or say why not.

    Never raises on any ``raw``; raises :class:`~wardwatch.ingest.IngestUsageError` for a
    naive ``now`` or a bad skew."""
    _check_now(now, max_future_skew_s)
    try:
        return _decode(raw, now, max_future_skew_s)
    except Exception as exc:  # safety net: a decoder bug must not stop the consumer
        return ImagingRejection(
            RejectReason.SCHEMA, f"unexpected decoder error ({type(exc).__name__})"
        )


def _decode(raw: object, now: datetime, skew: float) -> ImagingStudyEvent | ImagingRejection:
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    if not isinstance(raw, bytes | bytearray):
        return ImagingRejection(RejectReason.MALFORMED_JSON, "message value is null or not bytes")
    if len(raw) > MAX_IMAGING_EVENT_BYTES:
        return ImagingRejection(
            ImagingReason.PIXELS_INLINE,
            f"message of {len(raw)} bytes (at most {MAX_IMAGING_EVENT_BYTES}): pixel data "
            "travel by URI, never in the message",
        )
    obj = parse_json_object(raw)
    if isinstance(obj, tuple):
        return ImagingRejection(*obj)
    pid = obj.get("patient_id")
    pids = (pid,) if isinstance(pid, str) else ()
    uri = obj.get("uri")
    if isinstance(uri, str) and uri[:5].lower() == "data:":
        return _rejection(
            ImagingReason.PIXELS_INLINE, "uri: a data: URI carries the pixels in the message", pids
        )
    try:
        event = ImagingStudyEvent.model_validate_json(raw)
    except ValidationError as exc:
        reason, detail = _classify(exc.errors(include_input=False, include_url=False), obj)
        return _rejection(reason, detail, pids)
    if event.acquired_at > now + timedelta(seconds=skew):
        ahead = (event.acquired_at - now).total_seconds()
        return _rejection(
            RejectReason.FUTURE_TIMESTAMP,
            f"acquired_at is {ahead:.0f} s after now (allowed skew {skew:g} s)",
            pids,
        )
    return event


def _classify(
    errors: list[ErrorDetails], obj: dict[str, Any]
) -> tuple[RejectReason | ImagingReason, str]:
    found: dict[RejectReason | ImagingReason, list[str]] = {}
    for err in errors:
        field = str(err["loc"][0]) if err["loc"] else ""
        reason = _reason_of(err["type"], field, obj)
        found.setdefault(reason, []).append(f"{field or '<event>'}: {err['msg']}")
    reason = next(r for r in _PRIORITY if r in found)
    return reason, "; ".join(found[reason])


def _reason_of(kind: str, field: str, obj: dict[str, Any]) -> RejectReason | ImagingReason:
    if kind == "missing":
        if field == "patient_id":
            return RejectReason.MISSING_PATIENT_ID
        if field == "acquired_at":
            return RejectReason.MISSING_TIMESTAMP
        return ImagingReason.MISSING_FIELD
    if kind == "extra_forbidden":
        value = obj.get(field)
        big = isinstance(value, str | list) and len(value) > _INLINE_VALUE_CHARS
        if big or any(name in field.lower() for name in _INLINE_NAMES):
            return ImagingReason.PIXELS_INLINE
        return RejectReason.SCHEMA
    if field == "uri" and kind in ("value_error", "string_too_long", "string_too_short"):
        return ImagingReason.BAD_URI
    if kind != "value_error":
        return RejectReason.SCHEMA  # a wrong type, a too long string
    if field in _UID_FIELDS:
        return ImagingReason.BAD_UID
    if field == "modality":
        return ImagingReason.UNSUPPORTED_MODALITY
    if field == "body_part":
        return ImagingReason.UNSUPPORTED_BODY_PART
    return RejectReason.SCHEMA


def _rejection(
    reason: RejectReason | ImagingReason, detail: str, pids: tuple[str, ...]
) -> ImagingRejection:
    return ImagingRejection(reason, _scrub(detail, pids))
