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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.model_stage import ModelHolder
from agents.replay import replay
from alerts import PolicyConfig
from alerts.webhook import should_page
from models.news2 import news2_from_vitals
from models.runtime import DeteriorationModel
from simulator import SimConfig, simulate_cohort
from wardwatch.errors import ModelError
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings

START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
DAY_MS = 86_400_000
HOLD = 20 * 60.0  # the worker's default artifact hold (Settings.artifact_confirm_s)

ACK_S = 10 * 60.0  # the care team acknowledges a page within 10 min (before a re-page)


@dataclass(frozen=True)
class Variant:
    policy: PolicyConfig
    ack_after_s: float | None = ACK_S  # None: nobody acknowledges
    model: bool = False  # the promoted deep model beside the rules


VARIANTS: dict[str, Variant] = {
    # rules only (no model deployed, or an outage): medium alerts page once confirmed
    "default": Variant(PolicyConfig(artifact_max_wait_s=HOLD)),
    # the promoted model's operating points decide medium pages
    "with_model": Variant(PolicyConfig(artifact_max_wait_s=HOLD), model=True),
    # the worst case: nobody ever acknowledges, so alerts re-page up to their cap
    "unacknowledged": Variant(PolicyConfig(artifact_max_wait_s=HOLD), ack_after_s=None),
    # every medium alert pages at once (no confirmation)
    "medium_pages_at_once": Variant(PolicyConfig(artifact_max_wait_s=HOLD, medium_confirm_obs=1)),
    "no_personal_triggers": Variant(
        PolicyConfig(artifact_max_wait_s=HOLD, personal_triggers_open=False)
    ),
    "without_fatigue_controls": Variant(
        PolicyConfig(
            artifact_confirm=False,  # no artifact hold
            cooldown_s=0.0,  # reopen at once
            resolve_hold_s=0.0,  # no hysteresis hold ...
            resolve_below_total=5,  # ... and resolve as soon as below the opening threshold
            downgrade_hold_s=0.0,
            max_repages=1_000_000,  # re-page every interval while unacknowledged
            medium_confirm_obs=1,  # every medium alert pages at once
        ),
        ack_after_s=None,
    ),
}


def burden(
    alerts: list[dict[str, Any]],
    patient_days: float,
    outcome_ms: dict[str, int],
    deteriorating: set[str],
    n_stable: int,
    first_obs_ms: dict[str, int] | None = None,
) -> dict[str, Any]:
    opens = [a for a in alerts if a["transition"] == "OPEN"]
    pages = [a for a in alerts if should_page(a)]
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
    out: dict[str, Any] = {
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
        # re-pages of unacknowledged alerts while the patient's NEWS2 was back below the
        # recovery threshold (an escalation page about a patient who recovered): must be 0
        "re_pages_after_recovery": sum(
            1
            for a in pages
            if "unacknowledged" in a["reason"]
            and a["news2_total"] is not None
            and a["news2_total"] < PolicyConfig().resolve_below_total
        ),
    }
    if first_obs_ms is not None:
        # the target's measure: stable patients paged within their first 24 h of monitoring
        early = {pid for pid in stable_paged if first_page[pid] - first_obs_ms[pid] <= DAY_MS}
        out["stable_patients_paged_first_24h"] = f"{len(early)}/{n_stable}"
        out["stable_patients_paged_first_24h_pct"] = round(100 * len(early) / max(n_stable, 1), 2)
    return out


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
    first_obs = {pid: s[0] for pid, s in span.items()}
    # the reference a page policy must match: outcome patients NEWS2 >= 5 ever flagged
    # before their outcome (any observation set, no confirmation, no hold)
    ge5_before = {
        e.patient_id
        for e in events
        if e.patient_id in outcome_ms
        and e.ts_ms() <= outcome_ms[e.patient_id]
        and (news2_from_vitals(e.vitals()).total or 0) >= 5
    }
    out: dict[str, Any] = {
        "news2_ge5_outcome_patients_flagged_before_outcome": f"{len(ge5_before)}/{len(outcome_ms)}",
        "patients": n,
        "deteriorating_fraction": fraction,
        "stable_patients": n_stable,
        "deteriorating_patients": len(deteriorating),
        "outcomes": len(outcome_ms),
        "observations": len(events),
        "patient_days": round(patient_days, 2),
        "variants": {},
    }
    holder = _promoted_model()
    out["model"] = f"{holder.current.name} {holder.current.version}" if holder.current else None
    for name, variant in VARIANTS.items():
        if variant.model and holder.current is None:
            continue
        res = asyncio.run(
            replay(
                events,
                policy=variant.policy,
                batch_size=16,
                keep_scored=False,
                models=holder if variant.model else None,
                ack_after_s=variant.ack_after_s,
            )
        )
        b = burden(res.alerts, patient_days, outcome_ms, deteriorating, n_stable, first_obs)
        b["artifacts_suppressed"] = res.suppressed_artifacts
        b["care_team_acknowledges_after_min"] = (
            None if variant.ack_after_s is None else variant.ack_after_s / 60
        )
        out["variants"][name] = b
    return out


def _promoted_model() -> ModelHolder:
    """The promoted deterioration model of the configured registry (none: rules only)."""
    settings = Settings()
    holder = ModelHolder()
    try:
        holder.current = DeteriorationModel.from_registry(
            settings.resolved_model_registry(), settings.model_name, None
        )
    except ModelError:
        holder.current = None
    return holder


def run(quick: bool = False) -> dict[str, Any]:
    """Two cohorts: the simulator's default (30 % deteriorate, rich in events) and a
    ward-like one (5 % deteriorate, closer to real prevalence). A care team acknowledges
    every page within 10 min (variant ``unacknowledged``: nobody does, so pages include
    the capped re-pages); ``with_model`` adds the promoted model, whose operating points
    decide medium pages."""
    n, hours = (40, 24.0) if quick else (300, 48.0)
    return {
        "simulator_default": _cohort(n, hours, 0.3),
        "ward_prevalence_5pct": _cohort(n * 2, hours, 0.05),
    }
