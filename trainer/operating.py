"""Operating points on the fused risk under an alert budget, with a guarantee.

The alert policy pages on the fused risk at two thresholds (``model_risk_medium`` and
``model_risk_high``, ``docs/alerts.md``). :func:`choose_operating_points` picks them for a
model version on the calibration split:

* **pages** are counted as the worker's policy would raise them from the model-risk
  trigger **and the NEWS2 high trigger** (:func:`count_pages`): per patient and
  observation the level is medium when the fused risk reaches the medium threshold, high
  when it reaches the high threshold or the NEWS2 total is 7 or more (whatever the
  model says: the clinical rule always pages); an episode OPENs (one page) when the
  level reaches medium, ESCALATES (one page) when it rises above the episode's priority,
  is lowered from high after ``downgrade_hold_s`` below it, and RESOLVES after
  ``resolve_hold_s`` continuously at no level; after a resolution no episode opens for
  ``cooldown_s`` unless the level is high. The hold times are the policy's
  (:class:`alerts.PolicyConfig`, the cooldown from the settings). Not counted: the other
  rule triggers (NEWS2 5-6, a single parameter at 3, a steep trend: with a model their
  medium alerts page only when the model's risk supports them, which the model-risk
  trigger counts), re-pages of unacknowledged alerts (the team acknowledges before the
  re-page interval), held artifact readings; resolution on the level alone (the policy
  also needs a complete NEWS2 below 3, so it resolves later and reopens less).
  ``news2_high=None`` counts the model-risk trigger alone (how versions before were
  chosen; the block's ``counting`` says which).
* **budgets**: pages per patient-day (patient-days: first to last observation per
  patient, at least 15 min), held by the exact one-sided Poisson (Garwood) upper bound of
  the page count divided by the patient-days; the same bound on the high-priority pages
  within ``high_fraction`` of it; and the share of patients **without an outcome** paged
  within their first ``first_day_h`` (24) hours, held by its exact one-sided
  (Clopper-Pearson) upper bound. The high threshold is the lowest that holds the high
  bound (where the NEWS2 high trigger alone already breaks it, the lowest at which the
  model-risk trigger's own high pages hold it); the medium threshold the lowest that holds
  the page budget and the first-day budget, but never higher than the highest threshold
  whose sensitivity lower bound still meets the floor: there the budgets yield and are
  reported unmet.
* **sensitivity** (patient level): the fraction of patients with an outcome whose level
  reached medium (the fused risk at medium, or NEWS2 >= 7) within the ``window_h`` hours
  before the outcome, with its exact one-sided (Clopper-Pearson) lower bound; the
  **floor** it is held to is NEWS2 >= 5's sensitivity on the same patients by the same
  definition (or a set value).

Thresholds are placed half-way between two observed fused risks, so the worker's own
floating-point arithmetic cannot move an observation across one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts import PolicyConfig
from alerts.config import ms
from trainer.dataset import PatientSeq
from trainer.stats import ALPHA, clopper_pearson_lower, clopper_pearson_upper, garwood_upper

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_HIGH_FRACTION",
    "NEWS2_MEDIUM",
    "PageCount",
    "choose_operating_points",
    "count_pages",
    "operating_summary",
]

Array = npt.NDArray[Any]
DEFAULT_BUDGET = 0.3
DEFAULT_HIGH_FRACTION = 0.2
NEWS2_MEDIUM, NEWS2_HIGH = 5, 7
MAX_CANDIDATES = 4000
DEFAULT_STABLE_FIRST_DAY_FRACTION = 0.05
FIRST_DAY_H = 24.0


@dataclass(frozen=True)
class PageCount:
    pages: int  # OPEN + ESCALATED at medium/high
    high_pages: int  # the ones at high priority
    patient_days: float
    detected: int  # patients with an outcome reaching medium within the window before it
    with_outcome: int
    stable_first_day: int = 0  # patients without an outcome paged within their first day
    without_outcome: int = 0

    def rate(self, count: int) -> float:
        return count / self.patient_days if self.patient_days > 0 else math.inf

    def upper(self, count: int, alpha: float = ALPHA) -> float:
        return (
            garwood_upper(count, alpha) / self.patient_days if self.patient_days > 0 else math.inf
        )

    def stable_first_day_upper(self, alpha: float = ALPHA) -> float:
        """Clopper-Pearson upper bound of the share of patients without an outcome paged
        within their first day (1.0 when there are none)."""
        ub = clopper_pearson_upper(self.stable_first_day, self.without_outcome, alpha)
        return 1.0 if ub is None else ub


def _patient_days(p: PatientSeq) -> float:
    return max(float(p.t_h[-1] - p.t_h[0]), 0.25) / 24.0


def _levels(p: PatientSeq, s: Array, medium: float, high: float, news2_high: int | None) -> Array:
    """Per observation: 0 none, 1 medium, 2 high: the model-risk trigger on ``s`` and, with
    ``news2_high``, the NEWS2 trigger (a total at or above it is high whatever ``s``)."""
    r = np.asarray(s, dtype=np.float64)
    level: Array = (r >= medium).astype(np.int8) + (r >= high).astype(np.int8)
    if news2_high is not None:
        level = np.maximum(level, np.where(np.asarray(p.news2) >= news2_high, 2, 0)).astype(np.int8)
    return level


def count_pages(
    patients: Sequence[PatientSeq],
    scores: Sequence[Array],
    medium: float,
    high: float,
    policy: PolicyConfig | None = None,
    *,
    window_h: float = 12.0,
    news2_high: int | None = NEWS2_HIGH,
    first_day_h: float = FIRST_DAY_H,
) -> PageCount:
    """Pages at ``medium`` / ``high`` on ``scores`` (one array per patient, in observation
    order) with the NEWS2 high trigger at ``news2_high`` (None: the model-risk trigger
    alone), the patients detected, and the patients without an outcome paged within
    ``first_day_h`` hours of their first observation (module docstring)."""
    cfg = policy or PolicyConfig()
    # on the policy's clock: integer milliseconds
    resolve_ms, cooldown_ms, downgrade_ms = (
        ms(cfg.resolve_hold_s),
        ms(cfg.cooldown_s),
        ms(cfg.downgrade_hold_s),
    )
    first_day_ms = int(round(first_day_h * 3_600_000))
    pages = high_pages = detected = with_outcome = stable_first_day = without_outcome = 0
    days = 0.0
    for p, s in zip(patients, scores, strict=True):
        days += _patient_days(p)
        level = _levels(p, s, medium, high, news2_high)
        if p.outcome_h is not None:
            with_outcome += 1
            window = p.t_h >= p.outcome_h - window_h
            detected += bool((level[window] >= 1).any())
        else:
            without_outcome += 1
        if not level.any():
            continue
        is_open = False
        priority = 0
        resolved_at = -(2**62)
        below_since: int | None = None
        down_since: int | None = None
        down_max = 0
        first_page: int | None = None
        t_ms = np.rint(np.asarray(p.t_h, dtype=np.float64) * 3_600_000).astype(np.int64)
        for t, lvl in zip(t_ms.tolist(), level.tolist(), strict=True):
            if not is_open:
                if lvl and (lvl == 2 or t - resolved_at >= cooldown_ms):
                    is_open, priority = True, lvl
                    pages += 1
                    high_pages += lvl == 2
                    below_since = down_since = None
                    first_page = t if first_page is None else first_page
                continue
            if lvl > priority:  # escalation: a page
                priority = lvl
                pages += 1
                high_pages += lvl == 2
                below_since = down_since = None
                continue
            if lvl == 0:
                if below_since is None:
                    below_since = t
                if t - below_since >= resolve_ms:
                    is_open, priority, resolved_at = False, 0, t
                    below_since = down_since = None
                    continue
            else:
                below_since = None
            if lvl < priority:
                if down_since is None:
                    down_since, down_max = t, lvl
                else:
                    down_max = max(down_max, lvl)
                if t - down_since >= downgrade_ms:
                    priority, down_since = max(down_max, 1), None
            else:
                down_since = None
        if p.outcome_h is None and first_page is not None:
            stable_first_day += first_page - int(t_ms[0]) <= first_day_ms
    return PageCount(
        pages, high_pages, days, detected, with_outcome, stable_first_day, without_outcome
    )


def _candidates(scores: Sequence[Array]) -> Array:
    """Thresholds half-way between consecutive distinct scores (at most MAX_CANDIDATES,
    spread by quantile), ascending, and 1.0 at the end (nothing alerts)."""
    allv = np.unique(np.concatenate([np.asarray(s, dtype=np.float64) for s in scores]))
    mids = (allv[1:] + allv[:-1]) / 2.0
    if len(mids) > MAX_CANDIDATES:
        idx = np.unique(np.linspace(0, len(mids) - 1, MAX_CANDIDATES).round().astype(int))
        mids = mids[idx]
    out: Array = np.concatenate([mids[mids < 1.0], [1.0]])
    return out


def _lowest(n: int, ok: Any) -> int:
    """The lowest index in [0, n) for which ``ok`` holds, assuming it holds from some
    index on (binary search; ``ok(n - 1)`` must hold), then checked."""
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    while lo < n - 1 and not ok(lo):  # counts are not perfectly monotone in the threshold
        lo += 1
    return lo


def operating_summary(
    patients: Sequence[PatientSeq],
    scores: Sequence[Array],
    medium: float,
    high: float,
    policy: PolicyConfig | None = None,
    *,
    window_h: float = 12.0,
    alpha: float = ALPHA,
    news2_high: int | None = NEWS2_HIGH,
    first_day_h: float = FIRST_DAY_H,
) -> dict[str, Any]:
    """Pages, the patients without an outcome paged within their first day, and
    sensitivity at fixed thresholds (the NEWS2 high trigger included unless
    ``news2_high`` is None), next to NEWS2 >= 5 on the same patients (its pages counted
    the same way, NEWS2 >= 7 as high), to the NEWS2 high trigger alone (what no threshold
    can take away) and to the model-risk trigger alone."""
    kw: dict[str, Any] = {"window_h": window_h, "first_day_h": first_day_h}
    c = count_pages(patients, scores, medium, high, policy, news2_high=news2_high, **kw)
    n2_scores = [p.news2.astype(np.float64) for p in patients]
    n2 = count_pages(patients, n2_scores, NEWS2_MEDIUM - 0.5, NEWS2_HIGH - 0.5, policy, **kw)
    lb = clopper_pearson_lower(c.detected, c.with_outcome, alpha)
    out: dict[str, Any] = {
        "patients": len(patients),
        "observations": int(sum(len(p.y) for p in patients)),
        "patient_days": round(c.patient_days, 3),
        "patients_with_outcome": c.with_outcome,
        "patients_without_outcome": c.without_outcome,
        "pages": c.pages,
        "high_pages": c.high_pages,
        "pages_per_patient_day": round(c.rate(c.pages), 4),
        "upper_bound": round(c.upper(c.pages, alpha), 4),
        "high_pages_per_patient_day": round(c.rate(c.high_pages), 4),
        "high_upper_bound": round(c.upper(c.high_pages, alpha), 4),
        "stable_first_day_paged": c.stable_first_day,
        "stable_first_day_fraction": round(c.stable_first_day / c.without_outcome, 4)
        if c.without_outcome
        else None,
        "stable_first_day_upper_bound": round(c.stable_first_day_upper(alpha), 4),
        "detected": c.detected,
        "sensitivity": round(c.detected / c.with_outcome, 4) if c.with_outcome else None,
        "sensitivity_lower_bound": None if lb is None else round(lb, 4),
        "news2_ge5_detected": n2.detected,
        "news2_ge5_sensitivity": round(n2.detected / n2.with_outcome, 4)
        if n2.with_outcome
        else None,
        "news2_ge5_pages": n2.pages,
        "news2_ge5_pages_per_patient_day": round(n2.rate(n2.pages), 4),
    }
    if news2_high is not None:
        # the NEWS2 high trigger alone (no model page): the floor of every figure above
        alone = count_pages(
            patients, scores, math.inf, math.inf, policy, news2_high=news2_high, **kw
        )
        model = count_pages(patients, scores, medium, high, policy, news2_high=None, **kw)
        out["news2_high_alone"] = {
            "pages": alone.pages,
            "upper_bound": round(alone.upper(alone.pages, alpha), 4),
            "stable_first_day_paged": alone.stable_first_day,
            "stable_first_day_upper_bound": round(alone.stable_first_day_upper(alpha), 4),
            "detected": alone.detected,
        }
        out["model_trigger_alone"] = {
            "pages": model.pages,
            "upper_bound": round(model.upper(model.pages, alpha), 4),
            "high_pages": model.high_pages,
            "high_upper_bound": round(model.upper(model.high_pages, alpha), 4),
            "stable_first_day_paged": model.stable_first_day,
            "detected": model.detected,
        }
    return out


def _highest(lo: int, hi: int, ok: Any) -> int | None:
    """The highest index in [lo, hi] for which ``ok`` holds, assuming it holds up to some
    index and not after (binary search), then checked; None when ``ok(lo)`` fails."""
    if not ok(lo):
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def choose_operating_points(
    patients: Sequence[PatientSeq],
    scores: Sequence[Array],
    *,
    budget: float = DEFAULT_BUDGET,
    high_fraction: float = DEFAULT_HIGH_FRACTION,
    sensitivity_floor: float | None = None,
    stable_first_day_fraction: float | None = DEFAULT_STABLE_FIRST_DAY_FRACTION,
    policy: PolicyConfig | None = None,
    window_h: float = 12.0,
    alpha: float = ALPHA,
    split: str = "calibration",
    news2_high: int | None = NEWS2_HIGH,
    first_day_h: float = FIRST_DAY_H,
) -> dict[str, Any]:
    """The medium and high thresholds on ``scores`` (the fused risk of ``patients``), each
    as low as the budgets allow (the most sensitive operating point within them), pages
    counted as the worker raises them: the model-risk trigger and the NEWS2 high trigger
    (``news2_high``; None: the model-risk trigger alone, as versions before counted).

    * high: the lowest at which the upper bound of high-priority pages per patient-day is
      within ``high_fraction · budget``; when the NEWS2 high trigger alone already breaks
      that (no threshold can meet it), the lowest at which the model-risk trigger's own
      high pages are within it.
    * medium: the lowest at which the upper bound of pages per patient-day is within
      ``budget`` (and that of the high pages within its share, where a threshold can meet
      it) and the Clopper-Pearson upper bound of the share of patients without an outcome
      paged within their first ``first_day_h`` hours is within
      ``stable_first_day_fraction`` (None: no such budget); but never above the highest
      threshold whose sensitivity lower bound still meets the floor (NEWS2 >= 5's, or
      ``sensitivity_floor``) when the lowest candidate meets it: the budgets yield to the
      floor and are then reported unmet.

    Returns the bounds, the sensitivity and which budgets and floor are met: the
    ``operating_points`` block of the metadata."""
    if not patients:
        raise ValueError("no patients to choose operating points on")
    if not (budget > 0 and 0 < high_fraction <= 1):
        raise ValueError("need budget > 0 and 0 < high_fraction <= 1")
    if stable_first_day_fraction is not None and not 0 < stable_first_day_fraction <= 1:
        raise ValueError("need 0 < stable_first_day_fraction <= 1")
    cand = _candidates(scores)
    n = len(cand)
    high_budget = budget * high_fraction
    kw: dict[str, Any] = {"window_h": window_h, "first_day_h": first_day_h}

    def count(i_m: int, i_h: int, with_news2: bool = True) -> PageCount:
        n2h = news2_high if with_news2 else None
        return count_pages(patients, scores, cand[i_m], cand[i_h], policy, news2_high=n2h, **kw)

    nothing = count(n - 1, n - 1)  # no model page: the NEWS2 high trigger alone
    high_ok_at_all = nothing.upper(nothing.high_pages, alpha) <= high_budget
    high_with_news2 = news2_high is not None and high_ok_at_all

    def high_ok(i: int) -> bool:  # high-priority pages of the high trigger alone
        c = count(i, i, high_with_news2)
        return c.upper(c.high_pages, alpha) <= high_budget or i == n - 1

    i_high = _lowest(n, high_ok)
    while True:  # escalations inside medium episodes can add high pages: raise high if so
        c = count(i_high, i_high, high_with_news2)
        if c.upper(c.high_pages, alpha) <= high_budget or i_high == n - 1:
            break
        i_high += 1

    def budgets_ok(i: int) -> bool:
        c = count(min(i, i_high), i_high)
        return (
            c.upper(c.pages, alpha) <= budget
            and (not high_ok_at_all or c.upper(c.high_pages, alpha) <= high_budget)
            and (
                stable_first_day_fraction is None
                or c.stable_first_day_upper(alpha) <= stable_first_day_fraction
            )
        ) or i >= i_high

    i_medium = min(_lowest(i_high + 1, budgets_ok), i_high)
    floor_source = "setting" if sensitivity_floor is not None else "news2_ge5"
    floor = sensitivity_floor
    if floor is None:
        n2 = count_pages(
            patients,
            [p.news2.astype(np.float64) for p in patients],
            NEWS2_MEDIUM - 0.5,
            NEWS2_HIGH - 0.5,
            policy,
            **kw,
        )
        floor = n2.detected / n2.with_outcome if n2.with_outcome else None

    def floor_ok(i: int) -> bool:
        c = count(i, i_high)
        lb = clopper_pearson_lower(c.detected, c.with_outcome, alpha)
        return floor is not None and lb is not None and lb >= floor

    yielded = False
    if floor is not None and i_medium > 0:
        i_floor = _highest(0, i_medium, floor_ok)
        if i_floor is not None and i_floor < i_medium:
            i_medium, yielded = i_floor, True
    medium, high = float(cand[i_medium]), float(cand[i_high])
    summary = operating_summary(
        patients, scores, medium, high, policy, alpha=alpha, news2_high=news2_high, **kw
    )
    if sensitivity_floor is None:
        floor = summary["news2_ge5_sensitivity"]
    lb = summary["sensitivity_lower_bound"]
    cfg = policy or PolicyConfig()
    stable_ub = summary["stable_first_day_upper_bound"]
    trigger = "fused risk (model_risk)" + (
        f" and NEWS2 >= {news2_high} (news2_threshold, high whatever the model)"
        if news2_high is not None
        else " alone"
    )
    return {
        "medium": medium,
        "high": high,
        "budget": budget,
        "high_fraction": high_fraction,
        "high_budget": round(high_budget, 6),
        "stable_first_day_fraction_budget": stable_first_day_fraction,
        "alpha": alpha,
        "split": split,
        **summary,
        "sensitivity_floor": floor,
        "sensitivity_floor_source": floor_source,
        "meets_budget": summary["upper_bound"] <= budget
        and summary["high_upper_bound"] <= high_budget,
        "meets_stable_first_day": stable_first_day_fraction is None
        or stable_ub <= stable_first_day_fraction,
        "meets_floor": lb is not None and floor is not None and lb >= floor,
        "medium_held_by_floor": yielded,
        "high_on_model_trigger_alone": news2_high is not None and not high_with_news2,
        "window_h": window_h,
        "counting": {
            "trigger": f"{trigger}; acknowledged before re-page",
            "news2_high": news2_high,
            "first_day_h": first_day_h,
            "resolve_hold_s": cfg.resolve_hold_s,
            "cooldown_s": cfg.cooldown_s,
            "downgrade_hold_s": cfg.downgrade_hold_s,
            "bounds": "Garwood (exact Poisson) upper, Clopper-Pearson upper (stable first "
            "day) and lower (sensitivity), one-sided",
        },
    }
