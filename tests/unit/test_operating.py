"""Operating points under an alert budget: pages counted as the policy's episodes, and
thresholds that meet the budget's upper bound with the sensitivity reported."""

from __future__ import annotations

import numpy as np
import pytest

from alerts import PolicyConfig
from trainer.dataset import PatientSeq
from trainer.operating import choose_operating_points, count_pages
from trainer.stats import clopper_pearson_lower, clopper_pearson_upper, garwood_upper


def patient(
    risks: list[float], every_min: float = 15.0, outcome_h: float | None = None, pid: str = "p"
) -> PatientSeq:
    n = len(risks)
    t = np.arange(n) * every_min / 60.0
    y = np.zeros(n, np.int8) if outcome_h is None else (outcome_h - t <= 12).astype(np.int8)
    return PatientSeq(pid, np.zeros((n, 1), np.float32), y, np.zeros(n, np.int16), t, outcome_h, 1)


def pages(
    risks: list[float],
    medium: float = 0.3,
    high: float = 0.6,
    every_min: float = 15.0,
    **kw: object,
) -> tuple:
    p = patient(risks, every_min)
    c = count_pages([p], [np.array(risks)], medium, high, **kw)  # type: ignore[arg-type]
    return c.pages, c.high_pages


def test_one_episode_per_crossing_with_the_policys_holds() -> None:
    # 15-min readings. Above medium, dips below for 45 min (< 1 h hold): one episode
    assert pages([0.1, 0.4, 0.1, 0.1, 0.1, 0.4, 0.1]) == (1, 0)
    # 5-min readings: below from 5 min, resolved at 65 min; a crossing at 70 min is in
    # the 15-min cooldown: no page ...
    resolved = [0.4] + [0.1] * 13
    assert pages(resolved + [0.4], every_min=5) == (1, 0)
    # ... one that lasts until the cooldown is over (80 min) is a new episode
    assert pages(resolved + [0.4] * 4, every_min=5) == (2, 0)
    assert pages([0.4] + [0.1] * 6 + [0.4]) == (2, 0)
    # high bypasses the cooldown
    assert pages(resolved + [0.7], every_min=5) == (2, 1)
    # medium then high: an escalation is a page; back to medium and up again within the
    # hour is the same (high) episode
    assert pages([0.4, 0.7, 0.4, 0.7]) == (2, 1)
    # lowered to medium after an hour below high, a new rise to high pages again
    assert pages([0.4, 0.7] + [0.4] * 5 + [0.7]) == (3, 2)
    # a flat high patient: one page however long
    assert pages([0.9] * 100) == (1, 1)
    assert pages([0.1] * 100) == (0, 0)


def test_hold_times_come_from_the_policy() -> None:
    short = PolicyConfig(resolve_hold_s=900.0, cooldown_s=0.0)
    # below for 15 min resolves with a 15-min hold, and with no cooldown it reopens
    assert pages([0.4, 0.1, 0.1, 0.4], policy=short) == (2, 0)
    assert pages([0.4, 0.1, 0.1, 0.4]) == (1, 0)
    long_cooldown = PolicyConfig(cooldown_s=7200.0)
    assert pages([0.4] + [0.1] * 6 + [0.4], policy=long_cooldown) == (1, 0)


def test_detection_counts_the_window_before_the_outcome() -> None:
    risks = [0.5] * 4 + [0.1] * 60  # medium only early, outcome at 16 h
    p = patient(risks, outcome_h=16.0)
    c = count_pages([p], [np.array(risks)], 0.3, 0.6, window_h=12.0)
    assert c.with_outcome == 1 and c.detected == 0  # the 12 h window starts at 4 h
    c = count_pages([p], [np.array(risks)], 0.3, 0.6, window_h=16.0)
    assert c.detected == 1


