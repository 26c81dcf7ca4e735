"""Training data: per-patient feature sequences, labels, NEWS2, patient-level splits.

A :class:`Dataset` is built from a seeded simulated cohort (:func:`from_simulation`) or
from any list of vitals events plus outcomes (:func:`from_events`, which the Kafka
reader can feed). For each observation it holds:

* the feature vector (:func:`models.features.step`, the same code the worker runs);
* the label: 1 when the patient has a deterioration outcome within the next
  ``horizon_h`` hours of that observation (``0 < outcome - obs <= horizon``), else 0;
* the NEWS2 total the worker would have shown: :func:`models.news2.news2_from_vitals`
  on the carried-forward current vitals (latest value per vital seen within the last
  4 h, as :func:`wardwatch.patient.apply_event`), 0 when nothing is scoreable;
* the observation time (hours since the patient's first observation).

Patients are assigned to train / val / test by a seeded permutation of their ids, so no
patient is in two splits.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from models.features import NORM, FeatureState, featurize_sequence, ts_to_ms
from models.news2 import news2_from_vitals
from simulator import SimConfig, simulate_cohort
from wardwatch.schemas import VITAL_FIELDS, Outcome

__all__ = [
    "NEWS2_MAX_AGE_MS",
    "Dataset",
    "PatientSeq",
    "from_events",
    "from_simulation",
    "news2_sequence",
]

NEWS2_MAX_AGE_MS = 4 * 3600 * 1000
"""A carried-forward value counts towards NEWS2 for this long (the worker's default)."""

SPLITS = ("train", "val", "test")


@dataclass
class PatientSeq:
    """One patient's observations."""

    patient_id: str
    x: npt.NDArray[np.float32]  # [T, F]
    y: npt.NDArray[np.int8]  # [T]
    news2: npt.NDArray[np.int16]  # [T]
    t_h: npt.NDArray[np.float64]  # [T] hours since the first observation
    outcome_h: float | None  # hours since the first observation, None without outcome
    spo2_scale: int


@dataclass
class Dataset:
    patients: list[PatientSeq]
    split: dict[str, list[int]]  # split name -> indices into patients
    horizon_h: float
    source: dict[str, Any] = field(default_factory=dict)

    def subset(self, name: str) -> list[PatientSeq]:
        return [self.patients[i] for i in self.split[name]]

    def fingerprint(self) -> str:
        """sha256 over every array (and split assignment) in a fixed order."""
        h = hashlib.sha256()
        h.update(f"horizon={self.horizon_h}".encode())
        for name in SPLITS:
            h.update(name.encode())
            for i in self.split[name]:
                p = self.patients[i]
                h.update(p.patient_id.encode())
                for arr in (p.x, p.y, p.news2, p.t_h):
                    h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"horizon_h": self.horizon_h, "source": self.source}
        for name in SPLITS:
            ps = self.subset(name)
            n_obs = int(sum(len(p.y) for p in ps))
            n_pos = int(sum(int(p.y.sum()) for p in ps))
            out[name] = {
                "patients": len(ps),
                "observations": n_obs,
                "positive_observations": n_pos,
                "patients_with_outcome": sum(p.outcome_h is not None for p in ps),
            }
        return out


def news2_sequence(
    events: Sequence[Mapping[str, Any]], max_age_ms: int = NEWS2_MAX_AGE_MS
) -> npt.NDArray[np.int16]:
    """NEWS2 total per event over carried-forward current vitals (worker semantics)."""
    latest: dict[str, tuple[Any, int]] = {}
    scale = 1
    out = np.zeros(len(events), dtype=np.int16)
    for i, ev in enumerate(events):
        ts = ts_to_ms(ev["ts"])
        for name in VITAL_FIELDS:
            value = ev.get(name)
            if value is not None:
                latest[name] = (value, ts)
        if ev.get("spo2_scale") is not None:
            scale = int(ev["spo2_scale"])
        current = {k: v for k, (v, seen) in latest.items() if ts - seen <= max_age_ms}
        total = news2_from_vitals(current, spo2_scale=scale).total
        out[i] = 0 if total is None else total
    return out


