"""The bedside simulator's publisher: simulated patients → Kafka, paced in real time.

Admission is back-dated so that every observation's timestamp is in the past when it is
published: simulated time runs ``speed`` times faster than the wall clock and reaches the
present exactly when the simulated stay ends.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.cohort import stream_events
from simulator.profiles import SimConfig, make_profiles
from wardwatch.schemas import Outcome, PatientContext
from wardwatch.settings import Settings
from wardwatch.topics import producer

log = logging.getLogger(__name__)


@dataclass
class PublishStats:
    vitals: int = 0
    outcomes: int = 0
    context: int = 0
    failed: int = 0
    sim_hours: float = 0.0
    patients: int = 0


def encode_vitals(event: dict[str, Any]) -> bytes:
    out = dict(event)
    ts = out["ts"]
    out["ts"] = ts.isoformat() if isinstance(ts, datetime) else ts
    return json.dumps(out, separators=(",", ":")).encode()


def paced(
    items: Iterator[tuple[str, Any]],
    *,
    start: datetime,
    speed: float,
    stop: threading.Event,
    sleep: Callable[[float], bool] | None = None,
) -> Iterator[tuple[str, Any]]:
    """Yield items no earlier than their simulated time allows (speed × wall clock)."""
    wall0 = time.monotonic()
    wait = sleep or stop.wait
    for kind, item in items:
        ts = item["ts"] if isinstance(item, dict) else item.ts
        due = (ts - start).total_seconds() / speed
        delay = due - (time.monotonic() - wall0)
        if delay > 0 and wait(delay):
            return
        if stop.is_set():
            return
        yield kind, item


def publish_simulation(
    settings: Settings,
    *,
    patients: int,
    speed: float,
    hours: float,
    seed: int = 7,
    stop: threading.Event | None = None,
    stats: PublishStats | None = None,
    config: SimConfig | None = None,
) -> PublishStats:
    """Publish ``patients`` simulated stays of ``hours`` to the vitals/outcomes topics."""
    stop = stop or threading.Event()
    stats = stats or PublishStats()
    cfg = config or SimConfig(hours=hours)
    start = datetime.now(UTC) - timedelta(hours=cfg.hours)
    prod = producer(settings)
    topics = settings.topics
    stats.patients = patients

    def failed(_exc: BaseException) -> None:
        stats.failed += 1

    try:
        for p in make_profiles(patients, seed=seed, config=cfg):
            ctx = PatientContext(
                patient_id=p.patient_id,
                ts=start,
                age_band=p.age_band,
                spo2_scale=2 if p.copd else 1,
                conditions=["copd"] if p.copd else [],
            )
            prod.send(
                topics.patient_context, key=p.patient_id, value=ctx.model_dump_json().encode()
            )
            stats.context += 1
        prod.flush(timeout=10)
        items = stream_events(patients, seed=seed, start=start, config=cfg)
        for kind, item in paced(items, start=start, speed=speed, stop=stop):
            if kind == "vitals":
                fut = prod.send(topics.vitals, key=item["patient_id"], value=encode_vitals(item))
                stats.vitals += 1
            else:
                assert isinstance(item, Outcome)
                fut = prod.send(
                    topics.outcomes, key=item.patient_id, value=item.model_dump_json().encode()
                )
                stats.outcomes += 1
            fut.add_errback(failed)
            stats.sim_hours = (
                (item["ts"] if kind == "vitals" else item.ts) - start
            ).total_seconds() / 3600
    finally:
        prod.flush(timeout=10)
        prod.close(timeout=5)
    return stats
