"""Replay: recorded or simulated vitals through exactly the worker's scoring pipeline.

No Kafka, no Redis: an in-process store behind the same interface. Timers (escalation,
held readings) run on event time, ticking every ``tick_every_s`` of simulated time, so a
day of data replays in seconds with the same alerts the live system would raise. With
``tick_aligned``, a batch never spans a tick: the timers run between the events they
fall between, as they do live, however many patients share the timeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import Scored, ScoringPipeline
from alerts import AlertState, PolicyConfig
from alerts.webhook import should_page
from wardwatch.schemas import VitalsEvent
from wardwatch.store import MemoryStateStore


@dataclass
class ReplayResult:
    scored: list[Scored] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    too_late: int = 0
    suppressed_artifacts: int = 0


def batches(
    events: Iterable[Incoming], size: int, *, tick_ms: int | None = None
) -> Iterator[list[Incoming]]:
    """``events`` in batches of at most ``size``; with ``tick_ms``, a new batch also starts
    at the first event at or after each multiple of ``tick_ms`` from the first event's time
    (the replay's timer ticks), so that no batch spans one."""
    batch: list[Incoming] = []
    boundary: int | None = None
    for item in events:
        if tick_ms is not None:
            ts = item.event.ts_ms()
            if boundary is None:
                boundary = ts + tick_ms
            elif ts >= boundary:
                if batch:
                    yield batch
                    batch = []
                boundary += (ts - boundary) // tick_ms * tick_ms + tick_ms
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def replay(
    events: Iterable[VitalsEvent | Incoming],
    *,
    policy: PolicyConfig | None = None,
    store: MemoryStateStore | None = None,
    batch_size: int = 256,
    tick_every_s: float = 300.0,
    keep_scored: bool = True,
    partitions: int = 1,
    late_window_s: float = 3600.0,
    stream_lateness_s: float = 60.0,
    models: ModelHolder | None = None,
    tick_aligned: bool = False,
    ends: Mapping[str, int] | None = None,
    ack_after_s: float | None = None,
) -> ReplayResult:
    """Score ``events`` (in log order per partition; ``partitions`` as the workers' vitals
    topic has, so that held readings run on the same event-time clocks) and collect the
    alert transitions. An event given as :class:`Incoming` keeps its id and reading flags
    (a plain event's id is its position); ``models`` is the deterioration model, as the
    worker holds it (None: the rules only). ``ends``: per patient, the event time (epoch
    ms) after which their timers stop (the data end the stay there, as a discharge does).
    ``ack_after_s``: a care team that acknowledges every page this long after it (event
    time), as a ward does; None: nobody acknowledges (re-pages up to their cap)."""
    store = store or MemoryStateStore()
    pipe = ScoringPipeline(
        store,
        policy,
        partitions=partitions,
        late_window_s=late_window_s,
        stream_lateness_s=stream_lateness_s,
        models=models,
    )
    out = ReplayResult()
    next_tick: int | None = None
    tick_ms = int(tick_every_s * 1000)
    acks: list[tuple[int, str, str]] = []  # (due ms, patient, alert id), in page order
    ack_ms = None if ack_after_s is None else int(ack_after_s * 1000)

    async def acknowledge_due(until_ms: int) -> None:
        while acks and acks[0][0] <= until_ms:
            due, pid, alert_id = acks.pop(0)
            current = AlertState.from_json((await store.load([pid]))[pid].state.alert)
            if current.alert_id == alert_id and current.status == "open":
                out.alerts += (await pipe.acknowledge(pid, "care-team", now_ms=due)).emitted

    def collect(emitted: list[dict[str, Any]]) -> None:
        out.alerts += emitted
        if ack_ms is not None:
            for m in emitted:
                if should_page(m):
                    acks.append((int(m["ts_ms"]) + ack_ms, m["patient_id"], m["alert_id"]))
            acks.sort()

    incoming = (
        e if isinstance(e, Incoming) else Incoming(e, f"replay:{i}") for i, e in enumerate(events)
    )
    for batch in batches(incoming, batch_size, tick_ms=tick_ms if tick_aligned else None):
        # timers first, up to the time of this batch (event time is the clock here)
        first = batch[0].event.ts_ms()
        if next_tick is None:
            next_tick = first + tick_ms
        while next_tick <= first:
            await acknowledge_due(next_tick)
            watched = store.watch
            if ends is not None:
                watched = {p for p in watched if ends.get(p, next_tick) >= next_tick}
            if watched:
                res = await pipe.tick(sorted(watched), now_ms=next_tick)
                collect(res.emitted)
            next_tick += tick_ms
        await acknowledge_due(first)
        res = await pipe.process(batch)
        if keep_scored:
            out.scored += res.scored
        collect(res.emitted)
        out.duplicates += res.duplicates
        out.late += res.late
        out.too_late += res.too_late
        out.suppressed_artifacts += res.suppressed_artifacts
    return out
