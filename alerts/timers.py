"""Timers: the transitions that time alone causes.

Two clocks, kept apart so that what the data decide depends only on the data:

* **event time** (``stream_ms``: how far the patient's partition of the input has got,
  see ``docs/delivery.md``) for a held reading that nothing confirmed or refuted within
  ``artifact_max_wait_s``: :func:`promote_expired_candidate` raises it, as
  :func:`alerts.policy.evaluate` also does first on every observation, on the same clock,
  so the outcome does not depend on when the timer runs;
* **wall-clock time** (``now_ms``) for what people must do: a medium/high alert nobody
  acknowledged for ``escalate_unacked_s`` is re-paged (ESCALATED, reason
  ``unacknowledged``). A re-page has its own counter and id, so however many there were,
  the ids of the data's later transitions do not change.
"""

from __future__ import annotations

from typing import cast

from alerts.config import PolicyConfig, ms
from alerts.explain import action_explanation, lower_first
from alerts.lifecycle import make_event, open_or_escalate, page_waiting
from alerts.state import RANK, AlertEvent, AlertState, Transition
from alerts.triggers import push_news2

__all__ = ["page_overdue_repeat", "promote_expired_candidate", "tick"]


def _repeat_overdue(
    st: AlertState, now_ms: int, config: PolicyConfig, obs_ts_ms: int | None = None
) -> bool:
    last = st.unpaged_last_ts_ms
    if last is None or st.status != "open":
        return False
    wait = ms(config.medium_confirm_wait_s)
    if obs_ts_ms is not None and obs_ts_ms - last > wait:
        return True
    return now_ms - last > wait


def page_overdue_repeat(
    pid: str, st: AlertState, now_ms: int, config: PolicyConfig, obs_ts_ms: int | None = None
) -> list[AlertEvent]:
    """Page a medium alert waiting for a repeat observation set that did not come within
    ``medium_confirm_wait_s``: silence is not evidence of recovery. Event time, like the
    held readings (``obs_ts_ms``: the patient's next reading, if one is being applied);
    dated at the end of the wait, whenever this runs."""
    if not _repeat_overdue(st, now_ms, config, obs_ts_ms):
        return []
    assert st.unpaged_last_ts_ms is not None and st.priority is not None
    due = st.unpaged_last_ts_ms + ms(config.medium_confirm_wait_s)
    wait_min = config.medium_confirm_wait_s / 60
    explanation = action_explanation(
        st.last_explanation,
        st.priority,
        ["no_repeat_observation"],
        str((st.last_explanation or {}).get("summary", "alert open.")),
    )
    return [
        page_waiting(
            pid,
            st,
            due,
            ["no_repeat_observation"],
            st.last_news2_total,
            explanation,
            f"No repeat observations within {wait_min:g} min; ",
        )
    ]


def promote_expired_candidate(
    pid: str, st: AlertState, now_ms: int, config: PolicyConfig, obs_ts_ms: int | None = None
) -> list[AlertEvent]:
    """Raise a held candidate that no observation confirmed or refuted in time.

    Silence is not evidence of an artifact: with no follow-up reading within
    ``artifact_max_wait_s`` the alert goes out, marked as unconfirmed. ``now_ms`` is event
    time; ``obs_ts_ms`` the time of the patient's next reading, if one is being applied.
    The transition is dated and paged at the end of the hold, whenever this runs.
    """
    cand = st.pending_candidate
    if cand is None or not _hold_over(cand, now_ms, config, obs_ts_ms):
        return []
    st.pending_candidate = None
    kind = cand["transition"]
    priority = str(cand["priority"])
    ts = int(cand["ts_ms"])
    if kind == "OPEN" and st.status not in ("none", "resolved"):
        return []
    if kind == "ESCALATED" and (
        st.status not in ("open", "acknowledged") or RANK[priority] <= RANK[st.priority]
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
        + lower_first(str(explanation.get("summary", "")))
    )
    st.last_points = {str(k): int(v) for k, v in (cand.get("points") or {}).items()}
    total = cand.get("news2_total")
    if cand.get("complete") and total is not None:
        st.recent_news2 = push_news2(st.recent_news2, ts, int(total), config.trend_window_s)
    return [
        open_or_escalate(
            cast(Transition, kind),
            pid,
            st,
            priority,
            ts,
            list(cand.get("reasons") or []),
            total,
            explanation,
            ts + ms(config.artifact_max_wait_s),
            config,
            bool(cand.get("model_support")),
            bool(cand.get("model_judged")),
        )
    ]


