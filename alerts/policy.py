"""The alert policy: pure functions over a JSON-serialisable per-patient state.

No I/O here: the streaming layer loads :class:`~alerts.state.AlertState` from Redis
(``from_json``), calls :func:`evaluate` for each scored observation,
:func:`~alerts.timers.tick` on a timer, :func:`acknowledge` / :func:`resolve` for
care-team actions, stores the new state (``to_json``) and publishes each returned
:class:`~alerts.state.AlertEvent` once, guarded by ``SET NX`` on its ``transition_id``.
Every function is deterministic: the same state and input give the same new state and
the same events (with the same ids), so a replay after a crash or rebalance changes
nothing.

This module puts the parts together: the data types (:mod:`alerts.state`), the
configuration (:mod:`alerts.config`), the triggers (:mod:`alerts.triggers`), the
lifecycle state machine (:mod:`alerts.lifecycle`), the timers (:mod:`alerts.timers`) and
the explanations (:mod:`alerts.explain`). The policy (levels, hysteresis, hold times,
cooldown, trend and baseline triggers, artifact suppression, escalation, ids) is
documented in ``docs/alerts.md``; the short version:

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

from typing import Any, Final, cast

from alerts.config import PolicyConfig
from alerts.explain import action_explanation, lower_first, news2_rise
from alerts.lifecycle import (
    clear_unpaged,
    confirm_or_wait,
    defer_explanation,
    explain_observation,
    make_event,
    model_supports,
    open_or_escalate,
    resolved,
    track_recovery,
    would_transition,
)
from alerts.state import AlertEvent, AlertState, Observation, Priority, max_priority
from alerts.timers import page_overdue_repeat, promote_expired_candidate
from alerts.triggers import artifact_parameter, assess, push_news2, update_streaks

__all__ = ["acknowledge", "discharge", "evaluate", "resolve"]

_MAX_IDS_AT_TS: Final = 8


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
    patient_id: str,
    state: AlertState,
    obs: Observation,
    config: PolicyConfig,
    stream_ms: int | None = None,
) -> tuple[AlertState, list[AlertEvent]]:
    """Apply one scored observation; return the new state and the transitions it causes.

    ``stream_ms`` is event time on the patient's partition of the input as of this
    observation (see ``docs/delivery.md``): a held reading whose hold that time has passed
    is raised first, unconfirmed, exactly as the timer (:func:`alerts.timers.tick`) would
    have raised it had it run before this observation, so the outcome does not depend on
    when the timer runs. ``state`` is not modified. An observation older than the last one processed (or at
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

    # event time as of this observation: never behind the observation itself
    now = ts if stream_ms is None or stream_ms < ts else stream_ms
    events = promote_expired_candidate(patient_id, st, now, config, ts)
    events += page_overdue_repeat(patient_id, st, now, config, ts)

    n2 = obs.news2
    complete_total = n2.total if (n2.complete and n2.total is not None) else None
    rise = news2_rise(st.recent_news2, ts, complete_total, config.trend_window_s)
    streaks = update_streaks(st.baseline_streak, obs, config)
    a = assess(obs, rise, streaks, config)
    kind = would_transition(st, a, ts, config, n2.total)

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
        param = artifact_parameter(st.last_points, n2)
        if param is not None:
            st.pending_candidate = {
                "transition": kind,
                "ts_ms": ts,
                "held_at_ms": now,
                "priority": a.priority,
                "reasons": a.reasons,
                "parameter": param,
                "news2_total": n2.total,
                "complete": a.complete,
                "points": dict(n2.components),
                "event_id": obs.event_id,
                "model_support": model_supports(obs.model_risk, config),
                "model_judged": obs.model_risk is not None,
                "explanation": explain_observation(
                    patient_id, obs, st, a.priority, a.reasons, config
                ),
            }
            # held: the reading does not move the reference points, streaks or history
            return st, events

    st.baseline_streak = streaks
    if kind is not None:
        explanation = explain_observation(patient_id, obs, st, a.priority, a.reasons, config)
        if confirmation is not None:
            explanation["confirmation"] = confirmation
        events.append(
            open_or_escalate(
                kind,
                patient_id,
                st,
                a.priority,
                ts,
                a.reasons,
                n2.total,
                explanation,
                ts,
                config,
                # the model's operating point decides; without a model, a held reading
                # the next one bore out is a repeat already: it pages now
                model_supports(obs.model_risk, config)
                or (confirmation is not None and obs.model_risk is None),
                obs.model_risk is not None,
            )
        )
    elif st.status in ("open", "acknowledged"):
        events.extend(confirm_or_wait(patient_id, st, obs, a, config))
        events.extend(track_recovery(patient_id, st, obs, a, config))

    st.last_points = dict(n2.components)
    st.last_news2_total = n2.total
    if complete_total is not None:
        st.recent_news2 = push_news2(st.recent_news2, ts, complete_total, config.trend_window_s)
    if kind is None and st.status in ("open", "acknowledged"):
        # keep the page's "why" current without emitting anything (rendered when read:
        # the state's JSON, an acknowledgement, a timer; mostly the next set replaces it)
        assert st.priority is not None
        defer_explanation(st, obs, st.priority, a.reasons, config)
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
    clear_unpaged(st)  # someone attends: no page is due any more
    st.acked_priority = cast(Priority, max_priority(st.acked_priority, priority))
    st.acked_by = actor
    st.acked_ts_ms = now_ms
    explanation = action_explanation(
        st.last_explanation,
        priority,
        ["acknowledged"],
        "Acknowledged by the care team; "
        + lower_first(str((st.last_explanation or {}).get("summary", "alert open."))),
    )
    event = make_event(
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
    event = resolved(
        patient_id, st, now_ms, ["manual_resolve"], st.last_news2_total, explanation, actor
    )
    return st, [event]


def discharge(
    patient_id: str, state: AlertState, now_ms: int
) -> tuple[AlertState, list[AlertEvent]]:
    """The patient left the ward (discharged, transferred out): the alert, open or
    acknowledged, is RESOLVED with reason ``discharged`` and nothing is held for
    confirmation any more. No-op (state unchanged) when nothing is open or held."""
    if state.status not in ("open", "acknowledged") or state.alert_id is None:
        if state.pending_candidate is None:
            return state, []
        st = state.copy()
        st.pending_candidate = None
        return st, []
    st = state.copy()
    assert st.priority is not None
    explanation = action_explanation(
        st.last_explanation,
        st.priority,
        ["discharged"],
        "Closed: the patient was discharged or transferred out.",
    )
    event = resolved(patient_id, st, now_ms, ["discharged"], st.last_news2_total, explanation, None)
    return st, [event]
