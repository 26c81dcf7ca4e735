"""Validation metrics: AUROC, AUPRC and calibration against scikit-learn; the patient
bootstrap is seeded (same seed, same intervals) and weights points as resampling does."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from trainer.validation.metrics import (
    Ranked,
    _ap,
    _auc,
    auprc,
    auroc,
    bootstrap,
    calibration,
    roc_points,
)

labels_and_scores = st.integers(2, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.one_of(
            # integer scores, as NEWS2: many ties
            st.lists(st.integers(0, 9).map(float), min_size=n, max_size=n),
            st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n),
        ),
    )
)


@settings(max_examples=300, deadline=None)
@given(labels_and_scores)
def test_auroc_and_auprc_are_scikit_learns(data: tuple[list[int], list[float]]) -> None:
    y, s = data
    if len(set(y)) < 2:
        assert auroc(y, s) is None and auprc(y, s) is None
        return
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(labels_and_scores, st.integers(0, 2**31))
def test_weights_are_scikit_learns_sample_weights(
    data: tuple[list[int], list[float]], seed: int
) -> None:
    """A resample weights each point by how often its patient was drawn."""
    y, s = data
    w = np.random.default_rng(seed).integers(0, 4, len(y)).astype(float)
    pos, neg = Ranked.of(y, s).groups(w[None, :])
    ya, wa = np.array(y), w
    if wa[ya == 1].sum() == 0 or wa[ya == 0].sum() == 0:
        assert np.isnan(_auc(pos, neg)[0]) and np.isnan(_ap(pos, neg)[0])
        return
    assert _auc(pos, neg)[0] == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert _ap(pos, neg)[0] == pytest.approx(
        average_precision_score(y, s, sample_weight=w), abs=1e-12
    )


def test_reliability_bins_and_ece_match_scikit_learns_curve() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(2000)
    y = (rng.random(2000) < p**1.5).astype(int)
    cal = calibration(y, p)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    used = [b for b in cal["bins"] if b["n"]]
    assert [b["observed_rate"] for b in used] == pytest.approx(frac_pos, abs=1e-4)
    assert [b["mean_predicted"] for b in used] == pytest.approx(mean_pred, abs=1e-4)
    counts = np.histogram(p, bins=np.linspace(0, 1, 11))[0]
    counts = counts[counts > 0]
    ece = float(np.sum(counts / len(p) * np.abs(frac_pos - mean_pred)))
    assert cal["ece"] == pytest.approx(ece, abs=1e-4)
    assert cal["brier"] == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-5)
    assert sum(b["n"] for b in cal["bins"]) == 2000


def test_roc_points_follow_scikit_learns_curve() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 12, 300).astype(float) + y
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    pts = roc_points(y, s)
    assert pts[0] == [0.0, 0.0] and pts[-1] == [1.0, 1.0]
    assert [p[0] for p in pts] == pytest.approx(fpr, abs=1e-4)
    assert [p[1] for p in pts] == pytest.approx(tpr, abs=1e-4)


def _data(n_patients: int = 40, per: int = 6, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    units = np.repeat(np.arange(n_patients), per)
    sick = rng.random(n_patients) < 0.3
    y = (sick[units] & (rng.random(len(units)) < 0.7)).astype(int)
    a = y + rng.normal(0, 0.8, len(y))
    b = np.round(y * 2 + rng.normal(0, 2, len(y)))
    return y, a, b, units


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    y, a, b, units = _data()
    one = bootstrap(y, {"a": a, "b": b}, units, n=300, seed=11, paired=("a", "b"))
    two = bootstrap(y, {"a": a, "b": b}, units, n=300, seed=11, paired=("a", "b"))
    other = bootstrap(y, {"a": a, "b": b}, units, n=300, seed=12, paired=("a", "b"))
    assert one == two
    assert one["a"]["auroc"]["ci"] != other["a"]["auroc"]["ci"]
    assert one["a"]["auroc"]["value"] == pytest.approx(roc_auc_score(y, a), abs=1e-4)
    lo, hi = one["a"]["auroc"]["ci"]
    assert lo <= one["a"]["auroc"]["value"] <= hi
    assert one["difference"]["auroc"]["value"] == pytest.approx(
        one["a"]["auroc"]["value"] - one["b"]["auroc"]["value"], abs=2e-4
    )
    assert one["resamples"] == 300 and one["units"] == 40


def test_bootstrap_resamples_patients_not_points() -> None:
    """One resample, rebuilt by hand from the same draws, gives the same AUROC."""
    y, a, _, units = _data(seed=4)
    rng = np.random.default_rng(9)
    draws = rng.integers(0, 40, size=(1, 40))[0]
    idx = np.concatenate([np.flatnonzero(units == d) for d in draws])
    by_hand = roc_auc_score(y[idx], a[idx])
    counts = np.bincount(draws, minlength=40).astype(float)
    pos, neg = Ranked.of(y, a).groups(counts[units][None, :])
    assert _auc(pos, neg)[0] == pytest.approx(by_hand, abs=1e-12)


def test_a_score_against_itself_differs_by_nothing() -> None:
    y, a, _, units = _data(seed=2)
    out = bootstrap(y, {"x": a, "y": a.copy()}, units, n=200, seed=0, paired=("x", "y"))
    assert out["difference"]["auroc"]["value"] == 0.0
    assert out["difference"]["auroc"]["ci"] == [0.0, 0.0]
    assert out["difference"]["auroc"]["share_le_0"] == 1.0


def test_one_class_gives_no_interval() -> None:
    y = np.zeros(10)
    out = bootstrap(y, {"s": np.arange(10.0)}, np.arange(10), n=50, seed=0)
    assert out["s"]["auroc"] == {"value": None, "ci": None, "defined": 0}


def test_the_go_live_verdict_reads_the_paired_interval() -> None:
    """Worse only when the whole interval of (fused - NEWS2) is below 0; the local
    recalibration's verdict beside it; no model: the rules alone."""
    from trainer.validation.evaluate import verdict

    def disc(lo: float, hi: float, with_fused: bool = True) -> dict[str, object]:
        return {
            "fused": {"auroc": {"value": 0.5}} if with_fused else None,
            "difference": {"auroc": {"value": (lo + hi) / 2, "ci": [lo, hi]}},
        }

    worse = verdict({"discrimination": disc(-0.4, -0.3)}, False)
    assert worse["shipped_vs_news2"] == "worse" and "do not go live" in worse["text"]
    same = verdict(
        {
            "discrimination": disc(-0.2, 0.05),
            "discrimination_recalibrated": {**disc(0.0, 0.0), "uses_model": False},
        },
        True,
    )
    assert same["shipped_vs_news2"] == "not_different"
    assert same["recalibrated_vs_news2"] == "not_different"
    assert "drops the model term (ranks as NEWS2)" in same["text"]
    assert same["text"].endswith("indicative only")
    assert verdict({"discrimination": disc(0.01, 0.2)}, False)["shipped_vs_news2"] == "better"
    none = verdict({"discrimination": disc(0, 0, with_fused=False)}, False)
    assert none["shipped_vs_news2"] == "no_model"
