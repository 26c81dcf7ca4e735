"""Statistics the trainer reports with a guarantee: exact bounds, a logistic fit, AUROC with
ties and its patient-level paired bootstrap.

* :func:`garwood_upper` / :func:`garwood_lower`: exact (Garwood 1936) one-sided bounds on
  a Poisson mean from an observed count, ``chi2.ppf(1 - alpha, 2k + 2) / 2`` and
  ``chi2.ppf(alpha, 2k) / 2``; a rate bound divides by the exposure (patient-days).
* :func:`clopper_pearson_lower` / :func:`clopper_pearson_upper`: exact one-sided bounds on
  a binomial proportion, ``beta.ppf(alpha, x, n - x + 1)`` and
  ``beta.ppf(1 - alpha, x + 1, n - x)``.
* :func:`fit_logistic`: maximum-likelihood logistic regression by Newton's method (a
  handful of columns, deterministic, no solver options).
* :func:`auroc`: the Mann-Whitney AUROC with ties counted one half, optionally weighted
  (a bootstrap replicate weights each observation by how often its patient was drawn).
* :func:`paired_bootstrap_auroc`: AUROC of two scores on the same observations and the
  percentile interval of their difference, resampling *patients* with replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import beta, chi2

__all__ = [
    "auroc",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "fit_logistic",
    "garwood_lower",
    "garwood_upper",
    "log_loss",
    "logit",
    "paired_bootstrap_auroc",
]

Array = npt.NDArray[Any]
ALPHA = 0.05


def garwood_upper(count: int, alpha: float = ALPHA) -> float:
    """One-sided ``1 - alpha`` upper bound on a Poisson mean after observing ``count``."""
    if count < 0:
        raise ValueError("count must be >= 0")
    return float(chi2.ppf(1.0 - alpha, 2 * count + 2) / 2.0)


def garwood_lower(count: int, alpha: float = ALPHA) -> float:
    """One-sided ``1 - alpha`` lower bound on a Poisson mean after observing ``count``."""
    if count < 0:
        raise ValueError("count must be >= 0")
    return 0.0 if count == 0 else float(chi2.ppf(alpha, 2 * count) / 2.0)


def clopper_pearson_lower(successes: int, n: int, alpha: float = ALPHA) -> float | None:
    """One-sided ``1 - alpha`` lower bound on a binomial proportion (None when ``n`` = 0)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("need 0 <= successes <= n")
    return 0.0 if successes == 0 else float(beta.ppf(alpha, successes, n - successes + 1))


def clopper_pearson_upper(successes: int, n: int, alpha: float = ALPHA) -> float | None:
    """One-sided ``1 - alpha`` upper bound on a binomial proportion (None when ``n`` = 0)."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("need 0 <= successes <= n")
    return 1.0 if successes == n else float(beta.ppf(1.0 - alpha, successes + 1, n - successes))


def logit(p: Array, eps: float = 1e-6) -> Array:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]`` (as models.fusion)."""
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    out: Array = np.log(q / (1.0 - q))
    return out


def log_loss(y: Array, p: Array, eps: float = 1e-12) -> float:
    q = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    yy = np.asarray(y, dtype=np.float64)
    return float(-np.mean(yy * np.log(q) + (1.0 - yy) * np.log(1.0 - q)))


def fit_logistic(
    x: Array, y: Array, *, ridge: float = 1e-8, max_iter: int = 100, tol: float = 1e-10
) -> Array:
    """Coefficients ``[intercept, w_1, ..., w_k]`` maximising the log-likelihood of
    ``P(y = 1) = sigmoid(intercept + x @ w)`` (``x``: ``[n, k]``, possibly ``k`` = 0).

    Newton's method on the (tiny-ridge-penalised) log-likelihood, from zero, with step
    halving; the ridge only keeps the Hessian invertible on separable data."""
    xx = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    design = np.column_stack([np.ones(len(y)), xx])
    yy = np.asarray(y, dtype=np.float64)
    w = np.zeros(design.shape[1])
    if len(yy) == 0:
        raise ValueError("nothing to fit")
    prior = float(np.clip(yy.mean(), 1e-6, 1 - 1e-6))
    w[0] = np.log(prior / (1 - prior))

    def nll(v: Array) -> float:
        z = design @ v
        return float(np.sum(np.logaddexp(0.0, z) - yy * z) + 0.5 * ridge * float(v[1:] @ v[1:]))

    current = nll(w)
    pen = np.full(design.shape[1], ridge)
    pen[0] = 0.0
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (p - yy) + pen * w
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(pen + 1e-12)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:
            cand = w - t * step
            value = nll(cand)
            if value <= current + 1e-12:
                break
            t *= 0.5
        else:
            break
        improvement = current - value
        w, current = cand, value
        if improvement < tol * max(1.0, abs(current)):
            break
    return w


