"""Units: the UCUM codes accepted for each vitals field and their conversion into the
field's unit (°F and K to °C, mL/min to L/min), applied to a FHIR ``Quantity``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from wardwatch.ingest.codes import _O2_FLOW, _field_label
from wardwatch.ingest.result import _fail, _short
from wardwatch.schemas import RejectReason


def _same(v: float) -> float:
    return v


def _f_to_c(v: float) -> float:
    return round((v - 32.0) * 5.0 / 9.0, 1)


def _k_to_c(v: float) -> float:
    return round(v - 273.15, 1)


def _ml_to_l(v: float) -> float:
    return v / 1000.0


_PER_MIN: Final[dict[str, Callable[[float], float]]] = {
    u: _same
    for u in ("/min", "1/min", "{beats}/min", "{beat}/min", "{breaths}/min", "{breath}/min")
}

_UNITS: Final[dict[str, dict[str, Callable[[float], float]]]] = {
    "heart_rate_bpm": _PER_MIN,
    "respiratory_rate_per_min": _PER_MIN,
    "spo2_pct": {"%": _same},
    "systolic_bp_mmhg": {"mm[Hg]": _same, "mmHg": _same},
    "diastolic_bp_mmhg": {"mm[Hg]": _same, "mmHg": _same},
    "temperature_c": {
        "Cel": _same,
        "°C": _same,
        "[degF]": _f_to_c,
        "°F": _f_to_c,
        "K": _k_to_c,
    },
    _O2_FLOW: {"L/min": _same, "l/min": _same, "mL/min": _ml_to_l, "ml/min": _ml_to_l},
}
"""UCUM code (``valueQuantity.code``, else ``unit``) -> converter into the field's unit."""


def _quantity(q: object, field: str, where: str) -> float:
    if not isinstance(q, dict):
        _fail(RejectReason.FHIR_INVALID, f"{where}: must be an object")
    if q.get("comparator") is not None:
        _fail(
            RejectReason.FHIR_UNSUPPORTED,
            f"{where}.comparator: {_field_label(field)} must be an exact value",
        )
    raw_value = q.get("value")
    if raw_value is None:
        _fail(RejectReason.FHIR_INVALID, f"{where}.value: required")
    if type(raw_value) is float:
        value = raw_value
    elif type(raw_value) is int:
        try:
            value = float(raw_value)
        except OverflowError:  # beyond any float: an impossible reading, set aside as such
            value = math.inf if raw_value > 0 else -math.inf
    else:
        _fail(RejectReason.FHIR_INVALID, f"{where}.value: must be a number")
    code = q.get("code")
    unit = code if code is not None else q.get("unit")
    table = _UNITS[field]
    if unit is None:
        _fail(
            RejectReason.UNIT_UNSUPPORTED,
            f"{where}: {_field_label(field)} has no unit (accepted: {', '.join(table)})",
        )
    if not isinstance(unit, str):
        _fail(RejectReason.FHIR_INVALID, f"{where}.code/unit: must be a string")
    convert = table.get(unit)
    if convert is None:
        _fail(
            RejectReason.UNIT_UNSUPPORTED,
            f"{where}: unit {_short(unit)} not supported for {_field_label(field)} "
            f"(accepted: {', '.join(table)})",
        )
    return convert(value)
