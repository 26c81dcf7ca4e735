"""Alert transitions from the outbox to the ``alerts`` topic.

A batch's transitions are committed to their patients' Redis outboxes with the patients'
states, then published here; an entry is deleted only once the broker has it. What a
failure leaves behind is published again: all of it at start-up and before a retry
(``flush_outbox``), and continuously, for the patients this worker owns, once it is older
than the sweep interval (``sweep_outbox``), each patient's in commit order. A leftover's
audit line is written again as it is deleted (the crash may have come before the commit
wrote it; the audit reader drops repeats).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import faust

from agents.metrics import Metrics
from wardwatch.store import RedisStateStore

log = logging.getLogger("wardwatch.worker")


class AlertPublisher:
    def __init__(
        self,
        alerts_topic: faust.TopicT,
        store: RedisStateStore,
        metrics: Metrics,
        owned: Callable[[Sequence[str]], list[str]],
        sweep_after_s: float,
    ) -> None:
        self.alerts_topic = alerts_topic
        self.store = store
        self.metrics = metrics
        self.owned = owned  # the patients whose partition this worker holds
        self.sweep_after_s = sweep_after_s

    async def publish_alerts(
        self,
        emitted: list[dict[str, Any]],
        outbox_ids: list[str],
        *,
        leftovers: bool = False,
    ) -> None:
        """Publish transitions, wait for the broker, then delete their outbox entries.
        ``leftovers`` (the sweep, the start-up flush): their audit lines are written again
        as they are deleted, since a crash may have come before the commit wrote them."""
        if not emitted:
            return
        futures = []
        for msg in emitted:
            msg["published_ms"] = int(time.time() * 1000)
            fut = await self.alerts_topic.send(
                key=msg["patient_id"].encode(), value=json.dumps(msg).encode()
            )
            futures.append(fut)
            self.metrics.alerts.labels(msg["transition"], msg["priority"]).inc()
            if msg.get("source_ts_ms") and msg["transition"] in ("OPEN", "ESCALATED"):
                self.metrics.event_to_alert.observe(
                    max(0.0, (msg["published_ms"] - msg["source_ts_ms"]) / 1000)
                )
        await asyncio.gather(*futures)  # delivered: safe to clear the outbox
        # the pager reads them from the topic
        await self.store.outbox_done(outbox_ids, audit=emitted if leftovers else ())

    async def sweep_outbox(self) -> None:
        """Publish the owned patients' transitions committed more than ``outbox_sweep_s``
        ago and still in the outbox (their publisher died or stalled), each patient's in
        the order they were committed; then drop from the outbox index the owned patients
        whose outbox is empty."""
        cutoff = int((time.time() - self.sweep_after_s) * 1000)
        mine = self.owned(await self.store.outbox_patients())
        if not mine:
            return
        pending = await self.store.outbox(mine, committed_before_ms=cutoff)
        if pending:
            log.info("publishing %d alert transitions left in the outbox", len(pending))
            self.metrics.outbox_swept.inc(len(pending))
            await self.publish_alerts(
                [e for _, e in pending], [oid for oid, _ in pending], leftovers=True
            )
        await self.store.outbox_trim(mine, cutoff)

    async def flush_outbox(self) -> None:
        """Publish transitions a previous run committed but may not have published (and
        those the v1 schema's outbox still holds)."""
        pending = await self.store.legacy_outbox() + await self.store.outbox()
        if pending:
            log.info("re-publishing %d alert transitions from the outbox", len(pending))
            await self.publish_alerts(
                [e for _, e in pending], [oid for oid, _ in pending], leftovers=True
            )
