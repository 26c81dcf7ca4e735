"""The physiology of one simulated patient: rhythms, drift and deterioration of the vitals.

Each numeric vital is modelled at each observation time ``t`` (hours since admission) as::

    baseline + circadian(clock time) + slow AR(1) drift + deterioration(t) + device noise

This module holds the latent parts: the circadian and drift parameters, the severity path
over time (:func:`progression`), what a given trajectory does to each vital and to
consciousness (:func:`deterioration`), the Ornstein-Uhlenbeck drift (:func:`ou_drift`)
and the kind of outcome. Device noise and charting are in :mod:`simulator.devices`;
:mod:`simulator.patient` puts them together. Every function draws from the generator it
is given, in a fixed order.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from simulator.profiles import PatientProfile
from wardwatch.schemas import NUMERIC_VITALS

__all__ = [
    "CIRC_AMP",
    "CIRC_PHASE",
    "DBP",
    "HR",
    "RR",
    "SBP",
    "SPO2",
    "TEMP",
    "VITALS",
    "HAND_DRIFT_SD",
    "FloatArray",
    "deterioration",
    "ou_drift",
    "outcome_kind",
    "progression",
    "sigmoid",
]

FloatArray = npt.NDArray[np.float64]

# Column order of every (n, 6) array in the simulator: the core's NUMERIC_VITALS. The
# per-vital tables (circadian, drift, device noise and limits) are written in this order.
VITALS: tuple[str, ...] = NUMERIC_VITALS
HR, RR, SPO2, SBP, DBP, TEMP = range(len(VITALS))
_ORDER = "heart respiratory spo2 systolic diastolic temperature"
assert [v.split("_")[0] for v in VITALS] == _ORDER.split(), "per-vital tables out of order"


# Circadian rhythm: (mean amplitude, acrophase in clock hours). Cosine, so the nadir is
# 12 h after the acrophase (temperature: peak ~17:00, nadir ~05:00).
CIRC_AMP = np.array([5.0, 0.8, 0.4, 6.0, 4.0, 0.35])
CIRC_PHASE = np.array([15.0, 14.0, 14.0, 14.0, 14.0, 17.0])
# Slow AR(1) (Ornstein-Uhlenbeck) drift: stationary sd and time constant in hours.
_DRIFT_SD = np.array([4.0, 1.2, 0.7, 6.0, 4.0, 0.15])
_DRIFT_TAU_H = np.array([3.0, 2.0, 2.0, 3.0, 3.0, 4.0])
HAND_DRIFT_SD: tuple[float, ...] = tuple(float(x) for x in _DRIFT_SD)
"""The hand-chosen drift sd per vital (what the grounded fit keeps for SpO2 and temperature)."""


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


def progression(t: FloatArray, p: PatientProfile, rng: np.random.Generator) -> FloatArray:
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


def deterioration(
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
        temp = (2.0 if fever else -1.8) * m[TEMP] * pos**0.7
        d[:, TEMP] = temp
        d[:, HR] = 28.0 * m[HR] * pos + 8.5 * np.maximum(temp, 0.0)
        d[:, RR] = 11.0 * m[RR] * pos
        d[:, SBP] = -38.0 * m[SBP] * pos**1.3
        d[:, DBP] = -24.0 * m[SBP] * pos**1.3
        d[:, SPO2] = -3.0 * m[SPO2] * pos
        v_at = confused_at + 0.25
        if never_confused < 0.2:
            confused_at = v_at = math.inf
    elif p.trajectory == "respiratory_failure":
        # Tachypnoea first, then falling SpO2 (oxygen is started by the nursing rule),
        # sympathetic tachycardia; pneumonia in about half (mild fever).
        d[:, RR] = 15.0 * m[RR] * pos
        d[:, SPO2] = -13.0 * m[SPO2] * pos**1.2
        d[:, HR] = 25.0 * m[HR] * pos
        d[:, SBP] = 6.0 * m[SBP] * pos
        d[:, DBP] = 3.0 * m[SBP] * pos
        if variant < 0.5:
            d[:, TEMP] = 1.0 * m[TEMP] * pos
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
        d[:, HR] = m[HR] * np.interp(loss, xp, [0.0, 15.0, 35.0, 55.0, 68.0])
        d[:, SBP] = m[SBP] * np.interp(loss, xp, [0.0, 0.0, -8.0, -30.0, -50.0])
        d[:, DBP] = m[SBP] * np.interp(loss, xp, [0.0, 4.0, 4.0, -12.0, -25.0])
        d[:, RR] = m[RR] * np.interp(loss, xp, [0.0, 0.0, 5.0, 12.0, 18.0])
        d[:, SPO2] = m[SPO2] * np.interp(loss, xp, [0.0, 0.0, 0.0, -1.0, -3.0])
        d[:, TEMP] = -0.2 * pos
        confused_at = max(confused_at, 0.7)
        v_at = confused_at + 0.25
        if never_confused < 0.35:
            confused_at = v_at = math.inf
    elif p.trajectory == "cardiac":
        # Three pictures: fast AF (irregular, high variability), bradyarrhythmia / block,
        # and pump failure with sinus tachycardia and pulmonary oedema.
        if variant < 0.5:
            d[:, HR] = 45.0 * m[HR] * pos
            hr_sd = 12.0 * pos
            d[:, SPO2] = -5.0 * m[SPO2] * pos
            d[:, RR] = 8.0 * m[RR] * pos
        elif variant < 0.7:
            target = min(38.0, base_hr - 10.0)
            d[:, HR] = (target - base_hr) * np.minimum(pos, 1.0) ** 1.5
            hr_sd = 3.0 * pos
            d[:, SPO2] = -3.0 * m[SPO2] * pos
            d[:, RR] = 4.0 * m[RR] * pos
        else:
            d[:, HR] = 30.0 * m[HR] * pos
            d[:, SPO2] = -8.0 * m[SPO2] * pos
            d[:, RR] = 10.0 * m[RR] * pos
        d[:, SBP] = -35.0 * m[SBP] * pos**1.2
        d[:, DBP] = -15.0 * m[SBP] * pos**1.2
        confused_at = max(confused_at, 0.85)
        v_at = confused_at + 0.2
        if never_confused < 0.5:
            confused_at = v_at = math.inf
    else:
        confused_at = v_at = math.inf
    return d, hr_sd, confused_at, v_at


def ou_drift(
    rng: np.random.Generator,
    t: FloatArray,
    sd: FloatArray | None = None,
    tau_h: FloatArray | None = None,
    chol: FloatArray | None = None,
) -> FloatArray:
    """Ornstein-Uhlenbeck drift per vital, exact at irregular times, stationary start.

    ``sd`` and ``tau_h`` default to the hand-chosen values; ``chol`` (a Cholesky factor of
    the cross-vital correlation) correlates the innovations, and so the drift.
    """
    sd = _DRIFT_SD if sd is None else sd
    tau_h = _DRIFT_TAU_H if tau_h is None else tau_h
    n = t.shape[0]
    z = rng.standard_normal((n, 6))
    if chol is not None:
        z = z @ chol.T
    x = np.empty((n, 6))
    if n == 0:
        return x
    dt = np.diff(t, prepend=t[0])[:, None]
    a = np.exp(-dt / tau_h)
    e = sd * np.sqrt(1.0 - a * a) * z
    x[0] = sd * z[0]
    for i in range(1, n):  # ~200 rows per patient: a plain loop is fast enough
        x[i] = a[i] * x[i - 1] + e[i]
    return x


def sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return out


def outcome_kind(p: PatientProfile, u: float) -> Literal["icu_transfer", "cardiac_arrest", "death"]:
    arrest, death = (0.45, 0.05) if p.trajectory == "cardiac" else (0.08, 0.04)
    if u < arrest:
        return "cardiac_arrest"
    if u < arrest + death:
        return "death"
    return "icu_transfer"
