"""The alert lifecycle: the state machine of one patient's alert episodes, and its ids.

OPEN (a new episode) or ESCALATED when an assessment's priority calls for it
(:func:`would_transition`, with the cooldown after a resolve); UPDATED (priority lowered
after ``downgrade_hold_s``) and RESOLVED (NEWS2 below ``resolve_below_total`` with
nothing else firing for ``resolve_hold_s``) while an alert is open
(:func:`track_recovery`); the transitions themselves (:func:`open_or_escalate`,
:func:`resolved`, :func:`make_event`), which update the state in place and return the
:class:`AlertEvent` with its deterministic ids (:func:`make_alert_id`,
:func:`make_transition_id`). The callers (:mod:`alerts.policy`, :mod:`alerts.timers`)
work on a copy of the state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, cast

from alerts.config import PolicyConfig, ms
from alerts.explain import explain, explain_recent, lower_first
from alerts.state import (
    RANK,
    AlertEvent,
    AlertState,
    Observation,
    Priority,
    Transition,
    max_priority,
)
from alerts.triggers import Assessment, model_level

__all__ = [
    "defer_explanation",
    "explain_observation",
    "make_alert_id",
    "make_event",
    "make_transition_id",
    "model_supports",
    "open_or_escalate",
    "page_waiting",
    "pages_at_once",
    "clear_unpaged",
    "confirm_or_wait",
    "resolved",
    "track_recovery",
    "attended_at",
    "held_after_review",
    "would_transition",
]


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


def held_after_review(
    state: AlertState,
    priority: str,
    news2_total: int | None,
    ts_ms: int,
    config: PolicyConfig,
) -> bool:
    """A clinician resolved the last alert (a review) less than ``review_hold_s`` ago and
    the patient is no worse than then: not high, the priority not above the reviewed one,
    the NEWS2 total not above the reviewed total. The reviewed plan stands; a deteriorating
    patient reopens at once."""
    if (
        state.status != "resolved"
        or state.reviewed_priority is None
        or state.resolved_ts_ms is None
        or ts_ms - state.resolved_ts_ms >= ms(config.review_hold_s)
        or priority == "high"
        or RANK[priority] > RANK[state.reviewed_priority]
    ):
        return False
    reviewed = state.reviewed_news2_total
    return reviewed is None or news2_total is None or news2_total <= reviewed


def would_transition(
    state: AlertState,
    a: Assessment,
    ts_ms: int,
    config: PolicyConfig,
    news2_total: int | None = None,
) -> Transition | None:
    """OPEN or ESCALATED if this assessment alone would cause one now, else None
    (``news2_total``: the observation's, for the hold after a clinician's review)."""
    if a.priority == "none":
        return None
    if state.status in ("none", "resolved"):
        qualifies = RANK[a.priority] >= RANK[config.open_min_priority] or (
            config.personal_triggers_open and a.personal
        )
        if not qualifies:
            return None
        if (
            state.status == "resolved"
            and state.resolved_ts_ms is not None
            and ts_ms - state.resolved_ts_ms < ms(config.cooldown_s)
            and a.priority != "high"
        ):
            return None
        if held_after_review(state, a.priority, news2_total, ts_ms, config):
            return None
        return "OPEN"
    if RANK[a.priority] > RANK[state.priority]:
        return "ESCALATED"
    return None


def explain_observation(
    pid: str,
    obs: Observation,
    state: AlertState,
    priority: str,
    reasons: list[str],
    config: PolicyConfig,
) -> dict[str, Any]:
    """:func:`alerts.explain.explain` with the policy's trend window and baseline z."""
    return explain(
        pid,
        obs,
        state,
        cast(Priority, priority),
        reasons,
        trend_window_s=config.trend_window_s,
        baseline_z_threshold=config.baseline_z,
    )


