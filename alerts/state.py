"""The alert data types and their JSON round trip: what the policy reads and writes.

:class:`Observation` is one scored event (the policy's input), :class:`AlertState` the
per-patient state the streaming layer persists in Redis (``to_json`` / ``from_json``),
:class:`AlertEvent` one transition published on the ``alerts`` topic (``to_dict`` /
``from_dict``). Also the vocabularies they use (priorities, transitions, statuses,
reasons) and the order of priorities. No policy logic here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Literal, cast, get_args

from models.news2 import News2Result
from wardwatch.ingest import ReadingFlag

__all__ = [
    "PRIORITIES",
    "RANK",
    "REASONS",
    "STATUSES",
    "TRANSITIONS",
    "TRIGGERS",
    "AlertEvent",
    "AlertState",
    "Observation",
    "Priority",
    "Status",
    "Transition",
    "max_priority",
    "pages_by_default",
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
    "confirmed",  # ESCALATED: a repeat observation set confirmed a medium alert (paged now)
    "no_repeat_observation",  # ESCALATED: no repeat set within medium_confirm_wait_s (paged)
    "discharged",  # RESOLVED: the patient was discharged or transferred out
)
"""Machine-readable reasons an :class:`AlertEvent` can carry (first = strongest)."""

TRIGGERS: Final[tuple[str, ...]] = REASONS[:5]
"""The clinical triggers among an event's reasons (the rest are lifecycle reasons)."""

RANK: Final[Mapping[str | None, int]] = {None: 0, "none": 0, "low": 1, "medium": 2, "high": 3}
"""Order of priorities; ``"none"`` (and ``None``) is below every alarm priority."""
_BY_RANK: Final[tuple[str, ...]] = ("none", "low", "medium", "high")


def pages_by_default(transition: str | None, priority: str | None) -> bool:
    """The paging rule of a transition without a ``page`` flag: OPEN and ESCALATED at
    medium or high priority."""
    return transition in ("OPEN", "ESCALATED") and priority in ("medium", "high")


