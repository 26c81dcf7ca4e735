"""The seeded patient simulator: determinism, schema, physiology, sampling."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from simulator import (
    Cohort,
    PatientProfile,
    SimConfig,
    make_profiles,
    simulate_cohort,
    simulate_patient,
    stream_events,
)
from wardwatch.schemas import NUMERIC_VITALS, Outcome, VitalsEvent

START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
SEED = 11
N = 150


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return simulate_cohort(N, seed=SEED, start=START)


@pytest.fixture(scope="module")
def by_patient(cohort: Cohort) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in cohort.events:
        out[ev["patient_id"]].append(ev)
    return out


def _hours(ev: dict[str, Any]) -> float:
    return (ev["ts"] - START).total_seconds() / 3600.0


def _mean(evs: list[dict[str, Any]], key: str) -> float:
    vals = [e[key] for e in evs if key in e]
    return float(np.mean(vals)) if vals else float("nan")


def _news2(last: dict[str, Any], scale: int) -> int:
    """Minimal NEWS2 (RCP 2017) for calibration checks on whole-number charted values."""
    hr, rr, spo2 = last["heart_rate_bpm"], last["respiratory_rate_per_min"], last["spo2_pct"]
    o2, sbp, temp = last["on_oxygen"], last["systolic_bp_mmhg"], last["temperature_c"]
    s = 3 if rr <= 8 else 1 if rr <= 11 else 0 if rr <= 20 else 2 if rr <= 24 else 3
    if scale == 1:
        s += 3 if spo2 <= 91 else 2 if spo2 <= 93 else 1 if spo2 <= 95 else 0
    elif spo2 <= 83:
        s += 3
    elif spo2 <= 85:
        s += 2
    elif spo2 <= 87:
        s += 1
    elif spo2 >= 93 and o2:
        s += 1 if spo2 <= 94 else 2 if spo2 <= 96 else 3
    s += 2 if o2 else 0
    s += 3 if sbp <= 90 else 2 if sbp <= 100 else 1 if sbp <= 110 else 0 if sbp <= 219 else 3
    s += (
        3
        if hr <= 40
        else 1
        if hr <= 50
        else 0
        if hr <= 90
        else 1
        if hr <= 110
        else 2
        if hr <= 130
        else 3
    )
    s += 0 if last["consciousness"] == "A" else 3
    s += (
        3
        if temp <= 35.0
        else 1
        if temp <= 36.0
        else 0
        if temp <= 38.0
        else 1
        if temp <= 39.0
        else 2
    )
    return s


# --- determinism and independence -----------------------------------------------------


def test_same_seed_identical_output(cohort: Cohort) -> None:
    again = simulate_cohort(N, seed=SEED, start=START)
    assert again.events == cohort.events
    assert again.outcomes == cohort.outcomes
    assert again.profiles == cohort.profiles


def test_different_seed_differs(cohort: Cohort) -> None:
    other = simulate_cohort(20, seed=SEED + 1, start=START)
    assert other.profiles != cohort.profiles[:20]


def test_profiles_depend_only_on_seed_and_index() -> None:
    ten = make_profiles(10, seed=3)
    assert make_profiles(25, seed=3)[:10] == ten
    assert len({p.patient_id for p in make_profiles(25, seed=3)}) == 25


def test_simulate_patient_reproduces_its_share_of_the_cohort(
    cohort: Cohort, by_patient: dict[str, list[dict[str, Any]]]
) -> None:
    outcomes = {o.patient_id: o for o in cohort.outcomes}
    for p in cohort.profiles[:15]:
        evs, outcome = simulate_patient(p, start=START, config=SimConfig(), seed=SEED)
        assert evs == by_patient[p.patient_id]
        assert outcome == outcomes.get(p.patient_id)


# --- schema and charting ------------------------------------------------------------------


def test_every_event_validates_and_is_charted_like_a_ward(cohort: Cohort) -> None:
    for ev in cohort.events:
        model = VitalsEvent.model_validate(ev)
        assert model.vitals(), ev
        assert ev["ts"].tzinfo is not None
        for key in NUMERIC_VITALS[:-1]:
            if key in ev:
                assert ev[key] == int(ev[key]), (key, ev)
        if "temperature_c" in ev:
            assert ev["temperature_c"] == round(ev["temperature_c"], 1)
        if "systolic_bp_mmhg" in ev:
            assert ev["diastolic_bp_mmhg"] < ev["systolic_bp_mmhg"]
        assert ("spo2_pct" in ev) == ("on_oxygen" in ev)


def test_naive_start_rejected() -> None:
    p = make_profiles(1, seed=0)[0]
    with pytest.raises(ValueError):
        simulate_patient(p, start=datetime(2024, 1, 1), config=SimConfig(), seed=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hours": 0},
        {"obs_interval_min": -1},
        {"missing_prob": 1.5},
        {"deteriorating_fraction": -0.1},
        {"consciousness_every": 0},
    ],
)
def test_config_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimConfig(**kwargs)


def test_any_timezone_is_kept() -> None:
    tz = timezone(timedelta(hours=2))
    start = datetime(2024, 6, 1, 0, 0, tzinfo=tz)
    c = simulate_cohort(3, seed=1, start=start, config=SimConfig(hours=6))
    assert all(e["ts"].utcoffset() == timedelta(hours=2) for e in c.events)


# --- profiles ---------------------------------------------------------------------------


def test_profiles_are_heterogeneous_and_consistent() -> None:
    profiles = make_profiles(600, seed=5)
    assert {p.age_band for p in profiles} == {"18-39", "40-64", "65-79", "80+"}
    det = [p for p in profiles if p.trajectory != "stable"]
    assert 0.22 < len(det) / len(profiles) < 0.38
    assert {p.trajectory for p in det} == {
        "sepsis",
        "respiratory_failure",
        "haemorrhage",
        "cardiac",
    }
    for p in profiles:
        assert set(p.baseline) == set(NUMERIC_VITALS)
        assert p.spo2_scale == (2 if p.copd else 1)
        if p.copd:
            assert 88.0 <= p.baseline["spo2_pct"] <= 92.0
        else:
            assert p.baseline["spo2_pct"] >= 94.0
            assert not p.baseline_on_oxygen
        if p.athlete:
            assert 45.0 <= p.baseline["heart_rate_bpm"] <= 55.0
        if p.trajectory == "stable":
            assert p.onset_h is None and p.outcome_h is None and not p.recovers
        else:
            assert p.onset_h is not None
            assert (p.outcome_h is None) == p.recovers
    recovering = [p for p in det if p.recovers]
    assert 0.12 < len(recovering) / len(det) < 0.38
    by_age = defaultdict(list)
    for p in profiles:
        by_age[p.age_band].append(p.baseline["systolic_bp_mmhg"])
    assert np.mean(by_age["80+"]) > np.mean(by_age["18-39"]) + 8
    assert sum(p.copd for p in profiles) > 10
    assert sum(p.athlete for p in profiles) > 3


def test_copd_patients_use_scale_2_and_run_lower(
    cohort: Cohort, by_patient: dict[str, list[dict[str, Any]]]
) -> None:
    copd = [p for p in cohort.profiles if p.copd]
    assert copd
    copd_spo2: list[float] = []
    other_spo2: list[float] = []
    for p in cohort.profiles:
        evs = by_patient[p.patient_id]
        if p.copd:
            assert all(e.get("spo2_scale") == 2 for e in evs)
            copd_spo2 += [e["spo2_pct"] for e in evs if "spo2_pct" in e]
        else:
            assert all("spo2_scale" not in e for e in evs)
            other_spo2 += [e["spo2_pct"] for e in evs if "spo2_pct" in e]
    assert np.median(copd_spo2) <= 92
    assert np.median(other_spo2) >= 95


# --- physiology -------------------------------------------------------------------------


def test_stable_patients_stay_mostly_in_normal_ranges(
    cohort: Cohort, by_patient: dict[str, list[dict[str, Any]]]
) -> None:
    hr_ok: list[bool] = []
    rr_ok: list[bool] = []
    spo2_ok: list[bool] = []
    sbp_ok: list[bool] = []
    for p in cohort.profiles:
        if p.trajectory != "stable":
            continue
        for e in by_patient[p.patient_id]:
            assert e.get("consciousness", "A") == "A"
            if p.copd:
                continue
            assert e.get("on_oxygen") in (None, False)
            if "heart_rate_bpm" in e and not p.athlete:
                hr_ok.append(50 <= e["heart_rate_bpm"] <= 100)
            if "respiratory_rate_per_min" in e:
                rr_ok.append(10 <= e["respiratory_rate_per_min"] <= 22)
            if "spo2_pct" in e:
                spo2_ok.append(e["spo2_pct"] >= 93)
            if "systolic_bp_mmhg" in e:
                sbp_ok.append(90 < e["systolic_bp_mmhg"] < 200)
    for ok in (hr_ok, rr_ok, spo2_ok, sbp_ok):
        assert len(ok) > 1000
        assert np.mean(ok) >= 0.9


def test_deteriorating_vitals_worsen_after_onset() -> None:
    """Last 2 h before the outcome vs the pre-onset period, per trajectory."""
    config = SimConfig(artifact_prob=0.0)
    profiles = [p for p in make_profiles(600, seed=SEED) if p.outcome_h is not None]
    by_patient = {
        p.patient_id: simulate_patient(p, start=START, config=config, seed=SEED)[0]
        for p in profiles
    }
    worse: dict[str, list[bool]] = defaultdict(list)
    for p in profiles:
        assert p.onset_h is not None and p.outcome_h is not None
        evs = by_patient[p.patient_id]
        before = [e for e in evs if _hours(e) < p.onset_h]
        late = [e for e in evs if _hours(e) > p.outcome_h - 2.0]
        assert before and late
        d_hr = _mean(late, "heart_rate_bpm") - _mean(before, "heart_rate_bpm")
        d_rr = _mean(late, "respiratory_rate_per_min") - _mean(before, "respiratory_rate_per_min")
        d_sbp = _mean(late, "systolic_bp_mmhg") - _mean(before, "systolic_bp_mmhg")
        d_spo2 = _mean(late, "spo2_pct") - _mean(before, "spo2_pct")
        oxygen_late = any(e.get("on_oxygen") for e in late)
        if p.trajectory == "sepsis":
            worse["sepsis"].append(d_hr > 5 and d_rr > 2 and d_sbp < 0)
        elif p.trajectory == "respiratory_failure":
            worse["resp"].append(d_rr > 3 and (d_spo2 < -2 or oxygen_late))
        elif p.trajectory == "haemorrhage":
            worse["haem"].append(d_hr > 8)
        elif p.trajectory == "cardiac":
            worse["cardiac"].append(d_sbp < -5 or abs(d_hr) > 15)
    assert set(worse) == {"sepsis", "resp", "haem", "cardiac"}
    for kind, flags in worse.items():
        assert np.mean(flags) >= 0.75, kind


def test_outcome_severity_is_high_but_heterogeneous(
    cohort: Cohort, by_patient: dict[str, list[dict[str, Any]]]
) -> None:
    """Most outcome patients reach NEWS2 >= 5 in their last hour; not all of them."""
    finals: list[int] = []
    for p in cohort.profiles:
        if p.outcome_h is None:
            continue
        last: dict[str, Any] = {}
        best = 0
        for e in by_patient[p.patient_id]:
            last.update(e)
            if _hours(e) > p.outcome_h - 1.0 and all(
                k in last
                for k in ("heart_rate_bpm", "respiratory_rate_per_min", "spo2_pct")
                + ("systolic_bp_mmhg", "temperature_c", "consciousness")
            ):
                best = max(best, _news2(last, p.spo2_scale))
        finals.append(best)
    arr = np.array(finals)
    assert len(arr) >= 20
    assert np.mean(arr >= 5) >= 0.7
    assert np.mean(arr >= 7) >= 0.5
    assert np.mean(arr >= 7) < 1.0


def test_haemorrhage_keeps_temperature_and_narrows_pulse_pressure() -> None:
    profiles = [p for p in make_profiles(400, seed=21) if p.trajectory == "haemorrhage"]
    profiles = [p for p in profiles if p.outcome_h is not None and p.severity >= 0.75]
    assert profiles
    for p in profiles:
        evs, _ = simulate_patient(p, start=START, config=SimConfig(artifact_prob=0), seed=21)
        assert p.onset_h is not None and p.outcome_h is not None
        before = [e for e in evs if _hours(e) < p.onset_h]
        late = [e for e in evs if _hours(e) > p.outcome_h - 1.5]
        assert 35.5 < _mean(late, "temperature_c") < 37.8  # no fever, whatever the clock
        pp_before = _mean(before, "systolic_bp_mmhg") - _mean(before, "diastolic_bp_mmhg")
        pp_late = _mean(late, "systolic_bp_mmhg") - _mean(late, "diastolic_bp_mmhg")
        assert pp_late < pp_before


def test_respiratory_failure_starts_oxygen() -> None:
    profiles = make_profiles(400, seed=8)
    resp = [p for p in profiles if p.trajectory == "respiratory_failure" and p.outcome_h]
    assert resp
    started = 0
    for p in resp:
        evs, _ = simulate_patient(p, start=START, config=SimConfig(), seed=8)
        assert p.onset_h is not None
        if not p.baseline_on_oxygen:
            assert not any(e.get("on_oxygen") for e in evs if _hours(e) < p.onset_h)
        started += any(e.get("on_oxygen") for e in evs if _hours(e) >= p.onset_h)
    assert started / len(resp) >= 0.7


def test_sepsis_brings_new_confusion_late() -> None:
    profiles = [p for p in make_profiles(500, seed=9) if p.trajectory == "sepsis"]
    profiles = [p for p in profiles if p.outcome_h is not None]
    confused_late = 0
    for p in profiles:
        evs, _ = simulate_patient(p, start=START, config=SimConfig(), seed=9)
        assert p.onset_h is not None
        assert all(e.get("consciousness", "A") == "A" for e in evs if _hours(e) < p.onset_h)
        confused_late += any(e.get("consciousness") in ("C", "V") for e in evs)
    assert 0.3 <= confused_late / len(profiles) < 1.0


def test_recovering_patients_return_towards_baseline() -> None:
    config = SimConfig(hours=72.0)
    profiles = [p for p in make_profiles(400, seed=4, config=config) if p.recovers]
    assert profiles
    closer = []
    for p in profiles:
        evs, outcome = simulate_patient(p, start=START, config=config, seed=4)
        assert outcome is None
        assert _hours(evs[-1]) > config.hours - 1.0
        assert p.onset_h is not None
        base_hr = p.baseline["heart_rate_bpm"]
        window = [e for e in evs if p.onset_h + 2 < _hours(e) < p.onset_h + 12]
        peak = max(
            abs(_mean(window[i : i + 8], "heart_rate_bpm") - base_hr)
            for i in range(0, len(window) - 8, 4)
        )
        tail = abs(
            _mean([e for e in evs if _hours(e) > config.hours - 4], "heart_rate_bpm") - base_hr
        )
        closer.append(tail < peak)
    assert np.mean(closer) >= 0.8


# --- outcomes and time ------------------------------------------------------------------


def test_outcomes_after_onset_and_before_end(
    cohort: Cohort, by_patient: dict[str, list[dict[str, Any]]]
) -> None:
    profiles = {p.patient_id: p for p in cohort.profiles}
    expected = {p.patient_id for p in cohort.profiles if p.outcome_h is not None}
    assert {o.patient_id for o in cohort.outcomes} == expected
    end = START + timedelta(hours=SimConfig().hours)
    for o in cohort.outcomes:
        p = profiles[o.patient_id]
        assert p.onset_h is not None and p.outcome_h is not None
        assert START + timedelta(hours=p.onset_h) < o.ts < end
        assert 2.0 <= p.outcome_h - p.onset_h <= 12.0
        assert o.cause == p.trajectory
        assert o.kind in ("icu_transfer", "cardiac_arrest", "death")
        assert all(e["ts"] < o.ts for e in by_patient[o.patient_id])
    assert [o.ts for o in cohort.outcomes] == sorted(o.ts for o in cohort.outcomes)


def test_cohort_is_time_ordered_with_irregular_sampling(
    cohort: Cohort, by_patient: dict[str, list[dict[str, Any]]]
) -> None:
    keys = [(e["ts"], e["patient_id"]) for e in cohort.events]
    assert keys == sorted(keys)
    gaps: list[float] = []
    for evs in by_patient.values():
        ts = [e["ts"].timestamp() for e in evs]
        d = np.diff(ts)
        assert np.all(d >= 60)
        gaps += (d / 60.0).tolist()
    assert 12.0 < np.mean(gaps) < 18.0
    assert np.std(gaps) > 5.0


def test_short_stays_still_fit_outcomes() -> None:
    config = SimConfig(hours=3.0, deteriorating_fraction=1.0, recovering_fraction=0.0)
    c = simulate_cohort(30, seed=2, start=START, config=config)
    assert len(c.outcomes) == 30
    assert all(START < o.ts < START + timedelta(hours=3) for o in c.outcomes)


# --- missingness, artifacts, consciousness ----------------------------------------------


def test_missingness_rate_and_complete_sets() -> None:
    c = simulate_cohort(40, seed=6, start=START, config=SimConfig(missing_prob=0.2))
    missing_hr = np.mean(["heart_rate_bpm" not in e for e in c.events])
    assert 0.15 < missing_hr < 0.25
    assert all(("systolic_bp_mmhg" in e) == ("diastolic_bp_mmhg" in e) for e in c.events)
    full = simulate_cohort(10, seed=6, start=START, config=SimConfig(missing_prob=0.0))
    assert all(all(k in e for k in NUMERIC_VITALS) for e in full.events)


def test_consciousness_charted_every_nth_set(by_patient: dict[str, list[dict[str, Any]]]) -> None:
    for evs in by_patient.values():
        charted = [i for i, e in enumerate(evs) if "consciousness" in e]
        assert charted == list(range(0, len(evs), SimConfig().consciousness_every))


def test_artifacts_are_isolated_extremes() -> None:
    base = SimConfig(hours=24.0, deteriorating_fraction=0.0)
    clean = simulate_cohort(30, seed=12, start=START, config=replace(base, artifact_prob=0.0))
    profiles = {p.patient_id: p for p in clean.profiles}
    assert not [
        e
        for e in clean.events
        if e.get("spo2_pct", 100) < 85 and not profiles[e["patient_id"]].copd
    ]
    noisy_cfg = SimConfig(hours=24.0, deteriorating_fraction=0.0, artifact_prob=0.05)
    noisy = simulate_cohort(30, seed=12, start=START, config=noisy_cfg)
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in noisy.events:
        per[e["patient_id"]].append(e)
    probe_off = 0
    for pid, evs in per.items():
        if profiles[pid].copd:
            continue
        for i, e in enumerate(evs[:-1]):
            if e.get("spo2_pct", 100) <= 80:
                probe_off += 1
                assert e["spo2_pct"] >= 70
                nxt = [x["spo2_pct"] for x in evs[i + 1 : i + 4] if "spo2_pct" in x]
                assert nxt and max(nxt) >= 90
    assert probe_off > 5


# --- the live stream --------------------------------------------------------------------


def test_stream_matches_cohort_and_is_ordered() -> None:
    config = SimConfig(hours=12.0, deteriorating_fraction=0.6, recovering_fraction=0.0)
    c = simulate_cohort(25, seed=13, start=START, config=config)
    items = list(stream_events(25, seed=13, start=START, config=config))
    vitals = [x for kind, x in items if kind == "vitals"]
    outcomes = [x for kind, x in items if kind == "outcome"]
    assert vitals == c.events
    assert outcomes == c.outcomes
    assert all(isinstance(o, Outcome) for o in outcomes)
    ts = [x["ts"] if isinstance(x, dict) else x.ts for _, x in items]
    assert ts == sorted(ts)
    assert {k for k, _ in items} == {"vitals", "outcome"}


def test_profile_is_a_frozen_value() -> None:
    p = make_profiles(1, seed=0)[0]
    assert isinstance(p, PatientProfile)
    with pytest.raises(AttributeError):
        p.copd = True  # type: ignore[misc]
