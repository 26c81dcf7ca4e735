"""Per-patient state transitions: watermark, duplicates, baseline, carry-forward."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from wardwatch.patient import PatientState, apply_event, round4, round6
from wardwatch.schemas import VitalsEvent

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def ms(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)


def ev(minutes: float, **values: object) -> VitalsEvent:
    return VitalsEvent.model_validate(
        {"patient_id": "p", "ts": T0 + timedelta(minutes=minutes), **values}
    )


def test_older_event_is_merged_late_without_overwriting_newer_values() -> None:
    s = PatientState()
    assert apply_event(s, ev(10, heart_rate_bpm=90)).status == "applied"
    baseline = json.dumps(s.baseline)
    res = apply_event(s, ev(5, heart_rate_bpm=140, temperature_c=38.6))
    assert res.status == "late"
    assert res.current == {"heart_rate_bpm": 140, "temperature_c": 38.6}  # its own values
    assert s.latest["heart_rate_bpm"] == [90, ms(10)]  # the newer value stays
    assert s.latest["temperature_c"] == [38.6, ms(5)]  # the only temperature: it is news
    assert (s.n_events, s.n_late, s.watermark_ms) == (2, 1, ms(10))
    assert json.dumps(s.baseline) == baseline  # the baseline runs in event order only


def test_a_late_event_delivered_again_is_a_duplicate() -> None:
    s = PatientState()
    apply_event(s, ev(10, heart_rate_bpm=90))
    assert apply_event(s, ev(5, heart_rate_bpm=140)).status == "late"
    assert apply_event(s, ev(5, heart_rate_bpm=140)).status == "duplicate"
    assert (s.n_events, s.n_late) == (2, 1)


def test_an_event_older_than_the_late_window_is_too_late_and_changes_nothing() -> None:
    s = PatientState()
    apply_event(s, ev(120, heart_rate_bpm=90))
    before = s.to_json()
    assert apply_event(s, ev(50, heart_rate_bpm=140), late_window_ms=3600_000).status == (
        "too_late"
    )
    assert s.to_json() == before


def test_a_redelivered_event_is_a_duplicate_however_far_back_it_is() -> None:
    """A replay after a crash redelivers events already applied: recognised by content
    among the last ones applied, never merged twice nor taken as too late."""
    s = PatientState()
    for minute in (0, 180, 181):  # a sparse patient: 3 h between readings
        apply_event(s, ev(minute, heart_rate_bpm=80 + minute % 7))
    assert apply_event(s, ev(0, heart_rate_bpm=80), late_window_ms=3600_000).status == ("duplicate")
    assert apply_event(s, ev(180, heart_rate_bpm=80 + 180 % 7)).status == "duplicate"
    assert s.n_events == 3


def test_duplicate_has_no_second_effect() -> None:
    s = PatientState()
    apply_event(s, ev(0, heart_rate_bpm=80, spo2_pct=97))
    before = s.to_json()
    assert apply_event(s, ev(0, heart_rate_bpm=80, spo2_pct=97)).status == "duplicate"
    assert s.to_json() == before


def test_same_time_different_content_is_applied_once_each() -> None:
    s = PatientState()
    apply_event(s, ev(0, heart_rate_bpm=80))
    assert apply_event(s, ev(0, temperature_c=37.2)).status == "applied"
    assert apply_event(s, ev(0, temperature_c=37.2)).status == "duplicate"
    assert s.n_events == 2


def test_current_vitals_carry_forward_within_max_age_only() -> None:
    s = PatientState()
    apply_event(s, ev(0, consciousness="A", heart_rate_bpm=80))
    res = apply_event(s, ev(60, heart_rate_bpm=85), max_age_ms=2 * 3600 * 1000)
    assert res.current == {"heart_rate_bpm": 85, "consciousness": "A"}
    res = apply_event(s, ev(300, heart_rate_bpm=86), max_age_ms=2 * 3600 * 1000)
    assert res.current == {"heart_rate_bpm": 86}


def test_baseline_deviation_is_measured_against_the_prior_baseline() -> None:
    s = PatientState()
    for i in range(20):
        apply_event(s, ev(15 * i, respiratory_rate_per_min=14 + (i % 2)))
    res = apply_event(s, ev(15 * 20, respiratory_rate_per_min=24))
    assert res.baseline_n == 20
    assert res.baseline_z["respiratory_rate_per_min"] > 4
    n, mean, _var = s.baseline["respiratory_rate_per_min"]
    assert n == 21 and 14 < mean < 15.5


def test_state_json_round_trip() -> None:
    s = PatientState()
    apply_event(s, ev(0, heart_rate_bpm=80, spo2_scale=2))
    again = PatientState.from_json(s.to_json())
    assert again == s
    assert again.spo2_scale_device == 2


def test_event_digests_are_the_same_computed_late_or_at_once() -> None:
    """The digest of an event applied at a new time is computed only when needed (compared
    with another event at that time, or stored); it is the same string either way, and a
    duplicate is found in memory as after a round trip through JSON (Redis)."""
    import json

    from wardwatch.patient import event_digest

    first = ev(0, heart_rate_bpm=80, device_id="mon-1")
    live = PatientState()
    apply_event(live, first)
    stored = PatientState.from_json(live.to_json())
    assert json.loads(live.to_json())["wm_digests"] == [event_digest(first)]
    for s in (live, stored):
        assert apply_event(s, ev(0, heart_rate_bpm=80, device_id="mon-1")).status == "duplicate"
        assert apply_event(s, ev(0, heart_rate_bpm=80, device_id="mon-2")).status == "applied"
        assert apply_event(s, ev(0, heart_rate_bpm=80, device_id="mon-2")).status == "duplicate"
        assert s.n_events == 2
        assert s.wm_digests == [
            event_digest(first),
            event_digest(ev(0, heart_rate_bpm=80, device_id="mon-2")),
        ]


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=False),
        st.floats(min_value=-1e6, max_value=1e6),
        # decimal ties and their neighbours: k/10**d + 5/10**(d+1)
        st.builds(
            lambda k, d, e: k / 10**d + 5 / 10 ** (d + 1) + e,
            st.integers(-(10**9), 10**9),
            st.sampled_from([4, 6]),
            st.sampled_from([0.0, 1e-12, -1e-12, 1e-9, -1e-9]),
        ),
    )
)
def test_fixed_rounding_is_exactly_round(x: float) -> None:
    """The baseline and feature rounding is ``round(x, n)`` exactly (sign of zero too)."""
    for fast, n in ((round4, 4), (round6, 6)):
        expected = round(x, n)
        got = fast(x)
        assert got == expected and math.copysign(1, got) == math.copysign(1, expected), (x, n)