def _hold_over(
    cand: dict[str, object], now_ms: int, config: PolicyConfig, obs_ts_ms: int | None = None
) -> bool:
    """The hold is over when event time has passed ``artifact_max_wait_s`` since the held
    reading arrived (``held_at_ms``: its own time, or the partition's event time if that
    was already further on, as for a monitor sending its backlog), or when the patient's
    next reading comes later than that after the held one: a backlog's next reading still
    decides, as it would have live."""
    wait = ms(config.artifact_max_wait_s)
    ts = int(cast(int, cand["ts_ms"]))
    if obs_ts_ms is not None and obs_ts_ms - ts > wait:
        return True
    return now_ms - int(cast(int, cand.get("held_at_ms", ts))) > wait


def _repage_due(state: AlertState, now_ms: int, config: PolicyConfig) -> bool:
    """A medium/high alert open and unacknowledged for ``escalate_unacked_s`` since its
    last page, with re-pages left at its priority level, whose trigger still holds: not
    while the patient's latest complete readings are below the alert's priority (improving,
    on the way to being lowered) or meet the recovery criteria (on the way to resolving)."""
    return (
        state.status == "open"
        and state.priority in ("medium", "high")
        and state.downgrade_since_ts_ms is None
        and state.below_since_ts_ms is None
        and not (
            state.repage_priority == state.priority and state.repage_count >= config.max_repages
        )
        and state.last_page_ts_ms is not None
        and now_ms - state.last_page_ts_ms >= ms(config.escalate_unacked_s)
    )


def tick(
    patient_id: str,
    state: AlertState,
    now_ms: int,
    config: PolicyConfig,
    stream_ms: int | None = None,
    *,
    repages: bool = True,
) -> tuple[AlertState, list[AlertEvent]]:
    """Time-driven transitions: re-pages at ``now_ms`` (wall clock), held readings at
    ``stream_ms`` (event time; ``now_ms`` when not given, e.g. a replay on event time).
    With ``repages`` False only the transitions event time decides run (a shadow's
    alerts, which nobody acknowledges).

    * a held artifact candidate older than ``artifact_max_wait_s`` is raised;
    * a medium/high alert that is open and not acknowledged for ``escalate_unacked_s``
      since its last page is ESCALATED (re-paged) at the same priority, at most once per
      interval however late or often ``tick`` runs, and at most ``max_repages`` times per
      priority level (after that it stays open and on the page, without more pages).
    Returns the input state unchanged when nothing happens.
    """
    event_now = now_ms if stream_ms is None else stream_ms
    cand = state.pending_candidate
    candidate_due = cand is not None and _hold_over(cand, event_now, config)
    repeat_due = _repeat_overdue(state, event_now, config)
    # the common case: nothing to do, no copy
    if (
        not candidate_due
        and not repeat_due
        and not (repages and _repage_due(state, now_ms, config))
    ):
        return state, []
    st = state.copy()
    events = promote_expired_candidate(patient_id, st, event_now, config)
    events += page_overdue_repeat(patient_id, st, event_now, config)
    # a page that just went out is not re-paged by the same late timer run
    if repages and not any(e.pages for e in events) and _repage_due(st, now_ms, config):
        assert st.last_page_ts_ms is not None
        # a new priority level gets its own re-pages (counted only when one is sent, so
        # the state does not depend on whether a timer or the data raised a held reading)
        if st.repage_priority != st.priority:
            st.repage_priority, st.repage_count = st.priority, 0
        st.repage_count += 1
        minutes = (now_ms - st.last_page_ts_ms) / 60000
        assert st.priority is not None
        explanation = action_explanation(
            st.last_explanation,
            st.priority,
            ["unacknowledged"],
            f"Not acknowledged for {minutes:.0f} min; "
            + lower_first(str((st.last_explanation or {}).get("summary", "alert open."))),
        )
        st.last_page_ts_ms = now_ms
        events.append(
            make_event(
                patient_id,
                st,
                "ESCALATED",
                now_ms,
                ["unacknowledged"],
                st.last_news2_total,
                explanation,
                # its own key: the data's escalation and update counts say which level
                # of the episode this is, the re-page count which page at that level
                ("repage", st.priority, st.escalated_count, st.update_count, st.repage_count),
                page=True,
            )
        )
    if not events:
        return state, []
    return st, events
