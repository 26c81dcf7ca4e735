"""The simulator's parameters fitted to a real hourly ICU export (``simulator/reference.json``).

The default simulator (``SimConfig(grounding="mimic-iv-demo")``) draws the spread and the
cross-vital correlation of the patients' baselines, the size, time constant and
cross-vital correlation of the within-patient drift, the short-term (hour-to-hour)
variation, the charting intervals and the per-vital missingness from this file; the
hand-chosen parameters (``grounding="hand"``) stay available for comparison.

The file is written by :func:`trainer.grounding.fit_reference` (``python -m
trainer.grounding fit EXPORT``) from the MIMIC-IV demo's YAIB export; it holds aggregates
only, with its provenance. This module only reads JSON (no parquet, no SciPy).
``docs/simulator.md`` says what is fitted to what and what is still chosen by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from wardwatch.schemas import NUMERIC_VITALS

__all__ = ["REFERENCE_PATH", "Reference", "load_reference", "reference"]

FloatArray = npt.NDArray[np.float64]
VITALS: tuple[str, ...] = NUMERIC_VITALS  # the column order of simulator.physiology

REFERENCE_PATH = Path(__file__).with_name("reference.json")
"""The committed fitted targets."""


def _chol(corr: Any) -> FloatArray:
    """Cholesky factor of a correlation matrix (made positive definite first)."""
    c = np.asarray(corr, dtype=np.float64)
    c = 0.5 * (c + c.T)
    w, v = np.linalg.eigh(c)
    c = (v * np.maximum(w, 1e-6)) @ v.T
    d = np.sqrt(np.diag(c))
    c = c / np.outer(d, d)
    out: FloatArray = np.linalg.cholesky(c)
    return out


def _pmf(p: Any) -> FloatArray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or np.any(arr < 0) or arr.sum() <= 0:
        raise ValueError("a gap distribution must be a non-empty list of non-negative weights")
    out: FloatArray = arr / arr.sum()
    return out


@dataclass(frozen=True, eq=False)
class Reference:
    """The fitted simulator parameters, per vital in ``NUMERIC_VITALS`` order."""

    source: str
    baseline_sd: FloatArray
    """Between-patient sd of the resting values (after the ward factor)."""
    baseline_chol: FloatArray
    """Cholesky factor of the between-patient (baseline) correlation."""
    drift_sd: FloatArray
    """Stationary sd of the slow Ornstein-Uhlenbeck drift."""
    drift_tau_h: FloatArray
    """Time constant of the drift, hours."""
    drift_chol: FloatArray
    """Cholesky factor of the within-patient (drift) correlation."""
    noise_sd: FloatArray
    """Hour-to-hour variation plus device noise (never below the device's noise)."""
    set_gap_pmf: FloatArray
    """P(the next observation set is k charting slots later), k = 1, 2, ..."""
    first_set_pmf: FloatArray
    """P(the first set is in slot k), k = 0, 1, ... (admission paperwork first)."""
    last_set_pmf: FloatArray
    """P(the last k slots of a stay without an outcome have no set), k = 0, 1, ..."""
    omit_prob: FloatArray
    """Per set: P(HR / RR / SpO2 / BP is not charted) when the set is taken."""
    temp_gap_pmf: FloatArray
    """P(the next temperature is k slots after the last), k = 1, 2, ..."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reference:
        sim = d["simulator"]
        vitals = list(d["vitals"])
        if vitals != list(VITALS):
            raise ValueError(f"reference vitals {vitals} are not the simulator's {list(VITALS)}")

        def vec(key: str) -> FloatArray:
            arr = np.asarray(sim[key], dtype=np.float64)
            if arr.shape != (len(VITALS),) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"reference {key} must be {len(VITALS)} non-negative numbers")
            return arr

        omit = np.asarray(sim["omit_prob"], dtype=np.float64)
        if omit.shape != (4,) or np.any(omit < 0) or np.any(omit >= 1):
            raise ValueError("reference omit_prob must be 4 probabilities (HR, RR, SpO2, BP)")
        tau = vec("drift_tau_h")
        if np.any(tau <= 0):
            raise ValueError("reference drift_tau_h must be positive")
        return cls(
            source=str(d["provenance"]["source"]),
            baseline_sd=vec("baseline_sd"),
            baseline_chol=_chol(sim["baseline_corr"]),
            drift_sd=vec("drift_sd"),
            drift_tau_h=tau,
            drift_chol=_chol(sim["drift_corr"]),
            noise_sd=vec("noise_sd"),
            set_gap_pmf=_pmf(sim["set_gap_pmf"]),
            first_set_pmf=_pmf(sim["first_set_pmf"]),
            last_set_pmf=_pmf(sim["last_set_pmf"]),
            omit_prob=omit,
            temp_gap_pmf=_pmf(sim["temp_gap_pmf"]),
        )


def load_reference(path: Path = REFERENCE_PATH) -> Reference:
    """Read and check a reference file."""
    return Reference.from_dict(json.loads(path.read_text()))


@cache
def reference() -> Reference:
    """The committed reference (read once)."""
    return load_reference()
