"""External check of a registered model on real public ICU data (SurvSet, offline).

The deterioration model is trained on simulated ward patients. This module scores it on
two real, public cohorts shipped inside the ``survset`` wheel (``SurvSet`` package; no
download at run time), next to the NEWS2 computable from the same observations. It is a
*check*, not a validation: population, label, time scale and input form all differ from
training (see :data:`CAVEATS`).

The data sets, how their columns map to the event fields, and the label are described in
:mod:`trainer.external_data`, which loads them.

Scores:

* **model (snapshot form)**: each row becomes one event scored by
  :meth:`models.runtime.DeteriorationModel.score` from a fresh state (features of that
  single observation, ``h_in`` = zeros), through the registry's ONNX model with ONNX
  Runtime: exactly what a worker computes for a patient's first observation set.
* **NEWS2 (partial)**: :func:`models.news2.news2_from_vitals` over the mapped fields; the
  absent parameters are listed in ``news2_parameters.missing`` (never scored as 0 by the
  scoring function, so the total is the sum of the available ones).

* **fused**: the model stacked on NEWS2 as the worker fuses it (:mod:`models.fusion`),
  twice: *transported*, with the version's own stacking coefficients (fitted on simulated
  ward patients), and *locally recalibrated* (:func:`local_recalibration`): the stacking
  refitted on the external set itself by patient-level cross-fitting (K = 5 folds: each
  fold scored by the fit on the other four), with the model's term dropped (``c`` = 0)
  unless its out-of-fold log-loss and AUROC beat NEWS2's there; with ``c`` = 0 the fused
  risk is an increasing function of NEWS2 and ranks exactly as NEWS2 does. Each with the
  95 % paired-bootstrap interval of (fused − NEWS2) AUROC, resampling rows (one row per
  patient), on the rows with a NEWS2.

Also reported: a vitals-only sensitivity analysis (consciousness left missing for both
scores), and, to place the figures, two reference rankers that use information the
model does not get: the data set's own physiology score (SUPPORT ``sps`` / RHC APACHE
III ``aps1``, which include labs) and ``-MAP``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.fusion import Stacking, fuse_arrays
from models.news2 import PARAMETERS, VITALS_KEYS, news2_from_vitals
from trainer.external_data import (
    DATASETS,
    DEFAULT_HORIZON_DAYS,
    MISSING_FIELDS,
    SURVSET_VERSION,
    ExternalSpec,
    Rows,
    load_rows,
)
from trainer.stacking import FOLDS, cross_fit, fit_stacking, fold_of
from trainer.stats import log_loss, paired_bootstrap_auroc

__all__ = [
    "CAVEATS",
    "DATASETS",
    "SURVSET_VERSION",
    "ExternalSpec",
    "external_check",
    "external_markdown",
    "load_rows",
    "local_recalibration",
]

CAVEATS: tuple[str, ...] = (
    "Snapshot vs sequence: the model is a recurrent model trained on ward time series; "
    "here it sees one observation set from a fresh state (no history, no personal "
    "baseline), like a patient's first observation on the ward.",
    "Different population: critically ill / ICU adults (1989-1994), not general ward "
    "patients; vitals far outside the simulator's range are common.",
    "Different label: death within the horizon (days), not ICU transfer / arrest / "
    "death / rapid response within 12 h.",
    "Partial inputs: no SpO2, oxygen or systolic BP for either score; NEWS2 is a partial "
    "total, and the model sees those vitals as never observed.",
    "Consciousness comes from a Glasgow-based coma score, which sedation also lowers.",
    "Ventilated patients' respiration rate is the ventilator's.",
)


def _metrics(y: npt.NDArray[Any], score: npt.NDArray[Any]) -> dict[str, float | None]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    ok = np.isfinite(score)
    yy, ss = y[ok], score[ok]
    if len(yy) == 0 or yy.min() == yy.max():
        return {"auroc": None, "auprc": None, "n": int(len(yy))}
    return {
        "auroc": round(float(roc_auc_score(yy, ss)), 4),
        "auprc": round(float(average_precision_score(yy, ss)), 4),
        "n": int(len(yy)),
    }


def _news2(events: Sequence[Mapping[str, Any]]) -> tuple[npt.NDArray[np.float64], list[str]]:
    """Partial NEWS2 totals (NaN when nothing is scoreable) and the parameters used."""
    totals = np.full(len(events), np.nan)
    used: set[str] = set()
    for i, ev in enumerate(events):
        res = news2_from_vitals(ev)
        if res.total is not None:
            totals[i] = res.total
        used.update(p for p in PARAMETERS if p not in res.missing)
    return totals, [p for p in PARAMETERS if p in used]


def _score_model(model: Any, events: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.float64]:
    # distinct keys, no stored state: every event is one step from a fresh state
    items = [(f"ext-{i}", None, ev) for i, ev in enumerate(events)]
    risks = np.empty(len(events), dtype=np.float64)
    for start in range(0, len(items), 4096):
        scored = model.score(items[start : start + 4096])
        risks[start : start + len(scored)] = [s.risk for s in scored]
    return risks


def _versus_news2(
    y: npt.NDArray[Any], score: npt.NDArray[Any], news2: npt.NDArray[Any], seed: int
) -> dict[str, Any]:
    """``score`` vs NEWS2 on the same rows: AUROC, AUPRC, the paired bootstrap (rows)."""
    b = paired_bootstrap_auroc(y, [score, news2], np.arange(len(y)), seed=seed)
    return {
        **_metrics(y, score),
        "ci": b["ci"][0],
        "news2_auroc": b["auroc"][1],
        "news2_ci": b["ci"][1],
        "difference": b["difference"],
        "difference_ci": b["difference_ci"],
        "n_boot": b["n_boot"],
    }


def local_recalibration(
    news2: npt.NDArray[Any],
    risk: npt.NDArray[Any],
    y: npt.NDArray[Any],
    *,
    folds: int = FOLDS,
    seed: int = 0,
    patient: npt.NDArray[Any] | None = None,
) -> dict[str, Any]:
    """The stacking refitted on an external set by cross-fitting (whole patients per fold:
    ``patient`` per row; None: one row per patient).

    Whether the model's term is kept is decided as in training (out-of-fold log-loss and
    AUROC against NEWS2's, :func:`trainer.stacking.fit_stacking`). Kept: the scores are
    the out-of-fold fused risks (each fold by the fit on the others). Dropped: the fused
    risk is the NEWS2-only fit on all rows, an increasing function of NEWS2 (its AUROC is
    NEWS2's whatever the coefficients). Returns the scores and what was fitted."""
    n2 = np.asarray(news2, dtype=np.float64)
    p = np.asarray(risk, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    rows = np.arange(len(yy)) if patient is None else np.asarray(patient)
    fit = fit_stacking(n2, p, yy, rows, folds=folds, seed=seed)
    oof_n2, oof_both, _ = cross_fit(n2, p, yy, fold_of(rows, folds, seed), folds)
    scores = oof_both if fit["uses_model"] else fuse_arrays(p, n2, Stacking.from_dict(fit))
    return {
        "scores": scores,
        "uses_model": fit["uses_model"],
        "stacking": {k: fit[k] for k in ("a", "b", "c", "tag")},
        "selection": fit["selection"],
        "out_of_fold_log_loss": round(log_loss(yy, oof_both if fit["uses_model"] else oof_n2), 6),
    }


def _fused(
    model: Any, y: npt.NDArray[Any], risk: npt.NDArray[Any], news2: npt.NDArray[Any], seed: int
) -> dict[str, Any]:
    """Transported and locally recalibrated fused risk vs NEWS2 (rows with a NEWS2)."""
    ok = np.isfinite(news2)
    yy, rr, n2 = y[ok], risk[ok], news2[ok]
    out: dict[str, Any] = {"rows": int(ok.sum())}
    stacking = model.fusion.stacking
    if stacking is None:
        out["transported"] = {"available": False, "reason": "the version has no stacking"}
    else:
        out["transported"] = {
            **_versus_news2(yy, fuse_arrays(rr, n2, stacking), n2, seed),
            "stacking": stacking.to_dict(),
        }
    local = local_recalibration(n2, rr, yy, seed=seed)
    out["recalibrated"] = {
        **_versus_news2(yy, local.pop("scores"), n2, seed),
        **local,
        "folds": FOLDS,
        "by": "patient (one row each)",
    }
    out["model_vs_news2"] = _versus_news2(yy, rr, n2, seed)
    return out


def _one(model: Any, rows: Rows, seed: int = 0) -> dict[str, Any]:
    y = rows.y
    risk = _score_model(model, rows.events)
    news2, used = _news2(rows.events)
    vitals_only = [{**ev, "consciousness": None} for ev in rows.events]
    risk_v = _score_model(model, vitals_only)
    news2_v, used_v = _news2(vitals_only)
    observed = {f: int(sum(ev.get(f) is not None for ev in rows.events)) for f in rows.spec.vitals}
    observed["consciousness"] = int(sum(ev.get("consciousness") is not None for ev in rows.events))
    return {
        "title": rows.spec.title,
        "source": rows.spec.url,
        "measured": rows.spec.measured,
        "n": int(len(y)),
        "rows_in_dataset": rows.total_rows,
        "excluded_censored_before_horizon": rows.excluded_censored,
        "positives": int(y.sum()),
        "prevalence": round(float(y.mean()), 4) if len(y) else None,
        "mapping": {
            **{f: c for f, c in rows.spec.vitals.items()},
            "consciousness": f"{rows.spec.coma} == 0 -> 'A', > 0 -> 'C'",
        },
        "observed_counts": observed,
        "implausible_set_missing": rows.implausible,
        "missing_fields": MISSING_FIELDS,
        "news2_parameters": {
            "used": used,
            "missing": [p for p in PARAMETERS if p not in used],
            "fields": {p: VITALS_KEYS[p] for p in used},
        },
        "model": {**_metrics(y, risk), "mean_risk": round(float(risk.mean()), 4)},
        "news2": {
            **_metrics(y, news2),
            "mean_partial_total": round(float(np.nanmean(news2)), 3)
            if np.isfinite(news2).any()
            else None,
        },
        "fused": _fused(model, y, risk, news2, seed),
        "vitals_only": {
            "news2_parameters_used": used_v,
            "model": _metrics(y, risk_v),
            "news2": _metrics(y, news2_v),
        },
        "reference": {
            "physiology_score": {"what": rows.spec.reference_name, **_metrics(y, rows.reference)},
            "map_low": {
                "what": f"-{rows.spec.mean_bp} (lower MAP = higher risk)",
                **_metrics(y, -rows.mean_bp),
            },
        },
    }


def external_check(
    registry: Path,
    version: str | None = None,
    name: str = "deterioration",
    *,
    datasets: Sequence[str] = ("support2", "rhc"),
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    max_rows: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """AUROC / AUPRC of the model's snapshot form and of the partial NEWS2 on real data.

    ``version`` defaults to the promoted one. Loads the model through
    :meth:`models.runtime.DeteriorationModel.from_registry` (sha256 and smoke checks
    included) and scores with ONNX Runtime on the CPU. Returns a JSON-able dict with the
    label definition, the caveats and one block per data set.
    """
    from models.runtime import DeteriorationModel

    model = DeteriorationModel.from_registry(
        registry, name, version, providers=["CPUExecutionProvider"]
    )
    try:
        from importlib.metadata import version as pkg_version

        survset_version = pkg_version("survset")
    except Exception:  # noqa: BLE001 - metadata lookup is informational only
        survset_version = "unknown"
    out: dict[str, Any] = {
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
        "survset": survset_version,
        "label": (
            f"death within {horizon_days:g} days of study entry / admission; rows censored "
            "alive before then are excluded"
        ),
        "horizon_days": horizon_days,
        "model_form": "snapshot: one step from a fresh state (h_in = 0) per row, ONNX Runtime",
        "sbp": "left missing (MAP is not systolic; no approximation)",
        "max_rows": max_rows,
        "caveats": list(CAVEATS),
        "datasets": {},
    }
    for ds in datasets:
        rows = load_rows(ds, horizon_days=horizon_days, max_rows=max_rows, seed=seed)
        out["datasets"][ds] = _one(model, rows, seed)
    return out


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _ci(ci: Any) -> str:
    return "" if not ci else f"[{_f(ci[0])}, {_f(ci[1])}]"


def external_markdown(result: Mapping[str, Any]) -> str:
    """A Markdown section with :func:`external_check`'s figures."""
    m = result["model"]
    lines = [
        f"## External check: {m['name']} {m['version']} on real ICU data (survset "
        f"{result['survset']})",
        "",
        f"Label: {result['label']}. Model: {result['model_form']}. SBP: {result['sbp']}.",
        "",
        "| data set | n | prevalence | model AUROC | NEWS2 AUROC | model AUPRC | NEWS2 AUPRC "
        "| NEWS2 parameters | reference AUROC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in result["datasets"].items():
        lines.append(
            f"| {name} | {d['n']} | {_f(d['prevalence'])} | {_f(d['model']['auroc'])} "
            f"| {_f(d['news2']['auroc'])} | {_f(d['model']['auprc'])} "
            f"| {_f(d['news2']['auprc'])} | {', '.join(d['news2_parameters']['used'])} "
            f"| {_f(d['reference']['physiology_score']['auroc'])} |"
        )
    lines += [
        "",
        "Fused risk (model stacked on NEWS2) vs NEWS2 on the rows with a NEWS2, 95 % paired "
        "bootstrap intervals: transported (the version's coefficients) and locally "
        "recalibrated (5-fold cross-fitting on the data set; c = 0 unless the model's term "
        "helps there).",
        "",
        "| data set | rows | NEWS2 AUROC | transported fused AUROC | difference (95 % CI) "
        "| recalibrated fused AUROC | difference (95 % CI) | model term |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in result["datasets"].items():
        f = d.get("fused")
        if not f:
            continue
        t, r = f["transported"], f["recalibrated"]
        lines.append(
            f"| {name} | {f['rows']} | {_f(r['news2_auroc'])} | {_f(t.get('auroc'))} "
            f"| {_f(t.get('difference'))} {_ci(t.get('difference_ci'))} | {_f(r['auroc'])} "
            f"| {_f(r['difference'])} {_ci(r['difference_ci'])} "
            f"| {'kept' if r['uses_model'] else 'dropped (c = 0)'} |"
        )
    lines += ["", "Caveats:", ""] + [f"- {c}" for c in result["caveats"]] + [""]
    return "\n".join(lines)
