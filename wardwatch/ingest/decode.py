"""Ingest decoder: one raw message value (bytes) -> validated vitals events or a rejection.

Pure: no Kafka, no I/O, no clock (the caller passes ``now``). :func:`decode_vitals` never
raises on any input bytes; every failure becomes a :class:`Rejection` with a stable
:class:`~wardwatch.schemas.RejectReason` and a human-readable detail that never contains the
patient id (the original bytes travel separately on the dead-letter topic).

Accepted inputs (see ``docs/ingest.md``):

* a JSON object with the :class:`~wardwatch.schemas.VitalsEvent` fields (strict types);
* a FHIR R4 ``Observation``;
* a FHIR R4 ``Bundle`` (collection, batch, transaction, message) of Observations.

FHIR is read by a fast path that checks the shape of every element it uses. Full validation
of the whole resource with ``fhir.resources`` (R4B models) is available with
``fhir_validation="full"``; it is several times slower (see ``benchmarks/ingest.py``).

This module tells the formats apart; :mod:`wardwatch.ingest.json_events` and
:mod:`wardwatch.ingest.fhir` decode them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from wardwatch.ingest.fhir import _decode_fhir
from wardwatch.ingest.json_events import _decode_json_event, _decode_plain_event, parse_json_object
from wardwatch.ingest.result import W_TIMESTAMP_AHEAD, Decoded, Rejection, _Reject, _scrub
from wardwatch.ingest.validate import _check_now
from wardwatch.schemas import RejectReason


def decode_vitals(
    raw: bytes,
    *,
    now: datetime,
    max_future_skew_s: float = 300.0,
    fhir_validation: Literal["fast", "full"] = "fast",
) -> Decoded | Rejection:
    """Decode one raw message value into plausible vitals events, or say why not.

    ``fhir_validation="full"`` additionally validates FHIR resources against the
    ``fhir.resources`` R4B models (every element, not only the ones used) before mapping.
    Never raises on any ``raw``; raises :class:`IngestUsageError` for a naive ``now``.
    """
    _check_now(now, max_future_skew_s)
    try:
        return _not_ahead(_decode(raw, now, max_future_skew_s, fhir_validation == "full"), now)
    except _Reject as r:  # pragma: no cover - _decode converts its own
        return Rejection(r.reason, _scrub(r.detail, ()))
    except Exception as exc:  # safety net: a decoder bug must not stop the consumer
        return Rejection(RejectReason.SCHEMA, f"unexpected decoder error ({type(exc).__name__})")


def _not_ahead(result: Decoded | Rejection, now: datetime) -> Decoded | Rejection:
    """An event stamped after ``now`` but within the allowed skew (a device clock running
    ahead) is taken at ``now``, with the warning ``timestamp_ahead``: a patient's time
    never runs ahead of the clock, so the next readings of the patient are not taken for
    old ones."""
    if not isinstance(result, Decoded) or all(e.ts <= now for e in result.events):
        return result
    result.events = [e if e.ts <= now else e.model_copy(update={"ts": now}) for e in result.events]
    if W_TIMESTAMP_AHEAD not in result.warnings:
        result.warnings.append(W_TIMESTAMP_AHEAD)
    return result


def _decode(raw: object, now: datetime, skew: float, full: bool) -> Decoded | Rejection:
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    if not isinstance(raw, bytes | bytearray):
        return Rejection(RejectReason.MALFORMED_JSON, "message value is null or not bytes")
    fast = _decode_plain_event(raw, now, skew)
    if fast is not None:
        return fast
    obj = parse_json_object(raw)
    if isinstance(obj, tuple):
        return Rejection(*obj)
    if "resourceType" in obj:
        return _decode_fhir(obj, now, skew, full)
    return _decode_json_event(raw, obj, now, skew)
