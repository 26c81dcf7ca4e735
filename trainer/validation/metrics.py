"""Discrimination and calibration, with bootstrap confidence intervals over patients.

* **AUROC**: the probability that a random positive outranks a random negative, ties
  counted one half (the Mann-Whitney form; equal to scikit-learn's ``roc_auc_score``).
* **AUPRC**: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score
  thresholds (scikit-learn's ``average_precision_score``).
* **Bootstrap**: ``n`` resamples of the patients (stays) with replacement, each point
  weighted by how often its patient was drawn; seeded, so the same input and seed give
  the same intervals. Percentile intervals (2.5 %, 97.5 %) over the resamples where the
  metric is defined (both classes present); ``defined`` says how many. The paired
  difference uses the same resamples for both scores.
* **Calibration**: 10 equal-width bins of predicted risk (a risk on an inner edge goes
  to the upper bin, as :mod:`trainer.evaluate` bins them): count, mean predicted,
  observed rate; the expected calibration error ``sum_b n_b / N |mean_b - rate_b|`` and
  the Brier score.

All pure numpy: the resamples are weight matrices over points sorted once per score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Ranked", "auprc", "auroc", "bootstrap", "calibration", "roc_points"]

F = npt.NDArray[np.float64]
CHUNK = 128  # resamples per weight matrix


@dataclass(frozen=True)
class Ranked:
    """Points sorted by one score, with the starts of its runs of tied scores."""

    order: npt.NDArray[np.intp]
    starts: npt.NDArray[np.intp]
    y: F  # labels in score order

    @classmethod
    def of(cls, y: npt.ArrayLike, s: npt.ArrayLike) -> Ranked:
        s_arr = np.asarray(s, dtype=np.float64)
        order = np.argsort(s_arr, kind="mergesort")
        ss = s_arr[order]
        starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]]) if len(ss) else np.array([0])
        return cls(order, starts.astype(np.intp), np.asarray(y, dtype=np.float64)[order])

    def groups(self, w: F) -> tuple[F, F]:
        """Positive and negative weight per tie group (ascending score), per row of
        ``w`` (resamples x points, in the points' original order)."""
        ws = w[:, self.order]
        pos = np.add.reduceat(ws * self.y, self.starts, axis=1)
        neg = np.add.reduceat(ws * (1.0 - self.y), self.starts, axis=1)
        return pos, neg


def _auc(pos: F, neg: F) -> F:
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    p, n = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: F = np.where((p > 0) & (n > 0), num / (p * n), np.nan)
    return out


def _ap(pos: F, neg: F) -> F:
    pos, neg = pos[:, ::-1], neg[:, ::-1]  # descending score
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        p, n = pos.sum(axis=1), neg.sum(axis=1)
        out: F = np.where((p > 0) & (n > 0), (pos * precision).sum(axis=1) / p, np.nan)
    return out


def _point(fn: Any, y: npt.ArrayLike, s: npt.ArrayLike) -> float | None:
    r = Ranked.of(y, s)
    if len(r.y) == 0:
        return None
    v = float(fn(*r.groups(np.ones((1, len(r.y)))))[0])
    return None if np.isnan(v) else v


def auroc(y: npt.ArrayLike, s: npt.ArrayLike) -> float | None:
    """AUROC of score ``s`` for labels ``y`` (None with one class only)."""
    return _point(_auc, y, s)


def auprc(y: npt.ArrayLike, s: npt.ArrayLike) -> float | None:
    """Average precision of ``s`` for ``y`` (None with one class only)."""
    return _point(_ap, y, s)


def _rounded(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def _ci(values: F) -> dict[str, Any]:
    ok = values[~np.isnan(values)]
    if not len(ok):
        return {"ci": None, "defined": 0}
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return {"ci": [_rounded(lo), _rounded(hi)], "defined": int(len(ok))}


def bootstrap(
    y: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    units: npt.ArrayLike,
    *,
    n: int,
    seed: int,
    paired: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """AUROC and AUPRC of each score with bootstrap intervals over ``units`` (the
    patient index of each point); with ``paired=(a, b)``, the interval of AUROC a − b
    on the same resamples (and the share of resamples where it is ≤ 0)."""
    y_arr = np.asarray(y, dtype=np.float64)
    unit = np.asarray(units, dtype=np.intp)
    n_units = int(unit.max()) + 1 if len(unit) else 0
    ranked = {name: Ranked.of(y_arr, s) for name, s in scores.items()}
    boot: dict[str, dict[str, list[F]]] = {k: {"auroc": [], "auprc": []} for k in scores}
    rng = np.random.default_rng(seed)
    done = 0
    while done < n and n_units:
        b = min(CHUNK, n - done)
        draws = rng.integers(0, n_units, size=(b, n_units))
        counts = np.zeros((b, n_units))
        np.add.at(counts, (np.arange(b)[:, None], draws), 1.0)
        w = counts[:, unit]
        for name, r in ranked.items():
            pos, neg = r.groups(w)
            boot[name]["auroc"].append(_auc(pos, neg))
            boot[name]["auprc"].append(_ap(pos, neg))
        done += b
    out: dict[str, Any] = {}
    values = {name: (auroc(y_arr, s), auprc(y_arr, s)) for name, s in scores.items()}
    for name in scores:
        au = np.concatenate(boot[name]["auroc"]) if boot[name]["auroc"] else np.array([])
        ap = np.concatenate(boot[name]["auprc"]) if boot[name]["auprc"] else np.array([])
        out[name] = {
            "auroc": {"value": _rounded(values[name][0]), **_ci(au)},
            "auprc": {"value": _rounded(values[name][1]), **_ci(ap)},
        }
    if paired is not None:
        a, b_ = paired
        va, vb = values[a][0], values[b_][0]
        diff = (
            np.concatenate(boot[a]["auroc"]) - np.concatenate(boot[b_]["auroc"])
            if boot[a]["auroc"]
            else np.array([])
        )
        ok = diff[~np.isnan(diff)]
        out["difference"] = {
            "auroc": {
                "value": None if va is None or vb is None else _rounded(va - vb),
                **_ci(diff),
                "share_le_0": _rounded(float((ok <= 0).mean())) if len(ok) else None,
            }
        }
    out["resamples"] = n
    out["units"] = n_units
    return out


def calibration(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Reliability table (``bins`` equal-width bins), ECE and Brier score."""
    y_arr = np.asarray(y, dtype=np.float64)
    p_arr = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p_arr, edges[1:-1]), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        k = int(sel.sum())
        mean_p = float(p_arr[sel].mean()) if k else None
        rate = float(y_arr[sel].mean()) if k else None
        if mean_p is not None and rate is not None:
            ece += k / len(y_arr) * abs(mean_p - rate)
        table.append(
            {
                "bin": [round(float(edges[b]), 2), round(float(edges[b + 1]), 2)],
                "n": k,
                "mean_predicted": _rounded(mean_p),
                "observed_rate": _rounded(rate),
            }
        )
    n = len(y_arr)
    return {
        "n": n,
        "bins": table,
        "ece": _rounded(ece) if n else None,
        "brier": _rounded(float(np.mean((p_arr - y_arr) ** 2)), 5) if n else None,
    }


def roc_points(y: npt.ArrayLike, s: npt.ArrayLike, most: int = 100) -> list[list[float]]:
    """The ROC curve as at most ``most`` (false positive rate, true positive rate)
    points, from (0, 0) to (1, 1), one per distinct threshold before thinning."""
    r = Ranked.of(y, s)
    if not len(r.y):
        return []
    pos, neg = (g[0][::-1] for g in r.groups(np.ones((1, len(r.y)))))
    p, n = pos.sum(), neg.sum()
    if p == 0 or n == 0:
        return []
    tpr = np.r_[0.0, np.cumsum(pos) / p]
    fpr = np.r_[0.0, np.cumsum(neg) / n]
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(most, len(fpr))).round().astype(int))
    return [[round(float(fpr[i]), 4), round(float(tpr[i]), 4)] for i in keep]