def _groups(score: Array) -> tuple[Array, int]:
    """Rank group of each observation (equal scores share a group), groups in order."""
    _, inverse = np.unique(np.asarray(score, dtype=np.float64), return_inverse=True)
    return inverse.reshape(-1), int(inverse.max()) + 1 if len(inverse) else 0


def _auroc_groups(group: Array, n_groups: int, y: Array, w: Array) -> float | None:
    pos = np.bincount(group, weights=w * y, minlength=n_groups)
    neg = np.bincount(group, weights=w * (1.0 - y), minlength=n_groups)
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 0 or total_neg <= 0:
        return None
    below = np.cumsum(neg) - neg  # negative weight strictly below each group
    return float(np.sum(pos * (below + 0.5 * neg)) / (total_pos * total_neg))


def auroc(y: Array, score: Array, weights: Array | None = None) -> float | None:
    """AUROC (ties count one half; equals scikit-learn's ``roc_auc_score``), or None when
    one class is absent."""
    yy = np.asarray(y, dtype=np.float64)
    w = np.ones(len(yy)) if weights is None else np.asarray(weights, dtype=np.float64)
    group, n_groups = _groups(score)
    return _auroc_groups(group, n_groups, yy, w)


def paired_bootstrap_auroc(
    y: Array,
    scores: Sequence[Array],
    patient: Array,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """AUROC of ``scores[0]`` and ``scores[1]`` on the same observations, each with its
    percentile interval, and the interval of ``AUROC(scores[0]) - AUROC(scores[1])``.

    A replicate draws as many patients as there are, with replacement (``patient``: the
    patient index of each observation); both scores see the same draw, so the interval of
    the difference accounts for their correlation. Two-sided ``1 - alpha`` intervals.
    """
    yy = np.asarray(y, dtype=np.float64)
    pid = np.asarray(patient)
    _, pidx = np.unique(pid, return_inverse=True)
    pidx = pidx.reshape(-1)
    n_pat = int(pidx.max()) + 1 if len(pidx) else 0
    prepared = [_groups(s) for s in scores]
    ones = np.ones(len(yy))
    point = [_auroc_groups(g, n, yy, ones) for g, n in prepared]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x424F4F54]))
    reps = np.full((n_boot, len(scores)), np.nan)
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, n_pat, n_pat), minlength=n_pat).astype(np.float64)
        w = counts[pidx]
        for k, (g, n) in enumerate(prepared):
            value = _auroc_groups(g, n, yy, w)
            reps[b, k] = np.nan if value is None else value
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)

    def interval(values: Array) -> list[float] | None:
        ok = values[np.isfinite(values)]
        if len(ok) == 0:
            return None
        return [round(float(np.percentile(ok, lo)), 4), round(float(np.percentile(ok, hi)), 4)]

    out: dict[str, Any] = {
        "auroc": [None if p is None else round(p, 4) for p in point],
        "ci": [interval(reps[:, k]) for k in range(len(scores))],
        "n_boot": n_boot,
        "alpha": alpha,
        "resampled": "patients",
        "patients": n_pat,
        "observations": int(len(yy)),
    }
    if len(scores) >= 2:
        d = point[0] - point[1] if point[0] is not None and point[1] is not None else None
        out["difference"] = None if d is None else round(d, 4)
        out["difference_ci"] = interval(reps[:, 0] - reps[:, 1])
    return out
