"""Triggers: what one scored observation says, before the lifecycle decides what to do.

:func:`assess` gives an observation's priority and reasons (NEWS2 tiers, a single
parameter scoring 3, model risk, NEWS2 rise, sustained personal-baseline deviation) and
whether it counts towards resolving an open alert; :func:`update_streaks` keeps the
baseline-deviation streaks; :func:`artifact_parameter` recognises an isolated extreme
reading that is held for confirmation; :func:`push_news2` keeps the NEWS2 history the
trend trigger needs. Pure functions over the data types of :mod:`alerts.state`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from alerts.config import PolicyConfig, ms
from alerts.state import RANK, TRIGGERS, Observation, max_priority
from models.news2 import News2Result, alarm_priority

__all__ = [
    "ARTIFACT_PARAMETERS",
    "Assessment",
    "artifact_parameter",
    "assess",
    "model_level",
    "push_news2",
    "update_streaks",
]

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


@dataclass(frozen=True)
class Assessment:
    """What one observation says: its priority, the triggers behind it, and its weight
    as evidence of recovery."""

    priority: str  # none/low/medium/high
    reasons: list[str]
    personal: bool  # a personalized trigger (trend, baseline) is active and enabled
    recovered: bool | None  # True: counts towards resolution; False: resets it; None: neither
    complete: bool


def model_level(risk: float | None, config: PolicyConfig) -> str:
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


def update_streaks(
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


def assess(
    obs: Observation, rise: int, streaks: Mapping[str, int], config: PolicyConfig
) -> Assessment:
    n2 = obs.news2
    levels: dict[str, str] = {}
    total_level = alarm_priority(n2.total, False)  # the band of the total alone
    if RANK[total_level] >= RANK[config.open_min_priority]:
        levels["news2_threshold"] = total_level
    if n2.single_param_3:
        levels["single_parameter_3"] = "medium"
    by_model = model_level(obs.model_risk, config)
    if by_model != "none":
        levels["model_risk"] = by_model
    trend_active = (
        n2.complete and n2.total is not None and n2.total >= 3 and rise >= config.trend_min_rise
    )
    baseline_active = any(c >= config.baseline_sustain for c in streaks.values())
    if config.personal_triggers_open:
        if trend_active:
            levels["news2_trend"] = "medium" if rise >= config.trend_medium_rise else "low"
        if baseline_active:
            levels["baseline_deviation"] = "low"
    priority = max_priority(n2.priority, *levels.values())
    reasons = sorted(levels, key=lambda r: (-RANK[levels[r]], TRIGGERS.index(r)))

    # Resolution evidence. A partial NEWS2 total is a lower bound of the full one: it may
    # keep an alert open, never count towards resolving it.
    recovered: bool | None
    if (
        n2.single_param_3
        or (n2.total is not None and n2.total >= config.resolve_below_total)
        or by_model != "none"
        or (config.personal_triggers_open and (trend_active or baseline_active))
    ):
        recovered = False
    elif not n2.complete or n2.total is None:
        recovered = None
    else:
        recovered = True
    return Assessment(
        priority=priority,
        reasons=reasons,
        personal=bool(_PERSONAL.intersection(levels)),
        recovered=recovered,
        complete=bool(n2.complete and n2.total is not None),
    )


def artifact_parameter(last_points: Mapping[str, int], n2: News2Result) -> str | None:
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


def push_news2(
    recent: list[tuple[int, int]], ts_ms: int, total: int, window_s: float
) -> list[tuple[int, int]]:
    """Append (ts, total), keeping only what the trend window needs.

    A run of equal totals keeps only its newest entry: the window minimum only needs the
    latest time each value was seen.
    """
    start = ts_ms - ms(window_s)
    out = [(t, v) for t, v in recent if t >= start and t < ts_ms]
    if out and out[-1][1] == total:
        out[-1] = (ts_ms, total)
    else:
        out.append((ts_ms, total))
    return out[-_MAX_NEWS2_HISTORY:]
