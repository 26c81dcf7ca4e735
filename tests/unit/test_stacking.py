"""The fused risk stacked on NEWS2: the worker's formula, its metadata, and the trainer's
fit that keeps the model's term only where it helps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.fusion import STACKING_TAG, FusionParams, Stacking, Thresholds, fuse, fuse_arrays
from models.registry import RegistryError, check_metadata
from trainer.dataset import PatientSeq
from trainer.stacking import calibration_split, fit_stacking, fold_of
from trainer.stats import auroc

totals = st.lists(st.integers(0, 20), min_size=2, max_size=60)


@given(
    totals,
    st.floats(-5, 5),
    st.floats(0.001, 1.0),  # |a + 20 b| < 36: below where float64 rounds sigmoid to 1
    st.lists(st.floats(0.0, 1.0), min_size=60, max_size=60),
)
def test_with_c_zero_the_fused_risk_ranks_exactly_as_news2(
    n2: list[int], a: float, b: float, risks: list[float]
) -> None:
    """c = 0: every pair of observations is ordered (and tied) as their NEWS2 totals,
    whatever the model says."""
    stacking = Stacking(a, b, 0.0)
    fused = [stacking.risk(r, t) for r, t in zip(risks, n2, strict=False)]
    for i in range(len(fused)):
        for j in range(len(fused)):
            assert (fused[i] > fused[j]) == (n2[i] > n2[j])
            assert (fused[i] == fused[j]) == (n2[i] == n2[j])


@given(
    st.integers(0, 20),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.floats(-4, 4),
    st.floats(0.001, 1),
    st.floats(0, 2),
)
def test_fused_risk_is_monotone_and_the_array_form_agrees(
    total: int, p: float, q: float, a: float, b: float, c: float
) -> None:
    s = Stacking(a, b, c)
    lo, hi = sorted((p, q))
    assert s.risk(hi, total) >= s.risk(lo, total)
    assert s.risk(p, min(total + 1, 20)) >= s.risk(p, total)
    arr = fuse_arrays([p], [total], s)[0]
    assert arr == pytest.approx(fuse(p, news2_total=total, stacking=s), abs=1e-12)


def test_without_stacking_fusion_is_as_before() -> None:
    params = FusionParams.from_meta({})
    assert params.stacking is None and params.fuse(0.2, 9) == 0.2
    assert params.fuse(None, 9) is None  # a model outage: the rules alone
    assert fuse(0.2, 0.9) > fuse(0.2, 0.5) > 0.2
    assert Thresholds.from_meta({}) is None


def test_stacking_and_imaging_compose() -> None:
    s = Stacking(-3.0, 0.4, 0.5)
    base = s.risk(0.3, 6)
    params = FusionParams(s, imaging_weight=0.5, imaging_prior=0.1)
    assert params.fuse(0.3, 6) == pytest.approx(base)
    assert params.fuse(0.3, 6, 0.1) == pytest.approx(base)  # a finding at the prior
    assert params.fuse(0.3, 6, 0.9) > base > params.fuse(0.3, 6, 0.01)
    assert params.fuse(0.3, None) == pytest.approx(s.risk(0.3, 0))  # nothing scoreable


def test_model_risk_floor_is_where_the_model_is_needed() -> None:
    s = Stacking(-4.0, 0.3, 0.8)
    floor = s.model_risk_floor(0.3)
    assert floor is not None
    # at NEWS2 4 (the highest total that does not alert by itself) the floor is exact
    assert s.risk(floor, 4) == pytest.approx(0.3, abs=1e-9)
    assert s.risk(floor * 0.99, 4) < 0.3 and all(s.risk(floor * 0.99, t) < 0.3 for t in range(5))
    assert Stacking(-4.0, 0.3, 0.0).model_risk_floor(0.3) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"stacking": {"a": 0, "b": 0.1, "c": 0.5, "tag": "other"}},
        {"stacking": {"a": 0, "b": 0.0, "c": 0.5, "tag": STACKING_TAG}},  # not increasing
        {"stacking": {"a": 0, "b": 0.1, "c": -0.1, "tag": STACKING_TAG}},
        {"stacking": {"a": "x", "b": 0.1, "c": 0.1, "tag": STACKING_TAG}},
        {"stacking": {"a": math.nan, "b": 0.1, "c": 0.1, "tag": STACKING_TAG}},
        {"imaging_prior": 1.5},
        "not an object",
    ],
)
def test_a_malformed_fusion_block_refuses_the_version(bad: object) -> None:
    with pytest.raises(RegistryError, match="fusion"):
        check_metadata({"fusion": bad}, "deterioration", "v9")


@pytest.mark.parametrize(
    "bad", [{"medium": 0.7, "high": 0.6}, {"medium": 0, "high": 0.5}, {"medium": 0.2}, [0.2, 0.4]]
)
def test_malformed_operating_points_refuse_the_version(bad: object) -> None:
    with pytest.raises(RegistryError, match="operating_points"):
        check_metadata({"operating_points": bad}, "deterioration", "v9")


def _data(informative: bool, n_patients: int = 400, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), 40)
    n = len(pid)
    n2 = rng.poisson(2.0, n).clip(0, 20).astype(float)
    hidden = rng.normal(0, 1, n)
    z = -3.2 + 0.3 * n2 + (1.2 * hidden if informative else 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    # the model sees the hidden signal (informative) or only noise
    lp = (hidden if informative else rng.normal(0, 1, n)) - 2.0
    risk = 1 / (1 + np.exp(-lp))
    return n2, risk, y, pid


def test_the_model_term_is_dropped_when_it_adds_nothing() -> None:
    n2, risk, y, pid = _data(informative=False)
    fit = fit_stacking(n2, risk, y, pid)
    assert fit["c"] == 0.0 and not fit["uses_model"] and fit["b"] > 0
    fused = fuse_arrays(risk, n2, Stacking.from_dict(fit))
    assert auroc(y, fused) == auroc(y, n2)  # exactly NEWS2's ranking, ties included
    assert fit["selection"]["with_model"]["log_loss"] >= fit["selection"]["news2_only"]["log_loss"]


def test_the_model_term_is_kept_when_it_helps() -> None:
    n2, risk, y, pid = _data(informative=True)
    fit = fit_stacking(n2, risk, y, pid)
    assert fit["uses_model"] and fit["c"] == pytest.approx(1.2, abs=0.2)
    assert fit["b"] == pytest.approx(0.3, abs=0.08)
    fused = fuse_arrays(risk, n2, Stacking.from_dict(fit))
    assert auroc(y, fused) > auroc(y, n2) + 0.05


def _patients(n: int) -> list[PatientSeq]:
    z = np.zeros(3)
    return [
        PatientSeq(f"p{i:03d}", np.zeros((3, 1), np.float32), z.astype(np.int8),
                   z.astype(np.int16), np.arange(3.0), None, 1)
        for i in range(n)
    ]  # fmt: skip


def test_calibration_split_is_a_deterministic_patient_level_half() -> None:
    pats = _patients(31)
    tune, calib = calibration_split(pats, 0)
    assert len(tune) == 15 and len(calib) == 16
    assert {p.patient_id for p in tune}.isdisjoint(p.patient_id for p in calib)
    again = calibration_split(list(reversed(pats)), 0)  # order of the input does not matter
    assert {p.patient_id for p in again[1]} == {p.patient_id for p in calib}
    assert {p.patient_id for p in calibration_split(pats, 1)[1]} != {p.patient_id for p in calib}


@settings(max_examples=20)
@given(st.lists(st.integers(0, 30), min_size=10, max_size=200))
def test_folds_never_split_a_patient(pids: list[int]) -> None:
    fold = fold_of(np.array(pids), 5, 0)
    for p in set(pids):
        assert len({int(f) for f, q in zip(fold, pids, strict=True) if q == p}) == 1