@dataclass(frozen=True, slots=True)
class _ExplainLater:
    """An observation's explanation, to render when read: equal when its inputs are."""

    obs: Observation
    recent_news2: tuple[tuple[int, int], ...]
    priority: str
    reasons: tuple[str, ...]
    trend_window_s: float
    baseline_z: float

    def __call__(self) -> dict[str, Any]:
        return explain_recent(
            self.obs,
            self.recent_news2,
            self.priority,
            self.reasons,
            trend_window_s=self.trend_window_s,
            baseline_z_threshold=self.baseline_z,
        )


def defer_explanation(
    st: AlertState, obs: Observation, priority: str, reasons: list[str], config: PolicyConfig
) -> None:
    """Set ``st.last_explanation`` to :func:`explain_observation` of ``obs`` at
    ``priority`` for ``reasons``, rendered only when something reads it (see
    ``AlertState.defer_explanation``). The renderer holds the observation (immutable)
    and its own copies of the reasons and of the state's NEWS2 history as of now."""
    st.defer_explanation(
        _ExplainLater(
            obs,
            tuple(st.recent_news2),
            priority,
            tuple(reasons),
            config.trend_window_s,
            config.baseline_z,
        )
    )


def make_event(
    pid: str,
    st: AlertState,
    transition: Transition,
    ts_ms: int,
    reasons: list[str],
    news2_total: int | None,
    explanation: dict[str, Any],
    key: tuple[object, ...],
    actor: str | None = None,
    page: bool = False,
) -> AlertEvent:
    """The event of ``transition`` of the current episode; ``key`` makes its id distinct
    from the episode's other transitions (see ``docs/alerts.md``, ids)."""
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
        page=page,
    )


def model_supports(risk: float | None, config: PolicyConfig) -> bool:
    """Whether the model's fused risk is at or above its medium operating point."""
    return model_level(risk, config) != "none"


def pages_at_once(priority: str, supported: bool, config: PolicyConfig) -> bool:
    """Whether an alert raised to ``priority`` pages now: high always; medium when
    ``supported`` (the model's risk is at its operating point, or a repeat reading already
    bore it out) or no confirmation is asked for; low never (it is on the page)."""
    if priority == "high":
        return True
    if priority == "medium":
        return supported or config.medium_confirm_obs <= 1
    return False


def attended_at(st: AlertState, priority: str) -> bool:
    """The care team acknowledged this episode at ``priority`` or above earlier, and it is
    not high (a high priority always pages: an emergency response every time)."""
    return (
        priority != "high"
        and st.acked_priority is not None
        and RANK[priority] <= RANK[st.acked_priority]
    )


def clear_unpaged(st: AlertState) -> None:
    st.unpaged_since_ts_ms = None
    st.unpaged_obs = 0
    st.unpaged_last_ts_ms = None


def _paging_note(
    page: bool, priority: str, ts_ms: int, config: PolicyConfig, judged: bool = False
) -> dict[str, Any]:
    if page:
        return {"paged": True}
    if priority != "medium":
        return {"paged": False, "why": "low priority: shown on the page, not paged"}
    if judged:
        return {
            "paged": False,
            "why": "below the model's operating point: on the page, pages if the model's "
            "risk reaches it or NEWS2 reaches high",
            "next_obs_due_ts_ms": ts_ms + ms(config.medium_confirm_wait_s),
        }
    return {
        "paged": False,
        "why": "awaiting a repeat observation set",
        "confirm_obs": config.medium_confirm_obs,
        "page_by_ts_ms": ts_ms + ms(config.medium_confirm_wait_s),
    }


def _clear_tracking(st: AlertState) -> None:
    st.below_since_ts_ms = None
    st.downgrade_since_ts_ms = None
    st.downgrade_priority = None


def resolved(
    pid: str,
    st: AlertState,
    ts_ms: int,
    reasons: list[str],
    news2_total: int | None,
    explanation: dict[str, Any],
    actor: str | None,
) -> AlertEvent:
    """RESOLVE the episode (automatically, or by ``actor``); the cooldown starts now, and
    after a clinician's resolve (an ``actor``) the hold after a review."""
    reviewed = actor is not None
    st.reviewed_priority = st.priority if reviewed else None
    st.reviewed_news2_total = news2_total if reviewed else None
    st.status = "resolved"
    st.resolved_ts_ms = ts_ms
    st.pending_candidate = None
    st.last_page_ts_ms = None
    st.last_explanation = None
    _clear_tracking(st)
    clear_unpaged(st)
    return make_event(pid, st, "RESOLVED", ts_ms, reasons, news2_total, explanation, (), actor)


