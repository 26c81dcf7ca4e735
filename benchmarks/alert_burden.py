"""Alert burden of the policy on a simulated ward, with and without the fatigue controls.

A seeded cohort replays through exactly the worker's pipeline (``agents.replay``): the
same NEWS2, personal baselines and alert policy, with timers on event time. For each
policy variant: alerts opened and pages (OPEN/ESCALATED at medium or high) per
patient-day, how many deteriorating patients were alerted before their outcome and how
early (median lead time), and how many stable patients were alerted at all.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from agents.replay import replay
from alerts import PolicyConfig
from simulator import SimConfig, simulate_cohort
from wardwatch.schemas import VitalsEvent

START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
DAY_MS = 86_400_000
HOLD = 20 * 60.0  # the worker's default artifact hold (Settings.artifact_confirm_s)

VARIANTS: dict[str, PolicyConfig] = {
    "default": PolicyConfig(artifact_max_wait_s=HOLD),
    "no_personal_triggers": PolicyConfig(artifact_max_wait_s=HOLD, personal_triggers_open=False),
    "without_fatigue_controls": PolicyConfig(
        artifact_confirm=False,  # no artifact hold
        cooldown_s=0.0,  # reopen at once
        resolve_hold_s=0.0,  # no hysteresis hold ...
        resolve_below_total=5,  # ... and resolve as soon as below the opening threshold
        downgrade_hold_s=0.0,
        max_repages=1_000_000,  # re-page every interval while unacknowledged
    ),
}


def burden(
    alerts: list[dict[str, Any]],
    patient_days: float,
    outcome_ms: dict[str, int],
    deteriorating: set[str],
    n_stable: int,
) -> dict[str, Any]:
    opens = [a for a in alerts if a["transition"] == "OPEN"]
    pages = [
        a
        for a in alerts
        if a["transition"] in ("OPEN", "ESCALATED") and a["priority"] in ("medium", "high")
    ]
    first_page: dict[str, int] = {}
    for a in sorted(pages, key=lambda a: a["ts_ms"]):
        first_page.setdefault(a["patient_id"], a["ts_ms"])
    paged_before = {
        pid: (outcome_ms[pid] - ts) / 3_600_000
        for pid, ts in first_page.items()
        if pid in outcome_ms and ts <= outcome_ms[pid]
    }
    stable_paged = {pid for pid in first_page if pid not in deteriorating}
    by_priority: dict[str, int] = defaultdict(int)
    for a in pages:
        by_priority[a["priority"]] += 1
    return {
        "alerts_opened": len(opens),
        "pages": len(pages),
        "pages_by_priority": dict(by_priority),
        "opened_per_patient_day": round(len(opens) / patient_days, 3),
        "pages_per_patient_day": round(len(pages) / patient_days, 3),
        "outcome_patients_paged_before_outcome": f"{len(paged_before)}/{len(outcome_ms)}",
        "median_lead_time_h": round(statistics.median(paged_before.values()), 2)
        if paged_before
        else None,
        "stable_patients_paged": f"{len(stable_paged)}/{n_stable}",
    }


def _cohort(n: int, hours: float, fraction: float) -> dict[str, Any]:
    config = SimConfig(hours=hours, deteriorating_fraction=fraction)
    cohort = simulate_cohort(n, seed=11, start=START, config=config)
    events = [VitalsEvent.model_validate(e) for e in cohort.events]
    span: dict[str, list[int]] = {}
    for e in events:
        s = span.setdefault(e.patient_id, [e.ts_ms(), e.ts_ms()])
        s[1] = e.ts_ms()
    patient_days = sum(max(b - a, 1) for a, b in span.values()) / DAY_MS
    outcome_ms = {o.patient_id: int(o.ts.timestamp() * 1000) for o in cohort.outcomes}
    deteriorating = {p.patient_id for p in cohort.profiles if p.trajectory != "stable"}
    n_stable = len(cohort.profiles) - len(deteriorating)
    out: dict[str, Any] = {
        "patients": n,
        "deteriorating_fraction": fraction,
        "stable_patients": n_stable,
        "deteriorating_patients": len(deteriorating),
        "outcomes": len(outcome_ms),
        "observations": len(events),
        "patient_days": round(patient_days, 2),
        "variants": {},
    }
    for name, cfg in VARIANTS.items():
        res = asyncio.run(replay(events, policy=cfg, batch_size=16, keep_scored=False))
        b = burden(res.alerts, patient_days, outcome_ms, deteriorating, n_stable)
        b["artifacts_suppressed"] = res.suppressed_artifacts
        out["variants"][name] = b
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Two cohorts: the simulator's default (30 % deteriorate, rich in events) and a
    ward-like one (5 % deteriorate, closer to real prevalence). Nobody acknowledges in a
    replay, so pages include the capped re-pages of unacknowledged alerts."""
    n, hours = (40, 24.0) if quick else (300, 48.0)
    return {
        "simulator_default": _cohort(n, hours, 0.3),
        "ward_prevalence_5pct": _cohort(n * 2, hours, 0.05),
    }
