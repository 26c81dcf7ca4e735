"""The alert policy and lifecycle, as pure functions over a JSON-serialisable state.

No I/O here: the streaming layer loads :class:`AlertState` from Redis (``from_json``),
calls :func:`evaluate` for each scored observation, :func:`tick` on a timer,
:func:`acknowledge` / :func:`resolve` for care-team actions, stores the new state
(``to_json``) and publishes each returned :class:`AlertEvent` once, guarded by
``SET NX`` on its ``transition_id``. Every function is deterministic: the same state and
input give the same new state and the same events (with the same ids), so a replay after
a crash or rebalance changes nothing.

The policy (levels, hysteresis, hold times, cooldown, trend and baseline triggers,
artifact suppression, escalation, ids) is documented in ``docs/alerts.md``; the short
version:

* priority of an observation = max(NEWS2 priority, model risk tier, trend trigger,
  sustained personal-baseline deviation);
* OPEN when nothing is open and the priority reaches ``open_min_priority`` (or a
  personalized trigger fires and ``personal_triggers_open``), unless in cooldown after a
  resolve (high priority overrides) or held as a possible artifact;
* ESCALATED when the priority rises (also on an acknowledged alert, which re-opens it) or
  when a medium/high alert stays unacknowledged for ``escalate_unacked_s`` (``tick``);
* UPDATED only when the priority has stayed lower for ``downgrade_hold_s``;
* RESOLVED when NEWS2 < ``resolve_below_total`` with nothing else firing for
  ``resolve_hold_s`` continuously, or manually.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Final, Literal, cast, get_args

from alerts.explain import action_explanation, explain, news2_rise
from models.news2 import News2Result
from wardwatch.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from wardwatch.settings import Settings

__all__ = [
    "REASONS",
    "AlertEvent",
    "AlertState",
    "Observation",
    "PolicyConfig",
    "Priority",
    "Status",
    "Transition",
    "acknowledge",
    "count_alerts",
    "evaluate",
    "make_alert_id",
    "make_transition_id",
    "resolve",
    "tick",
]

Priority = Literal["low", "medium", "high"]
"""IEC 60601-1-8 alarm priorities; low is shown on the page, not paged."""
Transition = Literal["OPEN", "ESCALATED", "UPDATED", "ACKNOWLEDGED", "RESOLVED"]
Status = Literal["none", "open", "acknowledged", "resolved"]

PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)
TRANSITIONS: Final[tuple[Transition, ...]] = get_args(Transition)
STATUSES: Final[tuple[Status, ...]] = get_args(Status)

REASONS: Final[tuple[str, ...]] = (
    "news2_threshold",  # NEWS2 total reached open_min_priority's band (>=5 by default)
    "single_parameter_3",  # one NEWS2 parameter scored 3
    "model_risk",  # fused model risk >= model_risk_medium
    "news2_trend",  # NEWS2 rose >= trend_min_rise within trend_window_s (and is >= 3)
    "baseline_deviation",  # a vital |z| >= baseline_z for baseline_sustain observations
    "unacknowledged",  # tick(): not acknowledged for escalate_unacked_s
    "improving",  # UPDATED: priority lower for downgrade_hold_s
    "recovered",  # RESOLVED: NEWS2 low with nothing firing for resolve_hold_s
    "acknowledged",  # ACKNOWLEDGED by a person
    "manual_resolve",  # RESOLVED by a person
)
"""Machine-readable reasons an :class:`AlertEvent` can carry (first = strongest)."""

_RANK: Final[Mapping[str | None, int]] = {None: 0, "none": 0, "low": 1, "medium": 2, "high": 3}
_BY_RANK: Final[tuple[str, ...]] = ("none", "low", "medium", "high")
_TRIGGER_ORDER: Final[tuple[str, ...]] = REASONS[:5]
_PERSONAL: Final[frozenset[str]] = frozenset({"news2_trend", "baseline_deviation"})

# Parameters whose sensors produce isolated spurious readings (probe off, motion, cuff
# slipping). Consciousness (a clinical assessment) and air/oxygen are never "artifacts".
ARTIFACT_PARAMETERS: Final[tuple[str, ...]] = (
    "respiration_rate",
    "spo2",
    "systolic_bp",
    "pulse",
    "temperature",
)

_MAX_NEWS2_HISTORY: Final = 512  # bound on recent_news2 entries (JSON size in Redis)
_MAX_IDS_AT_TS: Final = 8


def _max_priority(*levels: str | None) -> str:
    return _BY_RANK[max((_RANK.get(lv, 0) for lv in levels), default=0)]


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


# ---------------------------------------------------------------------------------------
# Configuration and inputs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfig:
    """Policy knobs; defaults and their reasons are in ``docs/alerts.md``."""

    open_min_priority: Priority = "medium"  # NEWS2 priority that opens an alert
    resolve_below_total: int = 3  # hysteresis: resolve only when NEWS2 < this (no single 3)
    resolve_hold_s: float = 3600.0  # ... continuously for this long
    cooldown_s: float = 900.0  # after a resolve, no reopen for this long unless high
    escalate_unacked_s: float = 900.0  # medium/high open & unacknowledged → ESCALATED
    max_repages: int = 3  # re-pages per priority level while unacknowledged (then it stays open)
    artifact_confirm: bool = True  # an isolated single-parameter jump waits for a repeat
    trend_window_s: float = 6 * 3600.0  # NEWS2 rise within this window ...
    trend_min_rise: int = 2  # ... of at least this much (and NEWS2 >= 3) → low
    baseline_z: float = 3.0  # personal baseline: |z| >= this on a vital ...
    baseline_min_obs: int = 8  # ... once the baseline has at least this many observations
    baseline_sustain: int = 3  # ... for this many consecutive observations → low
    model_risk_high: float = 0.6  # fused model risk → high
    model_risk_medium: float = 0.3  # fused model risk → medium
    # additions (see docs/alerts.md)
    personal_triggers_open: bool = True  # trend/baseline triggers raise priority and open early
    trend_medium_rise: int = 4  # a rise this steep (and NEWS2 >= 3) is medium, not low
    artifact_max_wait_s: float = 300.0  # an unconfirmed candidate is raised after this long
    downgrade_hold_s: float = 3600.0  # priority lowered (UPDATED) after this long lower

    def __post_init__(self) -> None:
        if self.open_min_priority not in PRIORITIES:
            raise ConfigError(f"open_min_priority must be one of {PRIORITIES}")
        if not 0.0 <= self.model_risk_medium <= self.model_risk_high <= 1.0:
            raise ConfigError("need 0 <= model_risk_medium <= model_risk_high <= 1")
        for name in (
            "resolve_hold_s",
            "cooldown_s",
            "escalate_unacked_s",
            "trend_window_s",
            "artifact_max_wait_s",
            "downgrade_hold_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.escalate_unacked_s <= 0:
            raise ConfigError("escalate_unacked_s must be > 0")
        if self.trend_min_rise < 1 or self.trend_medium_rise < self.trend_min_rise:
            raise ConfigError("need 1 <= trend_min_rise <= trend_medium_rise")
        if self.baseline_sustain < 1 or self.baseline_min_obs < 1 or self.baseline_z <= 0:
            raise ConfigError("baseline_z, baseline_min_obs and baseline_sustain must be > 0")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PolicyConfig:
        """The policy with the cooldown and escalation interval from the settings."""
        values: dict[str, Any] = {
            "cooldown_s": float(settings.alert_cooldown_s),
            "escalate_unacked_s": float(settings.escalate_after_s),
            "artifact_max_wait_s": float(settings.artifact_confirm_s),
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Observation:
    """One scored event: what the policy sees."""

    ts_ms: int
    news2: News2Result
    vitals: dict[str, Any]  # the event's (current) vitals by field name
    baseline_z: dict[str, float]  # per numeric vital: (value - mean) / sd, enough baseline only
    baseline_n: int  # observations in the baseline
    model_risk: float | None = None  # fused model risk 0..1 (None: no model; rules still alert)
    model_version: str | None = None
    model_contributions: dict[str, float] | None = None
    event_id: str = ""  # idempotency: source of the observation (e.g. "vitals:3:1042")
    baseline_mean: dict[str, float] = field(default_factory=dict)  # optional, for texts


# ---------------------------------------------------------------------------------------
# State and events
# ---------------------------------------------------------------------------------------


@dataclass
class AlertState:
    """Per-patient alert state; the caller persists it with ``to_json`` / ``from_json``."""

    episode: int = 0  # increments each time a new alert episode opens
    status: Status = "none"
    priority: Priority | None = None
    alert_id: str | None = None
    opened_ts_ms: int | None = None
    last_transition_ts_ms: int | None = None
    acked_by: str | None = None
    acked_ts_ms: int | None = None
    escalated_count: int = 0
    repage_priority: str | None = None  # priority the re-page count below belongs to
    repage_count: int = 0
    below_since_ts_ms: int | None = None
    resolved_ts_ms: int | None = None
    pending_candidate: dict[str, Any] | None = None  # artifact suppression: unconfirmed trigger
    recent_news2: list[tuple[int, int]] = field(default_factory=list)  # (ts_ms, total)
    baseline_streak: dict[str, int] = field(default_factory=dict)
    # additions
    last_ts_ms: int | None = None  # newest observation time processed (replay guard)
    last_event_ids: list[str] = field(default_factory=list)  # event ids seen at last_ts_ms
    last_points: dict[str, int] = field(default_factory=dict)  # NEWS2 points, last accepted obs
    suppressed_artifacts: int = 0  # candidates dropped because the next reading was normal
    last_page_ts_ms: int | None = None  # last OPEN/ESCALATED (escalation timer)
    downgrade_since_ts_ms: int | None = None  # priority below the alert's since then
    downgrade_priority: Priority | None = None  # highest priority seen since then
    update_count: int = 0  # UPDATED transitions in this episode
    last_news2_total: int | None = None
    last_explanation: dict[str, Any] | None = None  # latest explanation while an alert is open

    def copy(self) -> AlertState:
        """A deep copy (what ``copy.deepcopy`` gives), built field by field: the scalars
        are immutable, the lists and dicts of scalars are copied one level, the two nested
        dicts (pending candidate, explanation) deeply."""
        new = object.__new__(AlertState)
        new.__dict__.update(self.__dict__)
        new.recent_news2 = list(self.recent_news2)
        new.baseline_streak = dict(self.baseline_streak)
        new.last_event_ids = list(self.last_event_ids)
        new.last_points = dict(self.last_points)
        if self.pending_candidate is not None:
            new.pending_candidate = copy.deepcopy(self.pending_candidate)
        if self.last_explanation is not None:
            new.last_explanation = copy.deepcopy(self.last_explanation)
        return new

    def to_json(self) -> str:
        # every field is JSON-native already: no deep asdict() copy on the hot path
        return json.dumps(vars(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertState:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "recent_news2" in values:
            values["recent_news2"] = [(int(t), int(v)) for t, v in values["recent_news2"] or []]
        for key in ("baseline_streak", "last_points"):
            if key in values:
                values[key] = {str(k): int(v) for k, v in (values[key] or {}).items()}
        if "last_event_ids" in values:
            values["last_event_ids"] = [str(x) for x in values["last_event_ids"] or []]
        state = cls(**values)
        if state.status not in STATUSES:
            raise ValueError(f"unknown alert status {state.status!r}")
        if state.priority is not None and state.priority not in PRIORITIES:
            raise ValueError(f"unknown alert priority {state.priority!r}")
        return state

    @classmethod
    def from_json(cls, s: str | bytes | None) -> AlertState:
        """A new (empty) state for ``None`` or an empty string; unknown keys are ignored."""
        if not s:
            return cls()
        data = json.loads(s)
        if not isinstance(data, dict):
            raise ValueError("alert state JSON must be an object")
        return cls.from_dict(data)


@dataclass(frozen=True)
class AlertEvent:
    """One transition, published on the ``alerts`` topic."""

    alert_id: str  # same for every transition of an episode
    transition_id: str  # the idempotency key (SET NX guard)
    patient_id: str
    episode: int
    transition: Transition
    priority: Priority
    ts_ms: int  # the observation (or action) time that caused it
    reason: list[str]
    news2_total: int | None
    explanation: dict[str, Any]
    actor: str | None = None  # ACKNOWLEDGED / RESOLVED by a person

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "transition_id": self.transition_id,
            "patient_id": self.patient_id,
            "episode": self.episode,
            "transition": self.transition,
            "priority": self.priority,
            "ts_ms": self.ts_ms,
            "reason": list(self.reason),
            "news2_total": self.news2_total,
            "explanation": copy.deepcopy(self.explanation),
            "actor": self.actor,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertEvent:
        transition = d["transition"]
        priority = d["priority"]
        if transition not in TRANSITIONS:
            raise ValueError(f"unknown transition {transition!r}")
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}")
        total = d.get("news2_total")
        return cls(
            alert_id=str(d["alert_id"]),
            transition_id=str(d["transition_id"]),
            patient_id=str(d["patient_id"]),
            episode=int(d["episode"]),
            transition=cast(Transition, transition),
            priority=cast(Priority, priority),
            ts_ms=int(d["ts_ms"]),
            reason=[str(r) for r in d.get("reason") or []],
            news2_total=None if total is None else int(total),
            explanation=dict(d.get("explanation") or {}),
            actor=d.get("actor"),
        )


def _digest(*parts: object, length: int) -> str:
    payload = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:length]


def make_alert_id(patient_id: str, episode: int, opened_ts_ms: int) -> str:
    """Deterministic alert id: sha256 of (patient id, episode, opening observation time).

    The opening time is part of it so that an episode counter that restarts (the state
    expired from Redis) cannot reuse an old id whose NX guards are still alive.
    """
    return _digest("alert", patient_id, episode, opened_ts_ms, length=24)


def make_transition_id(alert_id: str, transition: str, *parts: object) -> str:
    """Deterministic transition id (the ``SET NX`` idempotency key)."""
    return _digest("transition", alert_id, transition, *parts, length=32)


# ---------------------------------------------------------------------------------------
# Assessment of one observation
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Assessment:
    priority: str  # none/low/medium/high
    reasons: list[str]
    personal: bool  # a personalized trigger (trend, baseline) is active and enabled
    recovered: bool | None  # True: counts towards resolution; False: resets it; None: neither
    complete: bool


def _total_level(total: int | None) -> str:
    if total is None or total <= 0:
        return "none"
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low"


def _model_level(risk: float | None, config: PolicyConfig) -> str:
    if risk is None or isinstance(risk, bool):
        return "none"
    r = float(risk)
    if not math.isfinite(r):
        return "none"
    if r >= config.model_risk_high:
        return "high"
    if r >= config.model_risk_medium:
        return "medium"
    return "none"


def _update_streaks(
    streaks: dict[str, int], obs: Observation, config: PolicyConfig
) -> dict[str, int]:
    """New baseline-deviation streaks (vitals absent from this observation keep theirs).

    SpO2 counts only when it is below the baseline; other vitals in both directions.
    Observations with too young a baseline change nothing.
    """
    out = dict(streaks)
    if obs.baseline_n < config.baseline_min_obs:
        return out
    for name, z in obs.baseline_z.items():
        if isinstance(z, bool) or not isinstance(z, int | float) or not math.isfinite(z):
            continue
        deviating = z <= -config.baseline_z if name == "spo2_pct" else abs(z) >= config.baseline_z
        out[name] = out.get(name, 0) + 1 if deviating else 0
    return out


def _assess(
    obs: Observation, rise: int, streaks: Mapping[str, int], config: PolicyConfig
) -> _Assessment:
    n2 = obs.news2
    levels: dict[str, str] = {}
    total_level = _total_level(n2.total)
    if _RANK[total_level] >= _RANK[config.open_min_priority]:
        levels["news2_threshold"] = total_level
    if n2.single_param_3:
        levels["single_parameter_3"] = "medium"
    model_level = _model_level(obs.model_risk, config)
    if model_level != "none":
        levels["model_risk"] = model_level
    trend_active = (
        n2.complete and n2.total is not None and n2.total >= 3 and rise >= config.trend_min_rise
    )
    baseline_active = any(c >= config.baseline_sustain for c in streaks.values())
    if config.personal_triggers_open:
        if trend_active:
            levels["news2_trend"] = "medium" if rise >= config.trend_medium_rise else "low"
        if baseline_active:
            levels["baseline_deviation"] = "low"
    priority = _max_priority(n2.priority, *levels.values())
    reasons = sorted(levels, key=lambda r: (-_RANK[levels[r]], _TRIGGER_ORDER.index(r)))

    # Resolution evidence. A partial NEWS2 total is a lower bound of the full one: it may
    # keep an alert open, never count towards resolving it.
    recovered: bool | None
    if (
        n2.single_param_3
        or (n2.total is not None and n2.total >= config.resolve_below_total)
        or model_level != "none"
        or (config.personal_triggers_open and (trend_active or baseline_active))
    ):
        recovered = False
    elif not n2.complete or n2.total is None:
        recovered = None
    else:
        recovered = True
    return _Assessment(
        priority=priority,
        reasons=reasons,
        personal=bool(_PERSONAL.intersection(levels)),
        recovered=recovered,
        complete=bool(n2.complete and n2.total is not None),
    )


def _would_transition(
    state: AlertState, a: _Assessment, ts_ms: int, config: PolicyConfig
) -> Transition | None:
    """OPEN or ESCALATED if this assessment alone would cause one now, else None."""
    if a.priority == "none":
        return None
    if state.status in ("none", "resolved"):
        qualifies = _RANK[a.priority] >= _RANK[config.open_min_priority] or (
            config.personal_triggers_open and a.personal
        )
        if not qualifies:
            return None
        if (
            state.status == "resolved"
            and state.resolved_ts_ms is not None
            and ts_ms - state.resolved_ts_ms < _ms(config.cooldown_s)
            and a.priority != "high"
        ):
            return None
        return "OPEN"
    if _RANK[a.priority] > _RANK[state.priority]:
        return "ESCALATED"
    return None


def _artifact_parameter(last_points: Mapping[str, int], n2: News2Result) -> str | None:
    """The parameter of an isolated jump, or None.

    An artifact candidate is exactly one sensor parameter jumping from 0 straight to
    3 points since the last accepted observation while no other parameter's points rose.
    """
    if not last_points:
        return None
    comps = n2.components
    jumped = [p for p in ARTIFACT_PARAMETERS if comps.get(p) == 3 and last_points.get(p) == 0]
    if len(jumped) != 1:
        return None
    for name, points in comps.items():
        if name == jumped[0]:
            continue
        before = last_points.get(name)
        if (before is None and points > 0) or (before is not None and points > before):
            return None
    return jumped[0]


def _push_news2(
    recent: list[tuple[int, int]], ts_ms: int, total: int, window_s: float
) -> list[tuple[int, int]]:
    """Append (ts, total), keeping only what the trend window needs.

    A run of equal totals keeps only its newest entry: the window minimum only needs the
    latest time each value was seen.
    """
    start = ts_ms - _ms(window_s)
    out = [(t, v) for t, v in recent if t >= start and t < ts_ms]
    if out and out[-1][1] == total:
        out[-1] = (ts_ms, total)
    else:
        out.append((ts_ms, total))
    return out[-_MAX_NEWS2_HISTORY:]


# ---------------------------------------------------------------------------------------
# Transitions
# ---------------------------------------------------------------------------------------


def _explain(
    pid: str,
    obs: Observation,
    state: AlertState,
    priority: str,
    reasons: list[str],
    config: PolicyConfig,
) -> dict[str, Any]:
    return explain(
        pid,
        obs,
        state,
        cast(Priority, priority),
        reasons,
        trend_window_s=config.trend_window_s,
        baseline_z_threshold=config.baseline_z,
    )


def _event(
    pid: str,
    st: AlertState,
    transition: Transition,
    ts_ms: int,
    reasons: list[str],
    news2_total: int | None,
    explanation: dict[str, Any],
    key: tuple[object, ...],
    actor: str | None = None,
) -> AlertEvent:
    assert st.alert_id is not None and st.priority is not None
    st.last_transition_ts_ms = ts_ms
    return AlertEvent(
        alert_id=st.alert_id,
        transition_id=make_transition_id(st.alert_id, transition, *key),
        patient_id=pid,
        episode=st.episode,
        transition=transition,
        priority=st.priority,
        ts_ms=ts_ms,
        reason=list(reasons),
        news2_total=news2_total,
        explanation=explanation,
        actor=actor,
    )


def _clear_tracking(st: AlertState) -> None:
    st.below_since_ts_ms = None
    st.downgrade_since_ts_ms = None
    st.downgrade_priority = None


def _resolved(
    pid: str,
    st: AlertState,
    ts_ms: int,
    reasons: list[str],
    news2_total: int | None,
    explanation: dict[str, Any],
    actor: str | None,
) -> AlertEvent:
    st.status = "resolved"
    st.resolved_ts_ms = ts_ms
    st.pending_candidate = None
    st.last_page_ts_ms = None
    st.last_explanation = None
    _clear_tracking(st)
    return _event(pid, st, "RESOLVED", ts_ms, reasons, news2_total, explanation, (), actor)


def _transition(
    kind: Transition,
    pid: str,
    st: AlertState,
    priority: str,
    ts_ms: int,
    reasons: list[str],
    news2_total: int | None,
    explanation: dict[str, Any],
    page_ts_ms: int,
) -> AlertEvent:
    """OPEN a new episode or ESCALATE the open one: either way the care team is paged."""
    if kind == "OPEN":
        st.episode += 1
        st.alert_id = make_alert_id(pid, st.episode, ts_ms)
        st.opened_ts_ms = ts_ms
        st.escalated_count = 0
        st.update_count = 0
        st.resolved_ts_ms = None
    else:
        st.escalated_count += 1
    st.status = "open"  # also an acknowledged alert that worsens: it needs attention again
    st.priority = cast(Priority, priority)
    st.acked_by = None
    st.acked_ts_ms = None
    st.last_page_ts_ms = page_ts_ms
    st.last_explanation = explanation
    _clear_tracking(st)
    detail = () if kind == "OPEN" else (st.priority, st.escalated_count)
    return _event(pid, st, kind, ts_ms, reasons, news2_total, explanation, detail)


def _promote_expired_candidate(
    pid: str, st: AlertState, now_ms: int, config: PolicyConfig
) -> list[AlertEvent]:
    """Raise a held candidate that no observation confirmed or refuted in time.

    Silence is not evidence of an artifact: with no follow-up reading within
    ``artifact_max_wait_s`` the alert goes out, marked as unconfirmed.
    """
    cand = st.pending_candidate
    if cand is None or now_ms - int(cand["ts_ms"]) <= _ms(config.artifact_max_wait_s):
        return []
    st.pending_candidate = None
    kind = cand["transition"]
    priority = str(cand["priority"])
    ts = int(cand["ts_ms"])
    if kind == "OPEN" and st.status not in ("none", "resolved"):
        return []
    if kind == "ESCALATED" and (
        st.status not in ("open", "acknowledged") or _RANK[priority] <= _RANK[st.priority]
    ):
        return []
    explanation = dict(cand.get("explanation") or {})
    explanation["confirmation"] = {
        "status": "unconfirmed",
        "first_ts_ms": ts,
        "parameter": cand.get("parameter"),
        "waited_s": config.artifact_max_wait_s,
    }
    explanation["summary"] = (
        "Single reading, not repeated within "
        f"{config.artifact_max_wait_s / 60:g} min (possible sensor artifact); "
        + _lower_first(str(explanation.get("summary", "")))
    )
    st.last_points = {str(k): int(v) for k, v in (cand.get("points") or {}).items()}
    total = cand.get("news2_total")
    if cand.get("complete") and total is not None:
        st.recent_news2 = _push_news2(st.recent_news2, ts, int(total), config.trend_window_s)
    return [
        _transition(
            cast(Transition, kind),
            pid,
            st,
            priority,
            ts,
            list(cand.get("reasons") or []),
            total,
            explanation,
            now_ms,
        )
    ]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


def _is_replay(state: AlertState, obs: Observation) -> bool:
    if state.last_ts_ms is None:
        return False
    if obs.ts_ms < state.last_ts_ms:
        return True
    if obs.ts_ms == state.last_ts_ms:
        # same time: only a different, named event is new (two devices, one millisecond)
        return not obs.event_id or obs.event_id in state.last_event_ids
    return False


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def evaluate(
    patient_id: str, state: AlertState, obs: Observation, config: PolicyConfig
) -> tuple[AlertState, list[AlertEvent]]:
    """Apply one scored observation; return the new state and the transitions it causes.

    ``state`` is not modified. An observation older than the last one processed (or at
    the same time with an event id already seen, or without one) is a replay: the state
    is returned unchanged with no events.
    """
    if _is_replay(state, obs):
        return state, []
    st = state.copy()
    ts = int(obs.ts_ms)
    if st.last_ts_ms == ts:
        st.last_event_ids = [*st.last_event_ids, obs.event_id][-_MAX_IDS_AT_TS:]
    else:
        st.last_ts_ms = ts
        st.last_event_ids = [obs.event_id] if obs.event_id else []

    events = _promote_expired_candidate(patient_id, st, ts, config)

    n2 = obs.news2
    complete_total = n2.total if (n2.complete and n2.total is not None) else None
    rise = news2_rise(st.recent_news2, ts, complete_total, config.trend_window_s)
    streaks = _update_streaks(st.baseline_streak, obs, config)
    a = _assess(obs, rise, streaks, config)
    kind = _would_transition(st, a, ts, config)

    cand = st.pending_candidate
    confirmation: dict[str, Any] | None = None
    if cand is not None:
        st.pending_candidate = None
        if kind is not None and kind == cand["transition"]:
            confirmation = {
                "status": "confirmed",
                "first_ts_ms": int(cand["ts_ms"]),
                "parameter": cand.get("parameter"),
            }
        else:
            # the next reading did not bear it out: an artifact, dropped silently
            st.suppressed_artifacts += 1
    elif kind is not None and config.artifact_confirm:
        param = _artifact_parameter(st.last_points, n2)
        if param is not None:
            st.pending_candidate = {
                "transition": kind,
                "ts_ms": ts,
                "priority": a.priority,
                "reasons": a.reasons,
                "parameter": param,
                "news2_total": n2.total,
                "complete": a.complete,
                "points": dict(n2.components),
                "event_id": obs.event_id,
                "explanation": _explain(patient_id, obs, st, a.priority, a.reasons, config),
            }
            # held: the reading does not move the reference points, streaks or history
            return st, events

    st.baseline_streak = streaks
    if kind is not None:
        explanation = _explain(patient_id, obs, st, a.priority, a.reasons, config)
        if confirmation is not None:
            explanation["confirmation"] = confirmation
        events.append(
            _transition(kind, patient_id, st, a.priority, ts, a.reasons, n2.total, explanation, ts)
        )
    elif st.status in ("open", "acknowledged"):
        events.extend(_track_recovery(patient_id, st, obs, a, config))

    st.last_points = dict(n2.components)
    st.last_news2_total = n2.total
    if complete_total is not None:
        st.recent_news2 = _push_news2(st.recent_news2, ts, complete_total, config.trend_window_s)
    if kind is None and st.status in ("open", "acknowledged"):
        # keep the page's "why" current without emitting anything
        assert st.priority is not None
        st.last_explanation = _explain(patient_id, obs, st, st.priority, a.reasons, config)
    return st, events


def _track_recovery(
    pid: str, st: AlertState, obs: Observation, a: _Assessment, config: PolicyConfig
) -> list[AlertEvent]:
    """Resolution (hysteresis + hold) and de-escalation (hold) of an open alert."""
    ts = int(obs.ts_ms)
    if a.recovered is True:
        if st.below_since_ts_ms is None:
            st.below_since_ts_ms = ts
        if ts - st.below_since_ts_ms >= _ms(config.resolve_hold_s):
            held_min = (ts - st.below_since_ts_ms) / 60000
            explanation = _explain(pid, obs, st, cast(str, st.priority), ["recovered"], config)
            explanation["summary"] = (
                f"Resolved: NEWS2 has stayed below {config.resolve_below_total} with no "
                f"other trigger for {held_min:.0f} min (now {obs.news2.total})."
            )
            return [_resolved(pid, st, ts, ["recovered"], obs.news2.total, explanation, None)]
    elif a.recovered is False:
        st.below_since_ts_ms = None

    current = _RANK[st.priority]
    if _RANK[a.priority] >= current:
        st.downgrade_since_ts_ms = None
        st.downgrade_priority = None
        return []
    if not a.complete:
        return []  # a partial score is a lower bound: never evidence of improvement
    if st.downgrade_since_ts_ms is None:
        st.downgrade_since_ts_ms = ts
    lower = _max_priority(st.downgrade_priority, a.priority, "low")
    st.downgrade_priority = cast(Priority, lower)
    if ts - st.downgrade_since_ts_ms < _ms(config.downgrade_hold_s) or _RANK[lower] >= current:
        return []
    st.priority = cast(Priority, lower)
    st.update_count += 1
    st.downgrade_since_ts_ms = None
    st.downgrade_priority = None
    explanation = _explain(pid, obs, st, lower, ["improving", *a.reasons], config)
    explanation["summary"] = "Improving, priority lowered; " + _lower_first(explanation["summary"])
    st.last_explanation = explanation
    return [
        _event(
            pid,
            st,
            "UPDATED",
            ts,
            ["improving", *a.reasons],
            obs.news2.total,
            explanation,
            (st.priority, st.update_count),
        )
    ]


def tick(
    patient_id: str, state: AlertState, now_ms: int, config: PolicyConfig
) -> tuple[AlertState, list[AlertEvent]]:
    """Time-driven transitions at ``now_ms`` (same clock as the observation times).

    * a held artifact candidate older than ``artifact_max_wait_s`` is raised;
    * a medium/high alert that is open and not acknowledged for ``escalate_unacked_s``
      since its last page is ESCALATED (re-paged) at the same priority, at most once per
      interval however late or often ``tick`` runs, and at most ``max_repages`` times per
      priority level (after that it stays open and on the page, without more pages).
    Returns the input state unchanged when nothing happens.
    """
    cand = state.pending_candidate
    candidate_due = cand is not None and now_ms - int(cand["ts_ms"]) > _ms(
        config.artifact_max_wait_s
    )
    repage_due = (
        state.status == "open"
        and state.priority in ("medium", "high")
        and not (
            state.repage_priority == state.priority and state.repage_count >= config.max_repages
        )
        and state.last_page_ts_ms is not None
        and now_ms - state.last_page_ts_ms >= _ms(config.escalate_unacked_s)
    )
    if not candidate_due and not repage_due:  # the common case: nothing to do, no copy
        return state, []
    st = state.copy()
    events = _promote_expired_candidate(patient_id, st, now_ms, config)
    if st.repage_priority != st.priority:  # a new priority level gets its own re-pages
        st.repage_priority, st.repage_count = st.priority, 0
    if (
        st.status == "open"
        and st.priority in ("medium", "high")
        and st.last_page_ts_ms is not None
        and now_ms - st.last_page_ts_ms >= _ms(config.escalate_unacked_s)
        and st.repage_count < config.max_repages
    ):
        st.repage_count += 1
        minutes = (now_ms - st.last_page_ts_ms) / 60000
        assert st.priority is not None
        explanation = action_explanation(
            st.last_explanation,
            st.priority,
            ["unacknowledged"],
            f"Not acknowledged for {minutes:.0f} min; "
            + _lower_first(str((st.last_explanation or {}).get("summary", "alert open."))),
        )
        st.escalated_count += 1
        st.last_page_ts_ms = now_ms
        events.append(
            _event(
                patient_id,
                st,
                "ESCALATED",
                now_ms,
                ["unacknowledged"],
                st.last_news2_total,
                explanation,
                (st.priority, st.escalated_count),
            )
        )
    if not events:
        return state, []
    return st, events


def acknowledge(
    patient_id: str, state: AlertState, actor: str, now_ms: int
) -> tuple[AlertState, list[AlertEvent]]:
    """A person acknowledges the open alert. No-op (state unchanged, no events) when
    nothing is open or it is already acknowledged."""
    if state.status != "open" or state.alert_id is None or state.priority is None:
        return state, []
    priority: Priority = state.priority
    st = state.copy()
    st.status = "acknowledged"
    st.acked_by = actor
    st.acked_ts_ms = now_ms
    explanation = action_explanation(
        st.last_explanation,
        priority,
        ["acknowledged"],
        "Acknowledged by the care team; "
        + _lower_first(str((st.last_explanation or {}).get("summary", "alert open."))),
    )
    event = _event(
        patient_id,
        st,
        "ACKNOWLEDGED",
        now_ms,
        ["acknowledged"],
        st.last_news2_total,
        explanation,
        (st.priority, st.escalated_count, st.update_count),
        actor,
    )
    return st, [event]


def resolve(
    patient_id: str, state: AlertState, actor: str, now_ms: int
) -> tuple[AlertState, list[AlertEvent]]:
    """A person resolves the alert (open or acknowledged). Cooldown applies afterwards.
    No-op when nothing is open."""
    if state.status not in ("open", "acknowledged") or state.alert_id is None:
        return state, []
    st = state.copy()
    assert st.priority is not None
    explanation = action_explanation(
        st.last_explanation, st.priority, ["manual_resolve"], "Resolved by the care team."
    )
    event = _resolved(
        patient_id, st, now_ms, ["manual_resolve"], st.last_news2_total, explanation, actor
    )
    return st, [event]


# ---------------------------------------------------------------------------------------
# Alert burden
# ---------------------------------------------------------------------------------------


def count_alerts(
    events: Iterable[AlertEvent | Mapping[str, Any]], patient_days: float | None = None
) -> dict[str, Any]:
    """Alert burden of a set of transitions (each ``transition_id`` counted once).

    ``pages`` are the transitions that interrupt someone: OPEN and ESCALATED at medium or
    high priority. With ``patient_days``, per-patient-day rates are added (the Kaiser
    AAM reference point is about 1 alert per 35 patients per day, 0.029/patient-day).
    """
    seen: set[str] = set()
    by_transition = dict.fromkeys(TRANSITIONS, 0)
    by_priority = dict.fromkeys(PRIORITIES, 0)
    opened_by_priority = dict.fromkeys(PRIORITIES, 0)
    pages = 0
    alerts: set[str] = set()
    patients: set[str] = set()
    for raw in events:
        ev = raw if isinstance(raw, AlertEvent) else AlertEvent.from_dict(raw)
        if ev.transition_id in seen:
            continue
        seen.add(ev.transition_id)
        by_transition[ev.transition] += 1
        by_priority[ev.priority] += 1
        alerts.add(ev.alert_id)
        patients.add(ev.patient_id)
        if ev.transition == "OPEN":
            opened_by_priority[ev.priority] += 1
        if ev.transition in ("OPEN", "ESCALATED") and ev.priority in ("medium", "high"):
            pages += 1
    out: dict[str, Any] = {
        "transitions": len(seen),
        "by_transition": by_transition,
        "by_priority": by_priority,
        "opened": by_transition["OPEN"],
        "opened_by_priority": opened_by_priority,
        "pages": pages,
        "alerts": len(alerts),
        "patients": len(patients),
    }
    if patient_days is not None and patient_days > 0:
        out["patient_days"] = patient_days
        out["opened_per_patient_day"] = round(by_transition["OPEN"] / patient_days, 6)
        out["pages_per_patient_day"] = round(pages / patient_days, 6)
    return out
