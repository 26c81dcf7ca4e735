"""The binary form of the patient state and the history rows: lossless, versioned, smaller
than the JSON, and the JSON of earlier releases still read."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from models.features import FeatureState
from wardwatch.patient import PatientState, apply_event, history_entry, history_row
from wardwatch.schemas import VitalsEvent
from wardwatch.store_codec import MAGIC, is_binary, pack_state, unpack_row

T0 = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


def _event(i: int, **values: Any) -> VitalsEvent:
    base: dict[str, Any] = {
        "heart_rate_bpm": 70.0 + i % 7,
        "respiratory_rate_per_min": 16.0,
        "spo2_pct": 96.0,
        "on_oxygen": i % 3 == 0,
        "systolic_bp_mmhg": 121.0,
        "temperature_c": 36.7 + (i % 4) / 10,
        "consciousness": "A",
    }
    base.update(values)
    base = {k: v for k, v in base.items() if v is not None}
    return VitalsEvent(patient_id="p-1", ts=T0 + timedelta(minutes=15 * i), **base)


def _state(n: int = 90) -> PatientState:
    st = PatientState()
    for i in range(n):
        apply_event(st, _event(i))
    apply_event(st, _event(n - 3, heart_rate_bpm=99.0))  # a late one, remembered
    st.alert = '{"episode":2,"status":"open"}'
    st.spo2_scale_device = 2
    return st


def _json_view(st: PatientState) -> dict[str, Any]:
    return dict(json.loads(st.to_json()))


def test_the_state_round_trips_exactly_and_is_much_smaller_than_its_json() -> None:
    st = _state()
    raw = st.encode()
    assert raw[0] == MAGIC and is_binary(raw)
    back = PatientState.from_json(raw)
    assert _json_view(back) == _json_view(st)
    assert back.recent == st.recent and len(st.recent) == 64
    assert len(raw) * 2 < len(st.to_json())


def test_a_json_state_of_an_earlier_release_is_still_read() -> None:
    st = _state()
    old = st.to_json()
    assert not is_binary(old) and not is_binary(old.encode())
    assert _json_view(PatientState.from_json(old)) == _json_view(st)
    assert _json_view(PatientState.from_json(old.encode())) == _json_view(st)
    # and written in the binary form from then on, with the same content
    again = PatientState.from_json(PatientState.from_json(old).encode())
    assert _json_view(again) == _json_view(st)


def test_the_model_state_keeps_its_features_and_hidden_state_exactly() -> None:
    fst = FeatureState(
        prev_ts_ms=1_000,
        last_value={"heart_rate_bpm": 71.5, "spo2_pct": 96.0},
        last_ts_ms={"heart_rate_bpm": 1_000, "spo2_pct": 900},
        last_z={"heart_rate_bpm": -0.12345},
        baseline={"heart_rate_bpm": [12, 70.1234, 3.5]},
        on_oxygen=False,
        consciousness="A",
        spo2_scale=2,
    )
    h = np.random.default_rng(1).normal(size=32).astype(np.float32)
    for features, hidden in (
        (fst, h.tobytes()),  # live, as the model leaves it
        (fst.to_json(), base64.b64encode(h.tobytes()).decode()),  # as JSON stores it
    ):
        st = PatientState(
            model={"version": "v9", "sha256": "ab" * 32, "features": features, "h": hidden}
        )
        model = PatientState.from_json(st.encode()).model
        assert model is not None
        assert model["version"] == "v9" and model["sha256"] == "ab" * 32
        assert FeatureState(**model["features"]) == fst
        assert model["h"] == h.tobytes()


def test_values_the_layout_cannot_hold_are_kept_in_a_general_form() -> None:
    st = _state(10)
    st.recent.append([st.watermark_ms - 5, "NOT-A-HEX-DIGEST"])
    st.wm_digests.append("ABCDEF0123456789")  # upper case: not what .hex() gives back
    st.model = {"version": "v1", "other": [1, 2]}
    back = PatientState.from_json(st.encode())
    assert _json_view(back) == _json_view(st)


def test_an_unknown_format_is_refused() -> None:
    raw = bytearray(_state(3).encode())
    raw[1] = 99
    with pytest.raises(ValueError, match="unknown format"):
        PatientState.from_json(bytes(raw))


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("risk", [None, 0.0, 0.12345678, 1.0, 3e-9])
@pytest.mark.parametrize("news2", [None, 0, 7])
def test_a_history_row_reads_back_as_its_json_row(
    late: bool, risk: float | None, news2: int | None
) -> None:
    for ev in (
        _event(1),
        _event(2, temperature_c=36.123456789, on_oxygen=None),
        _event(3, heart_rate_bpm=None, consciousness="V", spo2_pct=88.5),
        _event(4, systolic_bp_mmhg=1e-7, respiratory_rate_per_min=12.25),
    ):
        row = history_row(ev, news2, risk, late)
        assert isinstance(row, bytes) and is_binary(row)
        expected = json.loads(history_entry(ev, news2, risk, late))
        got = unpack_row(row)
        assert got == expected and list(got) == list(expected)  # values and key order
        assert len(row) * 3 < len(history_entry(ev, news2, risk, late))


def test_random_vitals_round_trip_exactly() -> None:
    rng = random.Random(7)
    for i in range(500):
        values = {
            "heart_rate_bpm": round(rng.uniform(20, 220), rng.choice([0, 1, 2, 6])),
            "temperature_c": rng.uniform(30, 43),
            "spo2_pct": float(rng.randint(50, 100)),
        }
        ev = _event(i, **values)
        risk = rng.random()
        assert unpack_row(history_row(ev, 3, risk)) == json.loads(history_entry(ev, 3, risk))


def test_rows_the_layout_cannot_hold_stay_json() -> None:
    ev = VitalsEvent.model_construct(
        patient_id="p", ts=T0, heart_rate_bpm=80, **dict.fromkeys(
            ("respiratory_rate_per_min", "spo2_pct", "on_oxygen", "systolic_bp_mmhg",
             "diastolic_bp_mmhg", "temperature_c", "consciousness", "device_id", "spo2_scale")
        )
    )  # fmt: skip
    row = history_row(ev, 1, None)
    assert isinstance(row, str) and json.loads(row) == {
        "t": ev.ts_ms(),
        "heart_rate_bpm": 80,
        "news2": 1,
    }
    assert unpack_row(row) == json.loads(row)


def test_pack_state_takes_the_fields_of_a_state() -> None:
    st = _state(5)
    assert pack_state(vars(st)) == st.encode()
