"""NEWS2 (National Early Warning Score 2, Royal College of Physicians 2017) as pure functions.

Every function here is deterministic and free of I/O. The band tables are data
(``*_BANDS``); scoring a value means rounding it to its recorded precision and looking
it up in its table (the rounding and the precomputed lookups: :mod:`models.recorded`).
See ``docs/clinical-scoring.md`` for the rules and their sources. The chart (band tables,
risk tiers, clinical responses) and its scoring are one module on purpose: each score is
read next to the table it applies.

Decisions that are not in the chart itself:

* **Fractional inputs** are rounded half away from zero to the precision NEWS2 values
  are recorded in (whole numbers, except temperature to 0.1 °C), using decimal
  arithmetic on the shortest decimal form of the float (so ``36.05`` -> ``36.1``), and
  then looked up in the table: SBP 110.5 -> 111 -> 0 points, 110.4 -> 110 -> 1 point.
* **Missing parameters** are never scored as 0: they are listed in ``missing`` and the
  total is the sum of what is present (``None`` when nothing is present). Risk tier and
  alarm priority are those of the partial total.
* **Scale 2 with oxygen unknown**: SpO2 >= 93 % scores depend on air/oxygen; when that
  is unknown the SpO2 component is scored as if on oxygen (the higher, safe score) and
  ``"air_or_oxygen"`` stays in ``missing``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final, Literal

from models.recorded import TENTH, WHOLE, Band, band_table, points_table, recorded_value

__all__ = [
    "AIR_OR_OXYGEN_POINTS",
    "CONSCIOUSNESS_POINTS",
    "PARAMETERS",
    "PULSE_BANDS",
    "RESPIRATION_RATE_BANDS",
    "SPO2_SCALE1_BANDS",
    "SPO2_SCALE2_AIR_BANDS",
    "SPO2_SCALE2_OXYGEN_BANDS",
    "SYSTOLIC_BP_BANDS",
    "TEMPERATURE_BANDS",
    "VITALS_KEYS",
    "News2Result",
    "Priority",
    "RiskTier",
    "alarm_priority",
    "news2",
    "news2_from_vitals",
    "recorded_value",
    "risk_tier",
    "score_air_or_oxygen",
    "score_consciousness",
    "score_pulse",
    "score_respiration_rate",
    "score_spo2_scale1",
    "score_spo2_scale2",
    "score_systolic_bp",
    "score_temperature",
]

PARAMETERS: tuple[str, ...] = (
    "respiration_rate",
    "spo2",
    "air_or_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
)
"""The seven NEWS2 parameters, in chart order (component / ``missing`` names)."""

VITALS_KEYS: Final[Mapping[str, str]] = {
    "respiration_rate": "respiratory_rate_per_min",
    "spo2": "spo2_pct",
    "air_or_oxygen": "on_oxygen",
    "systolic_bp": "systolic_bp_mmhg",
    "pulse": "heart_rate_bpm",
    "consciousness": "consciousness",
    "temperature": "temperature_c",
}
"""NEWS2 parameter -> vitals event field name (:mod:`wardwatch.schemas`)."""

RiskTier = Literal["low", "low-medium", "medium", "high"]
Priority = Literal["none", "low", "medium", "high"]

# ---------------------------------------------------------------------------------------
# Band tables: (inclusive upper bound of the recorded value, points), ascending; the last
# band has no upper bound (None). Values are compared after rounding to their precision.
# ---------------------------------------------------------------------------------------

RESPIRATION_RATE_BANDS: Final = band_table(("8", 3), ("11", 1), ("20", 0), ("24", 2), (None, 3))
SPO2_SCALE1_BANDS: Final = band_table(("91", 3), ("93", 2), ("95", 1), (None, 0))
SPO2_SCALE2_AIR_BANDS: Final = band_table(("83", 3), ("85", 2), ("87", 1), (None, 0))
SPO2_SCALE2_OXYGEN_BANDS: Final = band_table(
    ("83", 3), ("85", 2), ("87", 1), ("92", 0), ("94", 1), ("96", 2), (None, 3)
)
SYSTOLIC_BP_BANDS: Final = band_table(("90", 3), ("100", 2), ("110", 1), ("219", 0), (None, 3))
PULSE_BANDS: Final = band_table(("40", 3), ("50", 1), ("90", 0), ("110", 1), ("130", 2), (None, 3))
TEMPERATURE_BANDS: Final = band_table(("35.0", 3), ("36.0", 1), ("38.0", 0), ("39.0", 1), (None, 2))

AIR_OR_OXYGEN_POINTS: Final[Mapping[bool, int]] = {False: 0, True: 2}
CONSCIOUSNESS_POINTS: Final[Mapping[str, int]] = {"A": 0, "C": 3, "V": 3, "P": 3, "U": 3}
"""ACVPU: Alert scores 0; new Confusion, Voice, Pain, Unresponsive score 3."""

# Each band table's points for the values already at its recorded precision, by the
# table's id (see :func:`~models.recorded.points_table`); built at import.
_TABLES: Final[dict[int, dict[float, int]]] = {
    id(bands): points_table(bands, quantum)
    for bands, quantum in (
        (RESPIRATION_RATE_BANDS, WHOLE),
        (SPO2_SCALE1_BANDS, WHOLE),
        (SPO2_SCALE2_AIR_BANDS, WHOLE),
        (SPO2_SCALE2_OXYGEN_BANDS, WHOLE),
        (SYSTOLIC_BP_BANDS, WHOLE),
        (PULSE_BANDS, WHOLE),
        (TEMPERATURE_BANDS, TENTH),
    )
}


def _lookup(bands: tuple[Band, ...], value: float | Decimal, quantum: Decimal = WHOLE) -> int:
    t = type(value)
    if t is float or t is int:  # not bool, not Decimal: those take the exact path
        table = _TABLES.get(id(bands))
        points = None if table is None else table.get(value)  # type: ignore[arg-type]
        if points is not None:
            return points
    recorded = recorded_value(value, quantum)
    for upper, points in bands:
        if upper is None or recorded <= upper:
            return points
    raise AssertionError("band table without an open-ended last band")  # pragma: no cover


# ---------------------------------------------------------------------------------------
# Per-parameter scores
# ---------------------------------------------------------------------------------------


def score_respiration_rate(v: float) -> int:
    """Respiration rate (/min): <=8 3, 9-11 1, 12-20 0, 21-24 2, >=25 3."""
    return _lookup(RESPIRATION_RATE_BANDS, v)


def score_spo2_scale1(v: float) -> int:
    """SpO2 scale 1 (%): <=91 3, 92-93 2, 94-95 1, >=96 0."""
    return _lookup(SPO2_SCALE1_BANDS, v)


def score_spo2_scale2(v: float, on_oxygen: bool) -> int:
    """SpO2 scale 2 (%): <=83 3, 84-85 2, 86-87 1, 88-92 0; >=93 on air 0;
    on oxygen 93-94 1, 95-96 2, >=97 3."""
    bands = SPO2_SCALE2_OXYGEN_BANDS if _require_bool(on_oxygen) else SPO2_SCALE2_AIR_BANDS
    return _lookup(bands, v)


def score_air_or_oxygen(on_oxygen: bool) -> int:
    """Air 0, supplemental oxygen 2."""
    return AIR_OR_OXYGEN_POINTS[_require_bool(on_oxygen)]


def score_systolic_bp(v: float) -> int:
    """Systolic BP (mmHg): <=90 3, 91-100 2, 101-110 1, 111-219 0, >=220 3."""
    return _lookup(SYSTOLIC_BP_BANDS, v)


def score_pulse(v: float) -> int:
    """Pulse (/min): <=40 3, 41-50 1, 51-90 0, 91-110 1, 111-130 2, >=131 3."""
    return _lookup(PULSE_BANDS, v)


def score_consciousness(c: str) -> int:
    """ACVPU: "A" 0; "C", "V", "P", "U" 3. Anything else raises ``ValueError``."""
    if not isinstance(c, str) or c not in CONSCIOUSNESS_POINTS:
        raise ValueError(f'consciousness must be one of "A", "C", "V", "P", "U"; got {c!r}')
    return CONSCIOUSNESS_POINTS[c]


def score_temperature(v: float) -> int:
    """Temperature (°C, to 0.1): <=35.0 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2."""
    return _lookup(TEMPERATURE_BANDS, v, TENTH)


def _require_bool(on_oxygen: object) -> bool:
    if not isinstance(on_oxygen, bool):
        raise TypeError(f"on_oxygen must be a bool, got {type(on_oxygen).__name__}")
    return on_oxygen


# ---------------------------------------------------------------------------------------
# Risk, response, priority
# ---------------------------------------------------------------------------------------

_RESPONSES: Final[Mapping[str, tuple[str, str]]] = {
    # key: (clinical response, minimum monitoring frequency), RCP 2017 NEWS2 charts 2-4.
    "zero": (
        "Routine monitoring: continue routine NEWS2 monitoring.",
        "minimum every 12 h",
    ),
    "low": (
        "Ward-based response: inform the registered nurse, who must assess the patient and "
        "decide whether increased frequency of clinical monitoring or escalation of care "
        "is required.",
        "minimum 4-6 hourly",
    ),
    "low-medium": (
        "Urgent ward-based response: the registered nurse informs the medical team caring "
        "for the patient, who will review and decide whether escalation of care is "
        "necessary.",
        "minimum 1 hourly",
    ),
    "medium": (
        "Key threshold for urgent response: the registered nurse immediately informs the "
        "medical team caring for the patient and requests urgent review by a clinician or "
        "team competent in the assessment of acute illness; clinical care in an environment "
        "with monitoring facilities.",
        "minimum 1 hourly",
    ),
    "high": (
        "Emergency response: the registered nurse immediately informs the medical team "
        "caring for the patient (at least specialist registrar level); emergency "
        "assessment by a team with critical-care competencies, including advanced airway "
        "management skills; usually transfer of care to a higher level of care (HDU/ICU); "
        "clinical care in an environment with monitoring facilities.",
        "continuous monitoring of vital signs",
    ),
    "none": (
        "NEWS2 not calculable: no scorable parameter recorded; record a full set of observations.",
        "not determined",
    ),
}


def _check_total(total: int) -> int:
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"total must be a non-negative int, got {total!r}")
    return total


def risk_tier(total: int, single_param_3: bool) -> RiskTier:
    """Clinical risk: >=7 high; 5-6 medium; a single parameter scoring 3 (total < 5)
    low-medium; otherwise (0-4) low."""
    total = _check_total(total)
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if single_param_3:
        return "low-medium"
    return "low"


def alarm_priority(total: int | None, single_param_3: bool) -> Priority:
    """IEC 60601-1-8 alarm priority: >=7 high; 5-6 or a single 3 medium; 1-4 low;
    0 (or nothing scorable) none."""
    if total is None:
        return "none"
    total = _check_total(total)
    if total >= 7:
        return "high"
    if total >= 5 or single_param_3:
        return "medium"
    if total >= 1:
        return "low"
    return "none"


def _response_key(total: int | None, single_param_3: bool) -> str:
    if total is None:
        return "none"
    tier = risk_tier(total, single_param_3)
    if tier == "low" and total == 0:
        return "zero"
    return tier


# ---------------------------------------------------------------------------------------
# Aggregate score
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class News2Result:
    """A NEWS2 score over the parameters present (see module docstring)."""

    total: int | None
    components: Mapping[str, int]  # read-only, parameter order
    missing: tuple[str, ...]
    complete: bool
    single_param_3: bool
    risk: RiskTier | None
    response: str
    min_obs_frequency: str
    priority: Priority
    spo2_scale: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (plain dict/list/str/int/bool/None)."""
        return {
            "total": self.total,
            "components": dict(self.components),
            "missing": list(self.missing),
            "complete": self.complete,
            "single_param_3": self.single_param_3,
            "risk": self.risk,
            "response": self.response,
            "min_obs_frequency": self.min_obs_frequency,
            "priority": self.priority,
            "spo2_scale": self.spo2_scale,
        }


