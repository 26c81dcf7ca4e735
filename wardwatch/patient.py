"""Per-patient state as a pure value: what the worker keeps in Redis between events.

The state store (:mod:`wardwatch.store`) persists it; this module only says how one
event changes it. Keeping it pure lets the worker, the replay command and the tests
share exactly the same logic.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any, Literal

from wardwatch.schemas import NUMERIC_VITALS, VITAL_FIELDS, VitalsEvent

# A floor under each vital's personal standard deviation, so that a very steady patient
# does not turn a trivial change into a huge z-score (units of the vital).
SD_FLOOR: dict[str, float] = {
    "heart_rate_bpm": 3.0,
    "respiratory_rate_per_min": 1.5,
    "spo2_pct": 1.0,
    "systolic_bp_mmhg": 5.0,
    "diastolic_bp_mmhg": 4.0,
    "temperature_c": 0.2,
}

ApplyStatus = Literal["applied", "duplicate", "stale"]


def baseline_step(
    baseline: dict[str, list[float]], name: str, value: float, floor_sq: float, alpha: float
) -> tuple[float, float, float | None]:
    """One observation of a vital into its personal baseline, in place.

    Returns ``(n, mean, z)`` as they were *before* the update: the number of earlier
    observations, their exponentially weighted mean, and this value's deviation in
    personal standard deviations (``sd = sqrt(var + floor**2)``; None while the baseline
    is empty). The mean and variance are exponentially weighted with a plain running mean
    while young, and stored rounded (compact JSON). The worker's patient state and the
    model's features (:mod:`models.features`) both use this, so they always agree.
    """
    prior = baseline.get(name)
    n: float  # an int (0 or a count from the state)
    if prior is None:
        n, mean, var = 0, value, 0.0
    else:
        n, mean, var = prior
    z = (value - mean) / math.sqrt(max(var, 0.0) + floor_sq) if n >= 1 else None
    a = max(alpha, 1.0 / (n + 1))
    delta = value - mean
    new_mean = mean + a * delta
    new_var = (1 - a) * (var + a * delta * delta)
    baseline[name] = [n + 1, round(new_mean, 4), round(new_var, 4)]
    return n, mean, z


@dataclass
class PatientState:
    """Everything the worker remembers about one patient (JSON round-trip)."""

    version: int = 0  # optimistic concurrency: bumped by every commit
    watermark_ms: int = -1  # newest event time applied
    wm_digests: list[str] = field(default_factory=list)  # events applied at watermark_ms
    latest: dict[str, list[Any]] = field(default_factory=dict)  # vital -> [value, ts_ms]
    baseline: dict[str, list[float]] = field(default_factory=dict)  # vital -> [n, mean, var]
    spo2_scale_device: int | None = None
    n_events: int = 0
    alert: str | None = None  # alerts.policy.AlertState as JSON, owned by the alert policy
    model: dict[str, Any] | None = None  # recurrent model state: version, hidden, last_ts_ms

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"), default=_lazy_json)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> PatientState:
        if not raw:
            return cls()
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Applied:
    """The result of applying one event: what the scorers need."""

    status: ApplyStatus
    current: dict[str, Any]  # latest value of each vital still fresh enough to score
    baseline_z: dict[str, float]  # deviation of this event's values from the personal baseline
    baseline_n: int  # fewest baseline observations among the vitals in baseline_z
    baseline_mean: dict[str, float] = field(default_factory=dict)  # prior personal means


def _lazy_json(value: object) -> Any:
    """JSON form of model state left unserialized in memory (``score(..., live=True)``):
    bytes (a hidden state) as base64, objects with ``to_json`` (a feature state) as that
    JSON string; exactly what the model would have stored as strings."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    to_json = getattr(value, "to_json", None)
    if to_json is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return to_json()


_SORTED_VITALS: tuple[str, ...] = tuple(sorted(VITAL_FIELDS))
_SD_FLOOR_SQ: tuple[tuple[str, float], ...] = tuple(
    (name, SD_FLOOR[name] ** 2) for name in NUMERIC_VITALS
)
_float_repr = float.__repr__


