"""Held-out evaluation of the model against NEWS2 (per observation).

Definitions (also in ``docs/trainer.md``):

* **AUROC / AUPRC**: scikit-learn over every test observation; NEWS2 is ranked by its
  total (ties are real: it is an integer score).
* **Operating point**: the alert rate of NEWS2 >= 5 (the fraction of test observations
  at or above 5); the model threshold is the risk quantile giving the same fraction.
* **Sensitivity**: the fraction of positive observations at or above the threshold.
* **Alerts per patient-day**: an alert is a crossing of the threshold from below, per
  patient (the first observation counts as a crossing if it is already above); the
  total over patients divided by the observed patient-days (first to last observation).
* **Lead time**: for patients with an outcome, hours from the first crossing within the
  ``lookback_h`` hours before the outcome to the outcome; median over the patients
  that had such a crossing (``detected`` is their fraction).
* **Calibration**: 10 equal-width bins of predicted risk: count, mean predicted, observed
  rate; plus the expected calibration error and the Brier score.
* **Fused risk** (with ``fused``): the model stacked on NEWS2 (:mod:`models.fusion`), the
  number the alert policy pages on: the same figures at its medium operating point (else
  at the NEWS2 >= 5 alert rate), and ``fused_vs_news2`` / ``model_vs_news2``: AUROC with
  95 % intervals and the paired bootstrap interval of the difference, resampling patients
  (:func:`trainer.stats.paired_bootstrap_auroc`, 1,000 replicates).
* **Operating points** (with ``thresholds``): pages per patient-day of the model-risk
  trigger and patient-level sensitivity at the version's thresholds, with their bounds,
  beside NEWS2 >= 5 (:func:`trainer.operating.operating_summary`).

The readable reports of these figures (Markdown, HTML with plots) are in
:mod:`trainer.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from alerts import PolicyConfig
from trainer.dataset import PatientSeq
from trainer.operating import NEWS2_HIGH, operating_summary
from trainer.stats import paired_bootstrap_auroc

__all__ = ["NEWS2_THRESHOLD", "compare_auroc", "evaluate"]

NEWS2_THRESHOLD = 5
Array = npt.NDArray[Any]


def _safe(fn: Any, y: Array, s: Array) -> float | None:
    if len(y) == 0 or y.min() == y.max():
        return None
    return round(float(fn(y, s)), 4)


def _alerts(
    patients: Sequence[PatientSeq], scores: Sequence[Array], thr: float, lookback_h: float
) -> dict[str, Any]:
    crossings = 0
    days = 0.0
    leads: list[float] = []
    with_outcome = 0
    for p, s in zip(patients, scores, strict=True):
        above = s >= thr
        prev = np.concatenate([[False], above[:-1]])
        cross = above & ~prev
        crossings += int(cross.sum())
        days += max(float(p.t_h[-1] - p.t_h[0]), 0.25) / 24.0
        if p.outcome_h is not None:
            with_outcome += 1
            window = cross & (p.t_h >= p.outcome_h - lookback_h)
            if window.any():
                leads.append(float(p.outcome_h - p.t_h[np.argmax(window)]))
    return {
        "alerts": crossings,
        "patient_days": round(days, 3),
        "alerts_per_patient_day": round(crossings / days, 4) if days else None,
        "median_lead_time_h": round(float(np.median(leads)), 3) if leads else None,
        "detected_outcomes": len(leads),
        "patients_with_outcome": with_outcome,
        "detected_fraction": round(len(leads) / with_outcome, 4) if with_outcome else None,
    }


def _calibration(y: Array, p: Array, bins: int = 10) -> dict[str, Any]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        mean_p = float(p[sel].mean()) if n else None
        obs = float(y[sel].mean()) if n else None
        if n and mean_p is not None and obs is not None:
            ece += n / len(y) * abs(mean_p - obs)
        table.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "n": n,
                "mean_predicted": None if mean_p is None else round(mean_p, 4),
                "observed_rate": None if obs is None else round(obs, 4),
            }
        )
    return {
        "bins": table,
        "ece": round(ece, 4),
        "brier": round(float(brier_score_loss(y, p)), 5) if len(y) else None,
    }


def _scored(
    patients: Sequence[PatientSeq],
    risks: Sequence[Array],
    y: Array,
    threshold: float | None,
    news2_rate: float,
    lookback_h: float,
) -> dict[str, Any]:
    """A risk's figures at ``threshold`` (None: at the NEWS2 >= 5 alert rate)."""
    r = np.concatenate(list(risks))
    if threshold is None:
        # the risk at or above which the same fraction of observations lies
        threshold = float(np.quantile(r, 1.0 - news2_rate)) if news2_rate > 0 else 1.0
    alert = r >= threshold
    pos = y == 1
    return {
        "auroc": _safe(roc_auc_score, y, r),
        "auprc": _safe(average_precision_score, y, r),
        "threshold": round(threshold, 6),
        "alert_rate": round(float(alert.mean()), 4),
        "sensitivity": round(float(alert[pos].mean()), 4) if pos.any() else None,
        "ppv": round(float(y[alert].mean()), 4) if alert.any() else None,
        **_alerts(patients, risks, threshold, lookback_h),
    }


