"""Ingest decoders: one raw message value (bytes) -> validated vitals events, or an imaging
study announcement, or a rejection.

The public API of the decoder; ``docs/ingest.md`` describes the accepted inputs, the
rejection reasons and the warning codes.
"""

from wardwatch.ingest.codes import LOINC_TO_FIELD
from wardwatch.ingest.decode import decode_vitals
from wardwatch.ingest.fhir import FHIR_BUNDLE_TYPES
from wardwatch.ingest.imaging import MAX_IMAGING_EVENT_BYTES, ImagingRejection, decode_imaging_study
from wardwatch.ingest.json_events import json_kind
from wardwatch.ingest.limits import VITAL_LIMITS, VitalLimits, extreme_readings
from wardwatch.ingest.result import (
    W_READING_SET_ASIDE,
    W_VERIFY_READING,
    Checked,
    Decoded,
    IngestUsageError,
    ReadingFlag,
    Rejection,
    scrub_patient_ids,
)
from wardwatch.ingest.validate import (
    OXYGEN_FLOW_RANGE_L_PER_MIN,
    PLAUSIBLE_RANGES,
    STALE_AFTER_S,
    validate_event,
)

__all__ = [
    "FHIR_BUNDLE_TYPES",
    "LOINC_TO_FIELD",
    "MAX_IMAGING_EVENT_BYTES",
    "OXYGEN_FLOW_RANGE_L_PER_MIN",
    "PLAUSIBLE_RANGES",
    "STALE_AFTER_S",
    "VITAL_LIMITS",
    "W_READING_SET_ASIDE",
    "W_VERIFY_READING",
    "Checked",
    "Decoded",
    "ImagingRejection",
    "IngestUsageError",
    "ReadingFlag",
    "Rejection",
    "VitalLimits",
    "decode_imaging_study",
    "decode_vitals",
    "extreme_readings",
    "json_kind",
    "scrub_patient_ids",
    "validate_event",
]
