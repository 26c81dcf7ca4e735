"""Durable paging: pages are read from the ``alerts`` topic and posted to the paging
webhook until delivered, refused or expired.

The ``alerts`` topic is the durable source: a page is never held only in memory. Each
worker runs a pager that pages the patients it owns: the ``alerts`` partitions numbered as
the ``vitals`` partitions it holds (both are keyed by patient, with as many partitions),
so paging follows the worker group's assignment and its rebalances. Progress is the
offset committed for ``{app_id}-pager``, once a transition is delivered, refused or
expired, so a restart or a new owner resumes with what was not done. The receiver
deduplicates by ``Idempotency-Key`` (the transition id): a page is received once however
often it is sent (a page in flight while its partition moves may be sent by both).

Policy: paging transitions (``alerts.webhook.should_page``) are retried with backoff and
jitter (1 s doubling, capped at 30 s) while the receiver is unreachable or answers 5xx,
408 or 429. A 4xx refusal is final: dead-lettered as ``page_rejected``. A page still not
delivered ``page_max_age_s`` after the transition was committed is given up:
dead-lettered as ``page_expired`` (the alert is on the page and in Redis; an unacknowledged
alert pages again by escalation). Either way the ``WardwatchPagingWebhookFailing`` alert
fires for operations. A transition about data older than ``page_max_data_age_s`` when it
was emitted (a backlog, backfilled history) is not paged at all: it is on the care-team
page with its data's age, counted in ``wardwatch_pages_withheld_total``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents.kafka_clients import aiokafka_security
from agents.metrics import Metrics
from agents.retry import keep_running
from alerts.webhook import WebhookSender, should_page, withheld_because
from wardwatch.schemas import FailureReason, RejectReason
from wardwatch.settings import Settings

log = logging.getLogger("wardwatch.pager")

DeadLetter = Callable[[bytes, str, int, int, RejectReason | FailureReason, str], Awaitable[None]]


class Pager:
    def __init__(
        self,
        settings: Settings,
        sender: WebhookSender,
        metrics: Metrics,
        dead_letter: DeadLetter,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        held: Callable[[], set[int]] | None = None,
    ) -> None:
        self.settings = settings
        self.sender = sender
        self.metrics = metrics
        self.dead_letter = dead_letter  # (raw, topic, partition, offset, reason, detail)
        self.clock = clock
        self.sleep = sleep
        # the vitals partitions the worker holds now (None: every partition)
        self.held = held or (lambda: set(range(settings.partitions)))

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-pager"

    async def run(self) -> None:
        """Page until cancelled; after a failure the reading starts again from the last
        committed offset (nothing is skipped)."""
        await keep_running("pager", self._run, self._failed, self.sleep)

    async def _run(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap(),
            group_id=self.group_id,  # for the committed offsets only: assigned by hand
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **aiokafka_security(s),
        )
        await consumer.start()
        assigned: set[int] = set()
        try:
            async with self.sender.session() as session:
                while True:
                    want = self.held()
                    if want != assigned:
                        assigned = await self._assign(consumer, want)
                    if not assigned:
                        await asyncio.sleep(0.5)
                        continue
                    batches = await consumer.getmany(timeout_ms=500, max_records=100)
                    for tp, messages in batches.items():
                        for msg in messages:
                            if tp.partition not in self.held():
                                # moved: its new owner pages from the commit on; here too,
                                # from this message on, should it come back
                                consumer.seek(tp, msg.offset)
                                break
                            await self.page(session, msg.value or b"", tp.partition, msg.offset)
                            await consumer.commit(
                                {TopicPartition(tp.topic, tp.partition): msg.offset + 1}
                            )
        finally:
            await consumer.stop()

    async def _assign(self, consumer: Any, partitions: set[int]) -> set[int]:
        """Page ``partitions`` from now on, each from its committed offset."""
        from aiokafka import TopicPartition

        tps = [TopicPartition(self.settings.topics.alerts, p) for p in sorted(partitions)]
        consumer.assign(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        if tps:
            log.info("paging %d partition(s)", len(tps))
        return set(partitions)

    async def page(self, session: Any, raw: bytes, partition: int, offset: int) -> None:
        """Deliver one transition if it pages; returns when it is delivered, refused or
        expired (the offset may then be committed)."""
        topic = self.settings.topics.alerts
        try:
            msg = json.loads(raw)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            await self.dead_letter(
                raw, topic, partition, offset, RejectReason.MALFORMED_JSON, str(exc)
            )
            return
        if not should_page(msg, self.settings.webhook_min_priority):
            return
        why = withheld_because(msg, self.settings.page_max_data_age_s)
        if why is not None:
            # on the care-team page with its data's age; a page about old news helps nobody
            self.metrics.pages_withheld.labels(why).inc()
            log.info("page %s withheld: %s", msg.get("transition_id"), why)
            return
        emitted_s = float(msg.get("emitted_ms") or msg.get("ts_ms") or 0) / 1000
        attempt = 0
        while True:
            age_s = self.clock() - emitted_s
            if age_s > self.settings.page_max_age_s:
                self.metrics.webhook.labels("failed").inc()
                detail = f"not delivered within {self.settings.page_max_age_s:g} s"
                log.error("page %s expired undelivered", msg.get("transition_id"))
                await self.dead_letter(
                    raw, topic, partition, offset, FailureReason.PAGE_EXPIRED, detail
                )
                return
            outcome = await self.sender.deliver(session, msg)
            if outcome == "delivered":
                self.metrics.page_delay.observe(max(0.0, age_s))
                return
            if outcome == "rejected":
                await self.dead_letter(
                    raw,
                    topic,
                    partition,
                    offset,
                    FailureReason.PAGE_REJECTED,
                    "receiver refused it",
                )
                return
            await self.sleep(max(0.05, random.random() * min(30.0, 2.0 ** min(attempt, 5))))
            attempt += 1

    def _failed(self, what: str) -> None:
        self.metrics.background_failures.labels(what).inc()