def _cohort(seed: int = 0, n: int = 400) -> tuple[list[PatientSeq], list[np.ndarray]]:
    """Patients with 2 days of 15-min readings; those with an outcome rise towards it."""
    rng = np.random.default_rng(seed)
    pats, scores = [], []
    for i in range(n):
        t = np.arange(192) * 0.25
        outcome = float(rng.uniform(20, 47)) if rng.random() < 0.25 else None
        r = 0.05 + 0.04 * rng.random(len(t))
        r[rng.random(len(t)) < 0.01] += 0.4  # spurious spikes
        if outcome is not None:
            r += 0.6 * np.clip(1 - (outcome - t) / 10.0, 0, 1) * rng.uniform(0.3, 1.0)
            keep = t < outcome
            t, r = t[keep], r[keep]
        n2 = np.zeros(len(t), np.int16)
        if outcome is not None:
            n2[(outcome - t) < rng.uniform(1, 8)] = 5
        y = np.zeros(len(t), np.int8) if outcome is None else ((outcome - t) <= 12).astype(np.int8)
        pats.append(PatientSeq(f"p{i}", np.zeros((len(t), 1), np.float32), y, n2, t, outcome, 1))
        scores.append(np.clip(r, 0, 1))
    return pats, scores


@pytest.mark.parametrize("budget", [0.1, 0.3, 1.0])
def test_thresholds_meet_the_budget_and_are_the_lowest_that_do(budget: float) -> None:
    pats, scores = _cohort()
    op = choose_operating_points(pats, scores, budget=budget, high_fraction=0.2)
    assert op["meets_budget"] and op["medium"] <= op["high"]
    c = count_pages(pats, scores, op["medium"], op["high"])
    assert garwood_upper(c.pages) / c.patient_days <= budget
    assert garwood_upper(c.high_pages) / c.patient_days <= 0.2 * budget
    assert op["upper_bound"] == pytest.approx(garwood_upper(c.pages) / c.patient_days, abs=1e-4)
    assert op["pages"] == c.pages and op["pages_per_patient_day"] <= op["upper_bound"]
    # a visibly lower medium threshold would break the budget (the search is not lazy)
    lower = count_pages(pats, scores, op["medium"] * 0.9, op["high"])
    assert garwood_upper(lower.pages) / lower.patient_days > budget
    assert op["sensitivity"] == pytest.approx(c.detected / c.with_outcome, abs=1e-4)
    lb = op["sensitivity_lower_bound"]
    assert 0 < lb < op["sensitivity"]
    assert op["meets_floor"] == (lb >= op["news2_ge5_sensitivity"])
    assert op["split"] == "calibration" and op["sensitivity_floor_source"] == "news2_ge5"


def test_a_set_floor_replaces_news2s() -> None:
    pats, scores = _cohort()
    op = choose_operating_points(pats, scores, budget=0.3, sensitivity_floor=0.01)
    assert op["sensitivity_floor"] == 0.01 and op["sensitivity_floor_source"] == "setting"
    assert op["meets_floor"]
    op = choose_operating_points(pats, scores, budget=0.3, sensitivity_floor=1.0)
    assert not op["meets_floor"]


def test_a_budget_nothing_meets_leaves_the_trigger_silent() -> None:
    pats, scores = _cohort(n=40)
    op = choose_operating_points(pats, scores, budget=1e-3)
    assert op["medium"] == op["high"] == 1.0 and op["pages"] == 0
    assert not op["meets_budget"]  # even zero pages cannot show so small a rate


