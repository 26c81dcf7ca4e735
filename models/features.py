"""Per-observation feature vector for the deterioration model (numpy only, no torch).

Shared by the offline trainer (:mod:`trainer.dataset`) and the online worker, so both
turn a patient's event stream into exactly the same numbers. A patient is a
:class:`FeatureState` (small, JSON round-trip); :func:`step` applies one vitals event
(a dict with the :class:`~wardwatch.schemas.VitalsEvent` field names) and returns the
feature vector for that observation and the new state. It is pure and deterministic.

Features, in :data:`FEATURE_NAMES` order (F = 28):

for each numeric vital ``v`` of :data:`~wardwatch.schemas.NUMERIC_VITALS`:

* ``v:value``   last known value, carried forward, normalized as
  ``(value - NORM["value_mean"][v]) / NORM["value_sd"][v]``; 0 (the population mean)
  before the vital was ever observed;
* ``v:observed`` 1 when this event carries ``v``, else 0 (missingness mask);
* ``v:hours_since`` hours since ``v`` was last observed (0 when observed now), clipped at
  ``NORM["hours_clip"]`` and divided by it; 1 when never observed;
* ``v:baseline_z`` deviation of the last observed value from the patient's own baseline,
  computed exactly like :func:`wardwatch.patient.apply_event` (exponentially weighted
  mean/variance *before* the update, ``sd = sqrt(var + SD_FLOOR**2)``, 0 while the
  baseline is empty), clipped to ``±NORM["z_clip"]`` and divided by it; carried forward
  when ``v`` is absent from the event;

then context:

* ``on_oxygen`` last known supplemental oxygen (carried forward; 0 when unknown);
* ``not_alert`` last known ACVPU is not ``A`` (carried forward; consciousness is
  charted only on some observation sets; 0 when unknown);
* ``spo2_scale2`` the patient is on NEWS2 SpO2 scale 2 (last ``spo2_scale`` seen);
* ``hours_since_prev`` hours since this patient's previous observation set, clipped and
  scaled like ``hours_since``; 0 for the first one.

Normalization constants are :data:`NORM`; the trainer stores them in the model's
``metadata.json`` so a worker needs nothing but the metadata and this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from wardwatch.patient import SD_FLOOR, BaselineStep, baseline_step, round6
from wardwatch.schemas import NUMERIC_VITALS

__all__ = [
    "BASELINE_ALPHA",
    "FEATURES_VERSION",
    "FEATURE_NAMES",
    "N_FEATURES",
    "NORM",
    "FeatureState",
    "feature_row",
    "featurize_sequence",
    "norm_constants",
    "step",
    "ts_to_ms",
]

FEATURES_VERSION = 1
"""Bumped whenever the meaning or order of the features changes."""

BASELINE_ALPHA = 0.02
"""EW weight of the personal baseline; the same default as ``wardwatch.patient``."""

NORM: dict[str, Any] = {
    "features_version": FEATURES_VERSION,
    # Typical adult ward values (mean, spread) per vital, units of the field name.
    "value_mean": {
        "heart_rate_bpm": 80.0,
        "respiratory_rate_per_min": 17.0,
        "spo2_pct": 96.0,
        "systolic_bp_mmhg": 130.0,
        "diastolic_bp_mmhg": 75.0,
        "temperature_c": 36.8,
    },
    "value_sd": {
        "heart_rate_bpm": 15.0,
        "respiratory_rate_per_min": 4.0,
        "spo2_pct": 3.0,
        "systolic_bp_mmhg": 20.0,
        "diastolic_bp_mmhg": 12.0,
        "temperature_c": 0.7,
    },
    "hours_clip": 12.0,
    "z_clip": 8.0,
    "baseline_alpha": BASELINE_ALPHA,
    "sd_floor": dict(SD_FLOOR),
}
"""Normalization constants (JSON-able; stored in the model metadata)."""

FEATURE_NAMES: tuple[str, ...] = (
    *(
        f"{v}:{kind}"
        for v in NUMERIC_VITALS
        for kind in ("value", "observed", "hours_since", "baseline_z")
    ),
    "on_oxygen",
    "not_alert",
    "spo2_scale2",
    "hours_since_prev",
)
N_FEATURES = len(FEATURE_NAMES)

FloatArray = npt.NDArray[np.float32]


@dataclass
class FeatureState:
    """What :func:`step` remembers about one patient (JSON round-trip, a few hundred bytes)."""

    prev_ts_ms: int | None = None
    last_value: dict[str, float] = field(default_factory=dict)  # vital -> value
    last_ts_ms: dict[str, int] = field(default_factory=dict)  # vital -> time observed
    last_z: dict[str, float] = field(default_factory=dict)  # vital -> clipped z
    baseline: dict[str, list[float]] = field(default_factory=dict)  # vital -> [n, mean, var]
    on_oxygen: bool | None = None
    consciousness: str | None = None
    spo2_scale: int = 1

    def to_json(self) -> str:
        # fields are JSON-native: no deep asdict() copy (this runs once per event)
        return json.dumps(vars(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> FeatureState:
        if not raw:
            return cls()
        return cls(**json.loads(raw))

    def copy(self) -> FeatureState:
        return FeatureState(
            prev_ts_ms=self.prev_ts_ms,
            last_value=dict(self.last_value),
            last_ts_ms=dict(self.last_ts_ms),
            last_z=dict(self.last_z),
            # entries are replaced, never changed in place (baseline_step): share them
            baseline=dict(self.baseline),
            on_oxygen=self.on_oxygen,
            consciousness=self.consciousness,
            spo2_scale=self.spo2_scale,
        )


def ts_to_ms(ts: Any) -> int:
    """Event time as epoch milliseconds: an aware ``datetime``, an ISO string or ms."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return int(ts.timestamp() * 1000)
    if isinstance(ts, str):
        return ts_to_ms(datetime.fromisoformat(ts.replace("Z", "+00:00")))
    if isinstance(ts, int | float) and not isinstance(ts, bool) and math.isfinite(ts):
        return int(ts)
    raise ValueError(f"unsupported timestamp {ts!r}")


