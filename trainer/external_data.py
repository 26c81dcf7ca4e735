"""Real public ICU data for the external check: SurvSet data sets mapped to wardwatch events.

Two real, public cohorts ship inside the ``survset`` wheel (``SurvSet`` package; no
download at run time). :func:`load_rows` maps one of them to observation sets with the
fields of :class:`~wardwatch.schemas.VitalsEvent` and a death-within-horizon label;
:mod:`trainer.external` scores them.

Data sets (``SurvSet.data.SurvLoader().load_dataset(name)["df"]``):

* ``support2``: SUPPORT (Study to Understand Prognoses and Preferences for Outcomes and
  Risks of Treatments; 9,105 seriously ill hospitalised adults, 5 US centres, 1989-94;
  https://hbiostat.org/data/repo/Csupport2.html). Physiology from **day 3** after study
  entry: ``num_hrt`` heart rate, ``num_resp`` respiration rate, ``num_temp`` temperature
  (°C), ``num_meanbp`` mean arterial pressure, ``num_scoma`` SUPPORT coma score (from the
  Glasgow coma scale; 0 = GCS 15). ``time`` = days from study entry to death or last
  follow-up, ``event`` = died.
* ``rhc``: the Right Heart Catheterization study (5,735 ICU adults, SUPPORT sites;
  https://hbiostat.org/data/repo/rhc.html). Physiology from **day 1** of the ICU stay:
  ``num_hrt1``, ``num_resp1``, ``num_temp1``, ``num_meanbp1``, ``num_scoma1``.

Mapping to the wardwatch event fields (:class:`~wardwatch.schemas.VitalsEvent`):

=========================  ===========================================================
event field                source
=========================  ===========================================================
``heart_rate_bpm``         ``hrt`` / ``hrt1``
``respiratory_rate_per_min`` ``resp`` / ``resp1`` (on a ventilator: the recorded rate)
``temperature_c``          ``temp`` / ``temp1`` (already °C)
``consciousness``          ``"A"`` when the coma score is 0 (GCS 15), else ``"C"``
                           (GCS < 15). NEWS2 scores every non-A level 3 and the model's
                           ``not_alert`` feature is binary, so the letter chosen among
                           C/V/P/U does not matter. Sedation is not distinguishable.
``systolic_bp_mmhg``       **missing.** Only the mean arterial pressure is recorded; MAP
                           is not systolic and SBP cannot be recovered without the
                           diastolic pressure (MAP ≈ DBP + (SBP − DBP)/3), so no
                           approximation is used. MAP is reported only as a reference
                           ranker (``reference.map_low``).
``diastolic_bp_mmhg``      missing
``spo2_pct``               missing (only PaO2/FiO2 is recorded; not SpO2)
``on_oxygen``              missing (FiO2 is not in the data)
=========================  ===========================================================

A value outside :data:`wardwatch.ingest.PLAUSIBLE_RANGES` (e.g. a recorded heart rate of
0, which the ingest stage sets aside) is treated as missing and counted.

Label: death within ``horizon_days`` (default 30) of study entry (SUPPORT) / admission
(RHC): ``event == 1 and time <= horizon``. Rows censored alive before the horizon
(``event == 0 and time < horizon``) have no label and are excluded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from wardwatch.ingest import PLAUSIBLE_RANGES

__all__ = [
    "DATASETS",
    "DEFAULT_HORIZON_DAYS",
    "MISSING_FIELDS",
    "SURVSET_VERSION",
    "ExternalSpec",
    "Rows",
    "load_rows",
]

SURVSET_VERSION = "0.2.11"
"""The ``survset`` release the figures in ``docs/trainer.md`` come from."""

DEFAULT_HORIZON_DAYS = 30.0
_TS = datetime(2000, 1, 1, 12, 0, tzinfo=UTC)  # any fixed time: one observation each


@dataclass(frozen=True)
class ExternalSpec:
    """Where each mapped vital lives in one SurvSet data set."""

    name: str
    title: str
    url: str
    measured: str  # when the physiology was recorded
    vitals: Mapping[str, str]  # wardwatch event field -> column
    coma: str  # coma score column (0 = GCS 15)
    mean_bp: str  # mean arterial pressure column (reference only)
    reference_score: str  # the data set's own physiology score (reference only)
    reference_name: str


DATASETS: dict[str, ExternalSpec] = {
    "support2": ExternalSpec(
        name="support2",
        title="SUPPORT (hospitalised seriously ill adults)",
        url="https://hbiostat.org/data/repo/Csupport2.html",
        measured="day 3 after study entry",
        vitals={
            "heart_rate_bpm": "num_hrt",
            "respiratory_rate_per_min": "num_resp",
            "temperature_c": "num_temp",
        },
        coma="num_scoma",
        mean_bp="num_meanbp",
        reference_score="num_sps",
        reference_name="SUPPORT physiology score (sps, day 3, includes labs)",
    ),
    "rhc": ExternalSpec(
        name="rhc",
        title="Right Heart Catheterization study (ICU adults)",
        url="https://hbiostat.org/data/repo/rhc.html",
        measured="day 1 of the ICU stay",
        vitals={
            "heart_rate_bpm": "num_hrt1",
            "respiratory_rate_per_min": "num_resp1",
            "temperature_c": "num_temp1",
        },
        coma="num_scoma1",
        mean_bp="num_meanbp1",
        reference_score="num_aps1",
        reference_name="APACHE III acute physiology score (aps1, day 1, includes labs)",
    ),
}

MISSING_FIELDS: dict[str, str] = {
    "systolic_bp_mmhg": "only mean arterial pressure is recorded; MAP is not systolic and "
    "no approximation is used (left missing)",
    "diastolic_bp_mmhg": "not recorded",
    "spo2_pct": "not recorded (PaO2/FiO2 only)",
    "on_oxygen": "not recorded (no FiO2)",
}


def _survset_loader() -> Any:
    try:
        from SurvSet.data import SurvLoader
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the external check needs survset=={SURVSET_VERSION} (pip install "
            f"'wardwatch[trainer]')"
        ) from exc
    return SurvLoader()


def _plausible(field: str, value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        return None
    lo, hi = PLAUSIBLE_RANGES[field]
    return v if lo <= v <= hi else None


@dataclass
class Rows:
    """One data set mapped to events, with its labels and reference columns."""

    spec: ExternalSpec
    events: list[dict[str, Any]]
    y: npt.NDArray[np.int8]
    reference: npt.NDArray[np.float64]
    mean_bp: npt.NDArray[np.float64]
    excluded_censored: int
    implausible: dict[str, int]
    total_rows: int


def load_rows(
    name: str,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    max_rows: int | None = None,
    seed: int = 0,
) -> Rows:
    """Map a SurvSet data set to wardwatch events and death-within-horizon labels.

    ``max_rows`` draws a seeded random subset of the labelled rows (for fast tests).
    """
    spec = DATASETS[name]
    df = _survset_loader().load_dataset(name)["df"]
    event = df["event"].to_numpy(dtype=np.int64)
    time_d = df["time"].to_numpy(dtype=np.float64)
    censored = (event == 0) & (time_d < horizon_days)
    keep = np.flatnonzero(~censored)
    if max_rows is not None and max_rows < len(keep):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(keep, size=max_rows, replace=False))
    sub = df.iloc[keep]
    y = ((event[keep] == 1) & (time_d[keep] <= horizon_days)).astype(np.int8)

    implausible = dict.fromkeys(spec.vitals, 0)
    events: list[dict[str, Any]] = []
    cols = {f: sub[c].to_numpy(dtype=np.float64) for f, c in spec.vitals.items()}
    coma = sub[spec.coma].to_numpy(dtype=np.float64)
    for i in range(len(sub)):
        ev: dict[str, Any] = {"patient_id": f"{name}-{int(sub['pid'].iloc[i])}", "ts": _TS}
        for f, arr in cols.items():
            raw = arr[i]
            v = _plausible(f, raw)
            if v is None and math.isfinite(raw):
                implausible[f] += 1
            ev[f] = v
        ev["consciousness"] = None if not math.isfinite(coma[i]) else "A" if coma[i] == 0 else "C"
        events.append(ev)
    return Rows(
        spec=spec,
        events=events,
        y=y,
        reference=sub[spec.reference_score].to_numpy(dtype=np.float64),
        mean_bp=sub[spec.mean_bp].to_numpy(dtype=np.float64),
        excluded_censored=int(censored.sum()),
        implausible=implausible,
        total_rows=len(df),
    )
