"""Seeded, physiologically grounded ward-patient simulator.

This is a **simulator**: it produces plausible synthetic vital signs for development,
load testing and pre-training. It is not a validated physiological model and its output
is not clinical data. The assumptions and their sources are in ``docs/simulator.md``.

One module serves two users:

* the live bedside simulator (:func:`stream_events`), which replays a cohort onto Kafka in
  (compressed) real time, and
* the offline trainer (:func:`simulate_cohort`), which generates labelled cohorts.

Everything is pure and deterministic given a seed. Patients are independent: a profile is
drawn from a generator seeded by ``(seed, index)``, and a patient's observations from a
generator seeded by ``(seed, patient_id)``, so ``simulate_patient(p, seed=s)`` reproduces
exactly that patient's share of ``simulate_cohort(..., seed=s)`` and ``make_profiles(10)``
is a prefix of ``make_profiles(20)``.

Each numeric vital is modelled at each observation time ``t`` (hours since admission) as::

    baseline + circadian(clock time) + slow AR(1) drift + deterioration(t) + device noise

then rounded as charted (integers for HR/RR/SpO2/BP, 0.1 °C), with irregular sampling,
missing vitals, isolated artifacts, oxygen started by a simple nursing rule, and
consciousness charted only every Nth set.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from wardwatch.schemas import NUMERIC_VITALS, Outcome

__all__ = [
    "Cohort",
    "PatientProfile",
    "SimConfig",
    "Trajectory",
    "TRAJECTORIES",
    "make_profiles",
    "simulate_cohort",
    "simulate_patient",
    "stream_events",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

Trajectory = Literal["stable", "sepsis", "respiratory_failure", "haemorrhage", "cardiac"]
AgeBand = Literal["18-39", "40-64", "65-79", "80+"]

TRAJECTORIES: tuple[Trajectory, ...] = (
    "stable",
    "sepsis",
    "respiratory_failure",
    "haemorrhage",
    "cardiac",
)

# Column order of every (n, 6) array below; equal to schemas.NUMERIC_VITALS.
_HR, _RR, _SPO2, _SBP, _DBP, _TEMP = range(6)
_VITALS: tuple[str, ...] = NUMERIC_VITALS
assert _VITALS == (
    "heart_rate_bpm",
    "respiratory_rate_per_min",
    "spo2_pct",
    "systolic_bp_mmhg",
    "diastolic_bp_mmhg",
    "temperature_c",
)

# Domain tags keep the profile stream and the observation stream of one seed apart.
_PROFILE_TAG = 0x5052_4F46  # "PROF"
_PATIENT_TAG = 0x5041_5449  # "PATI"


# --------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimConfig:
    """Knobs shared by every patient of a cohort."""

    hours: float = 48.0
    """Simulated length of stay per patient (observations stop earlier at an outcome)."""
    obs_interval_min: float = 15.0
    """Mean interval between observation sets; intervals are gamma-distributed (shape 2)."""
    deteriorating_fraction: float = 0.3
    """Expected fraction of patients who deteriorate (older patients somewhat more often)."""
    recovering_fraction: float = 0.25
    """Of the deteriorating ones, the fraction who recover without an outcome."""
    missing_prob: float = 0.1
    """Per-vital probability of being absent from an observation set (BP as one reading)."""
    artifact_prob: float = 0.005
    """Per observation set: an isolated implausible-but-possible reading."""
    consciousness_every: int = 4
    """Consciousness (ACVPU) is charted on every Nth observation set only."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise ValueError(f"hours must be positive, got {self.hours}")
        if not (math.isfinite(self.obs_interval_min) and self.obs_interval_min > 0):
            raise ValueError(f"obs_interval_min must be positive, got {self.obs_interval_min}")
        for name in ("deteriorating_fraction", "recovering_fraction", "missing_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.artifact_prob <= 1.0:
            raise ValueError(f"artifact_prob must be in [0, 1], got {self.artifact_prob}")
        if self.consciousness_every < 1:
            raise ValueError(f"consciousness_every must be >= 1, got {self.consciousness_every}")


@dataclass(frozen=True)
class PatientProfile:
    """Who the patient is and what will happen to them (the simulator's ground truth)."""

    patient_id: str
    age_band: AgeBand
    copd: bool
    """Chronic lung disease, hypercapnic: SpO2 target 88-92 %, NEWS2 SpO2 scale 2."""
    athlete: bool
    """Trained athlete: resting pulse 45-55/min."""
    baseline: dict[str, float]
    """Resting value per numeric vital field name (the patient's own normal)."""
    trajectory: Trajectory
    onset_h: float | None
    """Hours after admission when deterioration starts (None when stable)."""
    outcome_h: float | None
    """Hours after admission of the outcome event; None when stable or recovering."""
    recovers: bool
    """Deteriorates, then recovers without an outcome."""
    severity: float = 1.0
    """Peak deterioration relative to a typical case (1.0); below ~0.7 is deliberately
    subtle (a trend against the own baseline more than an absolute-threshold breach).
    Ignored for stable patients (``make_profiles`` sets 0.0 for them)."""
    baseline_on_oxygen: bool = False
    """On (long-term) supplemental oxygen from admission (some COPD patients)."""

    @property
    def spo2_scale(self) -> int:
        """NEWS2 SpO2 scale: 2 for hypercapnic (COPD) patients, else 1."""
        return 2 if self.copd else 1

    @property
    def deteriorates(self) -> bool:
        return self.trajectory != "stable"


@dataclass
class Cohort:
    profiles: list[PatientProfile]
    events: list[dict[str, Any]]
    """All observations of all patients, sorted by ts (ties by patient_id)."""
    outcomes: list[Outcome] = field(default_factory=list)
    """Outcome events, sorted by ts."""


# --------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------

_AGE_BANDS: tuple[AgeBand, ...] = ("18-39", "40-64", "65-79", "80+")
_AGE_P = np.array([0.15, 0.30, 0.33, 0.22])  # adult medical/surgical ward mix (older-heavy)
_AGE_RISK = np.array([0.6, 0.9, 1.1, 1.3])  # relative risk of deterioration by age band
_AGE_RISK_MEAN = float(_AGE_P @ _AGE_RISK)
_COPD_P = (0.01, 0.08, 0.18, 0.15)
_ATHLETE_P = (0.08, 0.03, 0.0, 0.0)

# Baseline distributions per age band: (mean, sd), clipped below.
_HR_BASE = ((76.0, 10.0), (76.0, 10.0), (75.0, 10.0), (74.0, 10.0))
_RR_BASE = ((15.0, 1.6), (15.5, 1.7), (16.0, 1.8), (16.5, 1.8))
_SPO2_BASE = ((98.0, 0.9), (97.5, 1.0), (96.8, 1.0), (96.3, 1.0))
_SBP_BASE = ((120.0, 11.0), (128.0, 13.0), (134.0, 15.0), (138.0, 17.0))
_DBP_BASE = ((74.0, 8.0), (79.0, 8.0), (75.0, 9.0), (71.0, 9.0))
_TEMP_BASE = ((36.8, 0.22), (36.75, 0.22), (36.65, 0.22), (36.6, 0.22))

# Deterioration kinds among the deteriorating (without / with COPD).
_TRAJ_DET: tuple[Trajectory, ...] = ("sepsis", "respiratory_failure", "haemorrhage", "cardiac")
_TRAJ_P = np.array([0.35, 0.28, 0.15, 0.22])
_TRAJ_P_COPD = np.array([0.25, 0.55, 0.07, 0.13])


def _profile(i: int, *, seed: int, config: SimConfig, id_prefix: str) -> PatientProfile:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PROFILE_TAG, i]))
    band = int(rng.choice(4, p=_AGE_P))
    age_band = _AGE_BANDS[band]
    copd = bool(rng.random() < _COPD_P[band])
    athlete = (not copd) and bool(rng.random() < _ATHLETE_P[band])

    def draw(spec: tuple[tuple[float, float], ...], lo: float, hi: float) -> float:
        mean, sd = spec[band]
        return float(np.clip(rng.normal(mean, sd), lo, hi))

    hr = float(rng.uniform(45.0, 55.0)) if athlete else draw(_HR_BASE, 56.0, 98.0)
    rr = draw(_RR_BASE, 11.0, 20.0)
    spo2 = draw(_SPO2_BASE, 94.5, 99.5)
    if copd:
        rr = float(min(rr + rng.uniform(1.5, 4.0), 22.0))
        spo2 = float(rng.uniform(88.5, 92.0))
    baseline_on_oxygen = copd and bool(rng.random() < 0.25)
    sbp = draw(_SBP_BASE, 98.0, 185.0)
    dbp = draw(_DBP_BASE, 50.0, 105.0)
    dbp = float(min(dbp, sbp - 30.0))
    temp = draw(_TEMP_BASE, 36.1, 37.4)
    baseline = {
        "heart_rate_bpm": round(hr, 1),
        "respiratory_rate_per_min": round(rr, 1),
        "spo2_pct": round(spo2, 1),
        "systolic_bp_mmhg": round(sbp, 1),
        "diastolic_bp_mmhg": round(dbp, 1),
        "temperature_c": round(temp, 2),
    }

    # Older patients deteriorate more often; the exponent form keeps p in [0, 1] and the
    # cohort fraction close to config.deteriorating_fraction (exact at 0 and 1).
    rel_risk = _AGE_RISK[band] / _AGE_RISK_MEAN
    p_det = 1.0 - (1.0 - config.deteriorating_fraction) ** rel_risk
    trajectory: Trajectory = "stable"
    onset_h: float | None = None
    outcome_h: float | None = None
    recovers = False
    severity = 0.0
    if rng.random() < p_det:
        probs = _TRAJ_P_COPD if copd else _TRAJ_P
        trajectory = _TRAJ_DET[int(rng.choice(4, p=probs))]
        recovers = bool(rng.random() < config.recovering_fraction)
        hours = config.hours
        lo = min(4.0, 0.2 * hours)  # leave a baseline period before onset
        margin = min(1.0, 0.05 * hours)
        available = hours - lo - margin
        if recovers:
            onset_h = float(rng.uniform(lo, max(lo, 0.6 * hours)))
            severity = float(rng.uniform(0.3, 0.7))
        else:
            lead = min(float(rng.uniform(2.0, 12.0)), 0.8 * available)
            onset_h = float(rng.uniform(lo, lo + available - lead))
            outcome_h = onset_h + lead
            subtle = rng.random() < 0.25
            severity = float(rng.uniform(0.45, 0.65) if subtle else rng.uniform(0.75, 1.2))
    return PatientProfile(
        patient_id=f"{id_prefix}-{i:05d}",
        age_band=age_band,
        copd=copd,
        athlete=athlete,
        baseline=baseline,
        trajectory=trajectory,
        onset_h=onset_h,
        outcome_h=outcome_h,
        recovers=recovers,
        severity=severity,
        baseline_on_oxygen=baseline_on_oxygen,
    )


