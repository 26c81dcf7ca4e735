"""The trainer's statistics: exact bounds against known values and their defining
identities, the logistic fit, AUROC with ties and the patient-level paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from trainer.stats import (
    auroc,
    clopper_pearson_lower,
    clopper_pearson_upper,
    fit_logistic,
    garwood_lower,
    garwood_upper,
    paired_bootstrap_auroc,
)

# one-sided 95 % upper bounds of a Poisson mean (Garwood 1936; e.g. the tables of
# Gehrels 1986, ApJ 303:336, column S = 1.645)
GARWOOD_UPPER_95 = {0: 2.996, 1: 4.744, 2: 6.296, 3: 7.754, 4: 9.154, 5: 10.513, 10: 16.962}
GARWOOD_LOWER_95 = {1: 0.0513, 2: 0.355, 3: 0.818, 5: 1.970, 10: 5.425}


@pytest.mark.parametrize(("k", "expected"), sorted(GARWOOD_UPPER_95.items()))
def test_garwood_upper_matches_the_tables(k: int, expected: float) -> None:
    assert garwood_upper(k) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(("k", "expected"), sorted(GARWOOD_LOWER_95.items()))
def test_garwood_lower_matches_the_tables(k: int, expected: float) -> None:
    assert garwood_lower(k) == pytest.approx(expected, abs=1e-3)
    assert garwood_lower(0) == 0.0


def _poisson_cdf(k: int, mu: float) -> float:
    return sum(math.exp(-mu) * mu**i / math.factorial(i) for i in range(k + 1))


@given(st.integers(0, 60))
def test_garwood_upper_is_where_the_count_becomes_improbable(k: int) -> None:
    """P(X <= k | mu = upper) = alpha: the exact bound's definition."""
    assert _poisson_cdf(k, garwood_upper(k)) == pytest.approx(0.05, abs=1e-9)


def test_clopper_pearson_known_values() -> None:
    # 5/10: the two-sided 90 % interval is [0.2224, 0.7776], so one-sided 95 % bounds
    assert clopper_pearson_lower(5, 10) == pytest.approx(0.2224, abs=1e-4)
    assert clopper_pearson_upper(5, 10) == pytest.approx(0.7776, abs=1e-4)
    # all detected: the lower bound is alpha ** (1 / n)
    assert clopper_pearson_lower(36, 36) == pytest.approx(0.05 ** (1 / 36))
    assert clopper_pearson_lower(0, 20) == 0.0 and clopper_pearson_upper(20, 20) == 1.0
    assert clopper_pearson_lower(0, 0) is None
    with pytest.raises(ValueError):
        clopper_pearson_lower(5, 4)


@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
@settings(max_examples=60)
def test_clopper_pearson_lower_is_where_the_count_becomes_improbable(xn: tuple[int, int]) -> None:
    """P(X >= x | n, p = lower) = alpha."""
    x, n = xn
    p = clopper_pearson_lower(x, n)
    assert p is not None
    tail = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(x, n + 1))
    assert tail == pytest.approx(0.05, abs=1e-7)


def test_auroc_with_ties_and_weights_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.integers(0, 6, 500).astype(float) + y  # many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    w = rng.integers(0, 4, 500)
    rep = np.repeat(np.arange(500), w)
    assert auroc(y, s, w) == pytest.approx(roc_auc_score(y[rep], s[rep]), abs=1e-12)
    assert auroc(np.ones(4), np.arange(4.0)) is None


def test_logistic_fit_matches_an_unpenalised_scikit_learn_fit() -> None:
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.integers(0, 12, 4000), rng.normal(0, 1, 4000)]).astype(float)
    z = -3.0 + 0.35 * x[:, 0] + 0.8 * x[:, 1]
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(float)
    w = fit_logistic(x, y)
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(x, y)
    assert w[0] == pytest.approx(ref.intercept_[0], abs=1e-4)
    assert w[1:] == pytest.approx(ref.coef_[0], abs=1e-4)
    assert fit_logistic(np.zeros((10, 0)), np.array([0.0] * 8 + [1.0] * 2))[0] == pytest.approx(
        math.log(0.25), abs=1e-6
    )


def test_paired_bootstrap_of_a_score_against_itself_is_exactly_zero() -> None:
    rng = np.random.default_rng(2)
    pid = np.repeat(np.arange(60), 20)
    y = (rng.random(1200) < 0.2).astype(float)
    s = rng.random(1200) + 0.3 * y
    out = paired_bootstrap_auroc(y, [s, s], pid, n_boot=200)
    assert out["difference"] == 0.0 and out["difference_ci"] == [0.0, 0.0]
    assert out["patients"] == 60 and out["resampled"] == "patients"
    # a better score: a difference interval above zero, reproducible from the seed
    better = paired_bootstrap_auroc(y, [s + 0.5 * y, s], pid, n_boot=200)
    assert better["difference"] > 0 and better["difference_ci"][0] > 0
    again = paired_bootstrap_auroc(y, [s + 0.5 * y, s], pid, n_boot=200)
    assert again == better
    lo, hi = better["ci"][0]
    assert lo <= better["auroc"][0] <= hi
