"""qSOFA (quick Sequential Organ Failure Assessment, Sepsis-3) as pure functions.

One point each for respiratory rate >= 22/min, altered mentation (GCS < 15, or any ACVPU
other than "A") and systolic BP <= 100 mmHg; a score >= 2 flags a high risk of poor
outcome in suspected infection. Respiratory rate and systolic BP are rounded exactly as
for NEWS2 (half away from zero to whole numbers) before the threshold is applied.
A criterion that cannot be evaluated is listed in ``missing``, never counted as false
or true; ``score`` counts the criteria present. See ``docs/clinical-scoring.md``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from models.news2 import CONSCIOUSNESS_POINTS, score_consciousness
from models.recorded import recorded_value

__all__ = [
    "CRITERIA",
    "QsofaResult",
    "altered_mentation",
    "qsofa",
    "qsofa_from_vitals",
]

CRITERIA: tuple[str, ...] = ("respiratory_rate_ge_22", "altered_mentation", "systolic_bp_le_100")
"""The three qSOFA criteria (``criteria`` / ``missing`` names), in this order."""

RESPIRATORY_RATE_THRESHOLD: Final = Decimal(22)  # criterion met when RR >= 22
SYSTOLIC_BP_THRESHOLD: Final = Decimal(100)  # criterion met when SBP <= 100
HIGH_RISK_SCORE: Final = 2
_RR_WHOLE: Final = int(RESPIRATORY_RATE_THRESHOLD)  # exact: compared with floats and Decimals
_SBP_WHOLE: Final = int(SYSTOLIC_BP_THRESHOLD)


@dataclass(frozen=True, slots=True)
class QsofaResult:
    """A qSOFA score over the criteria that can be evaluated."""

    score: int | None
    criteria: Mapping[str, bool]  # read-only, in CRITERIA order
    missing: tuple[str, ...]
    complete: bool
    high_risk: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "score": self.score,
            "criteria": dict(self.criteria),
            "missing": list(self.missing),
            "complete": self.complete,
            "high_risk": self.high_risk,
        }


def _check_gcs(gcs: object) -> int:
    if isinstance(gcs, bool) or not isinstance(gcs, numbers.Real):
        raise TypeError(f"gcs must be a number, got {type(gcs).__name__}")
    as_float = float(gcs)
    if not math.isfinite(as_float) or not as_float.is_integer() or not 3 <= as_float <= 15:
        raise ValueError(f"gcs must be a whole number from 3 to 15, got {gcs!r}")
    return int(as_float)


def altered_mentation(consciousness: str | None = None, gcs: float | None = None) -> bool | None:
    """True when GCS < 15 or ACVPU is not "A"; ``None`` when neither is given.

    When both are given, either one indicating altered mentation is enough.
    """
    if gcs is None and type(consciousness) is str and consciousness in CONSCIOUSNESS_POINTS:
        return consciousness != "A"  # the common case: ACVPU alone
    findings: list[bool] = []
    if consciousness is not None:
        score_consciousness(consciousness)  # ValueError unless an ACVPU code, as for NEWS2
        findings.append(consciousness != "A")
    if gcs is not None:
        findings.append(_check_gcs(gcs) < 15)
    return any(findings) if findings else None


def _whole(value: float) -> float | Decimal:
    """``recorded_value(value)`` (half away from zero to a whole number), compared with
    the thresholds; a float or int that is already whole is its own recorded value."""
    t = type(value)
    if t is int or (t is float and math.isfinite(value) and value.is_integer()):
        return value
    return recorded_value(value)


def qsofa(
    *,
    respiratory_rate_per_min: float | None = None,
    systolic_bp_mmhg: float | None = None,
    consciousness: str | None = None,
    gcs: float | None = None,
) -> QsofaResult:
    """Score qSOFA. ``None`` means not recorded; such criteria are listed in ``missing``."""
    return _aggregate(
        (
            None
            if respiratory_rate_per_min is None
            else _whole(respiratory_rate_per_min) >= _RR_WHOLE,
            altered_mentation(consciousness, gcs),
            None if systolic_bp_mmhg is None else _whole(systolic_bp_mmhg) <= _SBP_WHOLE,
        )
    )


# One shared (immutable) result per combination of the three criteria (27 at most).
_RESULTS: dict[tuple[bool | None, ...], QsofaResult] = {}


def _aggregate(met: tuple[bool | None, ...]) -> QsofaResult:
    result = _RESULTS.get(met)
    if result is None:
        criteria = {name: m for name, m in zip(CRITERIA, met, strict=True) if m is not None}
        missing = tuple(name for name in CRITERIA if name not in criteria)
        score = sum(criteria.values()) if criteria else None
        result = QsofaResult(
            score=score,
            criteria=MappingProxyType(criteria),
            missing=missing,
            complete=not missing,
            high_risk=score is not None and score >= HIGH_RISK_SCORE,
        )
        _RESULTS[met] = result
    return result


def qsofa_from_vitals(vitals: Mapping[str, Any]) -> QsofaResult:
    """:func:`qsofa` over a mapping keyed by vitals field names
    (``respiratory_rate_per_min``, ``systolic_bp_mmhg``, ``consciousness``, and ``gcs``
    when a source provides it). Unknown keys are ignored; ``None`` counts as missing."""
    return qsofa(
        respiratory_rate_per_min=vitals.get("respiratory_rate_per_min"),
        systolic_bp_mmhg=vitals.get("systolic_bp_mmhg"),
        consciousness=vitals.get("consciousness"),
        gcs=vitals.get("gcs"),
    )
