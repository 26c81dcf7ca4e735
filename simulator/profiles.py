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

__all__ = [
    "TRAJECTORIES",
    "AgeBand",
    "PatientProfile",
    "SimConfig",
    "Trajectory",
    "check_seed",
    "make_profiles",
]

Trajectory = Literal["stable", "sepsis", "respiratory_failure", "haemorrhage", "cardiac"]
AgeBand = Literal["18-39", "40-64", "65-79", "80+"]

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
    check_seed(seed)
    return [_profile(i, seed=seed, config=config, id_prefix=id_prefix) for i in range(n)]


def check_seed(seed: int) -> None:
    """Reject anything but a non-negative int (numpy ints included, bools not)."""
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
