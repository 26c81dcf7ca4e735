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

__all__ = [
    "CAVEATS",
    "DATASETS",
    "SURVSET_VERSION",
    "ExternalSpec",
    "external_check",
    "external_markdown",
    "load_rows",
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


def _one(model: Any, rows: Rows) -> dict[str, Any]:
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
        out["datasets"][ds] = _one(model, rows)
    return out


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


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
    lines += ["", "Caveats:", ""] + [f"- {c}" for c in result["caveats"]] + [""]
    return "\n".join(lines)
