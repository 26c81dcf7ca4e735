"""Paging of medium alerts: on the care-team page at once, paged only when the model
supports them, a repeat observation set confirms them, or no repeat comes in time; high
alerts always page; old data is shown, never paged."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import AlertEvent, AlertState, PolicyConfig, acknowledge, count_alerts, evaluate, tick
from alerts.webhook import should_page, withheld_because
from tests.unit.observations import MIN, T0
from tests.unit.test_alert_policy import BY_TOTAL, PID, obs, run

CFG = PolicyConfig()  # the defaults: a medium alert waits for one repeat set, 1 h at most
WAIT_MIN = CFG.medium_confirm_wait_s / 60


def pages(events: list[AlertEvent]) -> list[tuple[str, str, str]]:
    return [(e.transition, e.priority, e.reason[0]) for e in events if e.pages]


def test_a_medium_alert_opens_on_the_page_and_pages_when_the_next_set_confirms_it() -> None:
    st_, events = run([obs(0), obs(10, BY_TOTAL[5])], config=CFG)
    (opened,) = events
    assert (opened.transition, opened.priority, opened.page) == ("OPEN", "medium", False)
    assert opened.explanation["paging"]["paged"] is False
    assert opened.explanation["paging"]["page_by_ts_ms"] == T0 + int((10 + WAIT_MIN) * MIN)
    assert not should_page(opened.to_dict())
    assert st_.last_page_ts_ms is None  # nothing to re-page yet
    st_, more = run([obs(25, BY_TOTAL[5])], st_, CFG)
    (paged,) = more
    assert (paged.transition, paged.priority, paged.page) == ("ESCALATED", "medium", True)
    assert paged.reason[0] == "confirmed"
    assert paged.explanation["summary"].startswith("Confirmed by repeat observations; ")
    assert paged.explanation["confirmation"]["observation_sets"] == 2
    assert should_page(paged.to_dict())
    assert st_.last_page_ts_ms == paged.ts_ms and st_.unpaged_since_ts_ms is None


def test_a_medium_set_the_repeat_does_not_bear_out_never_pages_and_resolves_itself() -> None:
    """NEWS2 5 once, then normal sets: the alert is on the page, no page, and it resolves
    (recovered) after the hold; nothing re-pages, whatever the timers do."""
    seq = [obs(0), obs(10, BY_TOTAL[5])] + [obs(10 + 15 * i) for i in range(1, 8)]
    st_ = AlertState()
    events: list[AlertEvent] = []
    for o in seq:
        st_, ev = evaluate(PID, st_, o, CFG)
        events += ev
        st_, ev = tick(PID, st_, o.ts_ms + 14 * MIN, CFG)
        events += ev
    assert [e.transition for e in events] == ["OPEN", "RESOLVED"]
    assert events[-1].reason == ["recovered"]
    assert pages(events) == []
    assert count_alerts(events)["pages"] == 0
    assert count_alerts(events)["opened_without_page"] == 1


def test_confirmation_needs_consecutive_sets() -> None:
    cfg = PolicyConfig(medium_confirm_obs=3)
    _, events = run(
        [obs(0, BY_TOTAL[5]), obs(15, BY_TOTAL[5]), obs(30), obs(45, BY_TOTAL[5])], config=cfg
    )
    assert pages(events) == []  # 2, then a normal set, then 1 again: not three in a row
    _, events = run([obs(0, BY_TOTAL[5]), obs(15, BY_TOTAL[5]), obs(30, BY_TOTAL[5])], config=cfg)
    assert pages(events) == [("ESCALATED", "medium", "confirmed")]


def test_a_partial_set_below_medium_is_no_evidence_against_the_alert() -> None:
    """A set with only a heart rate scores below 5 as a lower bound: it neither confirms
    nor refutes; the next complete medium set confirms."""
    partial = obs(15, drop=("respiratory_rate_per_min", "spo2_pct", "temperature_c"))
    assert not partial.news2.complete
    _, events = run([obs(0, BY_TOTAL[5]), partial, obs(30, BY_TOTAL[5])], config=CFG)
    assert pages(events) == [("ESCALATED", "medium", "confirmed")]


def test_no_repeat_within_the_wait_pages_at_its_end_by_timer_or_by_the_late_next_set() -> None:
    """Silence is not recovery: with no repeat set the alert pages at the end of the wait,
    the same transition (same id, same time) whether the timer or the next reading, an
    hour and a half later and normal, finds it first."""
    st0, _ = run([obs(0, BY_TOTAL[5])], config=CFG)
    due = T0 + int(WAIT_MIN * MIN)
    # the timer (event time), late and more than once: one page, dated at the due time
    st1, none = tick(PID, st0, due - MIN, CFG)
    assert none == [] and st1 is st0
    st1, by_timer = tick(PID, st0, due + 20 * MIN, CFG)
    st1, again = tick(PID, st1, due + 40 * MIN, CFG)
    assert [e.reason for e in again] == [["unacknowledged"]]  # re-paged, not paged anew
    (paged,) = by_timer
    assert (paged.transition, paged.reason, paged.page, paged.ts_ms) == (
        "ESCALATED",
        ["no_repeat_observation"],
        True,
        due,
    )
    assert paged.explanation["summary"].startswith(
        f"No repeat observations within {WAIT_MIN:g} min; "
    )
    # the patient's next reading, late and normal: it was still silence for the whole wait
    _, by_data = evaluate(PID, st0, obs(90), CFG)
    assert [e.transition_id for e in by_data if e.pages] == [paged.transition_id]


def test_the_model_at_its_operating_point_pages_a_medium_alert_at_once() -> None:
    cfg = PolicyConfig(model_risk_medium=0.4, model_risk_high=0.9)
    _, events = run([obs(0), obs(10, BY_TOTAL[5], model=0.5)], config=cfg)
    assert pages(events) == [("OPEN", "medium", "news2_threshold")]
    _, events = run([obs(0), obs(10, BY_TOTAL[5], model=0.2)], config=cfg)
    assert pages(events) == []  # a model below its operating point: wait for the repeat


def test_a_model_outage_never_silences_the_rules_based_alert() -> None:
    """No model risk: the medium alert is on the page at once and pages on the repeat."""
    _, events = run([obs(0, BY_TOTAL[5], model=None), obs(15, BY_TOTAL[5], model=None)], config=CFG)
    assert [e.transition for e in events] == ["OPEN", "ESCALATED"]
    assert pages(events) == [("ESCALATED", "medium", "confirmed")]


def test_high_always_pages_at_once_also_from_a_waiting_medium_alert() -> None:
    _, events = run([obs(0), obs(10, BY_TOTAL[7])], config=CFG)
    assert pages(events) == [("OPEN", "high", "news2_threshold")]
    st_, events = run([obs(0, BY_TOTAL[5]), obs(15, BY_TOTAL[8])], config=CFG)
    assert pages(events) == [("ESCALATED", "high", "news2_threshold")]
    assert st_.unpaged_since_ts_ms is None


def test_an_acknowledged_waiting_alert_never_pages() -> None:
    st0, _ = run([obs(0, BY_TOTAL[5])], config=CFG)
    st1, (ack,) = acknowledge(PID, st0, "nurse-a", T0 + 5 * MIN)
    assert ack.transition == "ACKNOWLEDGED" and not ack.pages
    st2, events = tick(PID, st1, T0 + 5 * 3600 * 1000, CFG)
    assert events == []
    _, events = run([obs(15, BY_TOTAL[5]), obs(30, BY_TOTAL[5])], st2, CFG)
    assert pages(events) == []


def test_re_pages_follow_only_a_page() -> None:
    """The unacknowledged re-page counts from the page, never from an unpaged OPEN."""
    st0, _ = run([obs(0, BY_TOTAL[5])], config=CFG)
    _, events = tick(PID, st0, T0 + 30 * MIN, CFG)  # before the wait is over: nothing
    assert events == []
    st1, (confirmed,) = run([obs(15, BY_TOTAL[5])], st0, CFG)
    _, events = tick(PID, st1, confirmed.ts_ms + int(CFG.escalate_unacked_s * 1000), CFG)
    assert pages(events) == [("ESCALATED", "medium", "unacknowledged")]


def test_one_obs_confirmation_is_the_page_at_once_policy() -> None:
    _, events = run([obs(0), obs(10, BY_TOTAL[5])], config=PolicyConfig(medium_confirm_obs=1))
    assert pages(events) == [("OPEN", "medium", "news2_threshold")]


def test_the_page_flag_round_trips_and_old_events_keep_the_old_rule() -> None:
    _, (opened,) = run([obs(0, BY_TOTAL[5])], config=CFG)
    d = opened.to_dict()
    assert d["page"] is False and AlertEvent.from_dict(d) == opened
    legacy = {k: v for k, v in d.items() if k != "page"}
    assert AlertEvent.from_dict(legacy).pages is True  # OPEN medium, before the flag
    assert should_page(legacy)


def test_pages_about_old_data_are_withheld() -> None:
    msg = {"transition": "OPEN", "priority": "high", "page": True, "data_age_s": 7200.0}
    assert should_page(msg)
    assert withheld_because(msg, 3600.0) == "stale_data"
    assert withheld_because({**msg, "data_age_s": 30.0}, 3600.0) is None
    assert withheld_because({k: v for k, v in msg.items() if k != "data_age_s"}, 3600.0) is None


@settings(max_examples=60, deadline=None)
@given(
    totals=st.lists(st.sampled_from([0, 1, 3, 5, 7]), min_size=1, max_size=14),
    gaps=st.lists(st.integers(min_value=1, max_value=120), min_size=14, max_size=14),
)
def test_every_medium_page_is_backed_by_a_repeat_or_the_end_of_the_wait(
    totals: list[int], gaps: list[int]
) -> None:
    """Whatever the sequence: a medium page (not a re-page) comes from a model at its
    operating point (none here), a repeat set at medium or above, or the wait's end; and
    high sets always page unless a high alert is already open."""
    t = 0.0
    seq = []
    for total, gap in zip(totals, gaps, strict=False):
        seq.append(obs(t, BY_TOTAL[total]))
        t += gap
    cfg = PolicyConfig(artifact_confirm=False, personal_triggers_open=False)
    _, events = run(seq, config=cfg)
    for e in events:
        if e.pages and e.priority == "medium":
            assert e.reason[0] in ("confirmed", "no_repeat_observation")
        if e.transition == "OPEN" and e.priority == "medium":
            assert not e.pages
        if e.priority == "high" and e.transition in ("OPEN", "ESCALATED"):
            assert e.pages


def test_with_a_model_its_operating_point_not_the_repeat_decides_a_medium_page() -> None:
    """NEWS2 5 on every set while the model's risk stays under its medium operating point:
    on the care-team page, never paged; the first set at the operating point pages."""
    cfg = PolicyConfig(model_risk_medium=0.4, model_risk_high=0.9)
    seq = [obs(15 * i, BY_TOTAL[5], model=0.2) for i in range(6)]
    _, events = run(seq, config=cfg)
    assert [e.transition for e in events] == ["OPEN"] and pages(events) == []
    _, events = run([*seq, obs(90, BY_TOTAL[5], model=0.45)], config=cfg)
    assert pages(events) == [("ESCALATED", "medium", "confirmed")]
    paged = events[-1]
    assert paged.explanation["confirmation"]["by"] == "model"
    assert paged.explanation["summary"].startswith("Model risk at its alert threshold; ")


def test_with_a_model_a_held_reading_confirmed_pages_only_at_the_operating_point() -> None:
    """Artifact suppression's confirmation is a repeat, not the model's support: with a
    model below its operating point the confirmed reading opens on the page unpaged."""
    cfg = PolicyConfig(model_risk_medium=0.4, model_risk_high=0.9)
    jump = {"spo2_pct": 88}  # an isolated single-parameter 3: held for a repeat
    seq = [obs(0, model=0.1), obs(15, jump, model=0.2), obs(20, jump, model=0.2)]
    _, events = run(seq, config=cfg)
    assert [(e.transition, e.priority) for e in events] == [("OPEN", "medium")]
    assert events[0].explanation["confirmation"]["status"] == "confirmed"
    assert pages(events) == []
    # rules only (no model risk), the same readings: the confirmed reading pages at once
    _, events = run([obs(0), obs(15, jump), obs(20, jump)], config=PolicyConfig())
    assert pages(events) == [("OPEN", "medium", "single_parameter_3")]


def test_with_a_model_silence_after_a_set_it_judged_does_not_page() -> None:
    """NEWS2 5 with the model's risk under its operating point: the model judged that set,
    so no repeat is due from it. An hour and more of silence pages nothing (the page shows
    when the next observation is due); rules only, the same silence pages."""
    cfg = PolicyConfig(model_risk_medium=0.4, model_risk_high=0.9)
    st0, (opened,) = run([obs(0, BY_TOTAL[5], model=0.2)], config=cfg)
    assert not opened.pages and st0.unpaged_last_ts_ms is None
    assert opened.explanation["paging"]["next_obs_due_ts_ms"] == T0 + int(WAIT_MIN * MIN)
    _, later = tick(PID, st0, T0 + 3 * 3600 * 1000, cfg)
    assert later == []
    st1, _ = run([obs(30, BY_TOTAL[5], model=0.2)], st0, cfg)  # a judged repeat, too
    _, late = evaluate(PID, st1, obs(200, BY_TOTAL[5], model=0.2), cfg)
    assert pages(late) == []
    # the model's risk rises to its operating point on the late set: it pages then
    _, risen = evaluate(PID, st1, obs(200, BY_TOTAL[5], model=0.5), cfg)
    assert pages(risen) == [("ESCALATED", "medium", "confirmed")]
    # a model outage on the next set: rules only again, the repeats confirm it at once
    _, outage = run([obs(45, BY_TOTAL[5], model=None)], st1, cfg)
    assert pages(outage) == [("ESCALATED", "medium", "confirmed")]