def make_profiles(
    n: int, *, seed: int, config: SimConfig = SimConfig(), id_prefix: str = "sim"
) -> list[PatientProfile]:
    """Draw ``n`` independent patient profiles; profile ``i`` depends only on (seed, i)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    _check_seed(seed)
    return [_profile(i, seed=seed, config=config, id_prefix=id_prefix) for i in range(n)]


# --------------------------------------------------------------------------------------
# One patient
# --------------------------------------------------------------------------------------

# Circadian rhythm: (mean amplitude, acrophase in clock hours). Cosine, so the nadir is
# 12 h after the acrophase (temperature: peak ~17:00, nadir ~05:00).
_CIRC_AMP = np.array([5.0, 0.8, 0.4, 6.0, 4.0, 0.35])
_CIRC_PHASE = np.array([15.0, 14.0, 14.0, 14.0, 14.0, 17.0])
# Slow AR(1) (Ornstein-Uhlenbeck) drift: stationary sd and time constant in hours.
_DRIFT_SD = np.array([4.0, 1.2, 0.7, 6.0, 4.0, 0.15])
_DRIFT_TAU_H = np.array([3.0, 2.0, 2.0, 3.0, 3.0, 4.0])
# Device / charting measurement noise (sd).
_NOISE_SD = np.array([2.0, 1.5, 0.8, 5.0, 4.0, 0.15])
# Hard plausibility limits for what a device would display.
_LO = np.array([25.0, 4.0, 50.0, 50.0, 20.0, 32.0])
_HI = np.array([220.0, 60.0, 100.0, 250.0, 150.0, 42.5])


def _check_seed(seed: int) -> None:
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _id_hash(patient_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(patient_id.encode(), digest_size=8).digest(), "little")


def _obs_times(rng: np.random.Generator, end_h: float, interval_min: float) -> FloatArray:
    """Irregular observation times in [0, end_h): gamma(2) intervals, >= 1 minute apart."""
    mean_h = interval_min / 60.0
    min_gap = 61.0 / 3600.0  # >= 1 min apart even after rounding to whole seconds
    first = rng.uniform(0.0, mean_h)
    chunks: list[FloatArray] = []
    last = first
    est = int(end_h / mean_h * 1.2) + 8
    while last < end_h:
        gaps = np.maximum(rng.gamma(2.0, mean_h / 2.0, size=est), min_gap)
        chunk = last + np.cumsum(gaps)
        chunks.append(chunk)
        last = float(chunk[-1])
        est = max(8, est // 4)
    times = np.concatenate([np.array([first]), *chunks])
    return times[times < end_h]


def _ramp(u: FloatArray, k: float, c: float, lin: float) -> FloatArray:
    """Smooth deterioration shape: 0 at u=0, 1 at u=1, slow start then accelerating.

    A linear component (weight ``lin``) makes the early change visible relative to the
    patient's own baseline hours before the logistic part crosses absolute thresholds.
    """
    u = np.clip(u, 0.0, 1.2)

    def sig(x: FloatArray | float) -> Any:
        return 1.0 / (1.0 + np.exp(-k * (np.asarray(x) - c)))

    s0 = sig(0.0)
    s1 = sig(1.0)
    logistic = (sig(u) - s0) / (s1 - s0)
    out: FloatArray = lin * u + (1.0 - lin) * logistic
    return out


def _progression(t: FloatArray, p: PatientProfile, rng: np.random.Generator) -> FloatArray:
    """Severity over time: 0 before onset, about ``p.severity`` at the outcome or peak."""
    k = float(rng.uniform(5.0, 9.0))
    c = float(rng.uniform(0.5, 0.75))
    lin = float(rng.uniform(0.15, 0.35))
    rise_h = float(rng.uniform(3.0, 10.0))
    plateau_h = float(rng.uniform(0.5, 3.0))
    recover_tau_h = float(rng.uniform(3.0, 8.0))
    if p.trajectory == "stable" or p.onset_h is None:
        return np.zeros_like(t)
    onset = p.onset_h
    if p.outcome_h is not None:
        u = (t - onset) / max(p.outcome_h - onset, 1e-6)
        return p.severity * _ramp(u, k, c, lin)
    shape = _ramp(np.clip((t - onset) / rise_h, 0.0, 1.0), k, c, lin)
    decay = np.exp(-np.maximum(t - onset - rise_h - plateau_h, 0.0) / recover_tau_h)
    out: FloatArray = p.severity * shape * decay
    return out


def _deterioration(
    s: FloatArray, p: PatientProfile, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, float, float]:
    """Deltas from baseline (n, 6), extra HR variability sd (n,), confusion thresholds.

    ``s`` is the severity path (1.0 = a typical, clearly abnormal case at its outcome).
    Per-patient multipliers make every sign heterogeneous: not everyone shows everything.
    """
    n = s.shape[0]
    d = np.zeros((n, 6))
    hr_sd = np.zeros(n)
    m = rng.uniform(0.6, 1.4, size=6)  # per-vital response strength
    variant = float(rng.random())
    confused_at = float(rng.uniform(0.55, 0.95))
    if p.age_band == "80+":
        confused_at -= 0.1  # delirium comes earlier in the very old
    never_confused = float(rng.random())
    base_hr = p.baseline["heart_rate_bpm"]
    pos = np.maximum(s, 0.0)

    if p.trajectory == "sepsis":
        # Sepsis-3 / qSOFA picture: fever (or hypothermia), tachycardia, tachypnoea,
        # vasodilatory hypotension later, new confusion late.
        fever = variant >= 0.2
        temp = (2.0 if fever else -1.8) * m[_TEMP] * pos**0.7
        d[:, _TEMP] = temp
        d[:, _HR] = 28.0 * m[_HR] * pos + 8.5 * np.maximum(temp, 0.0)
        d[:, _RR] = 11.0 * m[_RR] * pos
        d[:, _SBP] = -38.0 * m[_SBP] * pos**1.3
        d[:, _DBP] = -24.0 * m[_SBP] * pos**1.3
        d[:, _SPO2] = -3.0 * m[_SPO2] * pos
        v_at = confused_at + 0.25
        if never_confused < 0.2:
            confused_at = v_at = math.inf
    elif p.trajectory == "respiratory_failure":
        # Tachypnoea first, then falling SpO2 (oxygen is started by the nursing rule),
        # sympathetic tachycardia; pneumonia in about half (mild fever).
        d[:, _RR] = 15.0 * m[_RR] * pos
        d[:, _SPO2] = -13.0 * m[_SPO2] * pos**1.2
        d[:, _HR] = 25.0 * m[_HR] * pos
        d[:, _SBP] = 6.0 * m[_SBP] * pos
        d[:, _DBP] = 3.0 * m[_SBP] * pos
        if variant < 0.5:
            d[:, _TEMP] = 1.0 * m[_TEMP] * pos
        # Hypercapnic patients become drowsy (V) rather than confused.
        confused_at = max(confused_at, 0.8) if p.copd else max(confused_at, 0.85)
        v_at = confused_at + (0.1 if p.copd else 0.3)
        if never_confused < 0.4:
            confused_at = v_at = math.inf
    elif p.trajectory == "haemorrhage":
        # ATLS classes by fraction of blood volume lost (<15, 15-30, 30-40, >40 %):
        # HR climbs first, SBP holds until class III, pulse pressure narrows early
        # (diastolic up from vasoconstriction), RR rises, temperature normal.
        loss = 0.45 * pos
        xp = [0.0, 0.15, 0.30, 0.40, 0.45]
        d[:, _HR] = m[_HR] * np.interp(loss, xp, [0.0, 15.0, 35.0, 55.0, 68.0])
        d[:, _SBP] = m[_SBP] * np.interp(loss, xp, [0.0, 0.0, -8.0, -30.0, -50.0])
        d[:, _DBP] = m[_SBP] * np.interp(loss, xp, [0.0, 4.0, 4.0, -12.0, -25.0])
        d[:, _RR] = m[_RR] * np.interp(loss, xp, [0.0, 0.0, 5.0, 12.0, 18.0])
        d[:, _SPO2] = m[_SPO2] * np.interp(loss, xp, [0.0, 0.0, 0.0, -1.0, -3.0])
        d[:, _TEMP] = -0.2 * pos
        confused_at = max(confused_at, 0.7)
        v_at = confused_at + 0.25
        if never_confused < 0.35:
            confused_at = v_at = math.inf
    elif p.trajectory == "cardiac":
        # Three pictures: fast AF (irregular, high variability), bradyarrhythmia / block,
        # and pump failure with sinus tachycardia and pulmonary oedema.
        if variant < 0.5:
            d[:, _HR] = 45.0 * m[_HR] * pos
            hr_sd = 12.0 * pos
            d[:, _SPO2] = -5.0 * m[_SPO2] * pos
            d[:, _RR] = 8.0 * m[_RR] * pos
        elif variant < 0.7:
            target = min(38.0, base_hr - 10.0)
            d[:, _HR] = (target - base_hr) * np.minimum(pos, 1.0) ** 1.5
            hr_sd = 3.0 * pos
            d[:, _SPO2] = -3.0 * m[_SPO2] * pos
            d[:, _RR] = 4.0 * m[_RR] * pos
        else:
            d[:, _HR] = 30.0 * m[_HR] * pos
            d[:, _SPO2] = -8.0 * m[_SPO2] * pos
            d[:, _RR] = 10.0 * m[_RR] * pos
        d[:, _SBP] = -35.0 * m[_SBP] * pos**1.2
        d[:, _DBP] = -15.0 * m[_SBP] * pos**1.2
        confused_at = max(confused_at, 0.85)
        v_at = confused_at + 0.2
        if never_confused < 0.5:
            confused_at = v_at = math.inf
    else:
        confused_at = v_at = math.inf
    return d, hr_sd, confused_at, v_at


def _ou(rng: np.random.Generator, t: FloatArray) -> FloatArray:
    """Ornstein-Uhlenbeck drift per vital, exact at irregular times, stationary start."""
    n = t.shape[0]
    z = rng.standard_normal((n, 6))
    x = np.empty((n, 6))
    if n == 0:
        return x
    dt = np.diff(t, prepend=t[0])[:, None]
    a = np.exp(-dt / _DRIFT_TAU_H)
    e = _DRIFT_SD * np.sqrt(1.0 - a * a) * z
    x[0] = _DRIFT_SD * z[0]
    for i in range(1, n):  # ~200 rows per patient: a plain loop is fast enough
        x[i] = a[i] * x[i - 1] + e[i]
    return x


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def _outcome_kind(
    p: PatientProfile, u: float
) -> Literal["icu_transfer", "cardiac_arrest", "death"]:
    arrest, death = (0.45, 0.05) if p.trajectory == "cardiac" else (0.08, 0.04)
    if u < arrest:
        return "cardiac_arrest"
    if u < arrest + death:
        return "death"
    return "icu_transfer"


def simulate_patient(
    profile: PatientProfile, *, start: datetime, config: SimConfig, seed: int
) -> tuple[list[dict[str, Any]], Outcome | None]:
    """Observation sets of one patient from admission at ``start``, and their outcome.

    ``seed`` is the cohort seed: the patient's generator is seeded from
    ``(seed, patient_id)``, so the result equals this patient's share of
    :func:`simulate_cohort` with the same seed. Observations stop at the outcome (the
    patient leaves the ward) or after ``config.hours``. Each dict validates as a
    :class:`~wardwatch.schemas.VitalsEvent`; absent vitals are left out of the dict.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    _check_seed(seed)
    p = profile
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, _PATIENT_TAG, _id_hash(p.patient_id)])
    )

    end_h = config.hours if p.outcome_h is None else min(p.outcome_h, config.hours)
    end_s = int(round(end_h * 3600.0))
    t_raw = _obs_times(rng, end_h, config.obs_interval_min)
    sec = np.rint(t_raw * 3600.0).astype(np.int64)
    sec = sec[sec < end_s]
    t: FloatArray = sec / 3600.0
    n = int(t.shape[0])

    # Per-patient draws come first, in a fixed order, whatever the trajectory.
    circ_amp = _CIRC_AMP * rng.uniform(0.6, 1.4, size=6)
    circ_phase = _CIRC_PHASE + rng.normal(0.0, 1.0, size=6)
    max_boost = float(rng.uniform(5.0, 9.0))
    o2_efficacy = float(rng.uniform(0.6, 0.9))
    outcome_u = float(rng.random())
    s = _progression(t, p, rng)
    delta, hr_extra_sd, confused_at, v_at = _deterioration(s, p, rng)

    base = np.array([p.baseline[k] for k in _VITALS])
    clock0 = start.hour + start.minute / 60.0 + start.second / 3600.0
    clock = (clock0 + t)[:, None]
    circ = circ_amp * np.cos(2.0 * np.pi * (clock - circ_phase) / 24.0)
    drift = _ou(rng, t)
    drift[:, _DBP] += 0.4 * drift[:, _SBP]  # systolic and diastolic drift together
    latent = base + circ + drift + delta

    # Oxygen: started by the ward rule (sustained SpO2 below target, nurse responds at a
    # given observation with probability 0.5), titrated towards target within the
    # capacity of the device, weaned slowly once SpO2 off oxygen is back in range.
    scale2 = p.copd
    start_below, target, wean_at = (87.0, 90.0, 90.5) if scale2 else (93.0, 95.0, 95.5)
    u_o2 = rng.random((n, 2))
    on_o2 = np.empty(n, dtype=np.bool_)
    on = p.baseline_on_oxygen
    raw_spo2 = latent[:, _SPO2].tolist()
    for i in range(n):
        if not on and raw_spo2[i] < start_below and u_o2[i, 0] < 0.5:
            on = True
        elif on and not p.baseline_on_oxygen and raw_spo2[i] >= wean_at and u_o2[i, 1] < 0.15:
            on = False
        on_o2[i] = on
    boost = np.clip(target - latent[:, _SPO2], 0.0, max_boost) * o2_efficacy
    latent[:, _SPO2] += np.where(on_o2, boost, 0.0)

    # Measurement: device noise (+ beat-to-beat irregularity in arrhythmia), limits.
    meas = latent + _NOISE_SD * rng.standard_normal((n, 6))
    meas[:, _HR] += hr_extra_sd * rng.standard_normal(n)
    meas = np.clip(meas, _LO, _HI)

    # Isolated artifacts: SpO2 probe off / poor perfusion, motion HR spike, misplaced
    # thermometer. One reading; the next set is normal again.
    art = rng.random(n) < config.artifact_prob
    art_kind = rng.random(n)
    art_val = rng.random(n)
    art_spo2 = art & (art_kind < 0.5)
    art_hr = art & (art_kind >= 0.5) & (art_kind < 0.85)
    art_temp = art & (art_kind >= 0.85)
    meas[:, _SPO2] = np.where(art_spo2, 70.0 + 10.0 * art_val, meas[:, _SPO2])
    meas[:, _HR] = np.where(
        art_hr, np.minimum(meas[:, _HR] + 40.0 + 30.0 * art_val, 200.0), meas[:, _HR]
    )
    meas[:, _TEMP] = np.where(art_temp, 34.0 + 1.0 * art_val, meas[:, _TEMP])

    meas[:, _DBP] = np.maximum(np.minimum(meas[:, _DBP], meas[:, _SBP] - 10.0), _LO[_DBP])
    charted = np.rint(meas)
    charted[:, _TEMP] = np.round(meas[:, _TEMP], 1)

    # Consciousness (ACVPU), fluctuating near the patient's thresholds like delirium.
    u_c = rng.random(n)
    p_v = _sigmoid((s - v_at) / 0.04) if math.isfinite(v_at) else np.zeros(n)
    p_c = _sigmoid((s - confused_at) / 0.04) if math.isfinite(confused_at) else np.zeros(n)
    acvpu = np.where(u_c < p_v, "V", np.where(u_c < p_c, "C", "A")).tolist()

    # Missingness: HR, RR, SpO2 (+ oxygen), BP (one cuff reading), temperature.
    present = rng.random((n, 5)) >= config.missing_prob
    present[:, 0] |= art_hr
    present[:, 2] |= art_spo2
    present[:, 4] |= art_temp
    present[~present.any(axis=1), 0] = True

    outcome: Outcome | None = None
    if p.outcome_h is not None and p.outcome_h <= config.hours:
        outcome = Outcome(
            patient_id=p.patient_id,
            ts=start + timedelta(seconds=end_s),
            kind=_outcome_kind(p, outcome_u),
            cause=p.trajectory,
        )

    device_id = f"bedside-{_id_hash(p.patient_id) % 1_000_000:06d}"
    rows = charted.tolist()
    pres = present.tolist()
    oxy = on_o2.tolist()
    secs = sec.tolist()
    every = config.consciousness_every
    events: list[dict[str, Any]] = []
    for i in range(n):
        hr, rr, spo2, sbp, dbp, temp = rows[i]
        p_hr, p_rr, p_spo2, p_bp, p_temp = pres[i]
        ev: dict[str, Any] = {
            "patient_id": p.patient_id,
            "ts": start + timedelta(seconds=secs[i]),
            "device_id": device_id,
        }
        if p_hr:
            ev["heart_rate_bpm"] = hr
        if p_rr:
            ev["respiratory_rate_per_min"] = rr
        if p_spo2:
            ev["spo2_pct"] = spo2
            ev["on_oxygen"] = oxy[i]
        if p_bp:
            ev["systolic_bp_mmhg"] = sbp
            ev["diastolic_bp_mmhg"] = dbp
        if p_temp:
            ev["temperature_c"] = temp
        if i % every == 0:
            ev["consciousness"] = acvpu[i]
        if scale2:
            ev["spo2_scale"] = 2
        events.append(ev)
    return events, outcome


