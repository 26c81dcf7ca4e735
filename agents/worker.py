"""A wardwatch worker: its topics, agents, timers and tasks on the Faust app.

    vitals ──► score agent (batched) ──► alerts
                   │ rejects ──────────► dead-letter
    patient-context ──► context agent ──► Redis
    timer ──► escalation of unacknowledged alerts ──► alerts

Several workers with the same app id share the partitions of ``vitals``; each patient
lives on one partition, so one worker owns a patient at a time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import faust
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry
from redis.exceptions import RedisError

import wardwatch
from agents import views as ops_views
from agents import web as care_team_web
from agents.app import build_app
from agents.control import ModelControl
from agents.desk import WorkerDesk
from agents.metrics import Metrics
from agents.model_stage import Incoming, ModelHolder
from agents.pipeline import ScoringPipeline
from alerts import PolicyConfig
from alerts.webhook import WebhookSender, should_page
from wardwatch.ingest import Decoded, Rejection, decode_vitals
from wardwatch.logs import patient_ref
from wardwatch.schemas import DeadLetter, PatientContext, RejectReason
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore

log = logging.getLogger("wardwatch.worker")
T = TypeVar("T")


class Worker:
    """What one worker process holds: settings, store, pipeline, metrics, topics."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics(registry)
        self.metrics.build_info.info({"version": wardwatch.__version__})
        self.store = RedisStateStore.from_settings(
            settings, observe=lambda op, s: self.metrics.redis_seconds.labels(op).observe(s)
        )
        self.positions: dict[tuple[str, int], int] = {}  # last offset handled per partition
        self._lag_labels: set[tuple[str, str]] = set()
        self.models = ModelHolder()
        self.control = ModelControl(settings, self.metrics, self.models)
        self.pipeline = ScoringPipeline(
            self.store,
            PolicyConfig.from_settings(settings),
            time_scale=settings.time_scale,
            models=self.models,
            on_model_unavailable=lambda reason, n: self.metrics.model_unavailable.labels(
                reason
            ).inc(n),
            on_inference=lambda name, version, s: self.metrics.inference_seconds.labels(
                name, version
            ).observe(s),
        )
        self.metrics.model_unavailable.labels("no_model").inc(0)
        self.metrics.model_unavailable.labels("model_error").inc(0)
        self.control.load(None, None)  # the promoted version
        self.app = build_app(settings, self.metrics.registry)
        ops_views.register(self.app, self.metrics.registry, self.readiness)
        desk = WorkerDesk(
            self.store,
            self.pipeline,
            self.publish_alerts,
            on_acknowledged=self.metrics.time_to_ack.observe,
        )
        care_team_web.register(self.app, desk, settings.api_token.get_secret_value())
        t = settings.topics
        self.vitals_topic = self.app.topic(t.vitals, value_serializer="raw", key_serializer="raw")
        self.context_topic = self.app.topic(
            t.patient_context, value_serializer="raw", key_serializer="raw"
        )
        self.alerts_topic = self.app.topic(t.alerts, value_serializer="raw", key_serializer="raw")
        self.dead_letter_topic = self.app.topic(
            t.dead_letter, value_serializer="raw", key_serializer="raw"
        )
        self.webhook: WebhookSender | None = None
        if settings.webhook_url:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            self.webhook = WebhookSender(
                settings.webhook_url,
                secret=secret,
                on_result=lambda outcome: self.metrics.webhook.labels(outcome).inc(),
            )
        self.ready = False
        self._register_agents()

    # ---- agents -----------------------------------------------------------------------
    def _register_agents(self) -> None:
        app, s = self.app, self.settings

        @app.agent(self.vitals_topic, name="score")
        async def score(stream: faust.StreamT) -> None:
            async for events in cast(faust.Stream, stream).take_events(
                s.batch_size, within=s.batch_within_s
            ):
                await self.handle_vitals(events)

        @app.agent(self.context_topic, name="context")
        async def context(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self.handle_context(event)

        # often enough for the escalation interval, in wall-clock seconds
        tick_s = max(0.5, min(10.0, s.escalate_after_s / s.time_scale / 3))

        @app.timer(interval=tick_s)
        async def escalate() -> None:
            await self.escalate_due()

        if self.webhook is not None:
            webhook = self.webhook

            @app.task
            async def deliver_webhooks() -> None:
                await webhook.run()

        @app.task
        async def watch_promotions() -> None:
            await self.control.follow()

        @app.task
        async def startup() -> None:
            await self.store.ping()
            await self.flush_outbox()
            self.ready = True
            log.info("worker ready (redis %s)", (self.settings.redis_url or "").split("@")[-1])

    async def readiness(self) -> tuple[dict[str, bool], dict[str, Any]]:
        """Ready when started (consumer group joined, outbox flushed), Redis answers, and a
        model is loaded (unless ``require_model`` is off: rules-only scoring is allowed)."""
        checks = {"kafka": self.ready and not self.app.consumer.should_stop, "redis": True}
        try:
            await asyncio.wait_for(self.store.ping(), 1.0)
        except Exception:  # noqa: BLE001 - any Redis failure means not ready
            checks["redis"] = False
        current = self.models.current
        checks["model"] = current is not None or not self.settings.require_model
        return checks, {"model": current.version if current else None}

    async def handle_vitals(self, events: Sequence[faust.EventT]) -> None:
        topic = self.settings.topics.vitals
        self.metrics.consumed.labels(topic).inc(len(events))
        self.metrics.batch_size.observe(len(events))
        self.metrics.last_vitals.set(time.time())
        for ev in events:
            key = (ev.message.topic, ev.message.partition)
            self.positions[key] = max(self.positions.get(key, -1), ev.message.offset)
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        batch: list[Incoming] = []
        for ev in events:
            msg = ev.message
            raw = ev.value if isinstance(ev.value, bytes) else bytes(ev.value or b"")
            decoded = decode_vitals(raw, now=now, max_future_skew_s=self.settings.max_future_skew_s)
            if isinstance(decoded, Rejection):
                await self.dead_letter(raw, decoded, msg.topic, msg.partition, msg.offset)
                continue
            assert isinstance(decoded, Decoded)
            for w in decoded.warnings:
                self.metrics.warnings.labels(w).inc()
            source_ms = int(msg.timestamp * 1000) if msg.timestamp else None
            for i, vitals in enumerate(decoded.events):
                event_id = f"{msg.topic}:{msg.partition}:{msg.offset}:{i}"
                batch.append(Incoming(vitals, event_id, source_ms))
        t1 = time.perf_counter()
        self.metrics.stage_seconds.labels("decode").observe(t1 - t0)
        if not batch:
            return
        result = await self.retrying("score", lambda: self.pipeline.process(batch))
        t2 = time.perf_counter()
        self.metrics.stage_seconds.labels("score").observe(t2 - t1)
        self.metrics.scored.labels(topic).inc(len(result.scored))
        self.metrics.skipped.labels("duplicate").inc(result.duplicates)
        self.metrics.skipped.labels("stale").inc(result.stale)
        self.metrics.artifacts_suppressed.inc(result.suppressed_artifacts)
        if result.conflicts:
            self.metrics.skipped.labels("conflict").inc(len(result.conflicts))
            hash_key = self.settings.log_hash_key.get_secret_value()
            log.warning(
                "state version conflict: events of %d patients not applied (%s)",
                len(result.conflicts),
                ", ".join(patient_ref(pid, hash_key) for pid in result.conflicts),
            )
        await self.retrying(
            "publish", lambda: self.publish_alerts(result.emitted, result.outbox_ids)
        )
        self.metrics.stage_seconds.labels("publish").observe(time.perf_counter() - t2)

    async def retrying(self, stage: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, backing off while Redis or Kafka is down.

        Faust acknowledges a batch once the agent moves on, so giving up would lose its
        events: the partition waits instead (lag grows, and ops are paged). Retrying is
        safe: scoring is idempotent given the stored state, and transitions a failed
        attempt may have committed are re-published from the outbox first.
        """
        delay = 0.5
        while True:
            try:
                return await attempt()
            except (TimeoutError, RedisError, KafkaError, OSError) as exc:
                self.metrics.retries.labels(stage).inc()
                log.error("%s failed (%s); retrying in %.1f s", stage, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                with contextlib.suppress(RedisError, KafkaError, OSError, asyncio.TimeoutError):
                    await self.flush_outbox()

    async def publish_alerts(self, emitted: list[dict[str, Any]], outbox_ids: list[str]) -> None:
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
        await self.store.outbox_done(outbox_ids)
        if self.webhook is not None:
            for msg in emitted:
                if should_page(msg, self.settings.webhook_min_priority):
                    self.webhook.submit(msg)

    async def flush_outbox(self) -> None:
        """Publish transitions a previous run committed but may not have published."""
        pending = await self.store.outbox()
        if pending:
            log.info("re-publishing %d alert transitions from the outbox", len(pending))
            await self.publish_alerts([e for _, e in pending], [sid for sid, _ in pending])

    def update_lag(self) -> None:
        """Consumer lag per assigned partition: highwater minus the next offset to handle."""
        consumer = self.app.consumer
        assigned = {
            (tp.topic, str(tp.partition))
            for tp in consumer.assignment()
            if tp.topic == self.settings.topics.vitals
        }
        for labels in self._lag_labels - assigned:  # partitions lost in a rebalance
            self.metrics.consumer_lag.remove(*labels)
        self._lag_labels = assigned
        for tp in consumer.assignment():
            if tp.topic != self.settings.topics.vitals:
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not known yet right after a rebalance
                continue
            if high is None:
                continue
            done = self.positions.get((tp.topic, tp.partition), -1) + 1
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - done))

    async def escalate_due(self) -> None:
        self.update_lag()
        open_alerts = await self.store.open_alerts()
        self.metrics.open_alerts.set(len(open_alerts))
        self.metrics.patients.set(await self.store.patients_monitored())
        watched = await self.store.watched()
        if not watched:
            return
        result = await self.pipeline.tick(watched)
        await self.publish_alerts(result.emitted, result.outbox_ids)

    async def handle_context(self, event: faust.EventT) -> None:
        msg = event.message
        raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        self.metrics.consumed.labels(self.settings.topics.patient_context).inc()
        try:
            ctx = PatientContext.model_validate_json(raw)
        except ValueError as exc:
            rej = Rejection(RejectReason.SCHEMA, _first_error(exc))
            await self.dead_letter(raw, rej, msg.topic, msg.partition, msg.offset)
            return
        context = ctx.model_dump(mode="json")
        await self.retrying("context", lambda: self.store.set_context(ctx.patient_id, context))

    async def dead_letter(
        self, raw: bytes, rej: Rejection, topic: str, partition: int, offset: int
    ) -> None:
        letter = DeadLetter(
            reason=rej.reason,
            detail=rej.detail,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            original_b64=base64.b64encode(raw).decode(),
            rejected_at=datetime.now(UTC),
        )
        await self.dead_letter_topic.send(
            key=f"{topic}:{partition}:{offset}".encode(),
            value=letter.model_dump_json().encode(),
        )
        self.metrics.dead_lettered.labels(rej.reason.value).inc()
        log.warning("dead-lettered %s:%s:%s: %s", topic, partition, offset, rej.reason.value)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(x) for x in first.get('loc', ()))}: {first.get('msg')}"
    return str(exc)