def open_or_escalate(
    kind: Transition,
    pid: str,
    st: AlertState,
    priority: str,
    ts_ms: int,
    reasons: list[str],
    news2_total: int | None,
    explanation: dict[str, Any],
    page_ts_ms: int,
    config: PolicyConfig,
    supported: bool = False,
    judged: bool = False,
) -> AlertEvent:
    """OPEN a new episode or ESCALATE the open one, at ``priority``: it pages when
    :func:`pages_at_once` says so, else (medium) it waits on the page for a repeat
    observation set (:func:`confirm_or_wait`). ``judged``: a model scored this set (below
    its operating point, unless ``supported``): the model, not silence, decides the page,
    so no repeat is due (:func:`alerts.timers.page_overdue_repeat` leaves it alone)."""
    if kind == "OPEN":
        st.episode += 1
        st.alert_id = make_alert_id(pid, st.episode, ts_ms)
        st.opened_ts_ms = ts_ms
        st.escalated_count = 0
        st.update_count = 0
        st.resolved_ts_ms = None
        st.reviewed_priority = None
        st.reviewed_news2_total = None
        st.acked_priority = None
    else:
        st.escalated_count += 1
    st.priority = cast(Priority, priority)
    clear_unpaged(st)
    if kind == "ESCALATED" and attended_at(st, priority):
        # back up to a level the care team acknowledged in this episode: on the page,
        # its acknowledgement stands, nothing pages (high is never attended this way)
        st.last_page_ts_ms = None if st.status == "open" else st.last_page_ts_ms
        explanation["paging"] = {
            "paged": False,
            "why": f"acknowledged at {st.acked_priority} earlier in this episode: "
            "the care team is attending",
        }
        st.last_explanation = explanation
        _clear_tracking(st)
        return make_event(
            pid,
            st,
            kind,
            ts_ms,
            reasons,
            news2_total,
            explanation,
            (st.priority, st.escalated_count),
            page=False,
        )
    st.status = "open"  # also an acknowledged alert that worsens: it needs attention again
    st.acked_by = None
    st.acked_ts_ms = None
    page = pages_at_once(priority, supported, config)
    if page:
        st.last_page_ts_ms = page_ts_ms
    else:
        st.last_page_ts_ms = None  # nothing to re-page until it has paged
        if priority == "medium":
            st.unpaged_since_ts_ms = ts_ms
            st.unpaged_last_ts_ms = None if judged else ts_ms
            st.unpaged_obs = 1
    explanation["paging"] = _paging_note(page, priority, ts_ms, config, judged)
    st.last_explanation = explanation
    _clear_tracking(st)
    detail = () if kind == "OPEN" else (st.priority, st.escalated_count)
    return make_event(pid, st, kind, ts_ms, reasons, news2_total, explanation, detail, page=page)


def page_waiting(
    pid: str,
    st: AlertState,
    ts_ms: int,
    reasons: list[str],
    news2_total: int | None,
    explanation: dict[str, Any],
    summary_prefix: str,
) -> AlertEvent:
    """Page the medium alert that was waiting on the page (ESCALATED at the same
    priority, ``page`` set): confirmed, or no repeat observation came in time."""
    clear_unpaged(st)
    st.last_page_ts_ms = ts_ms
    explanation["summary"] = summary_prefix + lower_first(str(explanation.get("summary", "")))
    explanation["paging"] = {"paged": True, "why": reasons[0]}
    st.last_explanation = explanation
    return make_event(
        pid,
        st,
        "ESCALATED",
        ts_ms,
        reasons,
        news2_total,
        explanation,
        ("page", st.priority, st.escalated_count, st.update_count),
        page=True,
    )