def test_news2_high_pages_whatever_the_model() -> None:
    # a low model risk throughout, NEWS2 7 for two sets: the NEWS2 trigger opens high
    risks = [0.1] * 12
    p = patient(risks)
    n2 = np.zeros(12, np.int16)
    n2[4:6] = 7
    p = PatientSeq("p", p.x, p.y, n2, p.t_h, None, 1)
    c = count_pages([p], [np.array(risks)], 0.3, 0.6)
    assert (c.pages, c.high_pages) == (1, 1)
    assert (c.stable_first_day, c.without_outcome) == (1, 1)
    # the model trigger alone (how versions before counted) sees nothing
    alone = count_pages([p], [np.array(risks)], 0.3, 0.6, news2_high=None)
    assert (alone.pages, alone.high_pages, alone.stable_first_day) == (0, 0, 0)
    # a model page in the NEWS2 high episode is no page of its own
    risks2 = [0.1] * 5 + [0.4] * 3 + [0.1] * 4
    assert count_pages([p], [np.array(risks2)], 0.3, 0.6).pages == 1
    # NEWS2 >= 7 escalates a medium episode the model opened
    risks3 = [0.4] * 12
    c3 = count_pages([p], [np.array(risks3)], 0.3, 0.6)
    assert (c3.pages, c3.high_pages) == (2, 1)


def test_first_day_counts_the_first_page_within_24_h() -> None:
    hourly = 60.0
    risks = [0.1] * 30
    for at, counted in ((23, True), (24, True), (25, False)):
        r = list(risks)
        r[at] = 0.4
        p = patient(r, every_min=hourly)
        c = count_pages([p], [np.array(r)], 0.3, 0.6)
        assert c.pages == 1 and c.stable_first_day == int(counted)
    # a patient with an outcome is not among those counted
    r = list(risks)
    r[2] = 0.4
    p = patient(r, every_min=hourly, outcome_h=29.0)
    c = count_pages([p], [np.array(r)], 0.3, 0.6)
    assert (c.stable_first_day, c.without_outcome, c.with_outcome) == (0, 0, 1)


def test_the_stable_first_day_budget_binds() -> None:
    pats, scores = _cohort()
    kw = {"budget": 2.0, "high_fraction": 0.05, "sensitivity_floor": 0.01}
    loose = choose_operating_points(pats, scores, stable_first_day_fraction=None, **kw)
    op = choose_operating_points(pats, scores, stable_first_day_fraction=0.2, **kw)
    assert op["medium"] > loose["medium"]  # the pages budget alone would go lower
    assert op["meets_stable_first_day"] and not op["medium_held_by_floor"]
    c = count_pages(pats, scores, op["medium"], op["high"])
    assert c.stable_first_day_upper() <= 0.2
    assert op["stable_first_day_upper_bound"] == pytest.approx(c.stable_first_day_upper(), abs=1e-4)
    exact = clopper_pearson_upper(c.stable_first_day, c.without_outcome)
    assert op["stable_first_day_upper_bound"] == pytest.approx(exact, abs=1e-4)
    assert op["patients_without_outcome"] == sum(p.outcome_h is None for p in pats)
    # a visibly lower medium threshold breaks it
    lower = count_pages(pats, scores, op["medium"] * 0.9, op["high"])
    assert lower.stable_first_day_upper() > 0.2
    assert op["counting"]["news2_high"] == 7 and "NEWS2 >= 7" in op["counting"]["trigger"]


def test_the_first_day_budget_yields_to_the_sensitivity_floor() -> None:
    pats, scores = _cohort()
    # (NEWS2 >= 5 detects every patient of this cohort: a set floor that can be shown)
    kw = {"budget": 2.0, "high_fraction": 0.05, "sensitivity_floor": 0.5}
    free = choose_operating_points(pats, scores, stable_first_day_fraction=None, **kw)
    # a limit no threshold meets: raised only as far as the floor allows
    op = choose_operating_points(pats, scores, stable_first_day_fraction=1e-4, **kw)
    assert op["medium_held_by_floor"] and op["meets_floor"]
    assert not op["meets_stable_first_day"]
    assert free["medium"] < op["medium"] < 1.0
    assert op["sensitivity_lower_bound"] >= 0.5
    # one candidate higher would fall under the floor
    higher = count_pages(pats, scores, op["medium"] + 0.02, op["high"])
    assert clopper_pearson_lower(higher.detected, higher.with_outcome) < op["sensitivity_floor"]
