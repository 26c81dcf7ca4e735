"""How close the simulator's vitals are to a real hospital's: the hourly-grid comparison
with the MIMIC-IV demo, and the fit of the simulator's targets to it.

Both sides are put on the same hourly grid before anything is compared: one row per
patient-hour since admission, a value per vital or NaN where none was charted in that
hour. The real export (YAIB ``dyn.parquet``) is on that grid already; a simulated cohort is
resampled onto it, keeping the last value charted within each hour (:func:`cohort_grid`).
Values outside the ingest stage's possible range (:data:`wardwatch.ingest.VITAL_LIMITS`:
a heart rate of 0, a respiratory rate below 1 /min, ...) are dropped from both sides first,
as ingest sets them aside (:func:`drop_impossible`; the counts are reported).

:func:`summarize` gives, per vital: quantiles (5/25/50/75/95), mean and sd, a histogram at
charting resolution (for the two-sample distances), the missingness (share of
patient-hours without a value) and the sampling interval (hours between consecutive
charted hours: median and IQR); and the pairwise Spearman correlation across vitals.
:func:`compare` sets a simulated summary against a reference summary: per vital the
Kolmogorov-Smirnov statistic and the Wasserstein-1 distance, and the max / mean absolute
difference of the correlation matrices. Everything here is a pure function of its inputs
except the readers and writers at the end.

The real export's summary is committed (``trainer/reference/mimic_iv_demo_summary.json``:
aggregates only, no rows, no stay ids), so the trainer never needs the export itself.
:func:`fit_reference` fits the simulator's targets (``simulator/reference.json``).

Run ``python -m trainer.grounding`` to print the comparison (JSON) of the default
(grounded) and the hand-chosen simulator with the committed summary, and ``python -m
trainer.grounding fit EXPORT_DIR`` to rewrite both files from an export.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from simulator import Cohort, SimConfig, simulate_cohort
from simulator.devices import DEVICE_NOISE_SD
from simulator.grounded import REFERENCE_PATH
from simulator.physiology import CIRC_AMP, HAND_DRIFT_SD
from simulator.profiles import baseline_centres, hand_baseline_sd
from wardwatch.ingest import VITAL_LIMITS
from wardwatch.schemas import NUMERIC_VITALS

__all__ = [
    "QUANTILES",
    "SUMMARY_PATH",
    "VITALS",
    "YAIB_COLUMNS",
    "cohort_grid",
    "compare",
    "drop_impossible",
    "fit_reference",
    "grounding_report",
    "training_grounding",
    "histogram",
    "intervals",
    "ks_statistic",
    "load_summary",
    "missingness",
    "read_export",
    "simulated_summary",
    "spearman_matrix",
    "summarize",
    "wasserstein",
]

FloatArray = npt.NDArray[np.float64]
Grid = list[FloatArray]
"""One ``(hours, 6)`` array per patient, columns in :data:`VITALS` order, NaN = not charted."""

VITALS: tuple[str, ...] = NUMERIC_VITALS
YAIB_COLUMNS: dict[str, str] = {
    "heart_rate_bpm": "hr",
    "respiratory_rate_per_min": "resp",
    "spo2_pct": "o2sat",
    "systolic_bp_mmhg": "sbp",
    "diastolic_bp_mmhg": "dbp",
    "temperature_c": "temp",
}
"""Vitals event field -> YAIB ``dyn.parquet`` column (same units)."""
QUANTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
SUMMARY_PATH = Path(__file__).resolve().parent / "reference" / "mimic_iv_demo_summary.json"
"""The committed summary of the MIMIC-IV demo export."""
_BIN_WIDTH = {"temperature_c": 0.1}  # charting resolution; 1 for the others
_TASKS = ("mortality24", "sepsis", "aki")
_MAX_GAP = 24  # slot gaps longer than this (hours) are folded into the last bin
_SOURCE = (
    "MIMIC-IV Clinical Database Demo (PhysioNet, ODbL v1.0), YAIB hourly export "
    "(demo_data/*/mimic_demo: mortality24, sepsis, aki; stays united by stay and hour)"
)
# Ward ranges a stable simulated ward patient stays within in most sets (the simulator's
# tested guarantee; docs/simulator.md): the fitted spread is shrunk until the normal
# approximation of a stable patient's values puts WARD_COVERAGE of them inside.
WARD_RANGES: dict[str, tuple[float, float]] = {
    "heart_rate_bpm": (50.0, 100.0),
    "respiratory_rate_per_min": (10.0, 22.0),
    "spo2_pct": (93.0, 101.0),
    "systolic_bp_mmhg": (90.0, 200.0),
    "diastolic_bp_mmhg": (40.0, 110.0),
    "temperature_c": (35.5, 38.0),
}
WARD_COVERAGE = 0.93
# SpO2 and temperature keep the hand-chosen size of their slow part (the resting value's
# spread and the drift): the nursing rule starts oxygen on the latent SpO2, so a wider
# one puts stable ward patients on oxygen, and an ICU's temperatures include fever and
# active cooling that a stable ward patient does not have. Their fitted hour-to-hour
# variation is used (it never reaches the oxygen rule).
HAND_SLOW: tuple[str, ...] = ("spo2_pct", "temperature_c")


# --------------------------------------------------------------------------------------
# The grid: reading, resampling, limits
# --------------------------------------------------------------------------------------


def drop_impossible(grid: Sequence[FloatArray]) -> tuple[Grid, dict[str, int]]:
    """``grid`` with every value outside ingest's possible range set to NaN, and how many
    per vital (the range of :data:`wardwatch.ingest.VITAL_LIMITS`, inclusive)."""
    lo = np.array([VITAL_LIMITS[v].possible_low for v in VITALS])
    hi = np.array([VITAL_LIMITS[v].possible_high for v in VITALS])
    dropped = np.zeros(len(VITALS), dtype=np.int64)
    out: Grid = []
    for a in grid:
        a = np.array(a, dtype=np.float64, copy=True)
        bad = ~np.isnan(a) & ((a < lo) | (a > hi))
        dropped += bad.sum(axis=0)
        a[bad] = np.nan
        out.append(a)
    return out, {v: int(d) for v, d in zip(VITALS, dropped, strict=True)}


def cohort_grid(cohort: Cohort, config: SimConfig, start: datetime) -> Grid:
    """A simulated cohort on the hourly grid: one row per hour from admission (``start``)
    to the end of the stay (the outcome, or ``config.hours``), the last value charted
    within each hour."""
    index = {p.patient_id: i for i, p in enumerate(cohort.profiles)}
    grid: Grid = []
    for p in cohort.profiles:
        end_h = config.hours if p.outcome_h is None else min(p.outcome_h, config.hours)
        grid.append(np.full((max(1, math.ceil(end_h)), len(VITALS)), np.nan))
    for ev in cohort.events:  # time-ordered: a later value in the hour overwrites
        a = grid[index[ev["patient_id"]]]
        h = int((ev["ts"] - start).total_seconds() // 3600)
        if 0 <= h < a.shape[0]:
            for j, v in enumerate(VITALS):
                x = ev.get(v)
                if x is not None:
                    a[h, j] = float(x)
    return grid


def read_export(root: Path) -> Grid:
    """The hourly grid of a YAIB export: ``root`` is one task folder (``dyn.parquet``) or
    a folder of them (the MIMIC-IV demo's ``mortality24``, ``sepsis``, ``aki``: a stay in
    several is united by stay and hour). Stay ids are used to join, then dropped."""
    import pyarrow.parquet as pq

    folders = [root] if (root / "dyn.parquet").is_file() else [root / t for t in _TASKS]
    folders = [f for f in folders if (f / "dyn.parquet").is_file()]
    if not folders:
        raise FileNotFoundError(f"no dyn.parquet under {root}")
    rows: dict[Any, dict[int, list[float]]] = {}
    for folder in folders:
        d = pq.read_table(folder / "dyn.parquet").to_pydict()
        cols = [d.get(YAIB_COLUMNS[v]) for v in VITALS]
        for i, (stay, t) in enumerate(zip(d["stay_id"], d["time"], strict=True)):
            if t is None:
                continue
            hour = int(t.total_seconds() // 3600)
            vals = [math.nan if c is None or c[i] is None else float(c[i]) for c in cols]
            have = rows.setdefault(stay, {}).get(hour)
            if have is None:
                rows[stay][hour] = vals
            else:  # the same stay-hour in two tasks: keep whatever either charted
                rows[stay][hour] = [
                    a if not math.isnan(a) else b for a, b in zip(have, vals, strict=True)
                ]
    grid: Grid = []
    for stay in sorted(rows, key=str):
        hours = rows[stay]
        a = np.full((max(hours) + 1, len(VITALS)), np.nan)
        for h, vals in hours.items():
            if h >= 0:
                a[h] = vals
        grid.append(a)
    return grid


# --------------------------------------------------------------------------------------
# Pure statistics
# --------------------------------------------------------------------------------------


def _width(vital: str) -> float:
    return _BIN_WIDTH.get(vital, 1.0)


def histogram(values: FloatArray, vital: str) -> dict[str, Any]:
    """Counts at charting resolution (bins of 1, 0.1 °C for temperature, centred on the
    charted values) over the ingest-possible range, trimmed to the occupied bins."""
    w = _width(vital)
    lim = VITAL_LIMITS[vital]
    first = math.floor(lim.possible_low / w)
    idx = np.rint(values[~np.isnan(values)] / w).astype(np.int64) - first
    counts = np.bincount(idx, minlength=1) if idx.size else np.zeros(0, dtype=np.int64)
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return {"width": w, "first": 0, "counts": []}
    return {
        "width": w,
        "first": int(first + nz[0]),  # bin index (value / width) of counts[0]
        "counts": counts[nz[0] : nz[-1] + 1].astype(int).tolist(),
    }


def _aligned_cdfs(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[FloatArray, FloatArray]:
    lo = min(a["first"], b["first"])
    hi = max(a["first"] + len(a["counts"]), b["first"] + len(b["counts"]))
    out = []
    for h in (a, b):
        c = np.zeros(hi - lo)
        c[h["first"] - lo : h["first"] - lo + len(h["counts"])] = h["counts"]
        total = c.sum()
        if total <= 0:
            raise ValueError("empty histogram")
        out.append(np.cumsum(c) / total)
    return out[0], out[1]


def ks_statistic(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of two histograms on the same bins."""
    fa, fb = _aligned_cdfs(a, b)
    return float(np.max(np.abs(fa - fb)))


