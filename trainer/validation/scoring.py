"""A task's messages through the worker's own path, without Kafka or Redis.

Each message is decoded and validated by the worker's ingest (``decode_vitals``: what it
would dead-letter is counted here by the same reason, readings it sets aside or flags are
counted by field and tier), then the accepted events, in time order across patients, go
through the worker's scoring pipeline by :func:`agents.replay.replay`: patient state
(an in-process store behind the Redis store's interface), NEWS2 and qSOFA, features and the ONNX model, the fused risk, and
the alert policy with its timers on event time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.model_stage import Incoming, ModelHolder
from agents.replay import replay
from alerts import PolicyConfig
from models.runtime import DeteriorationModel
from trainer.validation.task import EPOCH, Message
from wardwatch.ingest import W_READING_SET_ASIDE, Decoded, decode_vitals
from wardwatch.schemas import FailureReason, PatientContext
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore

__all__ = ["TICK_S", "PatientScores", "Replayed", "score_messages"]

TICK_S = 300.0
ACK_AFTER_S = 600.0
"""The replay's care team acknowledges every page this long after it (before a re-page),
as a ward does; the alert burden then counts what the policy pages, not re-pages of
alerts nobody in a silent run could answer."""
"""Timers (re-pages, held readings) run every 5 minutes of event time, and for each
patient only until their last event (after it, the export has ended the stay)."""
BATCH = 512
EXAMPLES = 20  # rejected rows listed in the report, the first ones by row
_QUIET_WARNINGS = {"timestamp_stale"}  # every row of an export is older than a day


@dataclass
class PatientScores:
    """One patient's scored events in time order (the late ones left out)."""

    ts: npt.NDArray[np.int64]
    news2: npt.NDArray[np.float64]  # NaN: nothing to score
    fused: npt.NDArray[np.float64]  # NaN: no model risk
    missing: list[tuple[str, ...]]  # the NEWS2 parameters each score lacked
    risk: npt.NDArray[np.float64] | None = None  # the model's own risk (before fusion)


@dataclass
class Replayed:
    ingest: dict[str, Any]
    scores: dict[str, PatientScores]
    alerts: list[dict[str, Any]]
    model_reasons: dict[str, int] = field(default_factory=dict)  # why no model risk


def _context(pid: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
    """The context as the worker stores it from a ``patient-context`` message."""
    return PatientContext(patient_id=pid, ts=EPOCH, **ctx).model_dump(mode="json")


def _decode(
    messages: Sequence[Message], now: datetime, skew: float
) -> tuple[list[Incoming], dict[str, Any]]:
    rejected: Counter[str] = Counter()
    examples: list[dict[str, Any]] = []
    set_aside: Counter[tuple[str, str]] = Counter()
    verify: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    items: list[Incoming] = []
    accepted = 0
    for m in sorted(messages, key=lambda m: (m.sort_ms, m.patient, m.row)):
        decoded = decode_vitals(m.raw, now=now, max_future_skew_s=skew)
        if not isinstance(decoded, Decoded):
            rejected[decoded.reason.value] += 1
            examples.append(
                {"row": m.row, "reason": decoded.reason.value, "detail": decoded.detail}
            )
            continue
        accepted += 1
        warnings.update(w for w in decoded.warnings if w not in _QUIET_WARNINGS)
        for f in decoded.flags:
            if f.code == W_READING_SET_ASIDE:
                set_aside[(f.field, f.tier)] += 1
            else:
                verify[f.field] += 1
        for i, ev in enumerate(decoded.events):
            items.append(Incoming(ev, f"row:{m.row}", flags=decoded.flags_of(i)))
    examples.sort(key=lambda e: e["row"])
    by_field: dict[str, dict[str, int]] = {}
    for (name, tier), n in sorted(set_aside.items()):
        by_field.setdefault(name, {})[tier] = n
    ingest = {
        "messages": len(messages),
        "accepted": accepted,
        "rejected": {
            "total": sum(rejected.values()),
            "by_reason": dict(sorted(rejected.items())),
            "examples": examples[:EXAMPLES],
        },
        "readings_set_aside": {"total": sum(set_aside.values()), "by_field": by_field},
        "readings_to_verify": {
            "total": sum(verify.values()),
            "by_field": dict(sorted(verify.items())),
        },
        "warnings": dict(sorted(warnings.items())),
    }
    return items, ingest


async def score_messages(
    messages: Sequence[Message],
    settings: Settings,
    model: DeteriorationModel | None,
    *,
    now: datetime,
    contexts: Mapping[str, Mapping[str, Any]] | None = None,
    serialize: bool = False,
) -> Replayed:
    """Decode, replay and collect one task's scores and alert transitions. The states
    never leave this process, so they are kept as objects (``serialize=True`` round-trips
    them through JSON as Redis does: the same scores and alerts, slower)."""
    items, ingest = _decode(messages, now, settings.max_future_skew_s)
    store = MemoryStateStore(serialize=serialize)
    for pid, ctx in sorted((contexts or {}).items()):
        await store.set_context(pid, _context(pid, ctx))
    # in time order across patients (a ward's shared timeline)
    items.sort(key=lambda it: it.event.ts_ms())
    ends = {it.event.patient_id: it.event.ts_ms() for it in items}
    res = await replay(
        items,
        policy=PolicyConfig.from_settings(settings),
        store=store,
        batch_size=BATCH,
        tick_every_s=TICK_S,
        partitions=settings.partitions,
        late_window_s=settings.late_window_s,
        stream_lateness_s=settings.stream_lateness_s,
        models=ModelHolder(model),
        tick_aligned=True,
        ends=ends,
        ack_after_s=ACK_AFTER_S,
    )
    if res.too_late:  # the worker dead-letters them
        rej = ingest["rejected"]
        rej["by_reason"][FailureReason.TOO_LATE.value] = res.too_late
        rej["by_reason"] = dict(sorted(rej["by_reason"].items()))
        rej["total"] += res.too_late
    series: dict[str, list[tuple[int, float, float, tuple[str, ...], float]]] = {}
    reasons: Counter[str] = Counter()
    for s in res.scored:
        if s.model_risk is None:
            reasons[s.model_reason or "unknown"] += 1
        if s.late:
            continue
        total = np.nan if s.news2.total is None else float(s.news2.total)
        fused = np.nan if s.fused_risk is None else float(s.fused_risk)
        risk = np.nan if s.model_risk is None else float(s.model_risk)
        series.setdefault(s.patient_id, []).append((s.ts_ms, total, fused, s.news2.missing, risk))
    scores = {
        pid: PatientScores(
            np.array([r[0] for r in rows], dtype=np.int64),
            np.array([r[1] for r in rows], dtype=np.float64),
            np.array([r[2] for r in rows], dtype=np.float64),
            [r[3] for r in rows],
            np.array([r[4] for r in rows], dtype=np.float64),
        )
        for pid, rows in series.items()
    }
    ingest["events_scored"] = len(res.scored) - res.late
    ingest["skipped"] = {"duplicate": res.duplicates, "late": res.late}
    ingest["held_as_possible_artifacts"] = res.suppressed_artifacts
    return Replayed(ingest, scores, res.alerts, dict(sorted(reasons.items())))
