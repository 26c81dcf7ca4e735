"""Who the simulated patients are: the cohort knobs, patient profiles and how they are drawn.

A profile is the simulator's ground truth for one patient: age band, COPD or athlete,
the personal resting value of every vital, and the trajectory (stable, or a kind of
deterioration with its onset, severity and outcome time). Profile ``i`` is drawn from a
generator seeded by ``(seed, i)`` alone, so ``make_profiles(10)`` is a prefix of
``make_profiles(20)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from simulator.grounded import reference

__all__ = [
    "CHARTINGS",
    "GROUNDINGS",
    "TRAJECTORIES",
    "AgeBand",
    "Charting",
    "Grounding",
    "PatientProfile",
    "SimConfig",
    "Trajectory",
    "baseline_centres",
    "hand_baseline_sd",
    "check_seed",
    "make_profiles",
]

Trajectory = Literal["stable", "sepsis", "respiratory_failure", "haemorrhage", "cardiac"]
AgeBand = Literal["18-39", "40-64", "65-79", "80+"]
Grounding = Literal["mimic-iv-demo", "hand"]
GROUNDINGS: tuple[Grounding, ...] = ("mimic-iv-demo", "hand")
"""Physiology. ``mimic-iv-demo``: the spread and correlation of the baselines, the size,
time constant and correlation of the drift and the hour-to-hour variation fitted to the
MIMIC-IV demo (``simulator/reference.json``); ``hand``: the hand-chosen parameters the
simulator had before (kept so that the comparison can be regenerated)."""
Charting = Literal["bedside", "mimic-iv-demo"]
CHARTINGS: tuple[Charting, ...] = ("bedside", "mimic-iv-demo")
"""When vitals are charted. ``bedside``: a set every ~15 min (gamma intervals), each
vital missing with ``missing_prob``; ``mimic-iv-demo``: the export's hourly charting
(fitted gaps between sets, per-vital omission, the temperature's own interval)."""

TRAJECTORIES: tuple[Trajectory, ...] = (
    "stable",
    "sepsis",
    "respiratory_failure",
    "haemorrhage",
    "cardiac",
)

# Domain tag: keeps the profile stream apart from the observation stream of one seed
# (simulator.patient has the other tag).
_PROFILE_TAG = 0x5052_4F46  # "PROF"


@dataclass(frozen=True)
class SimConfig:
    """Knobs shared by every patient of a cohort."""

    hours: float = 48.0
    """Simulated length of stay per patient (observations stop earlier at an outcome)."""
    obs_interval_min: float | None = None
    """Charting interval. ``None``: 15 min at the bedside, 60 min (the export's hourly
    grid) with ``charting="mimic-iv-demo"``. Bedside, intervals are gamma-distributed
    (shape 2) with this mean; with the export's charting, sets fall into slots of this
    length with the fitted slot-gap distribution."""
    deteriorating_fraction: float = 0.3
    """Expected fraction of patients who deteriorate (older patients somewhat more often)."""
    recovering_fraction: float = 0.25
    """Of the deteriorating ones, the fraction who recover without an outcome."""
    missing_prob: float | None = None
    """``None``: 0.1 at the bedside, the fitted per-vital missingness with
    ``charting="mimic-iv-demo"``. A number: every vital is absent from a set with this
    probability (BP as one reading), in place of any fitted schedule."""
    artifact_prob: float = 0.005
    """Per observation set: an isolated implausible-but-possible reading."""
    consciousness_every: int = 4
    """Consciousness (ACVPU) is charted on every Nth observation set only."""
    grounding: Grounding = "mimic-iv-demo"
    """Physiology: fitted to the MIMIC-IV demo (default) or chosen by hand."""
    charting: Charting = "bedside"
    """Charting: the bedside stream (default) or the export's hourly charting."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise ValueError(f"hours must be positive, got {self.hours}")
        if self.obs_interval_min is not None and not (
            math.isfinite(self.obs_interval_min) and self.obs_interval_min > 0
        ):
            raise ValueError(f"obs_interval_min must be positive, got {self.obs_interval_min}")
        for name in ("deteriorating_fraction", "recovering_fraction", "missing_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= self.artifact_prob <= 1.0:
            raise ValueError(f"artifact_prob must be in [0, 1], got {self.artifact_prob}")
        if self.consciousness_every < 1:
            raise ValueError(f"consciousness_every must be >= 1, got {self.consciousness_every}")
        if self.grounding not in GROUNDINGS:
            raise ValueError(f"grounding must be one of {GROUNDINGS}, got {self.grounding!r}")
        if self.charting not in CHARTINGS:
            raise ValueError(f"charting must be one of {CHARTINGS}, got {self.charting!r}")

    @property
    def grounded(self) -> bool:
        """Physiology fitted to the export."""
        return self.grounding != "hand"

    @property
    def charted_as_export(self) -> bool:
        """Charting fitted to the export."""
        return self.charting != "bedside"

    @property
    def interval_min(self) -> float:
        """The charting interval in effect (``obs_interval_min`` or its default)."""
        if self.obs_interval_min is not None:
            return self.obs_interval_min
        return 60.0 if self.charted_as_export else 15.0


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


# --------------------------------------------------------------------------------------
# Drawing profiles
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
_SPECS = (_HR_BASE, _RR_BASE, _SPO2_BASE, _SBP_BASE, _DBP_BASE, _TEMP_BASE)

# Deterioration kinds among the deteriorating (without / with COPD).
_TRAJ_DET: tuple[Trajectory, ...] = ("sepsis", "respiratory_failure", "haemorrhage", "cardiac")
_TRAJ_P = np.array([0.35, 0.28, 0.15, 0.22])
_TRAJ_P_COPD = np.array([0.25, 0.55, 0.07, 0.13])


_Baselines = tuple[float, float, float, float, float, float, bool]
# Resting values are clipped to these ward ranges (HR, RR, SpO2, SBP, DBP, temperature).
_BASE_LO = (56.0, 11.0, 95.5, 98.0, 50.0, 36.1)
_BASE_HI = (98.0, 20.0, 99.5, 185.0, 105.0, 37.4)


def _hand_baselines(
    rng: np.random.Generator, band: int, *, copd: bool, athlete: bool
) -> _Baselines:
    """Independent normal resting values per age band (the hand-chosen parameters)."""

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
    return hr, rr, spo2, sbp, dbp, temp, baseline_on_oxygen


def _grounded_baselines(
    rng: np.random.Generator, band: int, *, copd: bool, athlete: bool
) -> _Baselines:
    """Correlated resting values: the age band's centre plus the fitted spread and
    between-patient correlation (``simulator/reference.json``), clipped to the ward ranges.

    Draws from ``rng`` exactly as :func:`_hand_baselines` does (one standard normal where
    that draws a normal), so a patient's age band, COPD, trajectory, onset and outcome are
    the same under both groundings.
    """
    ref = reference()
    z = np.zeros(6)
    athlete_hr = float(rng.uniform(45.0, 55.0)) if athlete else None
    if athlete_hr is None:
        z[0] = rng.standard_normal()
    z[1] = rng.standard_normal()
    z[2] = rng.standard_normal()
    copd_rr = copd_spo2 = 0.0
    if copd:
        copd_rr = float(rng.uniform(1.5, 4.0))
        copd_spo2 = float(rng.uniform(88.5, 92.0))
    baseline_on_oxygen = copd and bool(rng.random() < 0.25)
    z[3] = rng.standard_normal()
    z[4] = rng.standard_normal()
    z[5] = rng.standard_normal()
    centre = [spec[band][0] for spec in _SPECS]
    v = np.clip(np.array(centre) + ref.baseline_sd * (ref.baseline_chol @ z), _BASE_LO, _BASE_HI)
    hr = athlete_hr if athlete_hr is not None else float(v[0])
    rr, spo2, sbp = float(v[1]), float(v[2]), float(v[3])
    if copd:
        rr = float(min(rr + copd_rr, 22.0))
        spo2 = copd_spo2
    dbp = float(min(float(v[4]), sbp - 30.0))
    return hr, rr, spo2, sbp, dbp, float(v[5]), baseline_on_oxygen


def _profile(i: int, *, seed: int, config: SimConfig, id_prefix: str) -> PatientProfile:
    rng = np.random.default_rng(np.random.SeedSequence([seed, _PROFILE_TAG, i]))
    band = int(rng.choice(4, p=_AGE_P))
    age_band = _AGE_BANDS[band]
    copd = bool(rng.random() < _COPD_P[band])
    athlete = (not copd) and bool(rng.random() < _ATHLETE_P[band])

    if config.grounded:
        hr, rr, spo2, sbp, dbp, temp, baseline_on_oxygen = _grounded_baselines(
            rng, band, copd=copd, athlete=athlete
        )
    else:
        hr, rr, spo2, sbp, dbp, temp, baseline_on_oxygen = _hand_baselines(
            rng, band, copd=copd, athlete=athlete
        )
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
    check_seed(seed)
    return [_profile(i, seed=seed, config=config, id_prefix=id_prefix) for i in range(n)]


def baseline_centres() -> tuple[float, ...]:
    """The cohort's mean resting value per vital (age-mix weighted centres of the bands;
    COPD and athletes aside), in ``NUMERIC_VITALS`` order."""
    return tuple(float(_AGE_P @ np.array([m for m, _ in spec])) for spec in _SPECS)


def hand_baseline_sd() -> tuple[float, ...]:
    """The hand-chosen between-patient sd per vital (age-mix weighted over the bands)."""
    return tuple(float(_AGE_P @ np.array([sd for _, sd in spec])) for spec in _SPECS)


def check_seed(seed: int) -> None:
    """Reject anything but a non-negative int (numpy ints included, bools not)."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
