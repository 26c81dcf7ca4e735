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
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from wardwatch.schemas import NUMERIC_VITALS, VITAL_FIELDS, VitalsEvent
from wardwatch.store_codec import is_binary, json_row, pack_row, pack_state, unpack_state

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


_floor = math.floor
_sqrt = math.sqrt


def _fixed_rounder(ndigits: int) -> Callable[[float], float]:
    """``round(x, ndigits)`` for floats, exactly, without the decimal conversion in the
    usual case: ``x * 10**ndigits`` well away from a tie and the integer found exactly
    from it (the product's rounding error is below 1.2e-7 in the range taken), then divided
    back, which gives the double nearest to that decimal, as ``round`` does. Ties, zero
    and large or non-finite values go to ``round`` itself."""
    scale = 10.0**ndigits

    def rounded(x: float) -> float:
        y = x * scale
        if -1e9 < y < 1e9:
            k = _floor(y)
            frac = y - k
            if frac < 0.4999:
                if k:
                    return k / scale
            elif frac > 0.5001 and k != -1:
                return (k + 1) / scale
        return round(x, ndigits)

    return rounded


round4 = _fixed_rounder(4)
round6 = _fixed_rounder(6)

ApplyStatus = Literal["applied", "late", "duplicate", "too_late"]
"""``applied``: a new newest event; ``late``: older than the newest, within the late
window, merged for the record (no baseline, model or alert effect); ``duplicate``: an
event already applied (no second effect); ``too_late``: older than the late window (not
applied; the caller dead-letters it)."""

RECENT_MAX = 64
"""Digests kept of the last events applied below the newest time: a redelivered event
(a replay after a crash, a producer's retry) is recognised among them, however far back
it is, so it is never applied twice nor dead-lettered as too late."""
BaselineStep = tuple[list[float] | None, list[float], float | None]
"""One :func:`baseline_step`: the vital's entry before, the entry after, the raw z."""


def baseline_step(
    baseline: dict[str, list[float]], name: str, value: float, floor_sq: float, alpha: float
) -> BaselineStep:
    """One observation of a vital into its personal baseline, in place.

    Returns ``(before, after, z)``: the vital's entry ``[n, mean, var]`` before the update
    (None while the baseline is empty), the entry after it, and this value's deviation
    from the mean before the update in personal standard deviations
    (``sd = sqrt(var + floor**2)``; None while the baseline is empty). The mean and
    variance are exponentially weighted with a plain running mean while young, and stored
    rounded (compact JSON). The worker's patient state and the model's features
    (:mod:`models.features`) both use this, so they always agree. The vital's entry is
    replaced by a new list, never changed in place (entries may be shared between
    baselines, see :class:`Applied`).
    """
    prior = baseline.get(name)
    if prior is None:
        after = baseline[name] = [1, round4(value), 0.0]
        return None, after, None
    n, mean, var = prior
    delta = value - mean
    z = delta / _sqrt((var if var > 0.0 else 0.0) + floor_sq) if n >= 1 else None
    a = 1.0 / (n + 1)
    if a < alpha:
        a = alpha
    after = baseline[name] = [
        n + 1,
        round4(mean + a * delta),
        round4((1 - a) * (var + a * delta * delta)),
    ]
    return prior, after, z


