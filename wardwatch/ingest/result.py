"""What decoding a message yields: :class:`Decoded` events with warning codes, or a
:class:`Rejection` with a stable reason and a detail scrubbed of the patient id.

Also the internal control flow of the decoders: :func:`_fail` raises :class:`_Reject`,
which the format decoders turn into a :class:`Rejection` with :func:`_rejection`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, NoReturn

from wardwatch.errors import WardwatchError
from wardwatch.schemas import RejectReason, VitalsEvent

Format = Literal["json", "fhir-observation", "fhir-bundle"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was not accepted."""

    reason: RejectReason
    detail: str  # human-readable, never contains the patient id


FlagTier = Literal["impossible", "inconsistent", "extreme"]
"""Why a reading is flagged: ``impossible`` (outside the possible range, non-finite or no
signal) and ``inconsistent`` (systolic <= diastolic) readings are set aside; ``extreme``
ones are scored and flagged ``verify_reading``."""


@dataclass(frozen=True, slots=True)
class ReadingFlag:
    """One reading of a message that was set aside, or scored but is to be verified."""

    code: str  # W_READING_SET_ASIDE or W_VERIFY_READING
    field: str  # the VitalsEvent field ("on_oxygen" for an inhaled oxygen flow)
    value: float  # as received (in the field's unit; L/min for an oxygen flow)
    tier: FlagTier
    detail: str  # e.g. "respiratory_rate_per_min=0 below the possible range [1, 120]"
    event: int = 0  # index of the event in Decoded.events (the one it was part of)

    @property
    def set_aside(self) -> bool:
        """Whether the reading was removed from the observation set that is scored."""
        return self.code == W_READING_SET_ASIDE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (a non-finite value is null; the detail says what it was)."""
        return {
            "code": self.code,
            "field": self.field,
            "value": self.value if math.isfinite(self.value) else None,
            "tier": self.tier,
            "detail": self.detail,
        }


@dataclass(slots=True)
class Decoded:
    """A successfully decoded message: one or more plausible events."""

    events: list[VitalsEvent]  # >= 1
    warnings: list[str]  # machine-readable codes, e.g. "temperature_extreme"
    format: Format
    # the readings set aside or to verify, each with its event's index
    flags: list[ReadingFlag] = field(default_factory=list)

    def flags_of(self, index: int) -> tuple[ReadingFlag, ...]:
        """The flags of ``events[index]``."""
        if not self.flags:
            return ()
        return tuple(f for f in self.flags if f.event == index)


class Checked(NamedTuple):
    """An event that passed validation: ``event`` is the one to score (any reading set
    aside removed from it), with its warning codes and its reading flags."""

    event: VitalsEvent
    warnings: list[str]
    flags: list[ReadingFlag]


class IngestUsageError(WardwatchError, ValueError):
    """The caller passed bad arguments (not bad input bytes): e.g. a naive ``now``."""


# Warning codes (stable; counted by the metrics agent).
W_TEMPERATURE_EXTREME: Final = "temperature_extreme"
W_PULSE_PRESSURE_NARROW: Final = "pulse_pressure_narrow"
W_SPO2_PROBE_ARTIFACT: Final = "spo2_possible_probe_artifact"
W_TIMESTAMP_STALE: Final = "timestamp_stale"
W_TIMESTAMP_AHEAD: Final = "timestamp_ahead"  # within the skew: taken as received now
W_FHIR_NON_OBSERVATION_IGNORED: Final = "fhir_non_observation_ignored"
W_FHIR_UNSUPPORTED_CODE_IGNORED: Final = "fhir_unsupported_code_ignored"
W_FHIR_STATUS_SKIPPED: Final = "fhir_status_skipped"
W_FHIR_VALUE_ABSENT_SKIPPED: Final = "fhir_value_absent_skipped"
W_READING_SET_ASIDE: Final = "reading_set_aside"  # impossible or inconsistent: not scored
W_VERIFY_READING: Final = "verify_reading"  # clinically extreme but possible: scored


_MAX_DETAIL: Final = 400


class _Reject(Exception):
    """Internal control flow: abort decoding with a rejection."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _fail(reason: RejectReason, detail: str) -> NoReturn:
    raise _Reject(reason, detail)


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scrub(detail: str, patient_ids: Iterable[str]) -> str:
    """``detail`` without the patient ids in it (as whole tokens: an id "0" must not
    turn "400" into "4<patient_id><patient_id>"), shortened to ``_MAX_DETAIL``."""
    for pid in patient_ids:
        if pid and pid in detail:
            detail = re.sub(rf"(?<!\w){re.escape(pid)}(?!\w)", "<patient_id>", detail)
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 3] + "..."
    return detail


def scrub_patient_ids(detail: str, patient_ids: Iterable[str]) -> str:
    """``detail`` fit for a dead letter or a log line: the patient ids in it replaced,
    shortened as the decoders' details are."""
    return _scrub(detail, patient_ids)


def _rejection(reason: RejectReason, detail: str, patient_ids: Iterable[str] = ()) -> Rejection:
    return Rejection(reason, _scrub(detail, patient_ids))


def _fmt(v: float) -> str:
    return f"{v:g}"
