"""A wardwatch worker: its topics, agents, timers and tasks on the Faust app.

    vitals ──► score task (batched, agents.batch) ──► outbox ──► alerts (agents.outbox)
                   │ rejects, poison events ─────────► dead-letter
    patient-context ──► context agent ──► Redis
    alert-commands ──► commands agent (agents.commands) ──► alerts
    timers ──► escalation of owned patients' alerts; outbox sweep
    alerts ──► pager (its own consumer group, agents.pager) ──► paging webhook
    (shadow_model_version set) candidate beside the live model, its alerts ticked by the
        same timers ──► alerts-shadow, never paged (agents.shadow)
    control ──► model promotions (agents.control)
    imaging-studies ──► imaging agent (a lung-nodule model in the registry, agents.imaging):
        scored in its own threads ──► imaging-findings; rejects, unloadable studies ──►
        dead-letter

Several workers with the same app id share the partitions of ``vitals``; each patient
lives on one partition, so one worker owns a patient at a time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import faust
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

import wardwatch
from agents import views as ops_views
from agents import web as care_team_web
from agents.app import batch_intake, build_app
from agents.batch import BatchScorer, Origin
from agents.commands import CommandApplier
from agents.control import ModelControl
from agents.desk import WorkerDesk
from agents.imaging import ImagingScorer, load_imaging_model
from agents.metrics import Metrics
from agents.model_stage import Incoming, ModelHolder
from agents.outbox import AlertPublisher
from agents.pager import Pager
from agents.pipeline import ScoringPipeline
from agents.retry import Retrier, guarded, in_background
from agents.shadow import RedisShadowStore, Shadow, ShadowControl, ShadowHolder, ShadowPublisher
from alerts import PolicyConfig
from alerts.webhook import WebhookSender
from wardwatch.ingest import Decoded, Rejection, decode_vitals
from wardwatch.schemas import (
    MAX_LETTER_ORIGINAL_BYTES,
    AlertCommand,
    DeadLetter,
    FailureReason,
    ImagingReason,
    PatientContext,
    RejectReason,
    VitalsEvent,
)
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore
from wardwatch.topics import partition_for

log = logging.getLogger("wardwatch.worker")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Taken:
    """A record from the vitals intake as the batch handler reads it (``message``,
    ``value``), like a Faust event."""

    __slots__ = ("message", "value")

    def __init__(self, message: Any) -> None:
        self.message = message
        self.value = message.value


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
        # vitals partitions whose event-time clock was restored from the store since this
        # worker got them (a partition lost in a rebalance is restored again if it returns)
        self._stream_checked: set[int] = set()
        self.models = ModelHolder()
        self.control = ModelControl(settings, self.metrics, self.models)
        shadow = self._shadow(settings)
        self.pipeline = ScoringPipeline(
            self.store,
            PolicyConfig.from_settings(settings),
            time_scale=settings.time_scale,
            late_window_s=settings.late_window_s,
            stream_lateness_s=settings.stream_lateness_s,
            stream_idle_s=settings.stream_idle_s,
            partitions=settings.partitions,
            models=self.models,
            on_model_unavailable=lambda reason, n: self.metrics.model_unavailable.labels(
                reason
            ).inc(n),
            on_inference=lambda name, version, s: self.metrics.inference_seconds.labels(
                name, version
            ).observe(s),
            shadow=shadow,
        )
        self.metrics.model_unavailable.labels("no_model").inc(0)
        self.metrics.model_unavailable.labels("model_error").inc(0)
        self.control.load(None, None)  # the promoted version
        self.app = build_app(settings, self.metrics.registry)
        ops_views.register(self.app, self.metrics.registry, self.readiness)
        t = settings.topics
        self.commands_topic = self.app.topic(
            t.alert_commands, value_serializer="raw", key_serializer="raw"
        )
        desk = WorkerDesk(self.store, self.submit_command)
        care_team_web.register(self.app, desk, settings, self.store.r)
        self.vitals_topic = self.app.topic(t.vitals, value_serializer="raw", key_serializer="raw")
        self.context_topic = self.app.topic(
            t.patient_context, value_serializer="raw", key_serializer="raw"
        )
        self.alerts_topic = self.app.topic(t.alerts, value_serializer="raw", key_serializer="raw")
        self.shadow_publisher: ShadowPublisher | None = None
        if shadow is not None:  # its own topic: the pager reads only `alerts`
            self.shadow_publisher = ShadowPublisher(
                self.app.topic(t.alerts_shadow, value_serializer="raw", key_serializer="raw"),
                shadow.store,
                self.owned,
                settings.outbox_sweep_s,
                on_error=self._shadow_error,
            )
        self.dead_letter_topic = self.app.topic(
            t.dead_letter, value_serializer="raw", key_serializer="raw"
        )
        self.imaging: ImagingScorer | None = None
        imaging_model = load_imaging_model(settings, self.metrics)
        if imaging_model is not None:
            self.imaging_topic = self.app.topic(
                t.imaging_studies, value_serializer="raw", key_serializer="raw"
            )
            self.findings_topic = self.app.topic(
                t.imaging_findings, value_serializer="raw", key_serializer="raw"
            )
            self.imaging = ImagingScorer(
                imaging_model,
                settings,
                self.metrics,
                dead_letter=self.dead_letter,
                retrying=self.retrying,
                publish=self.publish_finding,
            )
            log.info(
                "imaging on: %s %s, %d scoring thread(s)",
                imaging_model.name,
                imaging_model.version,
                settings.imaging_workers,
            )
        self.pager: Pager | None = None
        if settings.webhook_url:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            sender = WebhookSender(
                settings.webhook_url,
                secret=secret,
                on_result=lambda outcome: self.metrics.webhook.labels(outcome).inc(),
            )
            self.pager = Pager(
                settings, sender, self.metrics, self._dead_letter_page, held=self.held
            )
        self.retrier = Retrier(
            settings.retry_max_s, on_retry=lambda stage: self.metrics.retries.labels(stage).inc()
        )
        self.outbox = AlertPublisher(
            self.alerts_topic, self.store, self.metrics, self.owned, settings.outbox_sweep_s
        )
        self.batches = BatchScorer(
            self.pipeline,
            self.retrying,
            self.dead_letter,
            self.metrics,
            poison_streak_limit=settings.poison_streak_limit,
            log_hash_key=settings.log_hash_key.get_secret_value(),
        )
        self.commands = CommandApplier(
            self.store,
            self.pipeline,
            self.retrying,
            self.outbox.publish_alerts,
            self.batches.check_conflicts,
            self.metrics,
        )
        self.ready = False
        self._register_agents()

    def _shadow(self, settings: Settings) -> Shadow | None:
        """The shadow stage when ``shadow_model_version`` names a candidate (else None)."""
        if not settings.shadow_model_version:
            return None
        for reason in ("load", "model_error", "conflict", "store", "publish"):
            self.metrics.shadow_errors.labels(reason).inc(0)
        for kind in ("held_reading", "no_repeat_observation"):
            self.metrics.shadow_timer_transitions.labels(kind).inc(0)
        holder = ShadowHolder(settings.shadow_model_version)
        self.shadow_control = ShadowControl(settings, holder, self._shadow_error)
        self.shadow_control.load()
        store = RedisShadowStore(
            self.store.r,
            prefix=settings.redis_prefix,
            version=holder.version,
            cluster=self.store.cluster,
            ttl_s=settings.state_ttl_s,
        )
        return Shadow(
            store,
            holder,
            self.store,
            min_priority=settings.webhook_min_priority,
            on_error=self._shadow_error,
            on_scored=self.metrics.shadow_scored.inc,
            on_would_page=lambda priority: self.metrics.shadow_would_page.labels(priority).inc(),
            on_timer=lambda kind: self.metrics.shadow_timer_transitions.labels(kind).inc(),
        )

    def _shadow_error(self, reason: str, n: int = 1) -> None:
        self.metrics.shadow_errors.labels(reason).inc(n)

    # ---- agents -----------------------------------------------------------------------
    def _register_agents(self) -> None:
        app, s = self.app, self.settings

        # vitals in batches straight from the consumer's fetch loop (agents.app.
        # BatchIntake), acknowledged once a batch is scored and its outbox published
        intake = batch_intake(app, self.vitals_topic)

        @app.task
        async def score() -> None:
            async for records in intake.batches(s.batch_size, s.batch_within_s):
                await guarded("vitals batch", self.handle_vitals([Taken(r) for r in records]))
                intake.ack(records)

        @app.agent(self.context_topic, name="context")
        async def context(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await guarded("patient context", self.handle_context(event))

        if self.imaging is not None:
            imaging = self.imaging

            # one actor per scoring thread, sharing the topic's queue; each message is
            # acknowledged once its finding or dead letter is, so offsets are committed
            # only up to the oldest study still being scored
            @app.agent(self.imaging_topic, name="imaging", concurrency=s.imaging_workers)
            async def imaging_studies(stream: faust.StreamT) -> None:
                async for event in stream.events():
                    msg = event.message
                    raw = (
                        event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
                    )
                    origin = Origin(raw, msg.topic, msg.partition, msg.offset)
                    await guarded("imaging study", imaging.handle(raw, origin))

        @app.agent(self.commands_topic, name="commands")
        async def commands(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await guarded("care-team command", self.handle_command(event))

        # often enough for the escalation interval, in wall-clock seconds
        tick_s = max(0.5, min(10.0, s.escalate_after_s / s.time_scale / 3))

        @app.timer(interval=tick_s)
        async def escalate() -> None:
            await in_background("escalation", self.escalate_due, self._failed)
            if self.shadow_publisher is not None:  # after the live pages, same clocks
                await in_background("escalation", self.shadow_timers, self._failed)

        @app.timer(interval=s.outbox_sweep_s)
        async def sweep() -> None:
            await in_background("outbox", self.outbox.sweep_outbox, self._failed)

        if self.shadow_publisher is not None:
            shadow_publisher = self.shadow_publisher

            @app.timer(interval=s.outbox_sweep_s)
            async def shadow_sweep() -> None:
                await shadow_publisher.flush(owned_only=True)
                if self.shadow_control.due():  # a candidate that failed to load
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(None, self.shadow_control.load)

        if self.pager is not None:
            pager = self.pager

            @app.task
            async def page() -> None:
                await pager.run()

        @app.task
        async def watch_promotions() -> None:
            await self.control.follow()

        @app.task
        async def startup() -> None:
            await guarded("start-up", self.retrying("start-up", self.outbox.flush_outbox))
            if self.shadow_publisher is not None:
                await self.shadow_publisher.flush()
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

    async def handle_vitals(self, events: Sequence[faust.EventT | Taken]) -> None:
        topic = self.settings.topics.vitals
        self.metrics.consumed.labels(topic).inc(len(events))
        self.metrics.batch_size.observe(len(events))
        self.metrics.last_vitals.set(time.time())
        for ev in events:
            key = (ev.message.topic, ev.message.partition)
            self.positions[key] = max(self.positions.get(key, -1), ev.message.offset)
        fresh = {ev.message.partition for ev in events} - self._stream_checked
        if fresh:  # a partition new to this worker: its event-time clock resumes as stored
            stored = await self.retrying("load", self.store.stream_times)
            self.pipeline.restore_stream({p: ms_ for p, ms_ in stored.items() if p in fresh})
            self._stream_checked |= fresh
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        batch: list[Incoming] = []
        origins: dict[str, Origin] = {}  # message key -> where a poison event came from
        misrouted: list[VitalsEvent] = []  # keyed by something other than their patient
        for ev in events:
            msg = ev.message
            raw = ev.value if isinstance(ev.value, bytes) else bytes(ev.value or b"")
            decoded = decode_vitals(raw, now=now, max_future_skew_s=self.settings.max_future_skew_s)
            origin = Origin(raw, msg.topic, msg.partition, msg.offset)
            if isinstance(decoded, Rejection):
                await self.dead_letter(origin, decoded.reason, decoded.detail)
                continue
            assert isinstance(decoded, Decoded)
            origins[origin.key] = origin
            for w in decoded.warnings:
                self.metrics.warnings.labels(w).inc()
            source_ms = int(msg.timestamp * 1000) if msg.timestamp else None
            msg_key = msg.key.decode("utf-8", "replace") if isinstance(msg.key, bytes) else msg.key
            for i, vitals in enumerate(decoded.events):
                flags = decoded.flags_of(i)
                here = vitals.patient_id == msg_key
                for flag in flags:  # a re-keyed event's extreme readings count where scored
                    if here or flag.set_aside:
                        self.metrics.flagged_readings.labels(flag.field, flag.tier).inc()
                if not here:  # not this partition's patient: to theirs
                    misrouted.append(vitals)
                    continue
                event_id = f"{origin.key}:{i}"
                batch.append(Incoming(vitals, event_id, source_ms, msg.partition, flags))
        if misrouted:
            await self.retrying("re-key", lambda: self.rekey(misrouted))
        t1 = time.perf_counter()
        self.metrics.stage_seconds.labels("decode").observe(t1 - t0)
        if not batch:
            return
        result = await self.batches.score(batch, origins)
        t2 = time.perf_counter()
        self.metrics.stage_seconds.labels("score").observe(t2 - t1)
        self.metrics.scored.labels(topic).inc(len(result.scored))
        self.metrics.skipped.labels("duplicate").inc(result.duplicates)
        self.metrics.late.inc(result.late)
        for index, why in result.skipped:
            if why == "too_late":
                await self.dead_letter_too_late(batch[index], origins)
        self.metrics.artifacts_suppressed.inc(result.suppressed_artifacts)
        await self.retrying(
            "publish", lambda: self.outbox.publish_alerts(result.emitted, result.outbox_ids)
        )
        if self.shadow_publisher is not None:  # never raises: left for the sweep
            await self.shadow_publisher.publish(result.shadow_emitted, result.shadow_outbox_ids)
        self.metrics.stage_seconds.labels("publish").observe(time.perf_counter() - t2)
        done_s, observe = time.time(), self.metrics.event_to_scored.observe
        for ev in events:
            if ev.message.timestamp:
                observe(max(0.0, done_s - ev.message.timestamp))

    async def dead_letter_too_late(self, item: Incoming, origins: dict[str, Origin]) -> None:
        """An event older than its patient's newest by more than the late window: too
        old to merge, kept on ``dead-letter`` with its reason (never dropped)."""
        ev = item.event
        detail = (
            f"event {item.event_id} at {ev.ts.isoformat()} is more than "
            f"{self.settings.late_window_s:g} s older than the patient's newest event"
        )
        await self.dead_letter(
            origins[item.event_id.rsplit(":", 1)[0]], FailureReason.TOO_LATE, detail
        )

    async def rekey(self, events: list[VitalsEvent]) -> None:
        """Publish events that arrived under another key (or none: a multi-patient Bundle,
        an unkeyed producer) to ``vitals`` keyed by their patient, as canonical JSON events,
        so that the partition owning each patient applies them; returns once the broker
        has them all. A repeat after a crash is a duplicate there, which changes nothing."""
        futures = []
        for event in events:
            value = event.model_dump_json(exclude_none=True).encode()
            futures.append(await self.vitals_topic.send(key=event.patient_id.encode(), value=value))
        await asyncio.gather(*futures)
        self.metrics.rekeyed.inc(len(events))

    async def retrying(self, stage: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` until it succeeds; Redis and Kafka failures are retried with
        backoff (the partition waits, lag grows, ops are paged), the outbox re-published
        before each retry. See ``agents.retry``."""
        return await self.retrier.run(stage, attempt, before_retry=self.outbox.flush_outbox)

    def _failed(self, what: str) -> None:
        self.metrics.background_failures.labels(what).inc()

    def update_lag(self) -> None:
        """Consumer lag per assigned partition: highwater minus the next offset to handle."""
        consumer = self.app.consumer
        assigned = {
            (tp.topic, str(tp.partition))
            for tp in consumer.assignment()
            if tp.topic == self.settings.topics.vitals
        }
        self._stream_checked &= {int(p) for _, p in assigned}
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

    def held(self) -> set[int]:
        """The vitals partitions this worker holds now."""
        vitals = self.settings.topics.vitals
        return {tp.partition for tp in self.app.consumer.assignment() if tp.topic == vitals}

    def owned(self, pids: Sequence[str]) -> list[str]:
        """The patients whose partition this worker holds now (one writer per patient)."""
        held = self.held()
        n = self.settings.partitions
        return [pid for pid in pids if partition_for(pid, n) in held]

    async def escalate_due(self) -> None:
        self.update_lag()
        open_alerts = await self.store.open_alerts()
        self.metrics.open_alerts.set(len(open_alerts))
        await self.store.trim_patients()
        self.metrics.patients.set(await self.store.patients_monitored())
        watched = self.owned(await self.store.watched())
        if not watched:
            return
        # a conflict here is a rebalance in progress: the patient's new owner ticks it
        result = await self.pipeline.tick(watched)
        await self.outbox.publish_alerts(result.emitted, result.outbox_ids)

    async def shadow_timers(self) -> None:
        """The shadow's timers for the owned patients it watches (after the live ones, on
        the same clocks), their would-be transitions on ``alerts-shadow``. Never raises:
        a failure is counted and left for the next tick or the shadow outbox sweep."""
        shadow, publisher = self.pipeline.shadow, self.shadow_publisher
        if shadow is None or publisher is None:
            return
        watched = self.owned(await shadow.watched())
        if not watched:
            return
        result = await self.pipeline.shadow_tick(watched)
        await publisher.publish(result.shadow_emitted, result.shadow_outbox_ids)

    async def publish_finding(self, patient_id: str, value: bytes) -> None:
        """Publish an imaging finding keyed by patient; returns once the broker has it."""
        fut = await self.findings_topic.send(key=patient_id.encode(), value=value)
        await fut

    async def submit_command(self, command: AlertCommand) -> None:
        """Publish a care-team command keyed by patient; returns once the broker has it."""
        fut = await self.commands_topic.send(
            key=command.patient_id.encode(), value=command.model_dump_json().encode()
        )
        await fut

    async def handle_command(self, event: faust.EventT) -> None:
        cmd = await self._parse(event, AlertCommand)
        if cmd is not None:
            await self.commands.apply(cmd)

    async def _parse(self, event: faust.EventT, schema: type[M]) -> M | None:
        """A consumed JSON message as ``schema``, or None once it is dead-lettered."""
        msg = event.message
        raw = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
        self.metrics.consumed.labels(msg.topic).inc()
        try:
            return schema.model_validate_json(raw)
        except ValueError as exc:
            origin = Origin(raw, msg.topic, msg.partition, msg.offset)
            await self.dead_letter(origin, RejectReason.SCHEMA, _first_error(exc))
            return None

    async def handle_context(self, event: faust.EventT) -> None:
        ctx = await self._parse(event, PatientContext)
        if ctx is None:
            return
        context = ctx.model_dump(mode="json")
        pid = ctx.patient_id
        await self.retrying("context", lambda: self.store.set_context(pid, context))
        if ctx.discharged:
            # the context partition is the patient's partition: this worker owns them
            result = await self.retrying("context", lambda: self.pipeline.discharge(pid))
            self.batches.check_conflicts(result)
            await self.retrying(
                "publish", lambda: self.outbox.publish_alerts(result.emitted, result.outbox_ids)
            )
            if self.shadow_publisher is not None:  # never raises: left for the sweep
                await self.shadow_publisher.publish(result.shadow_emitted, result.shadow_outbox_ids)

    async def _dead_letter_page(
        self,
        raw: bytes,
        topic: str,
        partition: int,
        offset: int,
        reason: RejectReason | FailureReason,
        detail: str,
    ) -> None:
        await self.dead_letter(Origin(raw, topic, partition, offset), reason, detail)

    async def dead_letter(
        self, origin: Origin, reason: RejectReason | FailureReason | ImagingReason, detail: str
    ) -> None:
        """Publish the message to ``dead-letter`` with its reason and wait for the broker
        to acknowledge it (retried like any Kafka write) before the message counts as done."""
        value = dead_letter_value(origin, reason, detail, datetime.now(UTC))

        async def send() -> None:
            fut = await self.dead_letter_topic.send(key=origin.key.encode(), value=value)
            await fut

        await self.retrying("dead-letter", send)
        self.metrics.dead_lettered.labels(reason.value).inc()
        log.warning("dead-lettered %s: %s", origin.key, reason.value)


def dead_letter_value(
    origin: Origin,
    reason: RejectReason | FailureReason | ImagingReason,
    detail: str,
    at: datetime,
) -> bytes:
    """The dead letter of ``origin``, serialized. An original longer than
    ``MAX_LETTER_ORIGINAL_BYTES`` travels cut to that length (``original_truncated``, its
    ``original_size`` given, and said in the detail), so that the letter itself fits under
    the broker's message limit: a letter too large would be refused for ever."""
    raw = origin.raw
    cut = len(raw) > MAX_LETTER_ORIGINAL_BYTES
    detail = detail[:2000]
    if cut:
        detail += f" (original of {len(raw)} bytes truncated to {MAX_LETTER_ORIGINAL_BYTES})"
    letter = DeadLetter(
        reason=reason,
        detail=detail,
        source_topic=origin.topic,
        source_partition=origin.partition,
        source_offset=origin.offset,
        original_b64=base64.b64encode(raw[:MAX_LETTER_ORIGINAL_BYTES]).decode(),
        rejected_at=at,
        original_size=len(raw),
        original_truncated=cut,
    )
    return letter.model_dump_json().encode()


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(x) for x in first.get('loc', ()))}: {first.get('msg')}"
    return str(exc)