def max_priority(*levels: str | None) -> str:
    """The highest of ``levels`` (``"none"`` when there is none)."""
    return _BY_RANK[max((RANK.get(lv, 0) for lv in levels), default=0)]


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
    model_contributions: dict[str, float] | None = None  # of the model's own risk
    # the deterioration model's own risk, before fusion with NEWS2 (None: no model)
    model_own_risk: float | None = None
    # what NEWS2, the model and imaging add to the fused risk (log-odds; FusionParams.parts);
    # None where the fused risk is the model's own (no stacking)
    risk_parts: Mapping[str, float] | None = None
    event_id: str = ""  # idempotency: source of the observation (e.g. "vitals:3:1042")
    baseline_mean: dict[str, float] = field(default_factory=dict)  # optional, for texts
    # the event's readings set aside at ingest or to verify, shown in the explanation
    flags: tuple[ReadingFlag, ...] = ()
    # the patient's context (ADT): age band, documented conditions, ward; see explain
    context: Mapping[str, Any] = field(default_factory=dict)


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
    # a medium alert on the board, not paged yet (waiting for a repeat observation set)
    unpaged_since_ts_ms: int | None = None  # when it began waiting (None: paged, or no wait)
    unpaged_obs: int = 0  # consecutive medium+ sets since (the opening one included)
    unpaged_last_ts_ms: int | None = None  # the latest of them: the repeat is due from here
    # a clinician resolved the last alert (a review): its priority and NEWS2 total then;
    # until review_hold_s after, only a high or a worse patient reopens (None: no review)
    reviewed_priority: Priority | None = None
    reviewed_news2_total: int | None = None
    # the highest priority the care team acknowledged in this episode: a return to it or
    # below (after the priority was lowered) is shown, not paged again; high always pages
    acked_priority: Priority | None = None

    def copy(self) -> AlertState:
        """A deep copy (what ``copy.deepcopy`` gives), built field by field: the scalars
        are immutable, the lists and dicts of scalars are copied one level, the two nested
        dicts (pending candidate, explanation) deeply (:func:`deep_copy`)."""
        new = object.__new__(AlertState)
        new.__dict__.update(self.__dict__)
        new.recent_news2 = list(self.recent_news2)
        new.baseline_streak = dict(self.baseline_streak)
        new.last_event_ids = list(self.last_event_ids)
        new.last_points = dict(self.last_points)
        if self.pending_candidate is not None:
            new.pending_candidate = deep_copy(self.pending_candidate)
        # an explanation not rendered yet stays so (its renderer is shared: it holds
        # only values nothing changes); a rendered one is copied
        explanation = self.__dict__["last_explanation"]
        if explanation is not None:
            new.__dict__["last_explanation"] = deep_copy(explanation)
        return new

    def defer_explanation(self, render: Callable[[], dict[str, Any]]) -> None:
        """Set ``last_explanation`` to what ``render()`` returns, calling it only when
        the explanation is read (the attribute, ``to_json``, ``==``): an open alert's
        explanation follows every observation set, and most of them are replaced by the
        next before anything reads them. ``render`` must return a new dict on each call,
        the same whenever it is called (it holds only values that do not change), and
        compare equal to another with the same inputs (states compare by value)."""
        d = self.__dict__
        d["last_explanation"] = None
        d[_DEFERRED] = render

    def to_json(self) -> str:
        """Compact JSON of the fields that differ from their defaults (``from_json`` puts
        the defaults back): every field is JSON-native already, no deep copy."""
        if _DEFERRED in self.__dict__:
            _render_explanation(self)
        defaults = _DEFAULTS
        return json.dumps(
            {
                k: v
                for k, v in vars(self).items()
                if type(v) is not type(d := defaults.get(k, _MISSING)) or v != d
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertState:
        known = _FIELD_NAMES
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
    # whether it interrupts someone (the pager sends it); None: the rule of events that
    # predate the flag (OPEN and ESCALATED at medium or high priority)
    page: bool | None = None

    @property
    def pages(self) -> bool:
        """Whether this transition is a page (see :func:`pages_by_default`)."""
        if self.page is not None:
            return self.page
        return pages_by_default(self.transition, self.priority)

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
            "explanation": deep_copy(self.explanation),
            "actor": self.actor,
            "page": self.pages,
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
            page=None if d.get("page") is None else bool(d["page"]),
        )


_DEFERRED: Final = "_render_last_explanation"
"""The instance attribute that holds a deferred explanation's renderer (never a field)."""


def _render_explanation(state: AlertState) -> None:
    d = state.__dict__
    d["last_explanation"] = d.pop(_DEFERRED)()


def _get_last_explanation(state: AlertState) -> dict[str, Any] | None:
    d = state.__dict__
    if _DEFERRED in d:
        _render_explanation(state)
    return cast("dict[str, Any] | None", d["last_explanation"])


def _set_last_explanation(state: AlertState, value: dict[str, Any] | None) -> None:
    d = state.__dict__
    d.pop(_DEFERRED, None)
    d["last_explanation"] = value


# ``last_explanation`` stays a plain field for the dataclass (``__init__``, ``fields``,
# ``==``, the JSON); reading it renders a deferred one (``AlertState.defer_explanation``)
setattr(  # noqa: B010 (assigned after the dataclass is built, not in its body)
    AlertState, "last_explanation", property(_get_last_explanation, _set_last_explanation)
)

_MISSING = object()
_DEFAULTS: Final[Mapping[str, Any]] = vars(AlertState())
_FIELD_NAMES: Final[frozenset[str]] = frozenset(f.name for f in fields(AlertState))


def deep_copy(value: Any) -> Any:
    """``copy.deepcopy`` for values made of dicts, lists, tuples and scalars (what an
    explanation or a held candidate holds), without its memo and dispatch; anything else
    goes to ``copy.deepcopy``. Shared sub-objects are copied once per reference, as
    ``deepcopy`` would copy them once (no value here shares or cycles)."""
    cls = type(value)
    if cls is dict:
        return {k: v if type(v) in _ATOMIC else deep_copy(v) for k, v in value.items()}
    if cls is list:
        return [v if type(v) in _ATOMIC else deep_copy(v) for v in value]
    if cls in _ATOMIC:
        return value
    if cls is tuple:
        items = tuple(deep_copy(v) for v in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return copy.deepcopy(value)


_ATOMIC: Final[frozenset[type]] = frozenset({str, int, float, bool, type(None)})
