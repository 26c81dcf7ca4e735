"""Scoring a batch of vitals so that every event is applied, dead-lettered alone with its
reason, or the worker stops without committing it (see ``agents.retry``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, NamedTuple

from agents.metrics import Metrics
from agents.model_stage import Incoming
from agents.pipeline import BatchResult, ScoringPipeline
from agents.retry import stop_for, stop_uncommitted
from wardwatch.logs import patient_ref
from wardwatch.schemas import FailureReason, RejectReason

log = logging.getLogger("wardwatch.worker")


class Origin(NamedTuple):
    """Where a consumed message came from, and its bytes (for the dead-letter topic)."""

    raw: bytes
    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


DeadLetter = Callable[[Origin, RejectReason | FailureReason, str], Awaitable[None]]
Retrying = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]


class BatchScorer:
    """Runs the scoring pipeline over a batch; isolates a poison event; never lets a
    conflict or an unexpected failure pass as applied."""

    def __init__(
        self,
        pipeline: ScoringPipeline,
        retrying: Retrying,
        dead_letter: DeadLetter,
        metrics: Metrics,
        *,
        poison_streak_limit: int,
        log_hash_key: str,
    ) -> None:
        self.pipeline = pipeline
        self.retrying = retrying
        self.dead_letter = dead_letter
        self.metrics = metrics
        self.poison_streak_limit = poison_streak_limit
        self.log_hash_key = log_hash_key  # patients appear in logs by keyed reference only
        self.poison_streak = 0  # events in a row that failed alone

    async def score(self, batch: list[Incoming], origins: dict[str, Origin]) -> BatchResult:
        """Every event of ``batch`` applied, or dead-lettered alone, or the worker stops.

        A batch that fails with an unexpected exception is scored again one event at a
        time, in order (batch boundaries never change a score): an event that fails alone
        is dead-lettered as ``processing_error`` with the exception, the others are
        applied. ``poison_streak_limit`` such events in a row is a fault, not bad input,
        and stops the worker uncommitted.
        """
        try:
            result = await self.retrying("score", lambda: self.pipeline.process(batch))
        except Exception:  # noqa: BLE001 - isolated below, never acknowledged unapplied
            log.exception("a batch of %d events failed; scoring them one by one", len(batch))
            result = await self._isolate(batch, origins)
        else:
            self.poison_streak = 0
        self.check_conflicts(result)
        return result

    async def _isolate(self, batch: list[Incoming], origins: dict[str, Origin]) -> BatchResult:
        total = BatchResult()
        poisoned: set[str] = set()  # messages already dead-lettered (a Bundle's other events)
        for index, item in enumerate(batch):
            key = item.event_id.rsplit(":", 1)[0]
            if key in poisoned:
                continue
            single = [item]
            try:
                one = await self.retrying("score", partial(self.pipeline.process, single))
            except Exception as exc:  # noqa: BLE001 - this event is the poison
                self.poison_streak += 1
                if self.poison_streak >= self.poison_streak_limit:
                    stop_for(f"vitals event ({self.poison_streak} failing in a row)", exc)
                poisoned.add(key)
                detail = f"{type(exc).__name__} scoring event {item.event_id}: {exc}"
                await self.dead_letter(origins[key], FailureReason.PROCESSING_ERROR, detail)
                continue
            self.poison_streak = 0
            self.check_conflicts(one)
            total.add(one, [index])
        return total

    def check_conflicts(self, result: BatchResult) -> None:
        """Conflicts were retried in the pipeline; ones still left are another writer
        holding the patients (a zombie after a rebalance): never drop their events."""
        if result.conflict_retries:
            self.metrics.retries.labels("conflict").inc(result.conflict_retries)
        if result.conflicts:
            hash_key = self.log_hash_key
            refs = ", ".join(patient_ref(pid, hash_key) for pid in result.conflicts)
            stop_uncommitted(f"state of {len(result.conflicts)} patients kept changing ({refs})")