def _hours_scaled(dt_ms: int, clip_h: float) -> float:
    return min(max(dt_ms, 0) / 3_600_000.0, clip_h) / clip_h


# (hours_clip, z_clip, baseline_alpha, ((vital, sd_floor**2, value_mean, value_sd), ...))
NormConsts = tuple[float, float, float, tuple[tuple[str, float, float, float], ...]]


def norm_constants(norm: Mapping[str, Any]) -> NormConsts:
    """The normalization constants of ``norm`` as floats, parsed once (see :func:`feature_row`)."""
    sd_floor: Mapping[str, float] = norm["sd_floor"]
    means: Mapping[str, float] = norm["value_mean"]
    sds: Mapping[str, float] = norm["value_sd"]
    return (
        float(norm["hours_clip"]),
        float(norm["z_clip"]),
        float(norm["baseline_alpha"]),
        tuple(
            (name, float(sd_floor[name]) ** 2, float(means[name]), float(sds[name]))
            for name in NUMERIC_VITALS
        ),
    )


_NORM_CONSTS = norm_constants(NORM)


def feature_row(
    state: FeatureState,
    event: Mapping[str, Any],
    consts: NormConsts,
    steps: Mapping[str, BaselineStep] | None = None,
) -> list[float]:
    """Apply ``event`` to ``state`` in place and return the feature vector as floats
    (float64; the float32 array is built from them, see :func:`_update`).

    ``steps``: the same event's baseline updates as the worker's patient state made them
    (``Applied.baseline_steps``), with the same ``baseline_alpha`` and ``sd_floor`` as
    ``consts``. Where this state's entry for a vital equals the entry that update
    started from, the result is the same by construction and is reused instead of being
    computed again; otherwise (a baseline rebuilt on rewarming) it is computed here."""
    raw_ts = event["ts"]
    ts = raw_ts if type(raw_ts) is int else ts_to_ms(raw_ts)
    clip_h, z_clip, alpha, vitals = consts
    get = event.get
    baseline = state.baseline
    last_value = state.last_value
    last_ts_ms = state.last_ts_ms
    last_z = state.last_z
    out: list[float] = []
    for name, floor_sq, vmean, vsd in vitals:
        raw = get(name)
        if raw is not None:
            value = float(raw)
            done = None if steps is None else steps.get(name)
            if done is not None and ((prior := baseline.get(name)) is done[0] or prior == done[0]):
                _, baseline[name], zraw = done
            else:
                # the same update (and rounding) as the worker's patient state
                zraw = baseline_step(baseline, name, value, floor_sq, alpha)[2]
            if zraw is None:
                zr = 0.0
            else:
                zr = round6(-z_clip if zraw < -z_clip else z_clip if zraw > z_clip else zraw)
            last_value[name] = value
            last_ts_ms[name] = ts
            last_z[name] = zr
            out += ((value - vmean) / vsd, 1.0, 0.0, zr / z_clip)
        elif name in last_value:
            out += (
                (last_value[name] - vmean) / vsd,
                0.0,
                min(max(ts - last_ts_ms[name], 0) / 3_600_000.0, clip_h) / clip_h,
                last_z.get(name, 0.0) / z_clip,
            )
        else:
            out += (0.0, 0.0, 1.0, 0.0)

    if (oxygen := get("on_oxygen")) is not None:
        state.on_oxygen = bool(oxygen)
    if (consciousness := get("consciousness")) is not None:
        state.consciousness = str(consciousness)
    if (scale := get("spo2_scale")) is not None:
        state.spo2_scale = int(scale)
    prev = state.prev_ts_ms
    out += (
        1.0 if state.on_oxygen else 0.0,
        1.0 if state.consciousness not in (None, "A") else 0.0,
        1.0 if state.spo2_scale == 2 else 0.0,
        0.0 if prev is None else min(max(ts - prev, 0) / 3_600_000.0, clip_h) / clip_h,
    )
    state.prev_ts_ms = ts if prev is None else max(prev, ts)
    return out


