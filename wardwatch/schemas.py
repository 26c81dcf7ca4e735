"""Event schemas: the public contract on every topic.

Units are in the field names. Vitals values are validated for type here; physiological
plausibility is checked by :mod:`wardwatch.ingest`, which turns every failure into a
machine-readable :class:`RejectReason` for the dead-letter topic.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)


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


class ImagingReason(StrEnum):
    """Why an imaging study went to the dead-letter topic (stable, machine-readable), beside
    the general :class:`RejectReason` codes (malformed JSON, schema, missing patient id or
    timestamp, future timestamp) that its decoder shares with vitals."""

    # the event
    MISSING_FIELD = "missing_field"  # a required field other than patient_id, acquired_at
    BAD_UID = "bad_uid"  # a Study/Series Instance UID that is not a DICOM UID
    UNSUPPORTED_MODALITY = "unsupported_modality"  # not CT
    UNSUPPORTED_BODY_PART = "unsupported_body_part"  # not the chest
    PIXELS_INLINE = "pixels_inline"  # pixel data in the message (a field, a data: URI, size)
    BAD_URI = "bad_uri"  # not an absolute path, file://, http:// or https://
    # the study: loading and pre-processing (models.imaging)
    STUDY_UNREADABLE = "study_unreadable"  # not DICOM, corrupt, or pixel data undecodable
    STUDY_NOT_CT = "study_not_ct"  # an instance whose Modality is not CT
    STUDY_TRUNCATED = "study_truncated"  # less pixel data than Rows x Columns x bits
    SERIES_NOT_FOUND = "series_not_found"  # no instance of the announced series
    SERIES_INCONSISTENT = "series_inconsistent"  # mixed geometry, duplicates, mixed series
    SERIES_GAP = "series_gap"  # a missing slice (positions further apart than the spacing)


class DeadLetter(BaseModel):
    """What the dead-letter topic carries for each rejected input."""

    reason: RejectReason | FailureReason | ImagingReason
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


DICOM_UID_MAX_LEN = 64
"""A DICOM UID is at most 64 characters (PS3.5 9.1)."""

_DICOM_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def _dicom_uid(value: Any) -> Any:
    """A DICOM UID (PS3.5 9.1): numeric components (no leading zero unless the component
    is ``0``) joined by dots, at most 64 characters."""
    if isinstance(value, str):
        if len(value) > DICOM_UID_MAX_LEN:
            raise ValueError(f"a DICOM UID has at most 64 characters, not {len(value)}")
        if not _DICOM_UID.fullmatch(value):
            raise ValueError("a DICOM UID is digits and dots, without leading zeros")
    return value


DicomUid = Annotated[str, AfterValidator(_dicom_uid)]

IMAGING_MODALITIES: frozenset[str] = frozenset({"CT"})
"""The modalities an imaging study may have to be scored (DICOM Modality, upper case)."""

IMAGING_BODY_PARTS: frozenset[str] = frozenset({"CHEST", "LUNG", "THORAX"})
"""The body parts (DICOM BodyPartExamined, upper case) an imaging study may have."""

IMAGING_URI_SCHEMES: frozenset[str] = frozenset({"file", "http", "https"})
"""Where pixel data may be: a local file or directory (``file://`` or an absolute path), or a
DICOMweb / WADO-RS URL."""


def _code_string(value: Any) -> Any:
    """A DICOM code string, compared upper case and without padding."""
    return value.strip().upper() if isinstance(value, str) else value


def _modality(value: str) -> str:
    if value not in IMAGING_MODALITIES:
        raise ValueError(f"modality {value[:16]!r} is not scored (only CT)")
    return value


def _body_part(value: str) -> str:
    if value not in IMAGING_BODY_PARTS:
        raise ValueError(f"body part {value[:16]!r} is not the chest")
    return value


def _pixel_uri(value: Any) -> Any:
    """An absolute path, a ``file://`` URI, or an ``http(s)://`` URL with a host."""
    if not isinstance(value, str):
        return value
    if value.startswith("/"):
        return value
    scheme, sep, rest = value.partition(":")
    scheme = scheme.lower()
    if not sep or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError("not an absolute path or a URI with a scheme")
    if scheme not in IMAGING_URI_SCHEMES:
        raise ValueError(f"URI scheme {scheme[:16]!r} not supported (file, http, https)")
    if not rest.startswith("//"):
        raise ValueError(f"a {scheme} URI starts with {scheme}://")
    if scheme == "file":
        if not rest[2:].lstrip("/") or not rest[2:].startswith(("/", "localhost/")):
            raise ValueError("a file URI names an absolute local path (file:///...)")
    elif not rest[2:].split("/", 1)[0]:
        raise ValueError(f"a {scheme} URL has a host")
    return value


class ImagingStudyEvent(BaseModel):
    """A new imaging study announced by PACS on ``imaging-studies``, keyed by patient id.

    The pixel data never travel in the message: ``uri`` points at them (a directory or file
    of DICOM instances, or a DICOMweb / WADO-RS URL). Only chest CT is scored; the decoder
    (:func:`wardwatch.ingest.decode_imaging_study`) dead-letters anything else with an
    :class:`ImagingReason`."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    patient_id: str = Field(min_length=1, max_length=128)
    study_instance_uid: DicomUid
    series_instance_uid: DicomUid
    modality: Annotated[str, BeforeValidator(_code_string), AfterValidator(_modality)]
    body_part: Annotated[str, BeforeValidator(_code_string), AfterValidator(_body_part)]
    acquired_at: AwareDatetime
    uri: Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_pixel_uri)]

    def acquired_at_ms(self) -> int:
        return int(self.acquired_at.timestamp() * 1000)


class ImagingModelRef(BaseModel):
    """The registry model and version a finding was scored with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str


class ImagingFinding(BaseModel):
    """A scored study on ``imaging-findings``, keyed by patient id: the lung-nodule
    runtime's finding (``models.imaging.finding.build_finding``) with the study it belongs
    to, so that the worker owning the patient's partition can apply it to the patient's
    state. Heatmap paths are files on the scoring worker's ``imaging_output_dir`` (named
    by a digest of the series UID, never by an identifier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: str = Field(min_length=1, max_length=128)
    study_instance_uid: DicomUid
    series_instance_uid: DicomUid
    acquired_at: AwareDatetime
    scored_at: AwareDatetime
    probability: float = Field(ge=0.0, le=1.0)
    suspicious: bool
    threshold: float = Field(ge=0.0, le=1.0)
    location_patient_mm: tuple[float, float, float] | None
    slice_index: int | None
    estimated_size_mm: float = Field(ge=0.0)
    cam_peak: float = Field(ge=0.0, le=1.0)
    volume_index: tuple[float, float, float] | None
    model: ImagingModelRef
    heatmap_png: str | None = None
    heatmap_json: str | None = None
    heatmap_dcm: str | None = None