def confirm_or_wait(
    pid: str, st: AlertState, obs: Observation, a: Assessment, config: PolicyConfig
) -> list[AlertEvent]:
    """A medium alert waiting on the page, and the next observation set at medium or
    above: with a model, it pages when the model's risk reaches its operating point (the
    thresholds chosen for the alert budget, see ``docs/alerts.md``); without one (none
    deployed, or an outage: rules only), when ``medium_confirm_obs`` consecutive sets
    confirm it. A complete set below medium means the repeat did not bear it out: the
    count starts again and no repeat is due (it stays on the page until it resolves or
    rises). Rules only, a repeat that does not come within ``medium_confirm_wait_s`` pages
    (:func:`alerts.timers.page_overdue_repeat`); a set the model judged below its operating
    point answers the wait: no repeat is due from it (the model decides, not silence)."""
    if st.unpaged_since_ts_ms is None or st.status != "open":
        return []
    ts = int(obs.ts_ms)
    if RANK[a.priority] >= RANK["medium"]:
        st.unpaged_obs += 1
        by_model = model_supports(obs.model_risk, config)
        if obs.model_risk is not None and not by_model:
            st.unpaged_last_ts_ms = None  # judged by the model: no repeat is due from it
            return []
        st.unpaged_last_ts_ms = ts
        if not by_model and st.unpaged_obs < config.medium_confirm_obs:
            return []
        reasons = ["confirmed", *a.reasons]
        explanation = explain_observation(pid, obs, st, cast(str, st.priority), reasons, config)
        explanation["confirmation"] = {
            "status": "confirmed",
            "by": "model" if by_model else "repeat_observations",
            "first_ts_ms": st.unpaged_since_ts_ms,
            "observation_sets": st.unpaged_obs,
        }
        return [
            page_waiting(
                pid,
                st,
                ts,
                reasons,
                obs.news2.total,
                explanation,
                "Model risk at its alert threshold; "
                if by_model
                else "Confirmed by repeat observations; ",
            )
        ]
    if a.complete:
        st.unpaged_obs = 0
        st.unpaged_last_ts_ms = None
    return []


def track_recovery(
    pid: str, st: AlertState, obs: Observation, a: Assessment, config: PolicyConfig
) -> list[AlertEvent]:
    """Resolution (hysteresis + hold) and de-escalation (hold) of an open alert."""
    ts = int(obs.ts_ms)
    if a.recovered is True:
        if st.below_since_ts_ms is None:
            st.below_since_ts_ms = ts
        if ts - st.below_since_ts_ms >= ms(config.resolve_hold_s):
            held_min = (ts - st.below_since_ts_ms) / 60000
            explanation = explain_observation(
                pid, obs, st, cast(str, st.priority), ["recovered"], config
            )
            explanation["summary"] = (
                f"Resolved: NEWS2 has stayed below {config.resolve_below_total} with no "
                f"other trigger for {held_min:.0f} min (now {obs.news2.total})."
            )
            return [resolved(pid, st, ts, ["recovered"], obs.news2.total, explanation, None)]
    elif a.recovered is False:
        st.below_since_ts_ms = None

    current = RANK[st.priority]
    if RANK[a.priority] >= current:
        st.downgrade_since_ts_ms = None
        st.downgrade_priority = None
        return []
    if not a.complete:
        return []  # a partial score is a lower bound: never evidence of improvement
    if st.downgrade_since_ts_ms is None:
        st.downgrade_since_ts_ms = ts
    lower = max_priority(st.downgrade_priority, a.priority, "low")
    st.downgrade_priority = cast(Priority, lower)
    if ts - st.downgrade_since_ts_ms < ms(config.downgrade_hold_s) or RANK[lower] >= current:
        return []
    st.priority = cast(Priority, lower)
    if lower == "low":
        clear_unpaged(st)  # a low alert is shown, never paged
    st.update_count += 1
    st.downgrade_since_ts_ms = None
    st.downgrade_priority = None
    explanation = explain_observation(pid, obs, st, lower, ["improving", *a.reasons], config)
    explanation["summary"] = "Improving, priority lowered; " + lower_first(explanation["summary"])
    st.last_explanation = explanation
    return [
        make_event(
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
