"""Event schemas: the public contract on every topic.

Units are in the field names. Vitals values are validated for type here; physiological
plausibility is checked by :mod:`wardwatch.ingest`, which turns every failure into a
machine-readable :class:`RejectReason` for the dead-letter topic.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field


def _not_a_boolean(value: Any) -> Any:
    """Reject a boolean where a number is due (``True == 1`` passes ``Literal[1, 2]``)."""
    if isinstance(value, bool):
        raise ValueError("must be 1 or 2, not a boolean")
    return value


SpO2Scale = Annotated[Literal[1, 2], BeforeValidator(_not_a_boolean)]
"""The NEWS2 SpO2 scale: 1, or 2 for hypercapnic respiratory failure (not ``true``)."""

Consciousness = Literal["A", "C", "V", "P", "U"]
"""ACVPU: Alert, new Confusion, Voice, Pain, Unresponsive."""

VITAL_FIELDS: tuple[str, ...] = (
    "heart_rate_bpm",
    "respiratory_rate_per_min",
    "spo2_pct",
    "on_oxygen",
    "systolic_bp_mmhg",
    "diastolic_bp_mmhg",
    "temperature_c",
    "consciousness",
)
"""Every observation an event may carry (all optional, at least one required)."""

NUMERIC_VITALS: tuple[str, ...] = (
    "heart_rate_bpm",
    "respiratory_rate_per_min",
    "spo2_pct",
    "systolic_bp_mmhg",
    "diastolic_bp_mmhg",
    "temperature_c",
)


class VitalsEvent(BaseModel):
    """One observation set from a bedside device or integration engine."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    patient_id: str = Field(min_length=1, max_length=128)
    ts: AwareDatetime
    heart_rate_bpm: float | None = None
    respiratory_rate_per_min: float | None = None
    spo2_pct: float | None = None
    on_oxygen: bool | None = None
    systolic_bp_mmhg: float | None = None
    diastolic_bp_mmhg: float | None = None
    temperature_c: float | None = None
    consciousness: Consciousness | None = None
    device_id: str | None = Field(default=None, max_length=128)
    spo2_scale: SpO2Scale | None = None

    def vitals(self) -> dict[str, Any]:
        """The observations present in this event, by field name."""
        fields = self.__dict__  # pydantic keeps the field values here
        return {k: v for k in VITAL_FIELDS if (v := fields[k]) is not None}

    def ts_ms(self) -> int:
        return int(self.ts.timestamp() * 1000)


class RejectReason(StrEnum):
    """Why an input went to the dead-letter topic (stable, machine-readable)."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    SCHEMA = "schema_violation"  # wrong type, unknown field, bad enum value
    MISSING_PATIENT_ID = "missing_patient_id"
    MISSING_TIMESTAMP = "missing_timestamp"
    NO_VITALS = "no_vitals"
    IMPOSSIBLE_VALUE = "impossible_value"
    FUTURE_TIMESTAMP = "future_timestamp"
    FHIR_INVALID = "fhir_invalid"
    FHIR_UNSUPPORTED = "fhir_unsupported"
    UNIT_UNSUPPORTED = "unit_unsupported"
    INCONSISTENT = "inconsistent_values"


class FailureReason(StrEnum):
    """Why a valid-looking input went to the dead-letter topic all the same."""

    PROCESSING_ERROR = "processing_error"  # failed alone with an unexpected exception
    TOO_LATE = "too_late"  # older than its patient's newest event by more than late_window_s
    PAGE_REJECTED = "page_rejected"  # the paging webhook refused the page (4xx)
    PAGE_EXPIRED = "page_expired"  # the page could not be delivered within page_max_age_s


class DeadLetter(BaseModel):
    """What the dead-letter topic carries for each rejected input."""

    reason: RejectReason | FailureReason
    detail: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    original_b64: str  # the original bytes, base64 (their first MAX_LETTER_ORIGINAL_BYTES)
    rejected_at: datetime
    original_size: int | None = None  # the original's length in bytes
    original_truncated: bool = False  # original_b64 holds only the first bytes of it


MAX_LETTER_ORIGINAL_BYTES = 256 * 1024
"""The most of an original message a dead letter carries: its base64 must leave the letter
under the broker's and producers' 1 MB message limit, which the original alone may reach."""


class PatientContext(BaseModel):
    """Admission / ADT-like context that personalizes scoring."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str = Field(min_length=1, max_length=128)
    ts: AwareDatetime
    age_band: Literal["18-39", "40-64", "65-79", "80+"] | None = None
    spo2_scale: SpO2Scale | None = None
    conditions: list[str] = Field(default_factory=list)
    ward: str | None = None
    discharged: bool = False


class Outcome(BaseModel):
    """A deterioration outcome: the training label source."""

    patient_id: str
    ts: AwareDatetime
    kind: Literal["icu_transfer", "cardiac_arrest", "death", "rapid_response", "none"] = (
        "icu_transfer"
    )
    cause: str | None = None


class AlertCommand(BaseModel):
    """An acknowledge or resolve from the care team, on `alert-commands` keyed by patient,
    so that the worker owning the patient's partition applies it (one writer per patient).
    ``actor`` is who asked, as the web server authenticated them."""

    command_id: str = Field(min_length=8, max_length=64)
    patient_id: str = Field(min_length=1, max_length=128)
    alert_id: str = Field(min_length=1, max_length=128)
    action: Literal["ack", "resolve"]
    actor: str = Field(min_length=1, max_length=64)
    issued_at: AwareDatetime


class ModelPromotion(BaseModel):
    """Published on `control` when the trainer promotes a model version."""

    model_name: str
    version: str
    sha256: str
    promoted_at: AwareDatetime


class ImagingStudy(BaseModel):
    """A new imaging study announced by PACS (URI points at DICOM data)."""

    patient_id: str
    ts: AwareDatetime
    study_instance_uid: str
    modality: str = "CT"
    uri: str