@dataclass
class PatientState:
    """Everything the worker remembers about one patient: :meth:`encode` is the binary form
    the Redis store keeps (``wardwatch.store_codec``), :meth:`to_json` the JSON one (the
    in-memory store, views); :meth:`from_json` reads either."""

    version: int = 0  # optimistic concurrency: bumped by every commit
    watermark_ms: int = -1  # newest event time applied
    # digests of the events applied at watermark_ms (a _Digest until first needed)
    wm_digests: list[str | _Digest] = field(default_factory=list)
    # [ts_ms, digest] of the last RECENT_MAX events applied below watermark_ms, in the
    # order applied: tells a redelivered older event from a new one
    recent: list[list[Any]] = field(default_factory=list)
    n_late: int = 0  # of n_events, how many were late (merged for the record)
    latest: dict[str, list[Any]] = field(default_factory=dict)  # vital -> [value, ts_ms]
    baseline: dict[str, list[float]] = field(default_factory=dict)  # vital -> [n, mean, var]
    spo2_scale_device: int | None = None
    n_events: int = 0
    alert: str | None = None  # alerts.AlertState as JSON, owned by the alert policy
    model: dict[str, Any] | None = None  # recurrent model state: version, hidden, last_ts_ms

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"), default=_lazy_json)

    def encode(self) -> bytes:
        """The compact binary form (``wardwatch.store_codec.pack_state``)."""
        return pack_state(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> PatientState:
        """A state from :meth:`encode`'s bytes or from JSON (the form stored before the
        binary one); empty for ``None`` or an empty value."""
        if not raw:
            return cls()
        if is_binary(raw):
            assert isinstance(raw, bytes)
            return cls(**unpack_state(raw))
        return cls(**json.loads(raw))


@dataclass(slots=True)
class Applied:
    """The result of applying one event: what the scorers need (read it, do not change it)."""

    status: ApplyStatus
    current: dict[str, Any]  # latest value of each vital still fresh enough to score
    # per numeric vital of the event: (baseline entry before, entry after, raw z); the
    # model's features reuse these updates when their baseline is the same (see
    # models.features.feature_row)
    baseline_steps: dict[str, BaselineStep] = field(default_factory=dict)

    @property
    def baseline_z(self) -> dict[str, float]:
        """Deviation of this event's values from the personal baseline (4 decimals), for
        the vitals with a baseline."""
        return {name: round4(z) for name, (_, _, z) in self.baseline_steps.items() if z is not None}

    @property
    def baseline_n(self) -> int:
        """Fewest earlier observations among the vitals in ``baseline_z`` (0: none)."""
        counts = [int(p[0]) for p, _, z in self.baseline_steps.values() if z is not None and p]
        return min(counts) if counts else 0

    @property
    def baseline_mean(self) -> dict[str, float]:
        """Personal means before this event, for the vitals in ``baseline_z``."""
        return {
            name: p[1] for name, (p, _, z) in self.baseline_steps.items() if z is not None and p
        }


def _lazy_json(value: object) -> Any:
    """JSON form of state left unserialized in memory: bytes (a live hidden state, see
    ``score(..., live=True)``) as base64, objects with ``to_json`` (a feature state, an
    event digest) as that string; exactly what would have been stored as strings."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    to_json = getattr(value, "to_json", None)
    if to_json is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return to_json()


_SD_FLOOR_SQ: tuple[tuple[str, float], ...] = tuple(
    (name, SD_FLOOR[name] ** 2) for name in NUMERIC_VITALS
)
_NUMBERS = struct.Struct("<6d")  # the numeric vitals, NaN where absent
_NAN = math.nan


def _digest(vitals: dict[str, Any], device_id: str | None) -> str:
    """A content fingerprint of an event (``vitals`` as ``VitalsEvent.vitals()`` gives
    them, and the device): equal events, and only those, have equal digests."""
    get = vitals.get
    numbers = _NUMBERS.pack(
        get("heart_rate_bpm", _NAN),
        get("respiratory_rate_per_min", _NAN),
        get("spo2_pct", _NAN),
        get("systolic_bp_mmhg", _NAN),
        get("diastolic_bp_mmhg", _NAN),
        get("temperature_c", _NAN),
    )
    rest = f"{get('on_oxygen')!r}|{get('consciousness')!r}|{device_id!r}".encode()
    return hashlib.blake2b(numbers + rest, digest_size=8).hexdigest()


class _Digest:
    """An event's digest, computed only when compared or stored: most events are never
    compared with another at the same time, so a replay never computes theirs. Equal to
    the digest string (and serialized as it, see ``_lazy_json``)."""

    __slots__ = ("_vitals", "_device_id", "_value")

    def __init__(self, vitals: dict[str, Any], device_id: str | None) -> None:
        self._vitals: dict[str, Any] | None = vitals
        self._device_id = device_id
        self._value: str | None = None

    def to_json(self) -> str:
        if self._value is None:
            assert self._vitals is not None
            self._value = _digest(self._vitals, self._device_id)
            self._vitals = None  # the event's values are not kept longer than needed
        return self._value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Digest):
            other = other.to_json()
        return self.to_json() == other

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return repr(self.to_json())


def event_digest(event: VitalsEvent) -> str:
    return _digest(event.vitals(), event.device_id)


def apply_event(
    state: PatientState,
    event: VitalsEvent,
    baseline_alpha: float = 0.02,
    max_age_ms: int = 4 * 3600 * 1000,
    ts_ms: int | None = None,
    vitals: dict[str, Any] | None = None,
    late_window_ms: int = 3600 * 1000,
) -> Applied:
    """Apply ``event`` to ``state`` in place, unless it is a duplicate or too late.

    - same time and same content as an applied event: ``duplicate``, no second effect;
    - older than the newest applied event by at most ``late_window_ms`` (a monitor that
      reconnects with buffered readings, a manual entry charted late): ``late``, merged
      for the record (see :func:`_apply_late`); older than that: ``too_late``, untouched;
    - otherwise the latest values, the personal baseline (exponentially weighted mean and
      variance, updated *after* computing this event's deviation) and the watermark move.

    ``ts_ms`` and ``vitals``, when given, are ``event.ts_ms()`` and ``event.vitals()``
    (already computed by the caller).
    """
    ts = event.ts_ms() if ts_ms is None else ts_ms
    if vitals is None:
        vitals = event.vitals()
    if ts < state.watermark_ms:
        return _apply_late(state, event, ts, vitals, late_window_ms)
    digest: str | _Digest
    if ts == state.watermark_ms:  # another event at the newest time: a duplicate?
        digest = _digest(vitals, event.device_id)
        if digest in state.wm_digests:
            return Applied("duplicate", {})
    else:
        digest = _Digest(vitals, event.device_id)

    steps: dict[str, BaselineStep] = {}
    baseline = state.baseline
    for name, floor_sq in _SD_FLOOR_SQ:
        value = vitals.get(name)
        if value is not None:
            steps[name] = baseline_step(baseline, name, float(value), floor_sq, baseline_alpha)

    if event.spo2_scale is not None:
        state.spo2_scale_device = event.spo2_scale
    if ts > state.watermark_ms:
        if state.wm_digests:
            _remember(state, [[state.watermark_ms, d] for d in state.wm_digests])
        state.watermark_ms = ts
        state.wm_digests = [digest]
    else:
        state.wm_digests = [*state.wm_digests[-7:], digest]
    state.n_events += 1
    # the latest value of each vital (this event's, else the last one still fresh)
    latest = state.latest
    oldest = ts - max_age_ms
    current = {}
    for name in VITAL_FIELDS:
        value = vitals.get(name)
        if value is not None:
            latest[name] = [value, ts]
            current[name] = value
        else:
            entry = latest.get(name)
            if entry is not None and entry[1] >= oldest:
                current[name] = entry[0]
    return Applied("applied", current, steps)


def _remember(state: PatientState, entries: list[list[Any]]) -> None:
    """Append ``[ts, digest]`` entries to ``state.recent``, keeping the last
    ``RECENT_MAX``."""
    recent = state.recent + entries
    state.recent = recent[-RECENT_MAX:] if len(recent) > RECENT_MAX else recent


def _apply_late(
    state: PatientState,
    event: VitalsEvent,
    ts: int,
    vitals: dict[str, Any],
    late_window_ms: int,
) -> Applied:
    """An event older than the newest applied one: a redelivery (``duplicate``), news
    too old to merge (``too_late``), or merged for the record (``late``): counted, kept
    as a parameter's latest value where it is newer than the one held (a temperature
    charted late while the monitor streams the rest), its digest remembered; the
    baseline, the watermark, the model and the alert policy never see it (they run in
    event order). ``current`` is the event's own values, for its score of record."""
    digest = _digest(vitals, event.device_id)
    if any(e[0] == ts and e[1] == digest for e in state.recent):
        return Applied("duplicate", {})
    if ts < state.watermark_ms - late_window_ms:
        return Applied("too_late", {})
    _remember(state, [[ts, digest]])
    state.n_events += 1
    state.n_late += 1
    latest = state.latest
    for name, value in vitals.items():
        entry = latest.get(name)
        if entry is None or entry[1] < ts:
            latest[name] = [value, ts]
    return Applied("late", dict(vitals))


def history_entry(
    event: VitalsEvent, news2_total: int | None, risk: float | None, late: bool = False
) -> str:
    """One compact ring-buffer entry as JSON (for trends, sparklines and model
    rewarming); a late event's is marked ``"late": 1`` (entries are in the order applied,
    not by time). The store reads it as :func:`history_row`'s binary form."""
    return json_row(event.ts_ms(), event.vitals(), news2_total, risk, late)


def history_row(
    event: VitalsEvent,
    news2_total: int | None,
    risk: float | None,
    late: bool = False,
    ts_ms: int | None = None,
    vitals: dict[str, Any] | None = None,
) -> bytes | str:
    """:func:`history_entry` in the binary form the Redis store keeps
    (``wardwatch.store_codec.pack_row``; the same row once read back). ``ts_ms`` and
    ``vitals``, when given, are ``event.ts_ms()`` and ``event.vitals()``."""
    return pack_row(
        event.ts_ms() if ts_ms is None else ts_ms,
        event.vitals() if vitals is None else vitals,
        news2_total,
        risk,
        late,
    )
