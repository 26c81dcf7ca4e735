"""Per-patient state as a pure value: what the worker keeps in Redis between events.

The state store (:mod:`wardwatch.store`) persists it; this module only says how one
event changes it. Keeping it pure lets the worker, the replay command and the tests
share exactly the same logic.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
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
        return json.dumps(self.__dict__, separators=(",", ":"))

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


def event_digest(event: VitalsEvent) -> str:
    payload = json.dumps(event.vitals(), sort_keys=True, default=str) + str(event.device_id)
    return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def apply_event(
    state: PatientState,
    event: VitalsEvent,
    *,
    baseline_alpha: float = 0.02,
    max_age_ms: int = 4 * 3600 * 1000,
) -> Applied:
    """Apply ``event`` to ``state`` in place, unless it is stale or a duplicate.

    - older than the newest applied event: ``stale``, state untouched (never overwrite
      newer values with older ones);
    - same time and same content as an applied event: ``duplicate``, no second effect;
    - otherwise the latest values, the personal baseline (exponentially weighted mean and
      variance, updated *after* computing this event's deviation) and the watermark move.
    """
    ts = event.ts_ms()
    digest = event_digest(event)
    if ts < state.watermark_ms:
        return Applied("stale", {}, {}, 0)
    if ts == state.watermark_ms and digest in state.wm_digests:
        return Applied("duplicate", {}, {}, 0)

    vitals = event.vitals()
    z: dict[str, float] = {}
    means: dict[str, float] = {}
    n_min = 0
    for name in NUMERIC_VITALS:
        if name not in vitals:
            continue
        value = float(vitals[name])
        n, mean, var = state.baseline.get(name, [0, value, 0.0])
        if n >= 1:
            sd = math.sqrt(max(var, 0.0) + SD_FLOOR[name] ** 2)
            z[name] = round((value - mean) / sd, 4)
            means[name] = mean
            n_min = int(n) if not n_min else min(n_min, int(n))
        # exponentially weighted mean/variance, with a plain running mean while young
        a = max(baseline_alpha, 1.0 / (n + 1))
        delta = value - mean
        mean = mean + a * delta
        var = (1 - a) * (var + a * delta * delta)
        state.baseline[name] = [n + 1, round(mean, 4), round(var, 4)]

    for name, value in vitals.items():
        state.latest[name] = [value, ts]
    if event.spo2_scale is not None:
        state.spo2_scale_device = event.spo2_scale
    if ts > state.watermark_ms:
        state.watermark_ms = ts
        state.wm_digests = [digest]
    else:
        state.wm_digests = [*state.wm_digests[-7:], digest]
    state.n_events += 1
    current = {
        name: value
        for name in VITAL_FIELDS
        if (entry := state.latest.get(name)) is not None
        for value, seen in [entry]
        if ts - int(seen) <= max_age_ms
    }
    return Applied("applied", current, z, n_min, means)


def history_entry(event: VitalsEvent, news2_total: int | None, risk: float | None) -> str:
    """One compact ring-buffer entry (for trends, sparklines and model rewarming)."""
    row: dict[str, Any] = {"t": event.ts_ms(), **event.vitals()}
    if news2_total is not None:
        row["news2"] = news2_total
    if risk is not None:
        row["risk"] = round(risk, 4)
    return json.dumps(row, separators=(",", ":"))
