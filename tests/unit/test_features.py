"""Feature builder: carry-forward, masks, hours since, personal-baseline z, purity."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from models.features import (
    FEATURE_NAMES,
    N_FEATURES,
    NORM,
    FeatureState,
    featurize_sequence,
    step,
    ts_to_ms,
)
from wardwatch.patient import SD_FLOOR, PatientState, apply_event
from wardwatch.schemas import NUMERIC_VITALS, VitalsEvent

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def ev(minutes: float, **values: Any) -> dict[str, Any]:
    return {"patient_id": "p", "ts": T0 + timedelta(minutes=minutes), **values}


def col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def test_names_and_shape() -> None:
    assert len(FEATURE_NAMES) == N_FEATURES == 4 * len(NUMERIC_VITALS) + 4
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    f, _ = step(FeatureState(), ev(0, heart_rate_bpm=80))
    assert f.shape == (N_FEATURES,) and f.dtype == np.float32


def test_first_event_unobserved_vitals_are_neutral() -> None:
    f, _ = step(FeatureState(), ev(0, heart_rate_bpm=95))
    assert f[col("heart_rate_bpm:value")] == pytest.approx(
        (95 - NORM["value_mean"]["heart_rate_bpm"]) / NORM["value_sd"]["heart_rate_bpm"]
    )
    assert f[col("heart_rate_bpm:observed")] == 1.0
    assert f[col("heart_rate_bpm:hours_since")] == 0.0
    assert f[col("heart_rate_bpm:baseline_z")] == 0.0  # no baseline yet
    # never observed: population mean, mask 0, hours_since saturated
    assert f[col("spo2_pct:value")] == 0.0
    assert f[col("spo2_pct:observed")] == 0.0
    assert f[col("spo2_pct:hours_since")] == 1.0
    assert f[col("hours_since_prev")] == 0.0


def test_carry_forward_and_mask_and_hours_since() -> None:
    st = FeatureState()
    _, st = step(st, ev(0, heart_rate_bpm=100, spo2_pct=95))
    f, st = step(st, ev(90, spo2_pct=93))
    hr_value = (100 - NORM["value_mean"]["heart_rate_bpm"]) / NORM["value_sd"]["heart_rate_bpm"]
    assert f[col("heart_rate_bpm:value")] == pytest.approx(hr_value)  # carried forward
    assert f[col("heart_rate_bpm:observed")] == 0.0
    assert f[col("heart_rate_bpm:hours_since")] == pytest.approx(1.5 / NORM["hours_clip"])
    assert f[col("spo2_pct:observed")] == 1.0
    assert f[col("spo2_pct:hours_since")] == 0.0
    assert f[col("hours_since_prev")] == pytest.approx(1.5 / NORM["hours_clip"])
    # long gaps saturate at 1
    f, _ = step(st, ev(90 + 60 * 30, temperature_c=37.0))
    assert f[col("heart_rate_bpm:hours_since")] == 1.0
    assert f[col("hours_since_prev")] == 1.0


def test_context_flags_carry_forward() -> None:
    st = FeatureState()
    f, st = step(st, ev(0, spo2_pct=89, on_oxygen=True, consciousness="C", spo2_scale=2))
    assert f[col("on_oxygen")] == 1.0
    assert f[col("not_alert")] == 1.0
    assert f[col("spo2_scale2")] == 1.0
    f, st = step(st, ev(15, heart_rate_bpm=80))  # no consciousness / oxygen charted
    assert (f[col("on_oxygen")], f[col("not_alert")], f[col("spo2_scale2")]) == (1, 1, 1)
    f, _ = step(st, ev(30, consciousness="A", spo2_pct=90, on_oxygen=False))
    assert (f[col("on_oxygen")], f[col("not_alert")]) == (0, 0)


def test_baseline_z_matches_the_worker_patient_state() -> None:
    """Same EW baseline and z as wardwatch.patient.apply_event (before clipping)."""
    rng = np.random.default_rng(3)
    st = FeatureState()
    ps = PatientState()
    z_clip = NORM["z_clip"]
    for i in range(40):
        rr = float(rng.integers(13, 18)) if i < 39 else 30.0
        hr = float(rng.integers(70, 80))
        e = ev(15 * i, respiratory_rate_per_min=rr, heart_rate_bpm=hr)
        f, st = step(st, e)
        applied = apply_event(ps, VitalsEvent.model_validate(e))
        for name in ("respiratory_rate_per_min", "heart_rate_bpm"):
            expected = applied.baseline_z.get(name, 0.0)
            expected = max(-z_clip, min(z_clip, expected))
            assert f[col(f"{name}:baseline_z")] * z_clip == pytest.approx(expected, abs=1e-3)
        assert st.baseline == ps.baseline
    assert f[col("respiratory_rate_per_min:baseline_z")] * z_clip > 4


def test_baseline_z_uses_sd_floor_and_clips() -> None:
    st = FeatureState()
    for i in range(10):
        _, st = step(st, ev(15 * i, temperature_c=36.8))  # zero variance
    f, st = step(st, ev(150, temperature_c=37.2))
    expected = (37.2 - 36.8) / SD_FLOOR["temperature_c"]
    assert f[col("temperature_c:baseline_z")] * NORM["z_clip"] == pytest.approx(expected, rel=1e-4)
    f, st = step(st, ev(165, temperature_c=41.0))
    assert f[col("temperature_c:baseline_z")] == 1.0  # clipped at z_clip
    f, _ = step(st, ev(180, heart_rate_bpm=70))  # temperature absent: z carried forward
    assert f[col("temperature_c:baseline_z")] == 1.0


def test_step_is_pure_and_state_round_trips_json() -> None:
    st = FeatureState()
    _, st = step(st, ev(0, heart_rate_bpm=80, consciousness="A", on_oxygen=False))
    before = st.to_json()
    f1, s1 = step(st, ev(15, heart_rate_bpm=120))
    f2, s2 = step(st, ev(15, heart_rate_bpm=120))
    assert st.to_json() == before  # input state untouched
    np.testing.assert_array_equal(f1, f2)
    assert s1.to_json() == s2.to_json()
    restored = FeatureState.from_json(s1.to_json())
    assert restored == s1
    assert len(s1.to_json()) < 1000
    json.loads(s1.to_json())
    assert FeatureState.from_json(None) == FeatureState()


def test_featurize_sequence_equals_stepping_and_resuming() -> None:
    events = [
        ev(15 * i, heart_rate_bpm=70 + i, spo2_pct=97 - (i % 3), temperature_c=36.5 + 0.1 * i)
        for i in range(12)
    ]
    x = featurize_sequence(events)
    assert x.shape == (12, N_FEATURES)
    st = FeatureState()
    for i, e in enumerate(events):
        f, st = step(st, e)
        np.testing.assert_array_equal(f, x[i])
    # resuming from a serialized state gives the same tail
    st = FeatureState()
    for e in events[:5]:
        _, st = step(st, e)
    tail = featurize_sequence(events[5:], state=FeatureState.from_json(st.to_json()))
    np.testing.assert_array_equal(tail, x[5:])
    assert featurize_sequence([]).shape == (0, N_FEATURES)
    assert np.isfinite(x).all()


def test_timestamp_forms() -> None:
    ms = ts_to_ms(T0)
    assert ts_to_ms("2026-03-01T08:00:00Z") == ms
    assert ts_to_ms(ms) == ms
    with pytest.raises(ValueError):
        ts_to_ms(datetime(2026, 3, 1))
    with pytest.raises(ValueError):
        ts_to_ms(math.nan)
    a, _ = step(FeatureState(), {"ts": T0, "heart_rate_bpm": 80})
    b, _ = step(FeatureState(), {"ts": "2026-03-01T08:00:00+00:00", "heart_rate_bpm": 80})
    np.testing.assert_array_equal(a, b)


def test_none_values_count_as_missing() -> None:
    f, st = step(FeatureState(), ev(0, heart_rate_bpm=None, spo2_pct=96))
    assert f[col("heart_rate_bpm:observed")] == 0.0
    assert "heart_rate_bpm" not in st.last_value
