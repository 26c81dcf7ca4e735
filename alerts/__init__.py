"""Alerts: when a patient's scores become an alert, its lifecycle, and what it says.

The streaming layer needs only what is re-exported here: the data types
(:mod:`alerts.state`), the configuration (:mod:`alerts.config`), the policy's functions
(:mod:`alerts.policy`, :mod:`alerts.timers`), the ids (:mod:`alerts.lifecycle`) and the
alert burden (:mod:`alerts.burden`). Explanations are in :mod:`alerts.explain`, FHIR
rendering in :mod:`alerts.fhir`, paging by webhook in :mod:`alerts.webhook`.
"""

from alerts.burden import count_alerts
from alerts.config import PolicyConfig
from alerts.lifecycle import make_alert_id, make_transition_id
from alerts.policy import acknowledge, discharge, evaluate, resolve
from alerts.state import (
    REASONS,
    AlertEvent,
    AlertState,
    Observation,
    Priority,
    Status,
    Transition,
)
from alerts.timers import tick

__all__ = [
    "REASONS",
    "AlertEvent",
    "AlertState",
    "Observation",
    "PolicyConfig",
    "Priority",
    "Status",
    "Transition",
    "acknowledge",
    "count_alerts",
    "discharge",
    "evaluate",
    "make_alert_id",
    "make_transition_id",
    "resolve",
    "tick",
]
