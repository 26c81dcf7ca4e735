"""One task's figures from its replay: NEWS2 and the fused risk against the labels, the
alert burden and the sensitivity of the alerts the policy emitted, their lead time, and
the calibration of the fused risk (definitions in ``docs/validation.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alerts import count_alerts
from alerts.webhook import should_page
from models.news2 import PARAMETERS
from trainer.external import local_recalibration
from trainer.validation.metrics import bootstrap, calibration, roc_points
from trainer.validation.scoring import Replayed
from trainer.validation.task import Task

__all__ = ["LOOKBACK_H", "Points", "evaluate_task", "task_points"]

LOOKBACK_H = 24.0
"""Lead time counts the first page at most this long before the label onset."""
FEW_POSITIVES = 10  # below: the report warns that the intervals say little
_H_MS = 3_600_000
_MIN_SPAN_MS = _H_MS  # a patient observed once counts for an hour


@dataclass
class Points:
    """A task's labelled points with the scores read at each (in patient, time order)."""

    patient: list[str]
    t_ms: list[int]
    label: list[int]
    news2: list[float]
    fused: list[float]
    risk: list[float]  # the model's own risk (NaN: none)
    missing: list[tuple[str, ...]]
    news2_max: list[float]  # stay tasks: the highest over the observation window
    fused_max: list[float]
    unscored: int = 0


def _spans(task: Task, rep: Replayed) -> dict[str, tuple[int, int]]:
    """Each patient's observed time: first to last scored event (for a horizon task, the
    last before the patient's outcome)."""
    out = {}
    for pid, s in rep.scores.items():
        ts = s.ts
        cut = task.outcome_ms.get(pid)
        if cut is not None:
            ts = ts[ts < cut]
        if len(ts):
            out[pid] = (int(ts[0]), int(ts[-1]))
    return out


def task_points(task: Task, rep: Replayed) -> Points:
    """The labelled points of ``task`` and the scores of ``rep`` read at each."""
    pts = Points([], [], [], [], [], [], [], [], [])

    def add(pid: str, t: int, label: int, i: int, first: int) -> None:
        s = rep.scores[pid]
        pts.patient.append(pid)
        pts.t_ms.append(t)
        pts.label.append(label)
        pts.news2.append(float(s.news2[i]))
        pts.fused.append(float(s.fused[i]))
        pts.risk.append(float(s.risk[i]) if s.risk is not None else np.nan)
        pts.missing.append(s.missing[i])
        window = slice(first, i + 1)
        n2, fu = s.news2[window], s.fused[window]
        pts.news2_max.append(float(np.nanmax(n2)) if (~np.isnan(n2)).any() else np.nan)
        pts.fused_max.append(float(np.nanmax(fu)) if (~np.isnan(fu)).any() else np.nan)

    if task.kind == "horizon":
        h = task.window_ms
        for pid in sorted(rep.scores):
            ts = rep.scores[pid].ts
            out = task.outcome_ms.get(pid)
            for i, t in enumerate(ts.tolist()):
                if out is not None and t >= out:
                    break
                add(pid, t, int(out is not None and out - t <= h), i, i)
        return pts
    for p in task.points:
        s = rep.scores.get(p.patient)
        i = -1 if s is None else int(np.searchsorted(s.ts, p.t_ms, side="right")) - 1
        if s is None or i < 0:
            pts.unscored += 1
            continue
        first = int(np.searchsorted(s.ts, p.t_ms - task.window_ms, side="left"))
        add(p.patient, p.t_ms, p.label, i, first)
    return pts


def _discrimination(
    y: np.ndarray, news2: np.ndarray, fused: np.ndarray | None, units: np.ndarray, n: int, seed: int
) -> dict[str, Any]:
    scores = {"news2": news2} if fused is None else {"news2": news2, "fused": fused}
    out = bootstrap(
        y, scores, units, n=n, seed=seed, paired=None if fused is None else ("fused", "news2")
    )
    if fused is None:
        out["fused"] = None
    return out


