"""Validation: the tiers of limits (:mod:`wardwatch.ingest.limits`) and timestamp limits
of a vitals event, the readings set aside (impossible, inconsistent) and flagged (extreme),
the warnings on accepted but suspicious values, the checks on the caller's ``now``, and
the mapping of :class:`~wardwatch.schemas.VitalsEvent` schema errors to reject reasons."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import ValidationError

from wardwatch.ingest.limits import VITAL_LIMITS
from wardwatch.ingest.result import (
    W_PULSE_PRESSURE_NARROW,
    W_READING_SET_ASIDE,
    W_SPO2_PROBE_ARTIFACT,
    W_TEMPERATURE_EXTREME,
    W_TIMESTAMP_STALE,
    W_VERIFY_READING,
    Checked,
    IngestUsageError,
    ReadingFlag,
    Rejection,
    _fail,
    _fmt,
    _Reject,
    _rejection,
    _short,
)
from wardwatch.ingest.units import _f_to_c, _k_to_c
from wardwatch.schemas import RejectReason, VitalsEvent

PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    field: (limits.possible_low, limits.possible_high) for field, limits in VITAL_LIMITS.items()
}
"""Inclusive possible range per numeric VitalsEvent field (the outer tier of
:data:`~wardwatch.ingest.limits.VITAL_LIMITS`); a value outside it is set aside."""

_BOUNDS: Final[tuple[tuple[str, float, float, float, float], ...]] = tuple(
    (
        field,
        limits.possible_low,
        limits.possible_high,
        -math.inf if limits.extreme_low is None else limits.extreme_low,
        math.inf if limits.extreme_high is None else limits.extreme_high,
    )
    for field, limits in VITAL_LIMITS.items()
)
"""Per field: possible low and high, extreme low and high (the hot loop's form)."""

OXYGEN_FLOW_RANGE_L_PER_MIN: Final[tuple[float, float]] = (0.0, 100.0)
"""Inclusive limits for FHIR inhaled oxygen flow (3151-8), which maps to ``on_oxygen``."""

STALE_AFTER_S: Final[float] = 24 * 3600.0
"""An event older than this (relative to ``now``) is accepted with ``timestamp_stale``."""

EPOCH: Final[datetime] = datetime(1970, 1, 1, tzinfo=UTC)
"""Timestamps before this are rejected as IMPOSSIBLE_VALUE (``ts_ms`` would go negative)."""

TEMPERATURE_EXTREME_LOW_C: Final = 32.0  # <= warns (moderate-severe hypothermia)
TEMPERATURE_EXTREME_HIGH_C: Final = 42.0  # >= warns (hyperpyrexia)
PULSE_PRESSURE_NARROW_MMHG: Final = 10.0  # < warns
SPO2_PROBE_ARTIFACT_PCT: Final = 70.0  # < warns


def _range_hint(field: str, v: float) -> str:
    if field == "temperature_c":
        if 90.0 <= v <= 113.0:
            return f"; looks like Fahrenheit ({_fmt(v)} °F = {_f_to_c(v):.1f} °C): send °C, or [degF] via FHIR"
        if 298.0 <= v <= 318.0:
            return f"; looks like kelvin ({_fmt(v)} K = {_k_to_c(v):.1f} °C)"
    elif field == "spo2_pct" and 0.0 < v <= 1.0:
        return "; looks like a fraction, expected percent (0.97 -> 97)"
    if v == 0.0:
        return _ZERO_HINT
    return ""


_ZERO_HINT: Final = "; 0 usually means no signal (leads, probe or cuff off)"


def _check_now(now: datetime, max_future_skew_s: float) -> None:
    if (
        now.__class__ is datetime
        and now.tzinfo is UTC
        and max_future_skew_s.__class__ is float
        and 0.0 <= max_future_skew_s < math.inf
    ):
        return  # the usual arguments, accepted at once
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise IngestUsageError("now must be a timezone-aware datetime")
    if not (isinstance(max_future_skew_s, int | float) and math.isfinite(max_future_skew_s)):
        raise IngestUsageError("max_future_skew_s must be a finite number")
    if max_future_skew_s < 0:
        raise IngestUsageError("max_future_skew_s must be >= 0")


def validate_event(
    event: VitalsEvent, *, now: datetime, max_future_skew_s: float = 300.0
) -> Rejection | Checked:
    """Plausibility checks on an already-typed event.

    Returns a :class:`Checked` when the event is accepted: ``Checked.event`` is the event
    to score (a reading set aside is removed from it), with the warning codes and the
    reading flags; else a :class:`Rejection`. Raises :class:`IngestUsageError` only for a
    naive ``now``.
    """
    _check_now(now, max_future_skew_s)
    pid = event.patient_id if isinstance(event.patient_id, str) else ""
    try:
        return _validate(event, now, max_future_skew_s)
    except _Reject as r:
        return _rejection(r.reason, r.detail, (pid,))


def _set_aside(
    field: str, v: float, tier: Literal["impossible", "inconsistent"], why: str
) -> ReadingFlag:
    return ReadingFlag(W_READING_SET_ASIDE, field, v, tier, why)


def _validate(
    event: VitalsEvent,
    now: datetime,
    max_future_skew_s: float,
    aside: Sequence[ReadingFlag] = (),
) -> Checked:
    """``event`` checked; ``aside`` are readings the FHIR mapping already set aside (an
    impossible oxygen flow), which count for the decision when nothing else remains."""
    pid = event.patient_id
    if not isinstance(pid, str) or not pid.strip():
        _fail(RejectReason.MISSING_PATIENT_ID, "patient_id: missing or blank")

    ts = event.ts
    if not isinstance(ts, datetime):
        _fail(RejectReason.MISSING_TIMESTAMP, "ts: missing")
    if ts.tzinfo is None or ts.utcoffset() is None:
        _fail(RejectReason.SCHEMA, "ts: timestamp must include a UTC offset (naive)")
    try:
        age_s = (now - ts).total_seconds()  # aware datetimes: offsets accounted for
    except (OverflowError, ValueError):
        _fail(RejectReason.IMPOSSIBLE_VALUE, "ts: out of the representable range")
    if ts < EPOCH:
        _fail(RejectReason.IMPOSSIBLE_VALUE, "ts: before 1970-01-01T00:00:00Z")
    if -age_s > max_future_skew_s:
        _fail(
            RejectReason.FUTURE_TIMESTAMP,
            f"ts: {-age_s:.0f} s after now (allowed clock skew {max_future_skew_s:g} s)",
        )

    flags: list[ReadingFlag] = list(aside)
    values: dict[str, float] = {}
    fields = event.__dict__  # pydantic keeps the field values here
    extreme = False
    for field, lo, hi, elo, ehi in _BOUNDS:
        v = fields[field]
        if v is None:
            continue
        if type(v) is float and lo <= v <= hi:  # the usual case (NaN and inf fail the range)
            values[field] = v
            if v <= elo or v >= ehi:
                extreme = True
            continue
        if type(v) is not float and (isinstance(v, bool) or not isinstance(v, int | float)):
            _fail(RejectReason.SCHEMA, f"{field}: must be a number")
        v = float(v)
        if not math.isfinite(v):
            flags.append(_set_aside(field, v, "impossible", f"{field}: not a finite number"))
        elif not lo <= v <= hi:
            side = "below" if v < lo else "above"
            flags.append(
                _set_aside(
                    field,
                    v,
                    "impossible",
                    f"{field}={_fmt(v)} {side} the possible range [{_fmt(lo)}, {_fmt(hi)}]"
                    + _range_hint(field, v),
                )
            )
        else:
            values[field] = v
            extreme = extreme or v <= elo or v >= ehi

    sbp = values.get("systolic_bp_mmhg")
    dbp = values.get("diastolic_bp_mmhg")
    if sbp is not None and dbp is not None and sbp <= dbp:
        why = f"systolic_bp_mmhg={_fmt(sbp)} <= diastolic_bp_mmhg={_fmt(dbp)}"
        for field, v in (("systolic_bp_mmhg", sbp), ("diastolic_bp_mmhg", dbp)):
            flags.append(_set_aside(field, v, "inconsistent", why))
            del values[field]
        sbp = dbp = None

    others = event.on_oxygen is not None or event.consciousness is not None
    if not values and not others:
        if not flags:
            _fail(RejectReason.NO_VITALS, "no vital sign present (need at least one vitals field)")
        # nothing scoreable remains: the whole event, with every reading's reason
        impossible = any(f.tier == "impossible" for f in flags)
        # the no-signal hint once, after every reading (repeated per reading it would
        # push the last readings past the detail's length limit)
        details = list(dict.fromkeys(f.detail.removesuffix(_ZERO_HINT) for f in flags))
        if any(f.detail.endswith(_ZERO_HINT) for f in flags):
            details[-1] += _ZERO_HINT
        reason = RejectReason.IMPOSSIBLE_VALUE if impossible else RejectReason.INCONSISTENT
        _fail(reason, "; ".join(details))

    warnings: list[str] = []
    for field, v in values.items() if extreme else ():
        if VITAL_LIMITS[field].tier(v) == "extreme":
            flags.append(
                ReadingFlag(
                    W_VERIFY_READING,
                    field,
                    v,
                    "extreme",
                    f"{field}={_fmt(v)} is clinically extreme: scored; verify the reading",
                )
            )
    if flags:
        if any(f.set_aside for f in flags):
            warnings.append(W_READING_SET_ASIDE)
            removed = {f.field: None for f in flags if f.set_aside and f.field in fields}
            removed.pop("on_oxygen", None)  # set aside by the mapping: never in the event
            if removed:
                event = event.model_copy(update=removed)
        if any(not f.set_aside for f in flags):
            warnings.append(W_VERIFY_READING)
    temp = values.get("temperature_c")
    if temp is not None and (
        temp <= TEMPERATURE_EXTREME_LOW_C or temp >= TEMPERATURE_EXTREME_HIGH_C
    ):
        warnings.append(W_TEMPERATURE_EXTREME)
    if sbp is not None and dbp is not None and sbp - dbp < PULSE_PRESSURE_NARROW_MMHG:
        warnings.append(W_PULSE_PRESSURE_NARROW)
    spo2 = values.get("spo2_pct")
    if spo2 is not None and spo2 < SPO2_PROBE_ARTIFACT_PCT:
        warnings.append(W_SPO2_PROBE_ARTIFACT)
    if age_s > STALE_AFTER_S:
        warnings.append(W_TIMESTAMP_STALE)
    return Checked(event, warnings, flags)


def _classify_schema_errors(exc: ValidationError) -> tuple[RejectReason, str]:
    errors = exc.errors(include_url=False, include_context=False)
    missing_pid = missing_ts = False
    parts: list[str] = []
    for err in errors:
        etype = err["type"]
        if etype == "json_invalid":
            return RejectReason.MALFORMED_JSON, f"not valid JSON: {err['msg']}"
        if etype == "model_type":
            return RejectReason.NOT_AN_OBJECT, "top-level JSON value is not an object"
        loc = err["loc"]
        field = ".".join(str(p) for p in loc) if loc else "<root>"
        is_absent = etype == "missing" or err.get("input", 0) is None
        if loc and loc[0] == "patient_id" and (is_absent or etype == "string_too_short"):
            missing_pid = True
            continue
        if loc and loc[0] == "ts" and is_absent:
            missing_ts = True
            continue
        if etype == "extra_forbidden":
            parts.append(f"{_short(field, 60)}: unknown field")
        elif etype == "timezone_aware":
            parts.append(f"{field}: timestamp must include a UTC offset (naive)")
        else:
            parts.append(f"{field}: {err['msg']}")
    if missing_pid:
        return RejectReason.MISSING_PATIENT_ID, "patient_id: missing or empty"
    if missing_ts:
        return RejectReason.MISSING_TIMESTAMP, "ts: missing"
    shown = parts[:3]
    more = f" (+{len(parts) - 3} more)" if len(parts) > 3 else ""
    return RejectReason.SCHEMA, "; ".join(shown) + more
