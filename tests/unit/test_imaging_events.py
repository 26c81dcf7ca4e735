"""The ``imaging-studies`` event and its decoder: what is accepted, and the reason for
every rejection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.imaging import errors
from wardwatch.errors import WardwatchError
from wardwatch.ingest import (
    MAX_IMAGING_EVENT_BYTES,
    ImagingRejection,
    IngestUsageError,
    decode_imaging_study,
)
from wardwatch.schemas import DeadLetter, ImagingReason, ImagingStudyEvent, RejectReason
from wardwatch.settings import TopicNames

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PID = "patient-417"

GOOD: dict[str, Any] = {
    "patient_id": PID,
    "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
    "series_instance_uid": "1.2.826.0.1.3680043.8.498.1.2",
    "modality": "CT",
    "body_part": "CHEST",
    "acquired_at": "2024-06-01T11:40:00Z",
    "uri": "file:///pacs/incoming/study-1/series-2",
}


def _raw(**changes: Any) -> bytes:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


def _rejected(raw: bytes, reason: RejectReason | ImagingReason) -> str:
    out = decode_imaging_study(raw, now=NOW)
    assert isinstance(out, ImagingRejection), out
    assert out.reason is reason, out
    assert PID not in out.detail
    return out.detail


def test_a_chest_ct_announcement_is_accepted() -> None:
    event = decode_imaging_study(_raw(), now=NOW)
    assert isinstance(event, ImagingStudyEvent)
    assert event.patient_id == PID and event.modality == "CT" and event.body_part == "CHEST"
    assert event.acquired_at == datetime(2024, 6, 1, 11, 40, tzinfo=UTC)
    assert event.acquired_at_ms() == int(event.acquired_at.timestamp() * 1000)


@pytest.mark.parametrize(
    "uri",
    [
        "/pacs/incoming/study-1",
        "file:///pacs/incoming/study-1/slice-001.dcm",
        "file://localhost/pacs/study",
        "https://pacs.example.org/dicom-web/studies/1.2.3/series/1.2.3.4",
        "http://pacs:8042/wado-rs/studies/1.2.3",
    ],
)
def test_accepted_uris(uri: str) -> None:
    assert isinstance(decode_imaging_study(_raw(uri=uri), now=NOW), ImagingStudyEvent)


@pytest.mark.parametrize(
    ("modality", "body"), [("ct", "chest"), (" CT ", "Lung"), ("CT", "THORAX")]
)
def test_code_strings_are_compared_upper_case(modality: str, body: str) -> None:
    event = decode_imaging_study(_raw(modality=modality, body_part=body), now=NOW)
    assert isinstance(event, ImagingStudyEvent) and event.modality == "CT"
    assert event.body_part == body.strip().upper()


REJECTIONS: list[tuple[str, bytes, RejectReason | ImagingReason, str]] = [
    ("not-json", b"{patient_id: 1", RejectReason.MALFORMED_JSON, "not valid UTF-8 JSON"),
    ("empty", b"  ", RejectReason.MALFORMED_JSON, "empty message"),
    ("array", b"[1, 2]", RejectReason.NOT_AN_OBJECT, "an array"),
    ("no-patient", _raw(patient_id=...), RejectReason.MISSING_PATIENT_ID, "patient_id"),
    ("no-time", _raw(acquired_at=...), RejectReason.MISSING_TIMESTAMP, "acquired_at"),
    (
        "no-series",
        _raw(series_instance_uid=...),
        ImagingReason.MISSING_FIELD,
        "series_instance_uid",
    ),
    ("no-uri", _raw(uri=...), ImagingReason.MISSING_FIELD, "uri"),
    ("uid-letters", _raw(study_instance_uid="1.2.abc"), ImagingReason.BAD_UID, "digits and dots"),
    ("uid-zero", _raw(series_instance_uid="1.02.3"), ImagingReason.BAD_UID, "leading zeros"),
    ("uid-dots", _raw(series_instance_uid="1..3"), ImagingReason.BAD_UID, "digits and dots"),
    ("uid-long", _raw(study_instance_uid="1." * 32 + "1"), ImagingReason.BAD_UID, "64"),
    ("mr", _raw(modality="MR"), ImagingReason.UNSUPPORTED_MODALITY, "'MR'"),
    ("head", _raw(body_part="HEAD"), ImagingReason.UNSUPPORTED_BODY_PART, "'HEAD'"),
    ("pixels", _raw(pixel_data="AAAA"), ImagingReason.PIXELS_INLINE, "pixel_data"),
    ("big-field", _raw(note="A" * 5000), ImagingReason.PIXELS_INLINE, "note"),
    (
        "data-uri",
        _raw(uri="data:application/dicom;base64,AAAA"),
        ImagingReason.PIXELS_INLINE,
        "data:",
    ),
    ("huge", _raw(uri="/x" * MAX_IMAGING_EVENT_BYTES), ImagingReason.PIXELS_INLINE, "bytes"),
    ("s3", _raw(uri="s3://bucket/study"), ImagingReason.BAD_URI, "'s3'"),
    ("relative", _raw(uri="incoming/study"), ImagingReason.BAD_URI, "absolute path"),
    ("no-host", _raw(uri="https:///studies/1"), ImagingReason.BAD_URI, "host"),
    ("file-remote", _raw(uri="file://pacs/share"), ImagingReason.BAD_URI, "absolute local"),
    ("file-slashes", _raw(uri="file:/pacs/x"), ImagingReason.BAD_URI, "file://"),
    ("type", _raw(modality=5), RejectReason.SCHEMA, "modality"),
    ("unknown-field", _raw(ward="7B"), RejectReason.SCHEMA, "ward"),
    ("naive-time", _raw(acquired_at="2024-06-01T11:40:00"), RejectReason.SCHEMA, "acquired_at"),
    (
        "future",
        _raw(acquired_at=(NOW + timedelta(hours=1)).isoformat()),
        RejectReason.FUTURE_TIMESTAMP,
        "3600 s after now",
    ),
]


@pytest.mark.parametrize(
    ("raw", "reason", "words"), [c[1:] for c in REJECTIONS], ids=[c[0] for c in REJECTIONS]
)
def test_rejection(raw: bytes, reason: RejectReason | ImagingReason, words: str) -> None:
    assert words in _rejected(raw, reason)


def test_every_event_reason_is_exercised() -> None:
    event_reasons = {
        ImagingReason.MISSING_FIELD,
        ImagingReason.BAD_UID,
        ImagingReason.UNSUPPORTED_MODALITY,
        ImagingReason.UNSUPPORTED_BODY_PART,
        ImagingReason.PIXELS_INLINE,
        ImagingReason.BAD_URI,
    }
    assert event_reasons == {r for r in ImagingReason if not r.startswith(("study", "series"))}
    assert {c[2] for c in REJECTIONS} >= event_reasons


def test_the_most_specific_reason_wins_and_the_detail_never_names_the_patient() -> None:
    raw = _raw(modality="MR", uri="s3://x", patient_id="MR")
    out = decode_imaging_study(raw, now=NOW)
    assert isinstance(out, ImagingRejection)
    assert out.reason is ImagingReason.UNSUPPORTED_MODALITY
    assert "'MR'" not in out.detail and "<patient_id>" in out.detail


def test_not_bytes_and_a_naive_now() -> None:
    out = decode_imaging_study(None, now=NOW)  # type: ignore[arg-type]
    assert isinstance(out, ImagingRejection) and out.reason is RejectReason.MALFORMED_JSON
    assert isinstance(decode_imaging_study(memoryview(_raw()), now=NOW), ImagingStudyEvent)  # type: ignore[arg-type]
    with pytest.raises(IngestUsageError):
        decode_imaging_study(_raw(), now=datetime(2024, 6, 1))


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_are_rejected_never_raise(raw: bytes) -> None:
    out = decode_imaging_study(raw, now=NOW)
    assert isinstance(out, ImagingStudyEvent | ImagingRejection)


@given(
    st.dictionaries(
        st.sampled_from([*GOOD, "pixels", "extra"]),
        st.one_of(
            st.none(), st.integers(), st.text(max_size=30), st.sampled_from(list(GOOD.values()))
        ),
    )
)
def test_any_object_decodes_or_is_rejected_with_a_known_reason(obj: dict[str, Any]) -> None:
    out = decode_imaging_study(json.dumps(obj).encode(), now=NOW)
    if isinstance(out, ImagingRejection):
        assert isinstance(out.reason, RejectReason | ImagingReason)
        assert out.reason is not RejectReason.SCHEMA or "unexpected" not in out.detail


@given(
    st.lists(st.integers(0, 10**12), min_size=1, max_size=8).map(
        lambda parts: ".".join(str(p) for p in parts)
    )
)
def test_any_numeric_uid_up_to_64_characters_is_accepted(uid: str) -> None:
    out = decode_imaging_study(_raw(series_instance_uid=uid), now=NOW)
    if len(uid) <= 64:
        assert isinstance(out, ImagingStudyEvent)
    else:
        assert isinstance(out, ImagingRejection) and out.reason is ImagingReason.BAD_UID


def test_a_dead_letter_carries_an_imaging_reason() -> None:
    letter = DeadLetter(
        reason=ImagingReason.SERIES_GAP,
        detail="a missing slice",
        source_topic="imaging-studies",
        original_b64="",
        rejected_at=NOW,
    )
    again = DeadLetter.model_validate_json(letter.model_dump_json())
    assert again.reason is ImagingReason.SERIES_GAP


def test_the_topic_is_named() -> None:
    assert TopicNames().imaging_studies == "imaging-studies"


def test_docs_list_every_imaging_reason_and_error() -> None:
    text = (Path(__file__).parents[2] / "docs" / "imaging.md").read_text(encoding="utf-8")
    assert [r for r in ImagingReason if f"`{r.value}`" not in text] == []
    classes = [c for c in vars(errors).values() if isinstance(c, type)]
    tree = [c for c in classes if issubclass(c, errors.ImagingError)]
    assert len(tree) == 7 and all(issubclass(c, WardwatchError) for c in tree)
    assert [c.__name__ for c in tree if f"`{c.__name__}`" not in text] == []
    assert {c.reason for c in tree if c is not errors.ImagingError} == {
        r for r in ImagingReason if r.startswith(("study", "series"))
    }
