"""One simulated patient's stay: observation times, oxygen, consciousness, charted events.

:func:`simulate_patient` draws the patient's generator from ``(seed, patient_id)`` and, in
a fixed order: irregular observation times, the latent physiology
(:mod:`simulator.physiology`), oxygen started by a simple nursing rule, the device
readings (:mod:`simulator.devices`), consciousness (charted only every Nth set) and
missing vitals; then writes the observation sets as event dicts and the outcome, if any.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator.devices import measure
from simulator.grounded import Reference, reference
from simulator.physiology import (
    CIRC_AMP,
    CIRC_PHASE,
    DBP,
    SBP,
    SPO2,
    VITALS,
    FloatArray,
    deterioration,
    ou_drift,
    outcome_kind,
    progression,
    sigmoid,
)
from simulator.profiles import PatientProfile, SimConfig, check_seed
from wardwatch.schemas import Outcome

__all__ = ["simulate_patient"]

# Domain tag: keeps the observation stream apart from the profile stream of one seed
# (simulator.profiles has the other tag).
_PATIENT_TAG = 0x5041_5449  # "PATI"


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


def _charting_times(
    rng: np.random.Generator, end_h: float, interval_min: float, ref: Reference, *, outcome: bool
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Grounded observation times in [0, end_h) and their charting slots.

    Time is cut into slots of ``interval_min`` (an hour by default, like the export's
    grid). The first set falls in slot ``k0`` (``ref.first_set_pmf``), each next one ``k``
    slots after the last (``ref.set_gap_pmf``, k = 1, 2, ...), at a uniform point of the
    middle 90 % of its slot: at most one set per slot, and the slot gaps are the fitted
    charting intervals. A stay without an outcome stops being charted ``k1`` slots before
    its end (``ref.last_set_pmf``); before an outcome, charting goes on to the end.
    """
    slot_h = interval_min / 60.0
    n_slots = int(math.ceil(end_h / slot_h))
    first = int(rng.choice(ref.first_set_pmf.shape[0], p=ref.first_set_pmf))
    trail = int(rng.choice(ref.last_set_pmf.shape[0], p=ref.last_set_pmf))
    ks = np.arange(1, ref.set_gap_pmf.shape[0] + 1)
    parts: list[npt.NDArray[np.int64]] = [np.array([first], dtype=np.int64)]
    last = first
    est = n_slots + 8
    while last < n_slots:
        chunk = last + np.cumsum(rng.choice(ks, size=est, p=ref.set_gap_pmf))
        parts.append(chunk.astype(np.int64))
        last = int(chunk[-1])
        est = max(8, est // 4)
    slots = np.concatenate(parts)
    times: FloatArray = (slots + rng.uniform(0.05, 0.95, size=slots.shape[0])).astype(np.float64)
    times *= slot_h
    keep = times < end_h
    if not outcome:
        keep &= slots < n_slots - trail
    return times[keep], slots[keep]


def _temperature_schedule(
    rng: np.random.Generator, slots: npt.NDArray[np.int64], gap_pmf: FloatArray
) -> npt.NDArray[np.bool_]:
    """Which sets chart a temperature: the first, then the first set at least ``k``
    slots after the last temperature, ``k`` drawn from ``gap_pmf`` each time."""
    n = int(slots.shape[0])
    gaps = rng.choice(np.arange(1, gap_pmf.shape[0] + 1), size=n, p=gap_pmf).tolist()
    out = np.zeros(n, dtype=np.bool_)
    due = 0
    j = 0
    for i, slot in enumerate(slots.tolist()):
        if slot >= due:
            out[i] = True
            due = slot + gaps[j]
            j += 1
    return out


def _nursing_oxygen(spo2: FloatArray, u_o2: FloatArray, p: PatientProfile) -> npt.NDArray[np.bool_]:
    """Whether the patient is on oxygen at each observation, by the ward rule.

    Started when SpO2 is below target (the nurse responds at a given observation with
    probability 0.5), weaned slowly once SpO2 off oxygen is back in range; never weaned
    from long-term oxygen.
    """
    start_below, wean_at = (87.0, 90.5) if p.copd else (93.0, 95.5)
    n = int(spo2.shape[0])
    on_o2 = np.empty(n, dtype=np.bool_)
    on = p.baseline_on_oxygen
    raw_spo2 = spo2.tolist()
    for i in range(n):
        if not on and raw_spo2[i] < start_below and u_o2[i, 0] < 0.5:
            on = True
        elif on and not p.baseline_on_oxygen and raw_spo2[i] >= wean_at and u_o2[i, 1] < 0.15:
            on = False
        on_o2[i] = on
    return on_o2


def simulate_patient(
    profile: PatientProfile, *, start: datetime, config: SimConfig, seed: int
) -> tuple[list[dict[str, Any]], Outcome | None]:
    """Observation sets of one patient from admission at ``start``, and their outcome.

    ``seed`` is the cohort seed: the patient's generator is seeded from
    ``(seed, patient_id)``, so the result equals this patient's share of
    :func:`simulator.simulate_cohort` with the same seed. Observations stop at the outcome (the
    patient leaves the ward) or after ``config.hours``. Each dict validates as a
    :class:`~wardwatch.schemas.VitalsEvent`; absent vitals are left out of the dict.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be a timezone-aware datetime")
    check_seed(seed)
    p = profile
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, _PATIENT_TAG, _id_hash(p.patient_id)])
    )

    end_h = config.hours if p.outcome_h is None else min(p.outcome_h, config.hours)
    end_s = int(round(end_h * 3600.0))
    ref = reference() if config.grounded else None  # fitted physiology
    chart = reference() if config.charted_as_export else None  # fitted charting
    if chart is None:
        t_raw = _obs_times(rng, end_h, config.interval_min)
        slots = np.zeros(t_raw.shape[0], dtype=np.int64)  # unused at the bedside
    else:
        t_raw, slots = _charting_times(
            rng, end_h, config.interval_min, chart, outcome=p.outcome_h is not None
        )
    sec = np.rint(t_raw * 3600.0).astype(np.int64)
    kept = sec < end_s
    sec = sec[kept]
    slots = slots[kept]
    t: FloatArray = sec / 3600.0
    n = int(t.shape[0])

    # Per-patient draws come first, in a fixed order, whatever the trajectory.
    circ_amp = CIRC_AMP * rng.uniform(0.6, 1.4, size=6)
    circ_phase = CIRC_PHASE + rng.normal(0.0, 1.0, size=6)
    max_boost = float(rng.uniform(5.0, 9.0))
    o2_efficacy = float(rng.uniform(0.6, 0.9))
    outcome_u = float(rng.random())
    s = progression(t, p, rng)
    delta, hr_extra_sd, confused_at, v_at = deterioration(s, p, rng)

    base = np.array([p.baseline[k] for k in VITALS])
    clock0 = start.hour + start.minute / 60.0 + start.second / 3600.0
    clock = (clock0 + t)[:, None]
    circ = circ_amp * np.cos(2.0 * np.pi * (clock - circ_phase) / 24.0)
    if ref is None:
        drift = ou_drift(rng, t)
        drift[:, DBP] += 0.4 * drift[:, SBP]  # systolic and diastolic drift together
    else:  # fitted size, time constant and cross-vital correlation
        drift = ou_drift(rng, t, ref.drift_sd, ref.drift_tau_h, ref.drift_chol)
    latent = base + circ + drift + delta

    # Oxygen: started by the ward rule, titrated towards target within the capacity of
    # the device.
    scale2 = p.copd
    target = 90.0 if scale2 else 95.0
    u_o2 = rng.random((n, 2))
    on_o2 = _nursing_oxygen(latent[:, SPO2], u_o2, p)
    boost = np.clip(target - latent[:, SPO2], 0.0, max_boost) * o2_efficacy
    latent[:, SPO2] += np.where(on_o2, boost, 0.0)

    readings = measure(
        latent,
        hr_extra_sd,
        rng,
        artifact_prob=config.artifact_prob,
        noise_sd=None if ref is None else ref.noise_sd,
    )
    charted = readings.charted

    # Consciousness (ACVPU), fluctuating near the patient's thresholds like delirium.
    u_c = rng.random(n)
    p_v = sigmoid((s - v_at) / 0.04) if math.isfinite(v_at) else np.zeros(n)
    p_c = sigmoid((s - confused_at) / 0.04) if math.isfinite(confused_at) else np.zeros(n)
    acvpu = np.where(u_c < p_v, "V", np.where(u_c < p_c, "C", "A")).tolist()

    # Missingness: HR, RR, SpO2 (+ oxygen), BP (one cuff reading), temperature.
    if chart is None or config.missing_prob is not None:
        missing = 0.1 if config.missing_prob is None else config.missing_prob
        present = rng.random((n, 5)) >= missing
    else:  # fitted: each vital's own omission rate, the temperature on its own schedule
        present = np.empty((n, 5), dtype=np.bool_)
        present[:, :4] = rng.random((n, 4)) >= chart.omit_prob
        present[:, 4] = _temperature_schedule(rng, slots, chart.temp_gap_pmf)
    present[:, 0] |= readings.artifact_hr
    present[:, 2] |= readings.artifact_spo2
    present[:, 4] |= readings.artifact_temp
    present[~present.any(axis=1), 0] = True

    outcome: Outcome | None = None
    if p.outcome_h is not None and p.outcome_h <= config.hours:
        outcome = Outcome(
            patient_id=p.patient_id,
            ts=start + timedelta(seconds=end_s),
            kind=outcome_kind(p, outcome_u),
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
