"""The policy's configuration: :class:`PolicyConfig`, validated, built from the settings.

The knobs and the reasons for their defaults are in ``docs/alerts.md``. The worker builds
its policy with :meth:`PolicyConfig.from_settings`, which takes the cooldown, the
escalation interval and the artifact hold from :class:`wardwatch.settings.Settings`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alerts.state import PRIORITIES, Priority
from wardwatch.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from wardwatch.settings import Settings

__all__ = ["PolicyConfig", "ms"]


def ms(seconds: float) -> int:
    """A duration of the configuration (seconds) in milliseconds, the policy's clock."""
    return int(round(seconds * 1000))


@dataclass(frozen=True)
class PolicyConfig:
    """Policy knobs; defaults and their reasons are in ``docs/alerts.md``."""

    open_min_priority: Priority = "medium"  # NEWS2 priority that opens an alert
    resolve_below_total: int = 3  # hysteresis: resolve only when NEWS2 < this (no single 3)
    resolve_hold_s: float = 3600.0  # ... continuously for this long
    cooldown_s: float = 900.0  # after a resolve, no reopen for this long unless high
    # after a clinician resolves an alert (a review), no reopen for this long unless high or
    # worse than at the review (a higher NEWS2 total or priority)
    review_hold_s: float = 4 * 3600.0
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
    # paging of medium alerts: on the board at once, paged when the model supports them,
    # or this many consecutive medium+ sets confirm them (1: paged at once) ...
    medium_confirm_obs: int = 2
    # ... or no repeat set comes within this long (NEWS2 5-6: at least hourly observations)
    medium_confirm_wait_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.open_min_priority not in PRIORITIES:
            raise ConfigError(f"open_min_priority must be one of {PRIORITIES}")
        if not 0.0 <= self.model_risk_medium <= self.model_risk_high <= 1.0:
            raise ConfigError("need 0 <= model_risk_medium <= model_risk_high <= 1")
        for name in (
            "resolve_hold_s",
            "cooldown_s",
            "review_hold_s",
            "escalate_unacked_s",
            "trend_window_s",
            "artifact_max_wait_s",
            "downgrade_hold_s",
            "medium_confirm_wait_s",
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
        if self.medium_confirm_obs < 1:
            raise ConfigError("medium_confirm_obs must be >= 1 (1: medium alerts page at once)")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> PolicyConfig:
        """The policy with the cooldown, escalation interval, artifact hold and the paging
        of medium alerts from the settings."""
        values: dict[str, Any] = {
            "cooldown_s": float(settings.alert_cooldown_s),
            "review_hold_s": float(settings.review_hold_s),
            "escalate_unacked_s": float(settings.escalate_after_s),
            "artifact_max_wait_s": float(settings.artifact_confirm_s),
            "medium_confirm_obs": int(settings.medium_confirm_obs),
            "medium_confirm_wait_s": float(settings.medium_confirm_wait_s),
        }
        values.update(overrides)
        return cls(**values)
