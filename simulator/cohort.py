"""Whole cohorts: every patient's observations merged in time, as a list or as a stream.

:func:`simulate_cohort` (the offline trainer, benchmarks) and :func:`stream_events` (the
live publisher) give the same data in the same order: observations sorted by time, ties
by patient id, an outcome after any observation with the same timestamp.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from simulator.patient import simulate_patient
from simulator.profiles import PatientProfile, SimConfig, make_profiles
from wardwatch.schemas import Outcome

__all__ = ["Cohort", "simulate_cohort", "stream_events"]

_DEFAULT_CONFIG = SimConfig()  # frozen, so one shared default is safe


@dataclass
class Cohort:
    """A simulated cohort: who the patients are, what was charted, what happened."""

    profiles: list[PatientProfile]
    events: list[dict[str, Any]]
    """All observations of all patients, sorted by ts (ties by patient_id)."""
    outcomes: list[Outcome] = field(default_factory=list)
    """Outcome events, sorted by ts."""


def simulate_cohort(
    n: int, *, seed: int, start: datetime, config: SimConfig = _DEFAULT_CONFIG
) -> Cohort:
    """``n`` patients admitted at ``start``: profiles, merged observations, outcomes."""
    profiles = make_profiles(n, seed=seed, config=config)
    events: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    for p in profiles:
        evs, outcome = simulate_patient(p, start=start, config=config, seed=seed)
        events.extend(evs)
        if outcome is not None:
            outcomes.append(outcome)
    events.sort(key=lambda e: (e["ts"], e["patient_id"]))
    outcomes.sort(key=lambda o: (o.ts, o.patient_id))
    return Cohort(profiles=profiles, events=events, outcomes=outcomes)


def stream_events(
    n: int, *, seed: int, start: datetime, config: SimConfig = _DEFAULT_CONFIG
) -> Iterator[tuple[str, dict[str, Any] | Outcome]]:
    """Time-ordered ``("vitals", event)`` / ``("outcome", Outcome)`` items for a publisher.

    Same data and order as :func:`simulate_cohort` (an outcome follows any observation
    with the same timestamp). Patients are simulated when the stream is first advanced.
    """
    profiles = make_profiles(n, seed=seed, config=config)

    def one(
        p: PatientProfile,
    ) -> Iterator[tuple[datetime, str, int, str, dict[str, Any] | Outcome]]:
        evs, outcome = simulate_patient(p, start=start, config=config, seed=seed)
        for ev in evs:
            yield ev["ts"], p.patient_id, 0, "vitals", ev
        if outcome is not None:
            yield outcome.ts, p.patient_id, 1, "outcome", outcome

    merged = heapq.merge(*(one(p) for p in profiles), key=lambda x: (x[0], x[1], x[2]))
    for _ts, _pid, _order, kind, item in merged:
        yield kind, item
