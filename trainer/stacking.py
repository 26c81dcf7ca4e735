"""The fused risk's stacking on NEWS2: the calibration split and the logistic fit.

``logit(fused) = a + b · NEWS2_total + c · logit(p_model)`` (:class:`models.fusion.Stacking`)
is fitted by maximum likelihood on the **calibration split**: half of the validation
patients (:func:`calibration_split`; the other half early-stops the network and fits its
temperature), so neither the coefficients nor the operating points chosen on the same
patients (:mod:`trainer.operating`) have seen a patient the network was tuned on.

The model's term is kept only when it earns its place (:func:`fit_stacking`): K-fold
cross-validation *by patient* on the calibration split compares ``a + b · NEWS2`` with
``a + b · NEWS2 + c · logit(p)``, and ``c`` is kept only when the out-of-fold log-loss is
lower **and** the out-of-fold AUROC is higher than NEWS2's. Otherwise ``c`` = 0 and the
fused risk ranks observations exactly as NEWS2 does (ties included). Both coefficients
are kept non-negative (a fitted ``c`` < 0 drops the model's term; ``b`` is floored at
:data:`B_MIN` so that the fused risk always increases with NEWS2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from models.fusion import STACKING_TAG, Stacking, fuse_arrays
from trainer.dataset import PatientSeq
from trainer.stats import auroc, fit_logistic, log_loss, logit

__all__ = ["B_MIN", "calibration_split", "cross_fit", "fit_stacking", "fold_of", "stack"]

Array = npt.NDArray[Any]
B_MIN = 1e-3
"""Smallest NEWS2 coefficient: the fused risk stays strictly increasing in NEWS2."""
FOLDS = 5


def calibration_split(
    patients: Sequence[PatientSeq], seed: int
) -> tuple[list[PatientSeq], list[PatientSeq]]:
    """The validation patients in two halves by a seeded permutation of their sorted ids:
    ``(tuning, calibration)``; the calibration half is the larger when the count is odd."""
    order = sorted(range(len(patients)), key=lambda i: patients[i].patient_id)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x43414C49]))
    perm = [order[int(j)] for j in rng.permutation(len(order))]
    n_tune = len(perm) // 2
    tune, calib = sorted(perm[:n_tune]), sorted(perm[n_tune:])
    return [patients[i] for i in tune], [patients[i] for i in calib]


def fold_of(patient: Array, folds: int, seed: int) -> Array:
    """A fold number per observation, whole patients per fold (seeded)."""
    uniq, inverse = np.unique(np.asarray(patient), return_inverse=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x464F4C44]))
    fold = np.empty(len(uniq), dtype=np.int64)
    fold[rng.permutation(len(uniq))] = np.arange(len(uniq)) % folds
    out: Array = fold[inverse.reshape(-1)]
    return out


def _fit(news2: Array, lp: Array, y: Array, with_model: bool) -> Stacking:
    """The monotone fit: NEWS2 alone, or NEWS2 and the model's log-odds (a negative
    model coefficient drops the model's term; the NEWS2 one is floored at B_MIN)."""
    if with_model:
        a, b, c = fit_logistic(np.column_stack([news2, lp]), y)
        if c > 0:
            if b < B_MIN:  # the model carries NEWS2's information: NEWS2 a tie-breaker
                a, c = fit_logistic(lp[:, None], y)
                b = B_MIN
            if c > 0:
                return Stacking(float(a), float(b), float(c))
    a, b = fit_logistic(news2[:, None], y)
    return Stacking(float(a), float(max(b, B_MIN)), 0.0)


def cross_fit(
    news2: Array, risk: Array, y: Array, fold: Array, folds: int = FOLDS
) -> tuple[Array, Array, int]:
    """Out-of-fold fused risks of both forms (NEWS2 alone, NEWS2 and the model): each
    fold scored by the fit on the other folds. Also how many folds kept ``c`` > 0."""
    lp = logit(risk)
    oof_n2 = np.zeros(len(y))
    oof_both = np.zeros(len(y))
    kept = 0
    for k in range(folds):
        test = fold == k
        train = ~test
        if not test.any():
            continue
        if not train.any() or y[train].min() == y[train].max():
            oof_n2[test] = oof_both[test] = y[train].mean() if train.any() else 0.5
            continue
        st_n2 = _fit(news2[train], lp[train], y[train], with_model=False)
        st_both = _fit(news2[train], lp[train], y[train], with_model=True)
        kept += st_both.c > 0
        oof_n2[test] = fuse_arrays(risk[test], news2[test], st_n2)
        oof_both[test] = fuse_arrays(risk[test], news2[test], st_both)
    return oof_n2, oof_both, kept


def stack(
    patients: Sequence[PatientSeq], risks: Sequence[Array], st: Stacking | None
) -> list[Array]:
    """The fused risk (without imaging) per patient, as the worker computes it."""
    return [fuse_arrays(r, p.news2, st) for p, r in zip(patients, risks, strict=True)]


def fit_stacking(
    news2: Array,
    risk: Array,
    y: Array,
    patient: Array,
    *,
    folds: int = FOLDS,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the stacking on one split (per observation: NEWS2 total, model risk, label and
    patient), choosing by cross-validation whether the model's term is kept.

    Returns the ``fusion.stacking`` block: ``a``, ``b``, ``c``, ``tag`` and the
    ``selection`` figures (out-of-fold log-loss and AUROC of both forms)."""
    n2 = np.asarray(news2, dtype=np.float64)
    p = np.asarray(risk, dtype=np.float64)
    lp = logit(p)
    yy = np.asarray(y, dtype=np.float64)
    oof_n2, oof_both, kept = cross_fit(n2, p, yy, fold_of(patient, folds, seed), folds)
    ll_n2, ll_both = log_loss(yy, oof_n2), log_loss(yy, oof_both)
    auc_n2, auc_both = auroc(yy, n2), auroc(yy, oof_both)
    uses_model = bool(
        ll_both < ll_n2 and auc_n2 is not None and auc_both is not None and auc_both > auc_n2
    )
    final = _fit(n2, lp, yy, with_model=uses_model)
    if final.c == 0:
        uses_model = False
    return {
        **final.to_dict(),
        "tag": STACKING_TAG,
        "uses_model": uses_model,
        "selection": {
            "folds": folds,
            "by": "patient",
            "rule": "keep c only if the out-of-fold log-loss is lower and the out-of-fold "
            "AUROC higher than NEWS2's",
            "news2_only": {
                "log_loss": round(ll_n2, 6),
                "auroc": None if auc_n2 is None else round(auc_n2, 4),
            },
            "with_model": {
                "log_loss": round(ll_both, 6),
                "auroc": None if auc_both is None else round(auc_both, 4),
                "folds_keeping_c": int(kept),
            },
        },
        "fit_on": {
            "observations": int(len(yy)),
            "patients": int(len(np.unique(np.asarray(patient)))),
            "positive_observations": int(yy.sum()),
        },
    }