def _burden(
    rep: Replayed, spans: dict[str, tuple[int, int]]
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    inside, outside = [], 0
    for a in rep.alerts:
        span = spans.get(a["patient_id"])
        if span is not None and span[0] <= a["ts_ms"] <= span[1]:
            inside.append(a)
        else:
            outside += 1
    days = sum(max(b - a, _MIN_SPAN_MS) for a, b in spans.values()) / (24 * _H_MS)
    counts = count_alerts(inside, patient_days=days)
    counts.pop("patients", None)  # a count of patients alerted, kept below by priority
    escalated = dict.fromkeys(counts["by_priority"], 0)
    pages: dict[str, list[int]] = {}
    seen: set[str] = set()
    for a in inside:
        if a["transition_id"] in seen:
            continue
        seen.add(a["transition_id"])
        if a["transition"] == "ESCALATED":
            escalated[a["priority"]] += 1
        if should_page(a):
            pages.setdefault(a["patient_id"], []).append(int(a["ts_ms"]))
    counts["escalated_by_priority"] = escalated
    counts["patients_paged"] = len(pages)
    counts["after_last_observation"] = outside
    counts["patient_days"] = round(days, 3)
    counts["alerts_per_patient_day"] = counts.get("opened_per_patient_day")
    counts.setdefault("pages_per_patient_day", None)
    return counts, {k: sorted(v) for k, v in pages.items()}


def _paged(pages: Sequence[int], lo: int, hi: int) -> bool:
    i = int(np.searchsorted(pages, lo, side="left"))
    return i < len(pages) and pages[i] <= hi


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _sensitivity(task: Task, pts: Points, pages: dict[str, list[int]]) -> dict[str, Any]:
    w = task.window_ms
    pos_pts = det_pts = neg_pts = neg_paged = 0
    pos_patients: set[str] = set()
    det_patients: set[str] = set()
    for pid, t, y in zip(pts.patient, pts.t_ms, pts.label, strict=True):
        hit = _paged(pages.get(pid, []), t - w, t)
        if y:
            pos_pts += 1
            det_pts += hit
            pos_patients.add(pid)
            if hit:
                det_patients.add(pid)
        else:
            neg_pts += 1
            neg_paged += hit
    return {
        "window_h": round(w / _H_MS, 3),
        "positive_points": pos_pts,
        "detected_points": det_pts,
        "sensitivity": _share(det_pts, pos_pts),
        "positive_patients": len(pos_patients),
        "detected_patients": len(det_patients),
        "sensitivity_patients": _share(len(det_patients), len(pos_patients)),
        "negative_points_paged": _share(neg_paged, neg_pts),
    }


def _lead_time(task: Task, pages: dict[str, list[int]]) -> dict[str, Any]:
    if task.kind == "stay":
        return {
            "median_h": None,
            "reason": "the export gives no event time for a stay's label",
            "lookback_h": LOOKBACK_H,
        }
    look = int(LOOKBACK_H * _H_MS)
    leads = []
    for pid, onset in sorted(task.onsets.items()):
        p = pages.get(pid, [])
        i = int(np.searchsorted(p, onset - look, side="left"))
        if i < len(p) and p[i] <= onset:
            leads.append((onset - p[i]) / _H_MS)
    return {
        "median_h": round(float(np.median(leads)), 3) if leads else None,
        "iqr_h": [round(float(q), 3) for q in np.percentile(leads, [25, 75])] if leads else None,
        "detected": len(leads),
        "positives": len(task.onsets),
        "lookback_h": LOOKBACK_H,
        "onset": "outcome time" if task.kind == "horizon" else "first hour labelled positive",
    }


def _news2_partial(missing: Sequence[tuple[str, ...]]) -> dict[str, Any]:
    n = len(missing)
    counts = dict.fromkeys(PARAMETERS, 0)
    complete = 0
    for m in missing:
        complete += not m
        for name in m:
            counts[name] += 1
    shares = {k: round(v / n, 4) for k, v in counts.items() if v} if n else {}
    return {"partial": complete < n, "complete_share": _share(complete, n), "missing_share": shares}


def _recalibrated(
    y: np.ndarray, news2: np.ndarray, risk: np.ndarray, units: np.ndarray, n: int, seed: int
) -> dict[str, Any]:
    """Local recalibration: the stacking on NEWS2 refitted on this export by cross-fitting
    whole patients (each fold scored by the fit on the others); the model's term kept only
    where it improves out-of-fold log-loss and AUROC over NEWS2 alone, as in training
    (:func:`trainer.external.local_recalibration`). Dropped, the fused risk ranks as NEWS2."""
    if len(y) == 0 or y.min() == y.max():
        return {"available": False, "reason": "one class only"}
    local = local_recalibration(news2, risk, y, patient=units, seed=seed)
    out = _discrimination(y, news2, np.asarray(local["scores"]), units, n, seed)
    out["uses_model"] = local["uses_model"]
    out["stacking"] = local["stacking"]
    return out


def _side(d: dict[str, Any] | None) -> tuple[str, float | None, list[float] | None]:
    """ "worse", "better" or "not_different" from a paired (fused - NEWS2) AUROC interval
    (or "untestable" without one)."""
    diff = ((d or {}).get("difference") or {}).get("auroc") or {}
    value, ci = diff.get("value"), diff.get("ci")
    if value is None or not ci or ci[0] is None or ci[1] is None:
        return "untestable", value, ci
    if ci[1] < 0:
        return "worse", value, ci
    if ci[0] > 0:
        return "better", value, ci
    return "not_different", value, ci


def verdict(out: dict[str, Any], few_positives: bool) -> dict[str, Any]:
    """What the figures mean for going live, in one place: the version as shipped
    (transported) and the local recalibration, each against NEWS2 on the same points by
    the 95 % paired interval of the AUROC difference."""
    shipped, value, ci = _side(out.get("discrimination"))
    recal = out.get("discrimination_recalibrated")
    local = _side(recal)[0] if recal and recal.get("available", True) else "untestable"
    if out.get("discrimination", {}).get("fused") is None:
        text = "no model risk: the rules (NEWS2) alone were scored"
        shipped = "no_model"
    elif shipped == "worse":
        text = (
            "the shipped fused risk ranks patients worse than NEWS2 on this export: do not "
            "go live with its model term; recalibrate on the export (wardwatch train "
            "--export), which drops the model term where it does not help, or run on the "
            "rules alone"
        )
    elif shipped == "better":
        text = "the shipped fused risk ranks patients better than NEWS2 on this export"
    elif shipped == "not_different":
        text = "the shipped fused risk is not shown different from NEWS2 on this export"
    else:
        text = "no interval for the difference: too few defined resamples"
    if local != "untestable" and recal is not None:
        uses = recal.get("uses_model")
        text += (
            "; recalibrated locally it "
            + ("keeps the model term" if uses else "drops the model term (ranks as NEWS2)")
            + {"worse": " and is worse than NEWS2", "better": " and is better than NEWS2"}.get(
                local, " and is not shown different from NEWS2"
            )
        )
    if few_positives:
        text += "; few positive patients: indicative only"
    return {
        "shipped_vs_news2": shipped,
        "recalibrated_vs_news2": local,
        "auroc_difference": value,
        "auroc_difference_ci": ci,
        "text": text,
    }


def evaluate_task(task: Task, rep: Replayed, *, n_boot: int, seed: int) -> dict[str, Any]:
    """The figures of ``task`` from its replay ``rep``."""
    pts = task_points(task, rep)
    news2 = np.array(pts.news2)
    fused = np.array(pts.fused)
    has_model = bool(len(fused)) and bool((~np.isnan(fused)).any())
    keep = ~np.isnan(news2) & (~np.isnan(fused) if has_model else True)
    dropped = int((~keep).sum())
    idx = np.flatnonzero(keep)
    y = np.array(pts.label, dtype=np.float64)[idx]
    patients = [pts.patient[i] for i in idx]
    index = {pid: k for k, pid in enumerate(sorted(set(patients)))}
    units = np.array([index[p] for p in patients], dtype=np.intp)
    f = fused[idx] if has_model else None
    spans = _spans(task, rep)
    burden, pages = _burden(rep, spans)
    out: dict[str, Any] = {
        "kind": task.kind,
        "label": task.label,
        "cohort": {
            "patients": len(task.patients),
            "positive_patients": len(task.positives),
            "patients_scored": len(rep.scores),
            "points": len(pts.label) + pts.unscored,
            "points_evaluated": int(len(idx)),
            "positive_points": int(y.sum()),
            "prevalence": _share(int(y.sum()), len(y)),
            "points_without_score": pts.unscored + dropped,
        },
        "news2": _news2_partial([pts.missing[i] for i in idx]),
        "discrimination": _discrimination(y, news2[idx], f, units, n_boot, seed),
        "alerts": burden,
        "sensitivity": _sensitivity(task, pts, pages),
        "lead_time": _lead_time(task, pages),
        "calibration": calibration(y, f) if f is not None else None,
        "roc": {
            "news2": roc_points(y, news2[idx]),
            "fused": roc_points(y, f) if f is not None else [],
        },
    }
    if f is not None:
        risk = np.array(pts.risk)[idx]
        if np.isfinite(risk).all():
            out["discrimination_recalibrated"] = _recalibrated(
                y, news2[idx], risk, units, n_boot, seed
            )
    if task.kind == "stay":
        n2max = np.array(pts.news2_max)[idx]
        fmax = np.array(pts.fused_max)[idx] if has_model else None
        out["discrimination_max"] = _discrimination(y, n2max, fmax, units, n_boot, seed)
    if task.rejected_labels:
        out["rejected_labels"] = dict(sorted(task.rejected_labels.items()))
    notes = list(task.notes)
    positives = len({p for p, y in zip(patients, y.tolist(), strict=True) if y})
    if positives < FEW_POSITIVES:
        notes.append(
            f"only {positives} positive patients scored: the intervals are drawn from "
            "resamples of those few and say little; the figures are indicative only"
        )
    if notes:
        out["notes"] = notes
    out["verdict"] = verdict(out, positives < FEW_POSITIVES)
    return out
