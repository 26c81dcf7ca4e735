"""Alert policy and lifecycle: opening, escalation, hysteresis, cooldown, artifact
suppression, personalized triggers, model risk, idempotency, ids and state round trips."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pytest

from alerts import (
    AlertEvent,
    AlertState,
    Observation,
    PolicyConfig,
    acknowledge,
    count_alerts,
    evaluate,
    make_alert_id,
    resolve,
    tick,
)
from models.news2 import news2_from_vitals
from tests.unit.observations import MIN, NORMAL, T0
from wardwatch.errors import ConfigError

PID = "patient-0042"
# Vital sets by NEWS2 total; each step changes several parameters gradually (no isolated
# 0 -> 3 jump), so artifact suppression never applies to them.
N0: dict[str, Any] = {}
N1 = {"heart_rate_bpm": 95}
N2 = {"heart_rate_bpm": 95, "temperature_c": 38.3}
N3 = {"heart_rate_bpm": 95, "respiratory_rate_per_min": 21}
N4 = {"heart_rate_bpm": 112, "respiratory_rate_per_min": 22}
N5 = {"heart_rate_bpm": 95, "respiratory_rate_per_min": 22, "temperature_c": 38.3, "spo2_pct": 95}
N7 = {
    "heart_rate_bpm": 112,
    "respiratory_rate_per_min": 22,
    "temperature_c": 38.3,
    "spo2_pct": 94,
    "systolic_bp_mmhg": 108,
}
N8 = {**N7, "respiratory_rate_per_min": 25}
BY_TOTAL = {0: N0, 1: N1, 2: N2, 3: N3, 4: N4, 5: N5, 7: N7, 8: N8}

# The lifecycle tests here page a medium alert at once; paging medium alerts only once
# confirmed (the default) is tested in test_alert_paging.py.
PAGE_AT_ONCE = 1
CFG = PolicyConfig(medium_confirm_obs=PAGE_AT_ONCE)


def obs(
    t_min: float,
    changes: dict[str, Any] | None = None,
    *,
    model: float | None = None,
    z: dict[str, float] | None = None,
    n: int = 0,
    eid: str | None = None,
    drop: Iterable[str] = (),
    **kw: Any,
) -> Observation:
    vitals = {**NORMAL, **(changes or {}), **kw}
    for name in drop:
        vitals.pop(name, None)
    return Observation(
        ts_ms=T0 + int(t_min * MIN),
        news2=news2_from_vitals(vitals),
        vitals=vitals,
        baseline_z=z or {},
        baseline_n=n,
        model_risk=model,
        model_version="det-1.0.0" if model is not None else None,
        event_id=eid if eid is not None else f"vitals:0:{t_min}",
    )


def run(
    observations: Iterable[Observation],
    state: AlertState | None = None,
    config: PolicyConfig = CFG,
) -> tuple[AlertState, list[AlertEvent]]:
    st = state or AlertState()
    out: list[AlertEvent] = []
    for o in observations:
        st, events = evaluate(PID, st, o, config)
        out.extend(events)
    return st, out


def kinds(events: Iterable[AlertEvent]) -> list[tuple[str, str]]:
    return [(e.transition, e.priority) for e in events]


def series(totals: Iterable[int], start_min: float = 0, step_min: float = 10) -> list[Observation]:
    return [obs(start_min + i * step_min, BY_TOTAL[t]) for i, t in enumerate(totals)]


def test_vital_sets_score_as_named() -> None:
    for total, changes in BY_TOTAL.items():
        assert obs(0, changes).news2.total == total
        assert obs(0, changes).news2.complete
    assert not obs(0, N5).news2.single_param_3


# ---------------------------------------------------------------------------------------
# Deterioration, escalation, recovery
# ---------------------------------------------------------------------------------------


DETERIORATION = [0, 1, 3, 5, 5, 7, 8, 8, 7]


def test_deteriorating_sequence_rules_only_opens_medium_once_then_escalates_once() -> None:
    cfg = PolicyConfig(personal_triggers_open=False, medium_confirm_obs=PAGE_AT_ONCE)
    st, events = run(series(DETERIORATION), config=cfg)
    assert kinds(events) == [("OPEN", "medium"), ("ESCALATED", "high")]
    opened, escalated = events
    assert opened.ts_ms == T0 + 30 * MIN and opened.news2_total == 5
    assert opened.reason == ["news2_threshold"]
    assert escalated.ts_ms == T0 + 50 * MIN and escalated.reason == ["news2_threshold"]
    assert st.status == "open" and st.priority == "high" and st.episode == 1
    assert st.escalated_count == 1


def test_deteriorating_sequence_default_policy_opens_early_on_the_trend() -> None:
    # 0 -> 1 -> 3 within 20 min is a NEWS2 rise of 3: the trend trigger opens a low alert
    # (shown, not paged) one observation before NEWS2 reaches 5; one episode, one OPEN.
    st, events = run(series(DETERIORATION))
    assert kinds(events) == [("OPEN", "low"), ("ESCALATED", "medium"), ("ESCALATED", "high")]
    assert events[0].reason == ["news2_trend"] and events[0].ts_ms == T0 + 20 * MIN
    assert events[1].reason[0] == "news2_threshold" and events[1].ts_ms == T0 + 30 * MIN
    assert len({e.alert_id for e in events}) == 1 and st.episode == 1
    assert len({e.transition_id for e in events}) == 3


def test_recovery_resolves_only_after_continuous_hold() -> None:
    st, _ = run(series([0, 5, 7]))
    assert st.status == "open"
    start = 40  # minutes; first NEWS2 2 reading
    # 0..50 min below the threshold: still open (hysteresis)
    st, events = run([obs(start + m, N2) for m in range(0, 60, 10)], st)
    assert events == [] and st.status == "open"
    assert st.below_since_ts_ms == T0 + start * MIN
    st, events = run([obs(start + 60, N2)], st)
    assert kinds(events) == [("RESOLVED", "high")]
    assert events[0].reason == ["recovered"] and events[0].actor is None
    assert st.status == "resolved" and st.resolved_ts_ms == T0 + (start + 60) * MIN


def test_score_back_above_threshold_restarts_the_hold() -> None:
    st, _ = run(series([0, 5]))
    st, events = run([obs(30 + m, N2) for m in (0, 10, 20, 30, 40)], st)
    st, events2 = run([obs(75, N3)], st)  # 3 is not below 3: hold restarts
    assert st.below_since_ts_ms is None
    st, events3 = run([obs(80 + m, N2) for m in (0, 30, 59)], st)
    assert events == events2 == [] and st.status == "open"
    # lower for over an hour: the priority is lowered (not resolved: the hold restarted)
    assert kinds(events3) == [("UPDATED", "low")]
    st, events = run([obs(140, N2)], st)
    assert kinds(events) == [("RESOLVED", "low")]


def test_single_parameter_3_blocks_resolution() -> None:
    st, _ = run(series([0, 5]))
    # total 3 from one parameter scoring 3 (new confusion): not recovered, stays open
    st, events = run([obs(30 + m, consciousness="C") for m in range(0, 200, 20)], st)
    assert events == [] and st.status == "open"


def test_partial_scores_never_resolve() -> None:
    st, _ = run(series([0, 5]))
    partial = ("temperature_c", "systolic_bp_mmhg", "consciousness")
    st, events = run([obs(30 + m, drop=partial) for m in range(0, 200, 20)], st)
    assert events == [] and st.status == "open" and st.below_since_ts_ms is None


def test_priority_lowered_once_after_hold_and_never_per_observation() -> None:
    st, events = run(series([0, 5, 7]))
    assert kinds(events) == [("OPEN", "medium"), ("ESCALATED", "high")]
    st, events = run([obs(40 + m, N5) for m in range(0, 130, 5)], st)
    assert kinds(events) == [("UPDATED", "medium")]
    assert events[0].ts_ms == T0 + 100 * MIN and events[0].reason[0] == "improving"
    assert st.priority == "medium" and st.status == "open"


def test_a_return_to_an_acknowledged_level_is_shown_not_paged_but_high_always_pages() -> None:
    """Acknowledged at medium, lowered to low, back at medium: ESCALATED on the page with
    page false, the acknowledgement standing (no unacknowledged re-page follows); a rise to
    high pages and needs a new acknowledgement; high again after an acknowledged high
    still pages."""
    st, events = run(series([0, 5]))
    assert [e.page for e in events] == [True]
    st, _ = acknowledge(PID, st, "rn-1", T0 + 12 * MIN)
    assert st.acked_priority == "medium"
    st, events = run([obs(20 + m, N3) for m in range(0, 70, 10)], st)
    assert kinds(events) == [("UPDATED", "low")] and st.status == "acknowledged"
    st, events = run([obs(95, N5)], st)
    assert kinds(events) == [("ESCALATED", "medium")] and events[0].page is False
    assert "acknowledged at medium earlier" in events[0].explanation["paging"]["why"]
    assert st.status == "acknowledged" and st.acked_by == "rn-1"
    assert AlertState.from_json(st.to_json()) == st
    # no re-page of an "unacknowledged" alert: it is acknowledged
    _, fired = tick(PID, st, T0 + 200 * MIN, CFG)
    assert [e for e in fired if e.page] == []
    # high is never attended this way: it pages and asks for a new acknowledgement
    st, events = run([obs(100, N7)], st)
    assert kinds(events) == [("ESCALATED", "high")] and events[0].page is True
    assert st.status == "open" and st.acked_by is None
    st, _ = acknowledge(PID, st, "rn-1", T0 + 105 * MIN)
    assert st.acked_priority == "high"
    st, events = run([obs(110 + m, N5) for m in range(0, 70, 10)], st)
    assert kinds(events) == [("UPDATED", "medium")]
    st, events = run([obs(185, N7)], st)
    assert kinds(events) == [("ESCALATED", "high")] and events[0].page is True
    # a new episode starts with nothing acknowledged
    assert AlertState().acked_priority is None


def test_flapping_between_high_and_medium_neither_pages_nor_updates_repeatedly() -> None:
    st, events = run(series([0, 5, 7, 5, 7, 5, 7, 5, 7, 5, 7, 5]))
    assert kinds(events) == [("OPEN", "medium"), ("ESCALATED", "high")]


# ---------------------------------------------------------------------------------------
# Idempotency and purity
# ---------------------------------------------------------------------------------------


def test_replaying_the_whole_sequence_on_the_final_state_produces_nothing() -> None:
    observations = series([0, 1, 3, 5, 5, 7, 8]) + [obs(70 + m, N2) for m in range(0, 70, 10)]
    final, events = run(observations)
    assert [e.transition for e in events] == ["OPEN", "ESCALATED", "ESCALATED", "RESOLVED"]
    replayed, again = run(observations, final)
    assert again == []
    assert replayed.to_json() == final.to_json()


def test_same_observation_twice_and_older_observations_are_ignored() -> None:
    st, events = run(series([0, 5]))
    assert len(events) == 1
    for o in (obs(10, N5), obs(5, N8), obs(10, N8, eid="")):
        st2, ev = evaluate(PID, st, o, CFG)
        assert ev == [] and st2 is st


def test_same_time_different_event_is_processed() -> None:
    st, _ = run([obs(0), obs(10, N1)])
    st, events = evaluate(PID, st, obs(10, N5, eid="vitals:1:7"), CFG)
    assert kinds(events) == [("OPEN", "medium")]


def test_evaluate_does_not_modify_its_input() -> None:
    st, _ = run(series([0, 3]))
    before = st.to_json()
    evaluate(PID, st, obs(30, N7), CFG)
    tick(PID, st, T0 + 999 * MIN, CFG)
    assert st.to_json() == before


def test_deterministic_ids_and_same_alert_id_across_transitions() -> None:
    scenario = series([0, 5, 7]) + [obs(40 + m, N2) for m in range(0, 70, 10)]
    _, a = run(scenario)
    _, b = run(scenario)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    assert len({e.alert_id for e in a}) == 1
    assert a[0].alert_id == make_alert_id(PID, 1, a[0].ts_ms)
    _, other = run(scenario, config=CFG)
    assert other[0].alert_id == a[0].alert_id
    _, c = run([replace(o, ts_ms=o.ts_ms) for o in scenario], AlertState())
    assert c[0].transition_id == a[0].transition_id


def test_lost_state_cannot_reuse_an_old_alert_id() -> None:
    _, first = run(series([0, 5]))
    # the state expired from Redis: episode numbering restarts, the alert id does not repeat
    _, again = run([obs(600, N0), obs(610, N5)])
    assert first[0].episode == again[0].episode == 1
    assert first[0].alert_id != again[0].alert_id
    assert first[0].transition_id != again[0].transition_id


def test_transition_ids_unique_over_a_long_lifecycle() -> None:
    events: list[AlertEvent] = []
    st, ev = run(series([0, 5]))
    events += ev
    st, ev = tick(PID, st, T0 + 36 * MIN, CFG)  # 16 min unacknowledged
    events += ev
    st, ev = acknowledge(PID, st, "nurse-7", T0 + 37 * MIN)
    events += ev
    st, ev = run([obs(40, N7)], st)
    events += ev
    st, ev = acknowledge(PID, st, "nurse-7", T0 + 41 * MIN)
    events += ev
    st, ev = resolve(PID, st, "dr-3", T0 + 45 * MIN)
    events += ev
    st, ev = run([obs(50, N7)], st)  # high: a new episode despite the cooldown window
    events += ev
    assert [e.transition for e in events] == [
        "OPEN",
        "ESCALATED",
        "ACKNOWLEDGED",
        "ESCALATED",
        "ACKNOWLEDGED",
        "RESOLVED",
        "OPEN",
    ]
    assert len({e.transition_id for e in events}) == len(events)
    assert len({e.alert_id for e in events[:6]}) == 1
    assert events[6].alert_id != events[0].alert_id and events[6].episode == 2


# ---------------------------------------------------------------------------------------
# Artifact suppression
# ---------------------------------------------------------------------------------------


def test_isolated_spo2_dip_in_a_stable_patient_is_suppressed() -> None:
    st, events = run([obs(m) for m in range(0, 50, 10)])
    st, held = run([obs(50, spo2_pct=72)], st)
    assert held == [] and st.pending_candidate is not None
    assert st.pending_candidate["parameter"] == "spo2"
    st, events = run([obs(51), obs(60)], st)
    assert events == [] and st.pending_candidate is None and st.suppressed_artifacts == 1
    st, events = tick(PID, st, T0 + 120 * MIN, CFG)
    assert events == [] and st.status == "none"


def test_two_consecutive_low_spo2_readings_open() -> None:
    st, _ = run([obs(m) for m in range(0, 50, 10)])
    st, events = run([obs(50, spo2_pct=72), obs(51, spo2_pct=74)], st)
    assert kinds(events) == [("OPEN", "medium")]
    assert events[0].ts_ms == T0 + 51 * MIN
    assert "single_parameter_3" in events[0].reason
    assert events[0].explanation["confirmation"]["status"] == "confirmed"
    assert st.suppressed_artifacts == 0


def test_unconfirmed_candidate_is_raised_after_the_wait_by_tick() -> None:
    st, _ = run([obs(0), obs(10, spo2_pct=72)])
    st2, events = tick(PID, st, T0 + 14 * MIN, CFG)  # 4 min: still waiting
    assert events == [] and st2 is st
    st, events = tick(PID, st, T0 + 15 * MIN + 1, CFG)
    assert kinds(events) == [("OPEN", "medium")]
    assert events[0].ts_ms == T0 + 10 * MIN
    assert events[0].explanation["confirmation"]["status"] == "unconfirmed"


def test_unconfirmed_candidate_is_raised_before_a_late_next_observation() -> None:
    st, _ = run([obs(0), obs(10, spo2_pct=72)])
    st, events = run([obs(30)], st)  # next reading 20 min later: too late to refute
    assert kinds(events) == [("OPEN", "medium")]
    # the same outcome whether or not tick ran in between
    st_t, _ = run([obs(0), obs(10, spo2_pct=72)])
    st_t, ev_t = tick(PID, st_t, T0 + 20 * MIN, CFG)
    st_t, ev_t2 = run([obs(30)], st_t)
    assert [e.transition_id for e in ev_t + ev_t2] == [e.transition_id for e in events]


def test_held_reading_runs_on_event_time_not_the_wall_clock() -> None:
    """The timer raises a held reading when event time (``stream_ms``) has passed the
    hold, however late the wall clock is; and an observation that arrives once event time
    has passed it finds it raised, exactly as if the timer had run first."""
    st, _ = run([obs(0), obs(10, spo2_pct=72)])
    wall = T0 + 10 * 24 * 60 * MIN  # days later: a replay, a backlog
    cfg = PolicyConfig(
        escalate_unacked_s=10**9, medium_confirm_obs=PAGE_AT_ONCE
    )  # re-pages (wall clock) out of the way
    same, events = tick(PID, st, wall, cfg, stream_ms=T0 + 12 * MIN)
    assert events == [] and same is st  # event time: 2 min into the hold
    raised, by_timer = tick(PID, st, wall, cfg, stream_ms=T0 + 15 * MIN + 1)
    assert kinds(by_timer) == [("OPEN", "medium")]
    # dated at the reading and paged at the end of the hold, whenever the timer ran
    assert by_timer[0].ts_ms == T0 + 10 * MIN
    assert raised.last_page_ts_ms == T0 + 15 * MIN
    # the patient's next reading (a normal one, 1 min into the hold) arrives after other
    # patients' readings have moved the partition's event time past the hold
    after, in_line = evaluate(PID, st, obs(11), CFG, stream_ms=T0 + 15 * MIN + 1)
    assert [e.transition_id for e in in_line] == [e.transition_id for e in by_timer]
    # and the same state as when the timer raised it before that reading
    after_timer, _ = evaluate(PID, raised, obs(11), CFG, stream_ms=T0 + 15 * MIN + 1)
    assert after_timer.__dict__ == after.__dict__
    # with event time not yet past the hold, that reading refutes it
    refuted, none = evaluate(PID, st, obs(11), CFG, stream_ms=T0 + 11 * MIN)
    assert none == [] and refuted.suppressed_artifacts == 1


def test_a_backlog_s_held_reading_waits_from_its_arrival_and_its_next_reading_decides() -> None:
    """A monitor sends hours of buffered readings after other patients' data have moved
    the partition's event time on: a held reading's wait runs from when it arrived in event
    time, and the patient's own next reading, within the hold of the held one, refutes it
    as it would have live."""
    ahead = T0 + 3 * 60 * MIN  # the partition's event time while the backlog arrives
    st, _ = run([obs(0)])
    st, held = evaluate(PID, st, obs(10, spo2_pct=72), CFG, stream_ms=ahead)
    assert held == [] and st.pending_candidate is not None
    refuted, none = evaluate(PID, st, obs(11), CFG, stream_ms=ahead)
    assert none == [] and refuted.suppressed_artifacts == 1
    # a timer running while the backlog arrives does not raise it before its next reading
    cfg = PolicyConfig(
        escalate_unacked_s=10**9, medium_confirm_obs=PAGE_AT_ONCE
    )  # re-pages (wall clock) out of the way
    same, nothing = tick(PID, st, ahead, cfg, stream_ms=ahead + 4 * MIN)
    assert nothing == [] and same is st
    _, raised = tick(PID, st, ahead, cfg, stream_ms=ahead + 5 * MIN + 1)
    assert kinds(raised) == [("OPEN", "medium")]
    # a next reading of the backlog more than the hold after the held one does not refute
    _, late_next = evaluate(PID, st, obs(16), CFG, stream_ms=ahead)
    assert [e.transition_id for e in late_next] == [e.transition_id for e in raised]


def test_re_pages_do_not_change_the_ids_of_later_transitions() -> None:
    """A re-page (wall clock: nobody acknowledged) has its own counter, so a data-driven
    escalation after it has the same id however many re-pages came before."""
    st, _ = run(series([0, 5]))
    opened = st.last_page_ts_ms
    assert opened is not None
    repaged, pages = tick(PID, st, opened + 16 * MIN, CFG)
    assert [e.reason for e in pages] == [["unacknowledged"]]
    worse = obs(30, respiratory_rate_per_min=26, systolic_bp_mmhg=88, spo2_pct=91)
    _, direct = evaluate(PID, st, worse, CFG)
    _, after_page = evaluate(PID, repaged, worse, CFG)
    assert kinds(direct) == kinds(after_page) == [("ESCALATED", "high")]
    assert direct[0].transition_id == after_page[0].transition_id


def test_multi_parameter_high_reading_is_not_held() -> None:
    st, _ = run([obs(0), obs(10)])
    st, events = run([obs(20, N7)], st)
    assert kinds(events) == [("OPEN", "high")] and st.pending_candidate is None


def test_first_observation_of_a_patient_is_not_held() -> None:
    _, events = run([obs(0, spo2_pct=72)])
    assert kinds(events) == [("OPEN", "medium")]


def test_artifact_confirmation_can_be_disabled() -> None:
    cfg = PolicyConfig(artifact_confirm=False, medium_confirm_obs=PAGE_AT_ONCE)
    _, events = run([obs(0), obs(10, spo2_pct=72), obs(11)], config=cfg)
    assert kinds(events) == [("OPEN", "medium")]


def test_isolated_jump_does_not_escalate_but_a_confirmed_one_does() -> None:
    st, events = run(series([0, 5]))
    assert kinds(events) == [("OPEN", "medium")]
    # SBP 125 -> 85 alone: 0 -> 3 points, total 8: held, then refuted
    st, events = run([obs(30, N5, systolic_bp_mmhg=85), obs(31, N5)], st)
    assert events == [] and st.suppressed_artifacts == 1 and st.priority == "medium"
    st, events = run([obs(40, N5, systolic_bp_mmhg=85), obs(41, N5, systolic_bp_mmhg=88)], st)
    assert kinds(events) == [("ESCALATED", "high")]


# ---------------------------------------------------------------------------------------
# Cooldown
# ---------------------------------------------------------------------------------------


def _resolved_at() -> tuple[AlertState, int]:
    st, _ = run(series([0, 5]))
    st, events = run([obs(30 + m, N2) for m in range(0, 70, 10)], st)
    assert kinds(events) == [("RESOLVED", "medium")]
    return st, 90  # minutes


def test_cooldown_prevents_a_reopen() -> None:
    st, t = _resolved_at()
    st, events = run([obs(t + 5, N5), obs(t + 10, N5)], st)
    assert events == [] and st.status == "resolved"
    st, events = run([obs(t + 16, N5)], st)
    assert kinds(events) == [("OPEN", "medium")] and events[0].reason[0] == "news2_threshold"
    assert st.episode == 2


def test_high_priority_overrides_cooldown() -> None:
    st, t = _resolved_at()
    st, events = run([obs(t + 5, N7)], st)
    assert kinds(events) == [("OPEN", "high")] and st.episode == 2


def test_cooldown_also_follows_a_manual_resolve() -> None:
    st, _ = run(series([0, 5]))
    st, events = resolve(PID, st, "dr-3", T0 + 25 * MIN)
    assert kinds(events) == [("RESOLVED", "medium")] and events[0].actor == "dr-3"
    assert events[0].reason == ["manual_resolve"]
    st, events = run([obs(30, N5)], st)
    assert events == []
    st, events = resolve(PID, st, "dr-3", T0 + 31 * MIN)
    assert events == []  # nothing open


N6 = {**N5, "heart_rate_bpm": 112}


def test_after_a_clinicians_review_only_a_worse_patient_reopens() -> None:
    """A manual resolve is a review: within review_hold_s the same state (NEWS2 5, medium)
    stays closed after the cooldown; a higher total, a high priority, or the end of the
    hold reopens it."""
    assert obs(0, N6).news2.total == 6 and not obs(0, N6).news2.single_param_3
    st, _ = run(series([0, 5]))
    st, (ev,) = resolve(PID, st, "dr-3", T0 + 25 * MIN)
    assert (st.reviewed_priority, st.reviewed_news2_total) == ("medium", 5)
    assert AlertState.from_json(st.to_json()) == st  # persisted with the state
    # past the cooldown, still NEWS2 5: the reviewed plan stands, nothing opens or pages
    st_same, events = run([obs(45, N5), obs(100, N5), obs(200, N5)], st)
    assert events == [] and st_same.status == "resolved"
    # worse than at the review: a total of 6 reopens at once (a new episode)
    st6, events = run([obs(45, N5), obs(55, N6)], st)
    assert kinds(events) == [("OPEN", "medium")] and st6.episode == 2
    assert st6.reviewed_priority is None and st6.reviewed_news2_total is None
    # high always gets through, even inside the cooldown
    _, events = run([obs(30, N7)], st)
    assert kinds(events) == [("OPEN", "high")]
    # the hold ends 4 h after the review: the same NEWS2 5 opens again
    _, events = run([obs(25 + 4 * 60 + 1, N5)], st)
    assert kinds(events) == [("OPEN", "medium")]
    # switched off: the cooldown alone applies, as after an automatic resolve
    off = replace(CFG, review_hold_s=0.0)
    _, events = run([obs(45, N5)], st, off)
    assert kinds(events) == [("OPEN", "medium")]


def test_an_automatic_resolve_or_a_discharge_is_no_review() -> None:
    from alerts import discharge

    st, t = _resolved_at()  # resolved automatically (recovered)
    assert st.reviewed_priority is None
    st, _ = run(series([0, 5]))
    st, _ = discharge(PID, st, T0 + 25 * MIN)
    assert st.status == "resolved" and st.reviewed_priority is None
    _, events = run([obs(45, N5)], st)
    assert kinds(events) == [("OPEN", "medium")]


# ---------------------------------------------------------------------------------------
# Escalation by time, acknowledgement
# ---------------------------------------------------------------------------------------


def test_tick_escalates_an_unacknowledged_alert_once_per_interval() -> None:
    st, events = run(series([0, 5]))
    opened = events[0].ts_ms
    fired: list[AlertEvent] = []
    for minute in range(0, 46):  # tick every minute for 45 min
        st, ev = tick(PID, st, opened + minute * MIN, CFG)
        fired += ev
    assert [(e.transition, e.ts_ms - opened) for e in fired] == [
        ("ESCALATED", 15 * MIN),
        ("ESCALATED", 30 * MIN),
        ("ESCALATED", 45 * MIN),
    ]
    assert all(e.reason == ["unacknowledged"] and e.priority == "medium" for e in fired)
    assert len({e.transition_id for e in fired}) == 3 and st.repage_count == 3
    # re-pages are counted apart from the data's escalations: ids of later transitions
    # the data decide do not depend on how many re-pages the wall clock caused
    assert st.escalated_count == 0
    assert fired[0].explanation["summary"].startswith("Not acknowledged for 15 min")


def test_re_pages_stop_after_max_repages_per_priority_and_restart_on_a_rise() -> None:
    st, events = run(series([0, 5]))
    opened = events[0].ts_ms
    fired: list[AlertEvent] = []
    for minute in range(0, 121):  # two hours unacknowledged, ticking every minute
        st, ev = tick(PID, st, opened + minute * MIN, CFG)
        fired += ev
    assert len(fired) == CFG.max_repages == 3
    assert st.status == "open"  # still open and on the page, just not re-paged
    # a rise to high is a new priority level: escalates, and gets its own re-pages
    st, rise = run([obs(125, respiratory_rate_per_min=26, systolic_bp_mmhg=88, spo2_pct=91)], st)
    assert kinds(rise) == [("ESCALATED", "high")]
    st, again = tick(PID, st, rise[0].ts_ms + 15 * MIN, CFG)
    assert kinds(again) == [("ESCALATED", "high")]


def test_no_re_page_once_the_patient_is_below_the_alert_s_trigger() -> None:
    """A re-page says "still needs you": not for a patient whose latest complete readings
    are back below the alert's level (NEWS2 0 here), while the alert waits out its hold
    before it resolves itself; and it pages again if the patient worsens back."""
    st, events = run(series([0, 5]))
    opened = events[0].ts_ms
    st, ev = run([obs(20)], st)  # 10 min later: NEWS2 0, recovering
    assert ev == [] and st.status == "open"
    _, fired = tick(PID, st, opened + 16 * MIN, CFG)
    assert fired == []
    st, ev = run([obs(25, N5)], st)  # back to the alert's level
    assert ev == []
    _, fired = tick(PID, st, opened + 16 * MIN, CFG)
    assert [e.reason for e in fired] == [["unacknowledged"]]


def test_late_tick_escalates_only_once() -> None:
    st, events = run(series([0, 5]))
    st, fired = tick(PID, st, events[0].ts_ms + 120 * MIN, CFG)
    assert len(fired) == 1
    st, fired = tick(PID, st, events[0].ts_ms + 121 * MIN, CFG)
    assert fired == []


def test_acknowledged_and_low_alerts_are_not_re_paged() -> None:
    st, events = run(series([0, 5]))
    st, acked = acknowledge(PID, st, "nurse-7", events[0].ts_ms + MIN)
    assert kinds(acked) == [("ACKNOWLEDGED", "medium")] and acked[0].actor == "nurse-7"
    assert st.status == "acknowledged" and st.acked_by == "nurse-7"
    _, fired = tick(PID, st, events[0].ts_ms + 300 * MIN, CFG)
    assert fired == []
    low, ev = run(series([0, 1, 3]))  # trend-opened low alert
    assert kinds(ev) == [("OPEN", "low")]
    _, fired = tick(PID, low, T0 + 600 * MIN, CFG)
    assert fired == []


def test_acknowledge_is_a_no_op_when_nothing_is_open_or_already_acked() -> None:
    st = AlertState()
    assert acknowledge(PID, st, "nurse-7", T0) == (st, [])
    st, _ = run(series([0, 5]))
    st, first = acknowledge(PID, st, "nurse-7", T0 + 25 * MIN)
    st2, second = acknowledge(PID, st, "nurse-9", T0 + 26 * MIN)
    assert len(first) == 1 and second == [] and st2.acked_by == "nurse-7"


def test_worsening_after_acknowledge_escalates_and_reopens_attention() -> None:
    st, _ = run(series([0, 5]))
    st, _ = acknowledge(PID, st, "nurse-7", T0 + 21 * MIN)
    st, events = run([obs(30, N5), obs(40, N7)], st)
    assert kinds(events) == [("ESCALATED", "high")]
    assert st.status == "open" and st.acked_by is None
    # the escalation timer restarts from the re-page
    _, fired = tick(PID, st, T0 + 54 * MIN, CFG)
    assert fired == []
    _, fired = tick(PID, st, T0 + 55 * MIN, CFG)
    assert kinds(fired) == [("ESCALATED", "high")]


# ---------------------------------------------------------------------------------------
# Personalized triggers
# ---------------------------------------------------------------------------------------


def test_trend_trigger_opens_a_low_alert_early() -> None:
    st, events = run(series([0, 1, 3]))
    assert kinds(events) == [("OPEN", "low")] and events[0].reason == ["news2_trend"]
    assert events[0].explanation["trend"]["news2_rise"] == 3
    # low -> medium when NEWS2 reaches 5: escalation (the first page)
    st, events = run([obs(30, N5)], st)
    assert kinds(events) == [("ESCALATED", "medium")]


def test_steep_trend_is_medium() -> None:
    _, events = run(series([0, 4]))
    assert kinds(events) == [("OPEN", "medium")] and events[0].reason == ["news2_trend"]


def test_trend_needs_the_rise_within_the_window() -> None:
    # 0 seven hours ago, then 1 and 3: the window (6 h) only sees 1 -> 3 = rise 2: opens
    _, events = run([obs(0, N0), obs(60, N1), obs(420, N3)])
    assert kinds(events) == [("OPEN", "low")]
    # a rise of 1 is not a trend; nor is a stable 3
    _, events = run([obs(0, N2), obs(60, N3), obs(120, N3)])
    assert events == []


def test_trend_trigger_disabled() -> None:
    cfg = PolicyConfig(personal_triggers_open=False, medium_confirm_obs=PAGE_AT_ONCE)
    _, events = run(series([0, 1, 3, 4]), config=cfg)
    assert events == []
    _, events = run(series([0, 1, 3, 5]), config=cfg)
    assert kinds(events) == [("OPEN", "medium")] and "news2_trend" not in events[0].reason


def _baseline_obs(t: float, z: float, n: int = 20, vital: str = "heart_rate_bpm") -> Observation:
    return obs(t, {"heart_rate_bpm": 88}, z={vital: z}, n=n)


def test_sustained_baseline_deviation_opens_a_low_alert() -> None:
    st, events = run([_baseline_obs(m, 3.5) for m in (0, 10)])
    assert events == []
    st, events = run([_baseline_obs(20, 3.4)], st)
    assert kinds(events) == [("OPEN", "low")] and events[0].reason == ["baseline_deviation"]
    assert events[0].news2_total == 0


@pytest.mark.parametrize(
    ("zs", "n", "vital"),
    [
        ((3.5, 3.5, 2.0, 3.5, 3.5), 20, "heart_rate_bpm"),  # interrupted streak
        ((3.5, 3.5, 3.5), 5, "heart_rate_bpm"),  # baseline too young
        ((4.0, 4.0, 4.0), 20, "spo2_pct"),  # SpO2 above usual is not deterioration
    ],
)
def test_baseline_trigger_does_not_fire(zs: tuple[float, ...], n: int, vital: str) -> None:
    _, events = run([_baseline_obs(10 * i, z, n, vital) for i, z in enumerate(zs)])
    assert events == []


def test_baseline_trigger_disabled_and_blocks_resolution_when_enabled() -> None:
    cfg = PolicyConfig(personal_triggers_open=False, medium_confirm_obs=PAGE_AT_ONCE)
    _, events = run([_baseline_obs(10 * i, 3.5) for i in range(5)], config=cfg)
    assert events == []
    st, _ = run(series([0, 5]))
    st, events = run([_baseline_obs(30 + 10 * i, -4.0) for i in range(10)], st)
    # NEWS2 0 for 90 min, but the pulse stays far from this patient's baseline: the alert
    # is lowered to low (after the downgrade hold), not resolved
    assert kinds(events) == [("UPDATED", "low")] and st.status == "open"
    assert "baseline_deviation" in events[0].reason


# ---------------------------------------------------------------------------------------
# Model risk
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("risk", "expected"), [(0.72, "high"), (0.35, "medium")])
def test_model_risk_alone_opens(risk: float, expected: str) -> None:
    _, events = run([obs(0, model=0.05), obs(10, model=risk)])
    assert kinds(events) == [("OPEN", expected)] and events[0].reason == ["model_risk"]
    assert events[0].explanation["model"]["risk"] == risk


def test_low_model_risk_does_not_open() -> None:
    _, events = run([obs(0, model=0.05), obs(10, model=0.29)])
    assert events == []


@pytest.mark.parametrize("risk", [None, 0.01, float("nan")])
def test_model_never_suppresses_a_rules_alert(risk: float | None) -> None:
    _, events = run([obs(0), obs(10, N1, model=risk), obs(20, N7, model=risk)])
    assert kinds(events)[-1] == ("OPEN", "high")


def test_model_risk_keeps_an_alert_open() -> None:
    st, _ = run(series([0, 5]))
    st, events = run([obs(30 + 10 * i, N1, model=0.4) for i in range(10)], st)
    assert events == [] and st.status == "open"
    st, events = run([obs(130 + 10 * i, N1, model=0.1) for i in range(7)], st)
    assert kinds(events) == [("RESOLVED", "medium")]


def test_open_min_priority_low_opens_on_any_news2() -> None:
    cfg = PolicyConfig(
        open_min_priority="low", personal_triggers_open=False, medium_confirm_obs=PAGE_AT_ONCE
    )
    _, events = run([obs(0), obs(10, N1)], config=cfg)
    assert kinds(events) == [("OPEN", "low")] and events[0].reason == ["news2_threshold"]


# ---------------------------------------------------------------------------------------
# State, events, config, burden
# ---------------------------------------------------------------------------------------


def test_alert_state_json_round_trip() -> None:
    z = {"systolic_bp_mmhg": 3.5}
    st, _ = run([obs(0, z=z, n=20), obs(10, N5, z=z, n=20)])
    st, _ = run([obs(20, N5, systolic_bp_mmhg=85)], st)  # leaves a pending candidate
    assert st.pending_candidate is not None and st.recent_news2 and st.baseline_streak
    raw = st.to_json()
    back = AlertState.from_json(raw)
    assert back == st
    assert AlertState.from_json(raw.encode()) == st
    assert isinstance(back.recent_news2[0], tuple)
    assert AlertState.from_json(None) == AlertState() == AlertState.from_json("")
    data = json.loads(raw)
    data["added_by_a_future_version"] = 1
    assert AlertState.from_json(json.dumps(data)) == st
    # continuing from the restored state gives the same result as from the original
    nxt = obs(21, N5, systolic_bp_mmhg=86)
    assert [e.to_dict() for e in evaluate(PID, back, nxt, CFG)[1]] == [
        e.to_dict() for e in evaluate(PID, st, nxt, CFG)[1]
    ]


def test_alert_state_rejects_unknown_status() -> None:
    with pytest.raises(ValueError):
        AlertState.from_json('{"status": "maybe"}')


def test_alert_event_dict_round_trip_is_json() -> None:
    _, events = run(series([0, 5, 7]))
    for e in events:
        d = json.loads(json.dumps(e.to_dict()))
        assert AlertEvent.from_dict(d) == e


def test_config_validation_and_settings() -> None:
    with pytest.raises(ConfigError):
        PolicyConfig(open_min_priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PolicyConfig(model_risk_medium=0.7, model_risk_high=0.6)
    from wardwatch.settings import Settings

    settings = Settings.model_validate({"alert_cooldown_s": 60, "escalate_after_s": 120})
    cfg = PolicyConfig.from_settings(settings)
    assert cfg.cooldown_s == 60 and cfg.escalate_unacked_s == 120


def test_count_alerts() -> None:
    st, events = run(series([0, 5, 7]))
    st, ev = acknowledge(PID, st, "nurse-7", T0 + 31 * MIN)
    events += ev
    st, ev = resolve(PID, st, "nurse-7", T0 + 32 * MIN)
    events += ev
    burden = count_alerts(events + [events[0]], patient_days=35.0)  # duplicate counted once
    assert burden["transitions"] == 4
    assert burden["by_transition"] == {
        "OPEN": 1,
        "ESCALATED": 1,
        "UPDATED": 0,
        "ACKNOWLEDGED": 1,
        "RESOLVED": 1,
    }
    assert burden["opened_by_priority"] == {"low": 0, "medium": 1, "high": 0}
    assert burden["pages"] == 2 and burden["alerts"] == 1 and burden["patients"] == 1
    assert burden["opened_per_patient_day"] == pytest.approx(1 / 35, abs=1e-6)
    assert count_alerts([e.to_dict() for e in events]) == count_alerts(events)


def test_state_copy_is_a_deep_copy() -> None:
    """``AlertState.copy`` (the policy's own copy, faster than ``copy.deepcopy``) equals the
    deep copy and shares no list or dict with the original, for a state with every
    container filled: an open alert with an explanation, a held artifact candidate,
    streaks, trend history and event ids."""
    import copy as stdlib_copy
    from dataclasses import fields

    st, _ = run([*series([0, 2, 5, 7]), obs(50, N7, z={"heart_rate_bpm": 3.5}, n=30)])
    st, _ = run([obs(60, {**N7, "respiratory_rate_per_min": 6})], st)  # RR 3 points: held
    assert st.last_explanation and st.recent_news2 and st.last_points and st.last_event_ids
    st.pending_candidate = st.pending_candidate or {"points": {"pulse": 3}, "nested": [1]}
    st.baseline_streak = st.baseline_streak or {"heart_rate_bpm": 2}
    dup = st.copy()
    assert dup == stdlib_copy.deepcopy(st)
    for f in fields(st):
        value = getattr(st, f.name)
        if isinstance(value, list | dict):
            assert getattr(dup, f.name) is not value, f.name
    assert dup.pending_candidate is not None and st.pending_candidate is not None
    for key, value in st.pending_candidate.items():
        if isinstance(value, list | dict):
            assert dup.pending_candidate[key] is not value


def test_open_alerts_latest_explanation_is_the_observations_whenever_it_is_read() -> None:
    """While an alert is open, each observation set without a transition makes its
    explanation the latest one; it is built when read, and reads the same whether read at
    once, after a copy, through the state's JSON, or by an acknowledgement."""
    from alerts.explain import explain

    st, events = run(series([0, 5, 7]))
    assert st.status == "open" and kinds(events)[-1][1] == "high"
    later = [obs(30, N8), obs(40, N7)]  # still high: no transition
    a, new = run(later[:1], st)
    b, more = run(later[1:], a)
    assert new == [] and more == []
    first_json = a.to_json()  # built for the JSON without being read first
    assert a.last_explanation is not None
    assert a.last_explanation["observation_ts_ms"] == later[0].ts_ms
    dup = b.copy()
    latest = b.last_explanation
    assert latest is not None and latest["observation_ts_ms"] == later[1].ts_ms
    assert latest == explain(
        PID,
        later[1],
        b,
        "high",
        latest["reasons"],
        trend_window_s=CFG.trend_window_s,
        baseline_z_threshold=CFG.baseline_z,
    )
    copied = dup.last_explanation
    assert copied == latest and copied is not latest  # the copy builds its own
    assert AlertState.from_json(b.to_json()) == b
    assert json.loads(first_json)["last_explanation"] == json.loads(a.to_json())["last_explanation"]
    _, (ack,) = acknowledge(PID, dup, "nurse-7", later[1].ts_ms + MIN)
    assert ack.explanation["observation_ts_ms"] == later[1].ts_ms
    assert ack.explanation["drivers"] == latest["drivers"]