def _consts(norm: Mapping[str, Any]) -> NormConsts:
    return _NORM_CONSTS if norm is NORM else norm_constants(norm)


def _update(state: FeatureState, event: Mapping[str, Any], norm: Mapping[str, Any]) -> FloatArray:
    """Apply ``event`` to ``state`` in place and return the feature vector."""
    return np.array(feature_row(state, event, _consts(norm)), dtype=np.float32)


def step(
    state: FeatureState, event: Mapping[str, Any], norm: Mapping[str, Any] | None = None
) -> tuple[FloatArray, FeatureState]:
    """Features of ``event`` given the patient's ``state``, and the state after it.

    ``event`` needs ``ts`` (aware datetime, ISO string or epoch ms) and any of the vitals
    fields; absent or ``None`` fields are missing. ``state`` is not modified. ``norm``
    defaults to :data:`NORM` (a worker passes the dict from the model metadata).
    """
    new = state.copy()
    return _update(new, event, NORM if norm is None else norm), new


def featurize_sequence(
    events: Iterable[Mapping[str, Any]],
    norm: Mapping[str, Any] | None = None,
    state: FeatureState | None = None,
) -> FloatArray:
    """Features ``[T, F]`` of one patient's time-ordered events (from ``state`` or empty)."""
    st = FeatureState() if state is None else state.copy()
    consts = _consts(NORM if norm is None else norm)
    rows = [feature_row(st, ev, consts) for ev in events]
    if not rows:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    return np.array(rows, dtype=np.float32)