# --------------------------------------------------------------------------------------
# Cohorts and the live stream
# --------------------------------------------------------------------------------------


def simulate_cohort(
    n: int, *, seed: int, start: datetime, config: SimConfig = SimConfig()
) -> Cohort:
    """``n`` patients admitted at ``start``: profiles, merged observations, outcomes."""
    profiles = make_profiles(n, seed=seed, config=config)
    events: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    for p in profiles:
        evs, outcome = simulate_patient(p, start=start, config=config, seed=seed)
        events.extend(evs)
        if outcome is not None:
            outcomes.append(outcome)
    events.sort(key=lambda e: (e["ts"], e["patient_id"]))
    outcomes.sort(key=lambda o: (o.ts, o.patient_id))
    return Cohort(profiles=profiles, events=events, outcomes=outcomes)


def stream_events(
    n: int, *, seed: int, start: datetime, config: SimConfig = SimConfig()
) -> Iterator[tuple[str, dict[str, Any] | Outcome]]:
    """Time-ordered ``("vitals", event)`` / ``("outcome", Outcome)`` items for a publisher.

    Same data and order as :func:`simulate_cohort` (an outcome follows any observation
    with the same timestamp). Patients are simulated when the stream is first advanced.
    """
    profiles = make_profiles(n, seed=seed, config=config)

    def one(
        p: PatientProfile,
    ) -> Iterator[tuple[datetime, str, int, str, dict[str, Any] | Outcome]]:
        evs, outcome = simulate_patient(p, start=start, config=config, seed=seed)
        for ev in evs:
            yield ev["ts"], p.patient_id, 0, "vitals", ev
        if outcome is not None:
            yield outcome.ts, p.patient_id, 1, "outcome", outcome

    merged = heapq.merge(*(one(p) for p in profiles), key=lambda x: (x[0], x[1], x[2]))
    for _ts, _pid, _order, kind, item in merged:
        yield kind, item
