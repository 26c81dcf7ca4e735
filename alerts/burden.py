"""Alert burden: how many transitions, alerts and pages a set of alert events adds up to.

The measure alarm fatigue is judged by (``docs/alerts.md``, "Why the policy is shaped
this way"): pages are the transitions that interrupt someone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alerts.state import PRIORITIES, TRANSITIONS, AlertEvent

__all__ = ["count_alerts"]


def count_alerts(
    events: Iterable[AlertEvent | Mapping[str, Any]], patient_days: float | None = None
) -> dict[str, Any]:
    """Alert burden of a set of transitions (each ``transition_id`` counted once).

    ``pages`` are the transitions that interrupt someone (the policy's ``page`` flag:
    OPEN and ESCALATED at high priority, and at medium once confirmed);
    ``opened_without_page`` the medium or high alerts opened on the care-team page without
    a page. With ``patient_days``, per-patient-day rates are added (the Kaiser
    AAM reference point is about 1 alert per 35 patients per day, 0.029/patient-day).
    """
    seen: set[str] = set()
    by_transition = dict.fromkeys(TRANSITIONS, 0)
    by_priority = dict.fromkeys(PRIORITIES, 0)
    opened_by_priority = dict.fromkeys(PRIORITIES, 0)
    pages = 0
    unpaged_opened = 0
    alerts: set[str] = set()
    patients: set[str] = set()
    for raw in events:
        ev = raw if isinstance(raw, AlertEvent) else AlertEvent.from_dict(raw)
        if ev.transition_id in seen:
            continue
        seen.add(ev.transition_id)
        by_transition[ev.transition] += 1
        by_priority[ev.priority] += 1
        alerts.add(ev.alert_id)
        patients.add(ev.patient_id)
        if ev.transition == "OPEN":
            opened_by_priority[ev.priority] += 1
        if ev.pages:
            pages += 1
        elif ev.transition == "OPEN" and ev.priority in ("medium", "high"):
            unpaged_opened += 1
    out: dict[str, Any] = {
        "transitions": len(seen),
        "by_transition": by_transition,
        "by_priority": by_priority,
        "opened": by_transition["OPEN"],
        "opened_by_priority": opened_by_priority,
        "pages": pages,
        "opened_without_page": unpaged_opened,
        "alerts": len(alerts),
        "patients": len(patients),
    }
    if patient_days is not None and patient_days > 0:
        out["patient_days"] = patient_days
        out["opened_per_patient_day"] = round(by_transition["OPEN"] / patient_days, 6)
        out["pages_per_patient_day"] = round(pages / patient_days, 6)
    return out
