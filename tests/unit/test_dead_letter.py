"""The dead letter of a message: the original kept whole, or cut so the letter fits."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from agents.batch import Origin
from agents.worker import dead_letter_value
from wardwatch.schemas import MAX_LETTER_ORIGINAL_BYTES, DeadLetter, RejectReason

AT = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def test_a_small_original_travels_whole() -> None:
    raw = b'{"patient_id": 7}'
    value = dead_letter_value(Origin(raw, "vitals", 1, 42), RejectReason.SCHEMA, "bad", AT)
    letter = DeadLetter.model_validate_json(value)
    assert base64.b64decode(letter.original_b64) == raw
    assert not letter.original_truncated and letter.original_size == len(raw)
    assert letter.detail == "bad" and letter.source_offset == 42


def test_an_original_near_the_broker_limit_is_cut_so_the_letter_fits_and_says_so() -> None:
    raw = bytes(range(256)) * (900 * 4)  # 900 KiB: base64 alone would be 1.2 MB
    value = dead_letter_value(Origin(raw, "vitals", 0, 7), RejectReason.MALFORMED_JSON, "x", AT)
    assert len(value) < 1_000_000 - 1024  # Faust's producer_max_request_size, with headroom
    letter = json.loads(value)
    assert letter["original_truncated"] is True and letter["original_size"] == len(raw)
    assert base64.b64decode(letter["original_b64"]) == raw[:MAX_LETTER_ORIGINAL_BYTES]
    assert f"original of {len(raw)} bytes truncated" in letter["detail"]