def news2(
    *,
    respiratory_rate_per_min: float | None = None,
    spo2_pct: float | None = None,
    on_oxygen: bool | None = None,
    systolic_bp_mmhg: float | None = None,
    heart_rate_bpm: float | None = None,
    consciousness: str | None = None,
    temperature_c: float | None = None,
    spo2_scale: int = 1,
) -> News2Result:
    """Score one observation set. ``None`` means not recorded (listed in ``missing``).

    ``spo2_scale`` is 1 (default) or 2 (only for a clinician-documented target of
    88-92 %). Raises ``ValueError`` for NaN/inf, an unknown ACVPU code or scale, and
    ``TypeError`` for wrongly typed values.
    """
    if isinstance(spo2_scale, bool) or spo2_scale not in (1, 2):
        raise ValueError(f"spo2_scale must be 1 or 2, got {spo2_scale!r}")

    rr = (
        None
        if respiratory_rate_per_min is None
        else score_respiration_rate(respiratory_rate_per_min)
    )
    spo2 = None
    if spo2_pct is not None:
        if spo2_scale == 1:
            spo2 = score_spo2_scale1(spo2_pct)
        else:
            # Unknown air/oxygen on scale 2: assume oxygen, the higher (safe) score.
            assume_oxygen = True if on_oxygen is None else on_oxygen
            spo2 = score_spo2_scale2(spo2_pct, assume_oxygen)
    return _aggregate(
        (
            rr,
            spo2,
            None if on_oxygen is None else score_air_or_oxygen(on_oxygen),
            None if systolic_bp_mmhg is None else score_systolic_bp(systolic_bp_mmhg),
            None if heart_rate_bpm is None else score_pulse(heart_rate_bpm),
            None if consciousness is None else score_consciousness(consciousness),
            None if temperature_c is None else score_temperature(temperature_c),
        ),
        spo2_scale,
    )


