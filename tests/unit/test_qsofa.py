"""qSOFA: thresholds (both sides, whole and fractional), mentation, missing handling."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.qsofa import CRITERIA, QsofaResult, altered_mentation, qsofa, qsofa_from_vitals


@pytest.mark.parametrize(
    ("rr", "met"),
    [(0, False), (21, False), (22, True), (40, True), (21.4, False), (21.49999, False),
     (21.5, True), (22.4, True)],
)  # fmt: skip
def test_respiratory_rate_threshold(rr: float, met: bool) -> None:
    result = qsofa(respiratory_rate_per_min=rr)
    assert result.criteria == {"respiratory_rate_ge_22": met}
    assert result.score == int(met)


@pytest.mark.parametrize(
    ("sbp", "met"),
    [(60, True), (100, True), (101, False), (200, False), (100.4, True), (100.49999, True),
     (100.5, False), (99.5, True)],
)  # fmt: skip
def test_systolic_bp_threshold(sbp: float, met: bool) -> None:
    result = qsofa(systolic_bp_mmhg=sbp)
    assert result.criteria == {"systolic_bp_le_100": met}
    assert result.score == int(met)


@pytest.mark.parametrize(
    ("consciousness", "gcs", "altered"),
    [
        ("A", None, False),
        ("C", None, True),
        ("V", None, True),
        ("P", None, True),
        ("U", None, True),
        (None, 15, False),
        (None, 14, True),
        (None, 3, True),
        (None, 15.0, False),
        (None, 14.0, True),
        ("A", 15, False),
        ("A", 14, True),  # either finding is enough
        ("C", 15, True),
        ("U", 3, True),
    ],
)
def test_altered_mentation(consciousness: str | None, gcs: float | None, altered: bool) -> None:
    assert altered_mentation(consciousness, gcs) is altered
    result = qsofa(consciousness=consciousness, gcs=gcs)
    assert result.criteria == {"altered_mentation": altered}


def test_altered_mentation_unknown() -> None:
    assert altered_mentation() is None


@pytest.mark.parametrize("bad", ["a", "Alert", "", "X", 0])
def test_invalid_consciousness_raises(bad: Any) -> None:
    with pytest.raises(ValueError):
        qsofa(consciousness=bad)


@pytest.mark.parametrize("bad", [16, 2, 0, -1, 14.5, math.nan, math.inf])
def test_invalid_gcs_raises_value_error(bad: Any) -> None:
    with pytest.raises(ValueError):
        qsofa(gcs=bad)


@pytest.mark.parametrize("bad", [True, "14"])
def test_non_numeric_gcs_raises_type_error(bad: Any) -> None:
    with pytest.raises(TypeError):
        qsofa(gcs=bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"respiratory_rate_per_min": math.nan},
        {"respiratory_rate_per_min": math.inf},
        {"systolic_bp_mmhg": -math.inf},
        {"systolic_bp_mmhg": math.nan},
    ],
)
def test_non_finite_raises_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        qsofa(**kwargs)


@pytest.mark.parametrize(
    ("rr_met", "mentation_met", "sbp_met"), list(itertools.product([False, True], repeat=3))
)
def test_all_combinations(rr_met: bool, mentation_met: bool, sbp_met: bool) -> None:
    result = qsofa(
        respiratory_rate_per_min=22 if rr_met else 21,
        consciousness="V" if mentation_met else "A",
        systolic_bp_mmhg=100 if sbp_met else 101,
    )
    expected = int(rr_met) + int(mentation_met) + int(sbp_met)
    assert result.score == expected
    assert result.high_risk is (expected >= 2)
    assert result.complete
    assert result.missing == ()
    assert list(result.criteria) == list(CRITERIA)


def test_nothing_present() -> None:
    result = qsofa()
    assert result.score is None
    assert result.criteria == {}
    assert result.missing == CRITERIA
    assert not result.complete
    assert not result.high_risk


def test_missing_counts_only_what_is_present() -> None:
    result = qsofa(respiratory_rate_per_min=30, systolic_bp_mmhg=90)
    assert result.score == 2
    assert result.high_risk
    assert result.missing == ("altered_mentation",)
    assert not result.complete

    one = qsofa(systolic_bp_mmhg=90)
    assert one.score == 1
    assert not one.high_risk
    assert one.missing == ("respiratory_rate_ge_22", "altered_mentation")

    normal = qsofa(respiratory_rate_per_min=16)
    assert normal.score == 0
    assert normal.criteria == {"respiratory_rate_ge_22": False}


def test_from_vitals_ignores_unknown_keys() -> None:
    vitals = {
        "respiratory_rate_per_min": 24,
        "systolic_bp_mmhg": 95,
        "consciousness": "A",
        "heart_rate_bpm": 120,
        "spo2_pct": None,
        "patient_id": "p1",
    }
    assert qsofa_from_vitals(vitals) == qsofa(
        respiratory_rate_per_min=24, systolic_bp_mmhg=95, consciousness="A"
    )
    assert qsofa_from_vitals({"gcs": 13}).criteria == {"altered_mentation": True}
    assert qsofa_from_vitals({"consciousness": None}).score is None


def test_to_dict_is_json_ready() -> None:
    result = qsofa(respiratory_rate_per_min=25, consciousness="C")
    data = json.loads(json.dumps(result.to_dict()))
    assert data == {
        "score": 2,
        "criteria": {"respiratory_rate_ge_22": True, "altered_mentation": True},
        "missing": ["systolic_bp_le_100"],
        "complete": False,
        "high_risk": True,
    }
    assert set(data) == set(QsofaResult.__dataclass_fields__)


def _whole(v: float) -> int:
    """Exact half-up rounding of the shortest decimal form (inputs here are >= 0)."""
    return math.floor(Fraction(repr(v)) + Fraction(1, 2))


@given(
    rr=st.none() | st.floats(0, 80, allow_nan=False),
    sbp=st.none() | st.floats(30, 300, allow_nan=False),
    consciousness=st.none() | st.sampled_from(["A", "C", "V", "P", "U"]),
    gcs=st.none() | st.integers(3, 15),
)
def test_invariants(
    rr: float | None, sbp: float | None, consciousness: str | None, gcs: int | None
) -> None:
    result = qsofa(
        respiratory_rate_per_min=rr, systolic_bp_mmhg=sbp, consciousness=consciousness, gcs=gcs
    )
    assert set(result.criteria) | set(result.missing) == set(CRITERIA)
    assert not set(result.criteria) & set(result.missing)
    assert list(result.missing) == [c for c in CRITERIA if c in result.missing]
    assert result.complete == (not result.missing)
    if result.criteria:
        assert result.score == sum(result.criteria.values())
    else:
        assert result.score is None
    assert result.high_risk == (result.score is not None and result.score >= 2)
    if rr is not None:
        assert result.criteria["respiratory_rate_ge_22"] == (_whole(rr) >= 22)
    if sbp is not None:
        assert result.criteria["systolic_bp_le_100"] == (_whole(sbp) <= 100)