def wasserstein(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Wasserstein-1 (earth mover's) distance of two histograms, in the vital's unit."""
    fa, fb = _aligned_cdfs(a, b)
    return float(np.sum(np.abs(fa - fb)) * float(a["width"]))


def missingness(grid: Sequence[FloatArray]) -> FloatArray:
    """Per vital: the share of patient-hours without a value."""
    rows = np.concatenate([np.asarray(a) for a in grid]) if grid else np.zeros((0, 6))
    out: FloatArray = np.isnan(rows).mean(axis=0) if rows.shape[0] else np.full(6, np.nan)
    return out


def intervals(grid: Sequence[FloatArray], j: int) -> FloatArray:
    """Hours between consecutive charted hours of vital column ``j``, all patients."""
    parts = [np.diff(np.flatnonzero(~np.isnan(a[:, j]))) for a in grid]
    return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)


def _ranks(x: FloatArray) -> FloatArray:
    from scipy.stats import rankdata

    out: FloatArray = rankdata(x)
    return out


def spearman_matrix(rows: FloatArray) -> FloatArray:
    """Pairwise-complete Spearman correlation of the columns of ``rows`` (NaN = missing);
    NaN where a pair has fewer than 3 rows with both values."""
    k = rows.shape[1]
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            ok = ~np.isnan(rows[:, i]) & ~np.isnan(rows[:, j])
            if ok.sum() < 3:
                out[i, j] = out[j, i] = np.nan
                continue
            ri, rj = _ranks(rows[ok, i]), _ranks(rows[ok, j])
            if ri.std() == 0 or rj.std() == 0:
                out[i, j] = out[j, i] = np.nan
                continue
            out[i, j] = out[j, i] = float(np.corrcoef(ri, rj)[0, 1])
    return out


def _r(x: float, nd: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def summarize(
    grid: Sequence[FloatArray], dropped: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The comparable figures of an hourly grid (see the module docstring)."""
    rows = np.concatenate([np.asarray(a) for a in grid]) if grid else np.zeros((0, 6))
    miss = missingness(grid)
    vitals: dict[str, Any] = {}
    for j, v in enumerate(VITALS):
        x = rows[:, j][~np.isnan(rows[:, j])]
        gaps = intervals(grid, j)
        q = np.percentile(x, QUANTILES) if x.size else np.full(len(QUANTILES), np.nan)
        g = np.percentile(gaps, (25, 50, 75)) if gaps.size else np.full(3, np.nan)
        vitals[v] = {
            "n": int(x.size),
            "mean": _r(float(x.mean())) if x.size else None,
            "sd": _r(float(x.std(ddof=1))) if x.size > 1 else None,
            "quantiles": {str(p): _r(float(val)) for p, val in zip(QUANTILES, q, strict=True)},
            "missing": _r(float(miss[j])),
            "interval_h": {"q25": _r(g[0]), "median": _r(g[1]), "q75": _r(g[2])},
            "dropped_impossible": int((dropped or {}).get(v, 0)),
            "histogram": histogram(x, v),
        }
    corr = spearman_matrix(rows)
    return {
        "vitals_order": list(VITALS),
        "patients": len(grid),
        "patient_hours": int(rows.shape[0]),
        "hours_without_vitals": _r(float(np.all(np.isnan(rows), axis=1).mean()))
        if rows.shape[0]
        else None,
        "vitals": vitals,
        "spearman": [[_r(float(c)) for c in r] for r in corr],
    }


def _corr_diff(a: Any, b: Any) -> tuple[float | None, float | None]:
    ca, cb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    iu = np.triu_indices(ca.shape[0], 1)
    d = np.abs(ca[iu] - cb[iu])
    d = d[~np.isnan(d)]
    if not d.size:
        return None, None
    return _r(float(d.max())), _r(float(d.mean()))


def compare(sim: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, Any]:
    """A simulated summary against a reference summary (both from :func:`summarize`)."""
    per: dict[str, Any] = {}
    for v in VITALS:
        s, r = sim["vitals"][v], ref["vitals"][v]
        ok = s["n"] > 0 and r["n"] > 0
        per[v] = {
            "ks": _r(ks_statistic(s["histogram"], r["histogram"])) if ok else None,
            "wasserstein": _r(wasserstein(s["histogram"], r["histogram"])) if ok else None,
            "mean": s["mean"],
            "sd": s["sd"],
            "quantiles": s["quantiles"],
            "missing": s["missing"],
            "missing_abs_diff": _r(abs(s["missing"] - r["missing"]))
            if s["missing"] is not None and r["missing"] is not None
            else None,
            "interval_h": s["interval_h"],
        }
    mx, mean = _corr_diff(sim["spearman"], ref["spearman"])
    ks = [per[v]["ks"] for v in VITALS if per[v]["ks"] is not None]
    miss = [per[v]["missing_abs_diff"] for v in VITALS if per[v]["missing_abs_diff"] is not None]
    return {
        "patients": sim["patients"],
        "patient_hours": sim["patient_hours"],
        "vitals": per,
        "spearman": sim["spearman"],
        "spearman_max_abs_diff": mx,
        "spearman_mean_abs_diff": mean,
        "ks_mean": _r(float(np.mean(ks))) if ks else None,
        "missing_mean_abs_diff": _r(float(np.mean(miss))) if miss else None,
    }


def reference_view(ref: Mapping[str, Any]) -> dict[str, Any]:
    """The reference summary without its histograms (what a version's metadata keeps)."""
    out = {k: v for k, v in ref.items() if k != "vitals"}
    out["vitals"] = {
        v: {k: x for k, x in d.items() if k != "histogram"} for v, d in ref["vitals"].items()
    }
    return out


# --------------------------------------------------------------------------------------
# Fitting the simulator's targets
# --------------------------------------------------------------------------------------


def _pearson_from_spearman(rho: FloatArray) -> FloatArray:
    """Pearson correlation of a bivariate normal with Spearman ``rho`` (2 sin(pi rho / 6))."""
    r = 2.0 * np.sin(np.pi * np.nan_to_num(rho) / 6.0)
    np.fill_diagonal(r, 1.0)
    return r


def _autocorr(dev: Sequence[FloatArray], lags: Sequence[int]) -> FloatArray:
    out = []
    for lag in lags:
        xs = [d[:-lag] for d in dev if d.shape[0] > lag]
        ys = [d[lag:] for d in dev if d.shape[0] > lag]
        if not xs:
            out.append(np.nan)
            continue
        x, y = np.concatenate(xs), np.concatenate(ys)
        ok = ~np.isnan(x) & ~np.isnan(y)
        out.append(float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 10 else np.nan)
    return np.array(out)


def _fit_ou(ac: FloatArray, lags: Sequence[int]) -> tuple[float, float]:
    """``ac(L) ~ a exp(-L / tau)``: the slow share ``a`` and its time constant ``tau``
    (least squares over a grid; the rest, ``1 - a``, is hour-to-hour variation)."""
    best = (math.inf, 1.0, 1.0)
    lag = np.asarray(lags, dtype=np.float64)
    ok = ~np.isnan(ac)
    for tau in np.geomspace(0.5, 48.0, 200):
        e = np.exp(-lag[ok] / tau)
        a = float(np.clip(e @ ac[ok] / (e @ e), 0.0, 1.0))
        err = float(np.sum((ac[ok] - a * e) ** 2))
        if err < best[0]:
            best = (err, a, float(tau))
    return best[1], best[2]


def _gap_pmf(gaps: FloatArray, first: int = 1) -> list[float]:
    """P(gap = first), P(gap = first + 1), ... (gaps above _MAX_GAP in the last bin)."""
    g = np.clip(np.asarray(gaps).astype(np.int64), first, _MAX_GAP)
    counts = np.bincount(g, minlength=_MAX_GAP + 1)[first:].astype(np.float64)
    pmf = counts / counts.sum()
    while len(pmf) > 1 and pmf[-1] == 0:
        pmf = pmf[:-1]
    return [round(float(p), 5) for p in pmf]


def _ward_factor(vital: str, total_sd: float, floor_sd: float) -> float:
    """The largest factor in (0, 1] by which the export's spread may be scaled so that a
    stable patient (normal approximation around the ward centre) is inside the ward
    range in ``WARD_COVERAGE`` of sets."""
    from scipy.stats import norm

    lo, hi = WARD_RANGES[vital]
    mu = baseline_centres()[VITALS.index(vital)]

    def coverage(f: float) -> float:
        sd = math.hypot(f * total_sd, floor_sd)
        return float(norm.cdf((hi - mu) / sd) - norm.cdf((lo - mu) / sd))

    if coverage(1.0) >= WARD_COVERAGE:
        return 1.0
    a, b = 0.0, 1.0
    for _ in range(60):
        m = 0.5 * (a + b)
        a, b = (m, b) if coverage(m) >= WARD_COVERAGE else (a, m)
    return a


def fit_reference(grid: Sequence[FloatArray], dropped: Mapping[str, int]) -> dict[str, Any]:
    """The simulator's targets (``simulator/reference.json``) fitted to an hourly grid.

    Per vital, over stays with at least 3 values: the between-stay sd of the stay means
    and their Spearman correlation (baselines), the within-stay deviations' sd, their
    autocorrelation at lags 1-12 h split into a slow Ornstein-Uhlenbeck part (share and
    time constant) and hour-to-hour variation, and their Spearman correlation (drift).
    Spearman is turned into the Pearson correlation of normal draws. Charting: the
    distribution of hours between hours with any vital (the set gaps), each vital's
    omission rate in those hours (BP: systolic), the temperature's own gap distribution.
    The spread is scaled down per vital by the ward factor (see ``WARD_RANGES``) because
    an ICU stay's variation includes its illness; the circadian rhythm (hand-chosen) is
    taken out of the drift.
    """
    lags = list(range(1, 13))
    k = len(VITALS)
    stays = [np.asarray(a) for a in grid]
    means = np.full((len(stays), k), np.nan)
    devs: list[list[FloatArray]] = [[] for _ in range(k)]
    for i, a in enumerate(stays):
        for j in range(k):
            col = a[:, j]
            if np.sum(~np.isnan(col)) >= 3:
                means[i, j] = np.nanmean(col)
                devs[j].append(col - means[i, j])
    between_sd = np.nanstd(means, axis=0, ddof=1)
    within_sd = np.array([np.nanstd(np.concatenate(d), ddof=1) for d in devs])
    slow, tau = [], []
    for j in range(k):
        a_, t_ = _fit_ou(_autocorr(devs[j], lags), lags)
        slow.append(a_)
        tau.append(t_)
    dev_rows = np.full((sum(a.shape[0] for a in stays), k), np.nan)
    r0 = 0
    for i, a in enumerate(stays):
        dev_rows[r0 : r0 + a.shape[0]] = a - means[i]
        r0 += a.shape[0]
    base_rho = spearman_matrix(means)
    drift_rho = spearman_matrix(dev_rows)

    device = np.asarray(DEVICE_NOISE_SD)
    circ_var = CIRC_AMP**2 / 2.0
    factor = np.array(
        [
            _ward_factor(v, math.hypot(between_sd[j], within_sd[j]), device[j])
            for j, v in enumerate(VITALS)
        ]
    )
    factor[4] = min(factor[3], factor[4])  # blood pressure: one reading, one factor
    factor[3] = factor[4]
    slow_var = (factor * within_sd) ** 2 * np.array(slow)
    fast_var = (factor * within_sd) ** 2 * (1.0 - np.array(slow))
    drift_sd = np.sqrt(np.maximum(slow_var - circ_var, 0.1 * slow_var))
    noise_sd = np.maximum(np.sqrt(fast_var), device)
    baseline_sd = factor * between_sd
    for v in HAND_SLOW:
        j = VITALS.index(v)
        baseline_sd[j] = hand_baseline_sd()[j]
        drift_sd[j] = HAND_DRIFT_SD[j]

    any_gaps = np.concatenate(
        [np.diff(np.flatnonzero(~np.all(np.isnan(a), axis=1))) for a in stays]
    )
    charted_any = np.concatenate([~np.all(np.isnan(a), axis=1) for a in stays])
    charted_rows = [np.flatnonzero(~np.all(np.isnan(a), axis=1)) for a in stays]
    lead = np.array([c[0] for c in charted_rows if c.size])
    trail = np.array(
        [a.shape[0] - 1 - c[-1] for a, c in zip(stays, charted_rows, strict=True) if c.size]
    )
    rows = np.concatenate(stays)
    omit = [1.0 - float(np.mean(~np.isnan(rows[charted_any, j]))) for j in (0, 1, 2, 3)]

    def r(x: Any, nd: int = 4) -> Any:
        return np.round(np.asarray(x, dtype=np.float64), nd).tolist()

    return {
        "provenance": {
            "source": _SOURCE,
            "fitted_by": "trainer.grounding.fit_reference (python -m trainer.grounding fit)",
            "date": date.today().isoformat(),
            "stays": len(stays),
            "patient_hours": int(rows.shape[0]),
            "dropped_impossible": dict(dropped),
            "limits": "values outside wardwatch.ingest.VITAL_LIMITS' possible range dropped",
            "fitted": [
                "baseline spread (between-stay sd of stay means) and correlation",
                "within-stay variation: slow drift (sd, time constant, correlation) and "
                "hour-to-hour variation (autocorrelation at lags 1-12 h)",
                "charting: hours between observation sets, hours before the first and "
                "after the last set, per-vital omission, temperature interval",
            ],
            "hand_chosen": [
                "baseline centres by age band, ward clipping ranges, COPD and athletes",
                "circadian rhythm, device noise floor, artifacts, oxygen rule, consciousness",
                f"the slow part (baseline spread, drift sd) of {list(HAND_SLOW)}: a stable "
                "ward patient is not put on oxygen, nor febrile or hypothermic",
                "no uncharted hours before an outcome (charting stops early only in stays "
                "without one); no stay without any vitals",
                "deterioration trajectories and outcomes",
                f"ward factor: spread scaled so that a stable patient is inside "
                f"{WARD_RANGES} in {WARD_COVERAGE:.0%} of sets",
            ],
        },
        "vitals": list(VITALS),
        "fit": {
            "between_stay_sd": r(between_sd),
            "within_stay_sd": r(within_sd),
            "slow_share": r(slow),
            "baseline_spearman": r(base_rho),
            "drift_spearman": r(drift_rho),
            "ward_factor": r(factor),
        },
        "simulator": {
            "baseline_sd": r(baseline_sd),
            "baseline_corr": r(_pearson_from_spearman(base_rho)),
            "drift_sd": r(drift_sd),
            "drift_tau_h": r(tau, 3),
            "drift_corr": r(_pearson_from_spearman(drift_rho)),
            "noise_sd": r(noise_sd),
            "set_gap_pmf": _gap_pmf(any_gaps),
            "first_set_pmf": _gap_pmf(lead, first=0),
            "last_set_pmf": _gap_pmf(trail, first=0),
            "omit_prob": r(omit),
            "temp_gap_pmf": _gap_pmf(intervals(stays, VITALS.index("temperature_c"))),
        },
    }


# --------------------------------------------------------------------------------------
# Simulated cohorts, the trainer's report block, files
# --------------------------------------------------------------------------------------

_GRID_START = datetime(2024, 1, 1, 6, 0, tzinfo=UTC)


def simulated_summary(
    n: int, *, seed: int, config: SimConfig, start: datetime = _GRID_START
) -> dict[str, Any]:
    """:func:`summarize` of a simulated cohort on the hourly grid (limits applied)."""
    cohort = simulate_cohort(n, seed=seed, start=start, config=config)
    grid, dropped = drop_impossible(cohort_grid(cohort, config, start))
    return summarize(grid, dropped)


def load_summary(path: Path = SUMMARY_PATH) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(path.read_text())
    return out


GROUNDING_MAX_PATIENTS = 500
"""The trainer's report compares at most this many patients of its cohort (the first ones:
by the simulator's prefix property they are exactly those of the training cohort)."""


def grounding_report(
    n: int,
    *,
    seed: int,
    config: SimConfig | None = None,
    reference: Mapping[str, Any] | None = None,
    start: datetime = _GRID_START,
) -> dict[str, Any]:
    """The simulated cohort (first ``n`` patients of ``seed``, ``config``) against the
    reference summary: ``after`` (``config``), ``before`` (the same cohort with the
    hand-chosen parameters at the bedside) and, when ``config`` charts at the bedside,
    ``export_charting`` (the same cohort charted as the export)."""
    config = config or SimConfig()
    ref = dict(reference or load_summary())
    runs: dict[str, SimConfig] = {
        "before": replace(config, grounding="hand", charting="bedside"),
        "after": config,
    }
    if not config.charted_as_export:
        runs["export_charting"] = replace(config, charting="mimic-iv-demo")
    out: dict[str, Any] = {"reference": reference_view(ref)}
    for name, cfg in runs.items():
        block = compare(simulated_summary(n, seed=seed, config=cfg, start=start), ref)
        out[name] = {"grounding": cfg.grounding, "charting": cfg.charting, **block}
    out["cohort"] = {"patients": n, "seed": seed, "hours": config.hours}
    out["grid"] = (
        "hourly since admission, last value charted in the hour; values outside ingest's "
        "possible range dropped (wardwatch.ingest.VITAL_LIMITS)"
    )
    return out


def training_grounding(source: Mapping[str, Any]) -> dict[str, Any]:
    """The block a trained version's metadata keeps: :func:`grounding_report` for the
    simulated training cohort recorded in ``source`` (``Dataset.source``), or why not."""
    if source.get("kind") != "simulation":
        return {"available": False, "reason": f"training data of kind {source.get('kind')!r}"}
    try:
        ref = load_summary()
    except FileNotFoundError as exc:
        return {"available": False, "reason": str(exc)}
    config = SimConfig(**dict(source.get("config") or {}))
    n = min(int(source["n_patients"]), GROUNDING_MAX_PATIENTS)
    start = datetime.fromisoformat(str(source.get("start", _GRID_START.isoformat())))
    return {
        "available": True,
        **grounding_report(n, seed=int(source["seed"]), config=config, reference=ref, start=start),
    }


def write_references(
    export: Path, *, summary_path: Path = SUMMARY_PATH, reference_path: Path = REFERENCE_PATH
) -> dict[str, Any]:
    """Summarize ``export`` into ``summary_path`` and fit ``reference_path`` from it."""
    grid, dropped = drop_impossible(read_export(export))
    summary = summarize(grid, dropped)
    summary["provenance"] = {
        "source": _SOURCE,
        "written_by": "trainer.grounding.write_references (python -m trainer.grounding fit)",
        "date": date.today().isoformat(),
        "contents": "aggregates only: quantiles, histograms at charting resolution, "
        "correlations, intervals, missingness; no rows, no stay ids",
        "limits": "values outside wardwatch.ingest.VITAL_LIMITS' possible range dropped",
    }
    fitted = fit_reference(grid, dropped)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    reference_path.write_text(json.dumps(fitted, indent=1) + "\n")
    return {"summary": str(summary_path), "reference": str(reference_path)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.grounding", description=__doc__)
    sub = parser.add_subparsers(dest="cmd")
    fit = sub.add_parser("fit", help="rewrite the summary and the simulator's reference")
    fit.add_argument("export", type=Path, help="YAIB export folder (e.g. mimic-iv-demo/)")
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.cmd == "fit":
        out: Any = write_references(args.export)
    else:
        out = grounding_report(args.patients, seed=args.seed)
        out.pop("reference")
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