def _block(
    patients: Sequence[PatientSeq],
    risks: Sequence[Array],
    lookback_h: float,
    model_threshold: float | None = None,
    fused: Sequence[Array] | None = None,
    fused_threshold: float | None = None,
) -> dict[str, Any]:
    y = np.concatenate([p.y for p in patients]).astype(np.int64)
    n2 = np.concatenate([p.news2 for p in patients]).astype(np.float64)
    news2_rate = float((n2 >= NEWS2_THRESHOLD).mean())
    news2_alert = n2 >= NEWS2_THRESHOLD
    pos = y == 1
    out: dict[str, Any] = {
        "patients": len(patients),
        "observations": int(len(y)),
        "positive_observations": int(pos.sum()),
        "prevalence": round(float(y.mean()), 4) if len(y) else None,
        "model": _scored(patients, risks, y, model_threshold, news2_rate, lookback_h),
        "news2": {
            "auroc": _safe(roc_auc_score, y, n2),
            "auprc": _safe(average_precision_score, y, n2),
            "threshold": NEWS2_THRESHOLD,
            "alert_rate": round(news2_rate, 4),
            "sensitivity": round(float(news2_alert[pos].mean()), 4) if pos.any() else None,
            "ppv": round(float(y[news2_alert].mean()), 4) if news2_alert.any() else None,
            **_alerts(
                patients,
                [p.news2.astype(np.float64) for p in patients],
                NEWS2_THRESHOLD,
                lookback_h,
            ),
        },
    }
    if fused is not None:
        out["fused"] = _scored(patients, fused, y, fused_threshold, news2_rate, lookback_h)
    return out


def compare_auroc(
    patients: Sequence[PatientSeq],
    scores: Sequence[Array],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """AUROC of ``scores`` (one array per patient) vs NEWS2 with 95 % intervals and the
    patient-level paired bootstrap interval of the difference."""
    y = np.concatenate([p.y for p in patients]).astype(np.float64)
    n2 = np.concatenate([p.news2 for p in patients]).astype(np.float64)
    pid = np.concatenate([np.full(len(p.y), i) for i, p in enumerate(patients)])
    b = paired_bootstrap_auroc(y, [np.concatenate(list(scores)), n2], pid, n_boot=n_boot, seed=seed)
    return {
        "auroc": b["auroc"][0],
        "ci": b["ci"][0],
        "news2_auroc": b["auroc"][1],
        "news2_ci": b["ci"][1],
        "difference": b["difference"],
        "difference_ci": b["difference_ci"],
        "n_boot": b["n_boot"],
        "resampled": b["resampled"],
        "patients": b["patients"],
    }


def evaluate(
    patients: Sequence[PatientSeq],
    risks: Sequence[Array],
    *,
    horizon_h: float,
    lookback_h: float = 24.0,
    fused: Sequence[Array] | None = None,
    thresholds: tuple[float, float] | None = None,
    policy: PolicyConfig | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    news2_high: int | None = NEWS2_HIGH,
) -> dict[str, Any]:
    """Metrics of ``risks`` (one array per patient, calibrated) vs NEWS2 on ``patients``;
    with ``fused`` (the fused risk per patient) also its figures and both AUROC
    comparisons with NEWS2, with ``thresholds`` (medium, high) the operating points'
    (pages counted with the NEWS2 high trigger at ``news2_high``; None: the model-risk
    trigger alone, as versions chosen before it were counted)."""
    if not patients:
        raise ValueError("nothing to evaluate")
    medium = thresholds[0] if thresholds else None
    overall = _block(patients, risks, lookback_h, fused=fused, fused_threshold=medium)
    if fused is not None:
        overall["fused_vs_news2"] = compare_auroc(patients, fused, n_boot=n_boot, seed=seed)
        overall["model_vs_news2"] = compare_auroc(patients, risks, n_boot=n_boot, seed=seed)
        if thresholds is not None:
            overall["operating"] = operating_summary(
                patients,
                fused,
                thresholds[0],
                thresholds[1],
                policy,
                window_h=horizon_h,
                news2_high=news2_high,
            )
    y = np.concatenate([p.y for p in patients]).astype(np.int64)
    r = np.concatenate(list(risks))
    overall["calibration"] = _calibration(y, r)
    n2 = np.concatenate([p.news2 for p in patients]).astype(np.float64)
    overall["roc"] = {"model": _roc_points(y, r), "news2": _roc_points(y, n2)}
    if fused is not None:
        fr = np.concatenate(list(fused))
        overall["roc"]["fused"] = _roc_points(y, fr)
        overall["fused_calibration"] = _calibration(y, fr)
    keep = [i for i, p in enumerate(patients) if p.spo2_scale == 2]
    overall["subgroups"] = {
        "spo2_scale2": (
            _block(
                [patients[i] for i in keep],
                [risks[i] for i in keep],
                lookback_h,
                model_threshold=overall["model"]["threshold"],
                fused=None if fused is None else [fused[i] for i in keep],
                fused_threshold=overall["fused"]["threshold"] if fused is not None else None,
            )
            if keep
            else {"patients": 0}
        )
    }
    overall["horizon_h"] = horizon_h
    overall["lookback_h"] = lookback_h
    return overall


def _roc_points(y: Array, s: Array, n: int = 60) -> list[list[float]]:
    """The ROC curve as at most ``n`` (false positive rate, true positive rate) points."""
    if len(np.unique(y)) < 2:
        return []
    fpr, tpr, _ = roc_curve(y, s)
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(n, len(fpr))).round().astype(int))
    return [[round(float(fpr[i]), 4), round(float(tpr[i]), 4)] for i in idx]
