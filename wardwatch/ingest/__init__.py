"""Ingest decoder: one raw message value (bytes) -> validated vitals events or a rejection.

The public API of the decoder; ``docs/ingest.md`` describes the accepted inputs, the
rejection reasons and the warning codes.
"""

from wardwatch.ingest.codes import LOINC_TO_FIELD
from wardwatch.ingest.decode import decode_vitals
from wardwatch.ingest.fhir import FHIR_BUNDLE_TYPES
from wardwatch.ingest.json_events import json_kind
from wardwatch.ingest.result import Decoded, IngestUsageError, Rejection
from wardwatch.ingest.validate import (
    OXYGEN_FLOW_RANGE_L_PER_MIN,
    PLAUSIBLE_RANGES,
    STALE_AFTER_S,
    validate_event,
)

__all__ = [
    "FHIR_BUNDLE_TYPES",
    "LOINC_TO_FIELD",
    "OXYGEN_FLOW_RANGE_L_PER_MIN",
    "PLAUSIBLE_RANGES",
    "STALE_AFTER_S",
    "Decoded",
    "IngestUsageError",
    "Rejection",
    "decode_vitals",
    "json_kind",
    "validate_event",
]