def _split(ids: Sequence[str], seed: int, fractions: tuple[float, float]) -> dict[str, list[int]]:
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0x53504C54])).permutation(len(order))
    shuffled = [order[int(j)] for j in perm]
    n_train = int(round(fractions[0] * len(ids)))
    n_val = int(round(fractions[1] * len(ids)))
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train : n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val :]),
    }


def from_events(
    events: Iterable[Mapping[str, Any]],
    outcomes: Iterable[Outcome | Mapping[str, Any]],
    *,
    horizon_h: float = 12.0,
    split_seed: int = 0,
    fractions: tuple[float, float] = (0.6, 0.2),
    source: dict[str, Any] | None = None,
) -> Dataset:
    """Build a :class:`Dataset` from vitals event dicts and outcomes (any order).

    Events of one patient are sorted by time (stable). A patient's first outcome is the
    label source; events after it are dropped (the patient has left the ward).
    """
    by_patient: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for ev in events:
        by_patient[str(ev["patient_id"])].append(ev)
    first_outcome: dict[str, int] = {}
    for o in outcomes:
        kind: str
        if isinstance(o, Outcome):
            pid, o_ms, kind = o.patient_id, ts_to_ms(o.ts), o.kind
        else:
            pid, o_ms, kind = str(o["patient_id"]), ts_to_ms(o["ts"]), str(o.get("kind", ""))
        if kind == "none":
            continue
        first_outcome[pid] = min(o_ms, first_outcome.get(pid, o_ms))

    horizon_ms = horizon_h * 3_600_000.0
    patients: list[PatientSeq] = []
    for pid in sorted(by_patient):
        evs = sorted(by_patient[pid], key=lambda e: ts_to_ms(e["ts"]))
        out_ms = first_outcome.get(pid)
        if out_ms is not None:
            evs = [e for e in evs if ts_to_ms(e["ts"]) < out_ms]
        if not evs:
            continue
        ts = np.array([ts_to_ms(e["ts"]) for e in evs], dtype=np.int64)
        if out_ms is None:
            y = np.zeros(len(evs), dtype=np.int8)
        else:
            y = ((out_ms - ts) <= horizon_ms).astype(np.int8)
        scale = 1
        for e in evs:
            if e.get("spo2_scale") is not None:
                scale = int(e["spo2_scale"])
        patients.append(
            PatientSeq(
                patient_id=pid,
                x=featurize_sequence(evs, NORM, FeatureState()),
                y=y,
                news2=news2_sequence(evs),
                t_h=(ts - ts[0]) / 3_600_000.0,
                outcome_h=None if out_ms is None else (out_ms - int(ts[0])) / 3_600_000.0,
                spo2_scale=scale,
            )
        )
    split = _split([p.patient_id for p in patients], split_seed, fractions)
    return Dataset(patients=patients, split=split, horizon_h=horizon_h, source=source or {})


SIM_START = datetime(2024, 1, 1, 6, 0, tzinfo=UTC)


def from_simulation(
    n_patients: int,
    *,
    seed: int,
    horizon_h: float = 12.0,
    config: SimConfig | None = None,
    fractions: tuple[float, float] = (0.6, 0.2),
) -> Dataset:
    """A seeded simulated cohort (``simulator.simulate_cohort``) as a Dataset."""
    cfg = config or SimConfig()
    cohort = simulate_cohort(n_patients, seed=seed, start=SIM_START, config=cfg)
    source = {
        "kind": "simulation",
        "n_patients": n_patients,
        "seed": seed,
        "start": SIM_START.isoformat(),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
    }
    return from_events(
        cohort.events,
        cohort.outcomes,
        horizon_h=horizon_h,
        split_seed=seed,
        fractions=fractions,
        source=source,
    )