# The result is a function of the seven parameters' points (None: missing) and the scale:
# a few thousand combinations, each built once and shared (the result is immutable, its
# ``components`` a read-only mapping).
_RESULTS: dict[tuple[tuple[int | None, ...], int], News2Result] = {}


def _aggregate(points: tuple[int | None, ...], spo2_scale: int) -> News2Result:
    key = (points, spo2_scale)
    result = _RESULTS.get(key)
    if result is None:
        components = {name: p for name, p in zip(PARAMETERS, points, strict=True) if p is not None}
        missing = tuple(name for name, p in zip(PARAMETERS, points, strict=True) if p is None)
        total = sum(components.values()) if components else None
        single_param_3 = any(p == 3 for p in components.values())
        response, frequency = _RESPONSES[_response_key(total, single_param_3)]
        result = News2Result(
            total=total,
            components=MappingProxyType(components),
            missing=missing,
            complete=not missing,
            single_param_3=single_param_3,
            risk=None if total is None else risk_tier(total, single_param_3),
            response=response,
            min_obs_frequency=frequency,
            priority=alarm_priority(total, single_param_3),
            spo2_scale=spo2_scale,
        )
        _RESULTS[key] = result
    return result


def news2_from_vitals(vitals: Mapping[str, Any], spo2_scale: int = 1) -> News2Result:
    """:func:`news2` over a mapping keyed by the vitals event field names.

    Unknown keys (``diastolic_bp_mmhg``, ``patient_id``, ...) are ignored, and so is a
    ``spo2_scale`` key: the scale is the ``spo2_scale`` argument. ``None`` values count
    as missing.
    """
    return news2(
        respiratory_rate_per_min=vitals.get("respiratory_rate_per_min"),
        spo2_pct=vitals.get("spo2_pct"),
        on_oxygen=vitals.get("on_oxygen"),
        systolic_bp_mmhg=vitals.get("systolic_bp_mmhg"),
        heart_rate_bpm=vitals.get("heart_rate_bpm"),
        consciousness=vitals.get("consciousness"),
        temperature_c=vitals.get("temperature_c"),
        spo2_scale=spo2_scale,
    )
