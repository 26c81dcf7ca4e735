"""``wardwatch score``: replay vitals JSON lines through the worker's scoring path.

Exactly the worker's ingest validation, per-patient state handling (an in-process store
behind the same interface as Redis), feature building and ONNX model; no Kafka, no Redis.
One output line per input line, in input order:

    {"patient_id", "ts", "news2", "news2_complete", "model_risk", "fused_risk",
     "model_version"}  (+ "model_reason" when model_risk is null)

or ``{"error": reason, "detail": ...}`` for a line the worker would dead-letter, or
``{"patient_id", "ts", "skipped": "duplicate" | "stale"}`` for an event with no effect.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from agents.pipeline import Incoming, ModelHolder, ScoringPipeline
from models.runtime import DeteriorationModel, choose_providers
from wardwatch.errors import ModelError
from wardwatch.ingest import Rejection, decode_vitals
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore

BATCH = 512


def _lines(stdin: IO[bytes]) -> Iterator[bytes]:
    for raw in stdin:
        line = raw.strip()
        if line:
            yield line


async def score_stream(
    stdin: IO[bytes],
    stdout: IO[str],
    settings: Settings,
    *,
    version: str | None = None,
    progress: IO[str] | None = None,
    batch_size: int = BATCH,
) -> dict[str, Any]:
    """Score every line; returns counts (also printed to ``progress`` for long inputs)."""
    holder = ModelHolder()
    reason = None
    try:
        holder.current = DeteriorationModel.from_registry(
            settings.resolved_model_registry(),
            settings.model_name,
            version,
            providers=choose_providers(settings.onnx_provider),
        )
    except ModelError as exc:
        reason = f"no model: {exc}"
        if progress:
            print(f"wardwatch score: {reason}; NEWS2 only", file=progress)
    # the states never leave this process, so no ring buffer is needed for rewarming
    pipe = ScoringPipeline(
        MemoryStateStore(serialize=False), models=holder, alerts=False, keep_history=False
    )
    now = datetime.now(UTC)
    counts = {"lines": 0, "scored": 0, "rejected": 0, "skipped": 0}
    t0 = last = time.monotonic()
    pending: list[tuple[int, Any]] = []  # (line index, Rejection | list of events)
    items: list[Incoming] = []

    async def flush() -> None:
        res = await pipe.process(items)
        by_id = {s.event_id: s for s in res.scored}
        for _idx, decoded in pending:
            if isinstance(decoded, Rejection):
                out: dict[str, Any] = {"error": decoded.reason.value, "detail": decoded.detail}
                counts["rejected"] += 1
            else:
                rows = []
                for eid, ev in decoded:
                    s = by_id.get(eid)
                    if s is None:
                        rows.append(
                            {
                                "patient_id": ev.patient_id,
                                "ts": ev.ts.isoformat(),
                                "skipped": "duplicate or stale",
                            }
                        )
                        counts["skipped"] += 1
                        continue
                    row = {
                        "patient_id": s.patient_id,
                        "ts": ev.ts.isoformat(),
                        "news2": s.news2.total,
                        "news2_complete": s.news2.complete,
                        "model_risk": None if s.model_risk is None else round(s.model_risk, 6),
                        "fused_risk": None if s.fused_risk is None else round(s.fused_risk, 6),
                        "model_version": s.model_version,
                    }
                    if s.model_risk is None:
                        row["model_reason"] = s.model_reason
                    rows.append(row)
                    counts["scored"] += 1
                out = rows[-1] if len(rows) == 1 else {**rows[-1], "events": rows}
            stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
        pending.clear()
        items.clear()

    for idx, line in enumerate(_lines(stdin)):
        counts["lines"] += 1
        decoded = decode_vitals(line, now=now, max_future_skew_s=settings.max_future_skew_s)
        if isinstance(decoded, Rejection):
            pending.append((idx, decoded))
        else:
            evs = []
            for j, ev in enumerate(decoded.events):
                eid = f"{idx}:{j}"
                items.append(Incoming(ev, eid))
                evs.append((eid, ev))
            pending.append((idx, evs))
        if len(items) >= batch_size or len(pending) >= batch_size:
            await flush()
            if progress and time.monotonic() - last > 2:
                last = time.monotonic()
                rate = counts["lines"] / (last - t0)
                print(f"\rscored {counts['lines']} lines ({rate:,.0f}/s)", end="", file=progress)
    await flush()
    stdout.flush()
    elapsed = time.monotonic() - t0
    counts["seconds"] = round(elapsed, 3)  # type: ignore[assignment]
    if progress and counts["lines"] > 10_000:
        print(f"\rscored {counts['lines']} lines in {elapsed:.1f} s", file=progress)
    return counts


def run_score(stdin: IO[bytes], stdout: IO[str], settings: Settings, version: str | None) -> int:
    asyncio.run(score_stream(stdin, stdout, settings, version=version, progress=sys.stderr))
    return 0