def _digest_payload(vitals: dict[str, Any]) -> str:
    """``json.dumps(vitals, sort_keys=True, default=str)``, built directly for the plain
    value types of a validated event (anything else goes through json.dumps)."""
    parts = []
    for name in _SORTED_VITALS:
        if name not in vitals:
            continue
        v = vitals[name]
        t = type(v)
        if t is float:
            if v != v or v in (math.inf, -math.inf):
                return json.dumps(vitals, sort_keys=True, default=str)
            text = _float_repr(v)
        elif t is bool:
            text = "true" if v else "false"
        elif t is str:
            text = encode_basestring_ascii(v)
        else:
            return json.dumps(vitals, sort_keys=True, default=str)
        parts.append(f'"{name}": {text}')
    if len(parts) != len(vitals):
        return json.dumps(vitals, sort_keys=True, default=str)
    return "{" + ", ".join(parts) + "}"


def _digest(vitals: dict[str, Any], device_id: str | None) -> str:
    payload = _digest_payload(vitals) + str(device_id)
    return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def event_digest(event: VitalsEvent) -> str:
    return _digest(event.vitals(), event.device_id)


def apply_event(
    state: PatientState,
    event: VitalsEvent,
    *,
    baseline_alpha: float = 0.02,
    max_age_ms: int = 4 * 3600 * 1000,
    ts_ms: int | None = None,
    vitals: dict[str, Any] | None = None,
) -> Applied:
    """Apply ``event`` to ``state`` in place, unless it is stale or a duplicate.

    - older than the newest applied event: ``stale``, state untouched (never overwrite
      newer values with older ones);
    - same time and same content as an applied event: ``duplicate``, no second effect;
    - otherwise the latest values, the personal baseline (exponentially weighted mean and
      variance, updated *after* computing this event's deviation) and the watermark move.

    ``ts_ms`` and ``vitals``, when given, are ``event.ts_ms()`` and ``event.vitals()``
    (already computed by the caller).
    """
    ts = event.ts_ms() if ts_ms is None else ts_ms
    if ts < state.watermark_ms:
        return Applied("stale", {}, {}, 0)
    if vitals is None:
        vitals = event.vitals()
    digest = _digest(vitals, event.device_id)
    if ts == state.watermark_ms and digest in state.wm_digests:
        return Applied("duplicate", {}, {}, 0)

    z: dict[str, float] = {}
    means: dict[str, float] = {}
    n_min = 0
    baseline = state.baseline
    for name, floor_sq in _SD_FLOOR_SQ:
        if name not in vitals:
            continue
        value = float(vitals[name])
        n, mean, zraw = baseline_step(baseline, name, value, floor_sq, baseline_alpha)
        if zraw is not None:
            z[name] = round(zraw, 4)
            means[name] = mean
            n_min = int(n) if not n_min else min(n_min, int(n))

    latest = state.latest
    for name, value in vitals.items():
        latest[name] = [value, ts]
    if event.spo2_scale is not None:
        state.spo2_scale_device = event.spo2_scale
    if ts > state.watermark_ms:
        state.watermark_ms = ts
        state.wm_digests = [digest]
    else:
        state.wm_digests = [*state.wm_digests[-7:], digest]
    state.n_events += 1
    current = {}
    for name in VITAL_FIELDS:
        entry = latest.get(name)
        if entry is not None:
            value, seen = entry
            if ts - int(seen) <= max_age_ms:
                current[name] = value
    return Applied("applied", current, z, n_min, means)


def history_entry(event: VitalsEvent, news2_total: int | None, risk: float | None) -> str:
    """One compact ring-buffer entry (for trends, sparklines and model rewarming)."""
    row: dict[str, Any] = {"t": event.ts_ms(), **event.vitals()}
    if news2_total is not None:
        row["news2"] = news2_total
    if risk is not None:
        row["risk"] = round(risk, 4)
    return json.dumps(row, separators=(",", ":"))
