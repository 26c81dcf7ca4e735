"""Score vitals JSON lines through the worker's scoring path (``wardwatch score``).

Exactly the worker's ingest validation, per-patient state handling (an in-process store
behind the same interface as Redis), feature building and ONNX model; no Kafka, no Redis.
One output line per input line, in input order:

    {"patient_id", "ts", "news2", "news2_complete", "model_risk", "fused_risk",
     "model_version"}  (+ "model_reason" when model_risk is null)

or ``{"error": reason, "detail": ...}`` for a line the worker would dead-letter, or
``{"patient_id", "ts", "skipped": "duplicate"}`` for an event already applied; an event
with a reading set aside (impossible, inconsistent) or to verify (clinically extreme) adds
``"flags"``: ``[{"code", "field", "value", "tier", "detail"}]``; a late
event (older than its patient's newest, within ``late_window_s``) is scored on its own
values with ``"late": true`` and ``"model_reason": "late"``; one older than that is
``{"error": "too_late", ...}`` (the worker dead-letters it), or ``"skipped": "too_late"``
inside a several-event line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import IO, Any

from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import Scored, ScoringPipeline
from models.runtime import DeteriorationModel
from models.session import choose_providers
from wardwatch.errors import ModelError
from wardwatch.ingest import Decoded, Rejection, decode_vitals
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
        MemoryStateStore(serialize=False),
        models=holder,
        alerts=False,
        keep_history=False,
        late_window_s=settings.late_window_s,
        partitions=settings.partitions,
    )
    now = datetime.now(UTC)
    skew = settings.max_future_skew_s
    counts = {"lines": 0, "scored": 0, "rejected": 0, "skipped": 0}
    t0 = last = time.monotonic()
    # per input line: a Rejection, or how many events it decoded to (usually 1)
    pending: list[Rejection | int] = []
    items: list[Incoming] = []
    lines_out: list[str] = []  # one write per batch
    write = lines_out.append

    async def flush() -> None:
        res = await pipe.process(items)
        skipped = dict(res.skipped)
        scored = iter(res.scored)
        k = 0  # index of the line's first event in ``items``
        for decoded in pending:
            if decoded.__class__ is int:
                if decoded == 1 and k not in skipped:  # the usual line: one event, scored
                    one = next(scored)
                    ts = items[k].event.ts.isoformat()
                    write(_dumps(_row(one, ts)) + "\n" if one.flags else _scored_json(one, ts))
                    k += 1
                    continue
                if decoded == 1 and skipped[k] == "too_late":
                    ev = items[k].event
                    detail = (
                        f"ts {ev.ts.isoformat()} is more than {settings.late_window_s:g} s "
                        "older than the patient's newest event"
                    )
                    write(_dumps({"error": "too_late", "detail": detail}) + "\n")
                    k += 1
                    continue
                rows: list[dict[str, Any]] = []
                for j in range(k, k + decoded):
                    ev = items[j].event
                    why = skipped.get(j)
                    if why is None:
                        rows.append(_row(next(scored), ev.ts.isoformat()))
                    else:
                        rows.append(
                            {"patient_id": ev.patient_id, "ts": ev.ts.isoformat(), "skipped": why}
                        )
                k += decoded
                # several events: a FHIR Bundle with several observation times
                write(_dumps(rows[0] if decoded == 1 else {**rows[-1], "events": rows}) + "\n")
            else:
                assert isinstance(decoded, Rejection)
                write(_dumps({"error": decoded.reason.value, "detail": decoded.detail}) + "\n")
        counts["skipped"] += res.duplicates
        counts["rejected"] += res.too_late  # the worker dead-letters them
        counts["scored"] += len(res.scored)
        stdout.write("".join(lines_out))
        lines_out.clear()
        pending.clear()
        items.clear()

    n_lines = 0
    for line in _lines(stdin):
        n_lines += 1
        decoded = decode_vitals(line, now=now, max_future_skew_s=skew)
        if isinstance(decoded, Decoded):
            events = decoded.events
            for i, ev in enumerate(events):
                items.append(Incoming(ev, flags=decoded.flags_of(i)))
            pending.append(len(events))
        else:
            pending.append(decoded)
            counts["rejected"] += 1
        if len(items) >= batch_size or len(pending) >= batch_size:
            await flush()
            if progress and time.monotonic() - last > 2:
                last = time.monotonic()
                rate = n_lines / (last - t0)
                print(f"\rscored {n_lines} lines ({rate:,.0f}/s)", end="", file=progress)
    await flush()
    stdout.flush()
    counts["lines"] = n_lines
    elapsed = time.monotonic() - t0
    counts["seconds"] = round(elapsed, 3)  # type: ignore[assignment]
    if progress and counts["lines"] > 10_000:
        print(f"\rscored {counts['lines']} lines in {elapsed:.1f} s", file=progress)
    return counts


_dumps = json.JSONEncoder(separators=(",", ":")).encode
_str = encode_basestring_ascii  # a JSON string, exactly as json.dumps writes it


def _num(x: float | None) -> str:
    """A rounded risk as json.dumps writes it."""
    return "null" if x is None else float.__repr__(round(x, 6))


def _row(s: Scored, ts: str) -> dict[str, Any]:
    """One scored event's output row."""
    row: dict[str, Any] = {
        "patient_id": s.patient_id,
        "ts": ts,
        "news2": s.news2.total,
        "news2_complete": s.news2.complete,
        "model_risk": None if s.model_risk is None else round(s.model_risk, 6),
        "fused_risk": None if s.fused_risk is None else round(s.fused_risk, 6),
        "model_version": s.model_version,
    }
    if s.model_risk is None:
        row["model_reason"] = s.model_reason
    if s.late:
        row["late"] = True
    if s.flags:  # readings set aside from the event, or scored but to verify
        row["flags"] = [f.to_dict() for f in s.flags]
    return row


def _scored_json(s: Scored, ts: str) -> str:
    """``_dumps(_row(s, ts)) + "\\n"``, written directly: this runs once per input line."""
    n2 = s.news2
    risk = _num(s.model_risk)
    fused = risk if s.fused_risk is s.model_risk else _num(s.fused_risk)
    version = "null" if s.model_version is None else _str(s.model_version)
    out = (
        f'{{"patient_id":{_str(s.patient_id)},"ts":{_str(ts)},'
        f'"news2":{"null" if n2.total is None else n2.total},'
        f'"news2_complete":{"true" if n2.complete else "false"},'
        f'"model_risk":{risk},"fused_risk":{fused},"model_version":{version}'
    )
    if s.model_risk is None:
        reason = "null" if s.model_reason is None else _str(s.model_reason)
        late = ',"late":true' if s.late else ""
        return f'{out},"model_reason":{reason}{late}}}\n'
    return out + "}\n"
