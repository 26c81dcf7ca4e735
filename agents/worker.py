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
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, TypeVar, cast

import faust
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

import wardwatch
from agents import views as ops_views
from agents import web as care_team_web
from agents.app import build_app
from agents.control import ModelControl
from agents.desk import WorkerDesk
from agents.metrics import Metrics
from agents.model_stage import Incoming, ModelHolder
from agents.pager import Pager
from agents.pipeline import BatchResult, ScoringPipeline
from agents.retry import Retrier, is_transient, stop_uncommitted
from alerts import AlertState, PolicyConfig
from alerts.webhook import WebhookSender
from wardwatch.ingest import Decoded, Rejection, decode_vitals
from wardwatch.logs import patient_ref
from wardwatch.schemas import (
    AlertCommand,
    DeadLetter,
    FailureReason,
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


class Origin(NamedTuple):
    """Where a consumed message came from, and its bytes (for the dead-letter topic)."""

    raw: bytes
    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


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
        t = settings.topics
        self.commands_topic = self.app.topic(
            t.alert_commands, value_serializer="raw", key_serializer="raw"
        )
        desk = WorkerDesk(self.store, self.submit_command)
        care_team_web.register(self.app, desk, settings.api_token.get_secret_value())
        self.vitals_topic = self.app.topic(t.vitals, value_serializer="raw", key_serializer="raw")
        self.context_topic = self.app.topic(
            t.patient_context, value_serializer="raw", key_serializer="raw"
        )
        self.alerts_topic = self.app.topic(t.alerts, value_serializer="raw", key_serializer="raw")
        self.dead_letter_topic = self.app.topic(
            t.dead_letter, value_serializer="raw", key_serializer="raw"
        )
        self.pager: Pager | None = None
        if settings.webhook_url:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            sender = WebhookSender(
                settings.webhook_url,
                secret=secret,
                on_result=lambda outcome: self.metrics.webhook.labels(outcome).inc(),
            )
            self.pager = Pager(settings, sender, self.metrics, self._dead_letter_page)
        self.retrier = Retrier(
            settings.retry_max_s, on_retry=lambda stage: self.metrics.retries.labels(stage).inc()
        )
        self.poison_streak = 0  # events in a row that failed alone
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
                await self.guarded("vitals batch", self.handle_vitals(events))

        @app.agent(self.context_topic, name="context")
        async def context(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self.guarded("patient context", self.handle_context(event))

        @app.agent(self.commands_topic, name="commands")
        async def commands(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self.guarded("care-team command", self.handle_command(event))

        # often enough for the escalation interval, in wall-clock seconds
        tick_s = max(0.5, min(10.0, s.escalate_after_s / s.time_scale / 3))

        @app.timer(interval=tick_s)
        async def escalate() -> None:
            await self.in_background("escalation", self.escalate_due)

        @app.timer(interval=s.outbox_sweep_s)
        async def sweep() -> None:
            await self.in_background("outbox", self.sweep_outbox)

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
            await self.guarded("start-up", self.retrying("start-up", self.flush_outbox))
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

    async def guarded(self, what: str, work: Awaitable[None]) -> None:
        """Run the handling of consumed messages to its end.

        A rebalance cancels the agent, and Faust acknowledges the batch in hand when the
        agent leaves it: the work is shielded and finished first, so what is acknowledged
        was applied. An exception that escapes the handler (not a Redis or Kafka failure:
        those are retried) stops the worker before anything is acknowledged."""
        task = asyncio.ensure_future(work)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                log.info("finishing the %s in hand before giving up the partitions", what)
                await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                self._stop_for(what, task.exception())
            raise
        except Exception as exc:  # noqa: BLE001 - never acknowledged: the worker stops
            self._stop_for(what, exc)

    def _stop_for(self, what: str, exc: BaseException | None) -> None:
        log.critical("unexpected failure handling a %s", what, exc_info=exc)
        stop_uncommitted(f"{type(exc).__name__} while handling a {what}")

    async def in_background(self, what: str, work: Callable[[], Awaitable[None]]) -> None:
        """A timer's run: a failure is logged and counted, and the next run tries again."""
        try:
            await work()
        except Exception as exc:  # noqa: BLE001 - a timer must not crash the worker
            self.metrics.background_failures.labels(what).inc()
            if is_transient(exc):
                log.error("%s failed (%s); next run retries", what, type(exc).__name__)
            else:
                log.exception("%s failed; next run retries", what)

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
                if vitals.patient_id != msg_key:  # not this partition's patient: to theirs
                    misrouted.append(vitals)
                    continue
                event_id = f"{origin.key}:{i}"
                batch.append(Incoming(vitals, event_id, source_ms))
        if misrouted:
            await self.retrying("re-key", lambda: self.rekey(misrouted))
        t1 = time.perf_counter()
        self.metrics.stage_seconds.labels("decode").observe(t1 - t0)
        if not batch:
            return
        result = await self.score(batch, origins)
        t2 = time.perf_counter()
        self.metrics.stage_seconds.labels("score").observe(t2 - t1)
        self.metrics.scored.labels(topic).inc(len(result.scored))
        self.metrics.skipped.labels("duplicate").inc(result.duplicates)
        self.metrics.skipped.labels("stale").inc(result.stale)
        self.metrics.artifacts_suppressed.inc(result.suppressed_artifacts)
        await self.retrying(
            "publish", lambda: self.publish_alerts(result.emitted, result.outbox_ids)
        )
        self.metrics.stage_seconds.labels("publish").observe(time.perf_counter() - t2)

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
        self._check_conflicts(result)
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
                if self.poison_streak >= self.settings.poison_streak_limit:
                    self._stop_for(f"vitals event ({self.poison_streak} failing in a row)", exc)
                poisoned.add(key)
                detail = f"{type(exc).__name__} scoring event {item.event_id}: {exc}"
                await self.dead_letter(origins[key], FailureReason.PROCESSING_ERROR, detail)
                continue
            self.poison_streak = 0
            self._check_conflicts(one)
            total.scored += one.scored
            total.duplicates += one.duplicates
            total.stale += one.stale
            total.skipped += [(index, why) for _, why in one.skipped]
            total.suppressed_artifacts += one.suppressed_artifacts
            total.emitted += one.emitted
            total.outbox_ids += one.outbox_ids
            total.conflict_retries += one.conflict_retries
        return total

    def _check_conflicts(self, result: BatchResult) -> None:
        """Conflicts were retried in the pipeline; ones still left are another writer
        holding the patients (a zombie after a rebalance): never drop their events."""
        if result.conflict_retries:
            self.metrics.retries.labels("conflict").inc(result.conflict_retries)
        if result.conflicts:
            hash_key = self.settings.log_hash_key.get_secret_value()
            refs = ", ".join(patient_ref(pid, hash_key) for pid in result.conflicts)
            stop_uncommitted(f"state of {len(result.conflicts)} patients kept changing ({refs})")

    async def retrying(self, stage: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` until it succeeds; Redis and Kafka failures are retried with
        backoff (the partition waits, lag grows, ops are paged), the outbox re-published
        before each retry. See ``agents.retry``."""
        return await self.retrier.run(stage, attempt, before_retry=self.flush_outbox)

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
        await self.store.outbox_done(outbox_ids)  # the pager reads them from the topic

    async def sweep_outbox(self) -> None:
        """Publish the owned patients' transitions committed more than ``outbox_sweep_s``
        ago and still in the outbox (their publisher died or stalled), oldest first, so
        each patient's transitions leave in the order they were committed."""
        cutoff = int((time.time() - self.settings.outbox_sweep_s) * 1000)
        after = "-"
        while True:
            pending = await self.store.outbox(after=after, committed_before_ms=cutoff)
            if not pending:
                return
            after = pending[-1][0]
            mine = set(self.owned([e["patient_id"] for _, e in pending]))
            todo = [(sid, e) for sid, e in pending if e["patient_id"] in mine]
            if todo:
                log.info("publishing %d alert transitions left in the outbox", len(todo))
                self.metrics.outbox_swept.inc(len(todo))
                await self.publish_alerts([e for _, e in todo], [sid for sid, _ in todo])

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

    def owned(self, pids: Sequence[str]) -> list[str]:
        """The patients whose partition this worker holds now (one writer per patient)."""
        vitals = self.settings.topics.vitals
        held = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == vitals}
        n = self.settings.partitions
        return [pid for pid in pids if partition_for(pid, n) in held]

    async def escalate_due(self) -> None:
        self.update_lag()
        open_alerts = await self.store.open_alerts()
        self.metrics.open_alerts.set(len(open_alerts))
        self.metrics.patients.set(await self.store.patients_monitored())
        watched = self.owned(await self.store.watched())
        if not watched:
            return
        # a conflict here is a rebalance in progress: the patient's new owner ticks it
        result = await self.pipeline.tick(watched)
        await self.publish_alerts(result.emitted, result.outbox_ids)

    async def submit_command(self, command: AlertCommand) -> None:
        """Publish a care-team command keyed by patient; returns once the broker has it."""
        fut = await self.commands_topic.send(
            key=command.patient_id.encode(), value=command.model_dump_json().encode()
        )
        await fut

    async def handle_command(self, event: faust.EventT) -> None:
        """Apply an acknowledge or resolve to the patient it names, if it still names the
        patient's current alert (a command for an alert since resolved changes nothing)."""
        cmd = await self._parse(event, AlertCommand)
        if cmd is None:
            return
        pid = cmd.patient_id
        current = await self.retrying("command", lambda: self.store.current_alert(pid))
        if current is None or current.get("alert_id") != cmd.alert_id:
            self.metrics.commands.labels(cmd.action, "stale").inc()
            return
        act = self.pipeline.acknowledge if cmd.action == "ack" else self.pipeline.resolve
        result = await self.retrying("command", lambda: act(pid, cmd.actor))
        self._check_conflicts(result)
        await self.retrying(
            "publish", lambda: self.publish_alerts(result.emitted, result.outbox_ids)
        )
        self.metrics.commands.labels(cmd.action, "applied" if result.emitted else "no_effect").inc()
        if any(m["transition"] == "ACKNOWLEDGED" for m in result.emitted):
            loaded = await self.retrying("command", lambda: self.store.load([pid]))
            state = AlertState.from_json(loaded[pid].state.alert)
            if state.acked_ts_ms and state.opened_ts_ms:
                seconds = (state.acked_ts_ms - state.opened_ts_ms) / 1000
                self.metrics.time_to_ack.observe(max(0.0, seconds))

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
        await self.retrying("context", lambda: self.store.set_context(ctx.patient_id, context))

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
        self, origin: Origin, reason: RejectReason | FailureReason, detail: str
    ) -> None:
        """Publish the message to ``dead-letter`` with its reason and wait for the broker
        to acknowledge it (retried like any Kafka write) before the message counts as done."""
        letter = DeadLetter(
            reason=reason,
            detail=detail[:2000],
            source_topic=origin.topic,
            source_partition=origin.partition,
            source_offset=origin.offset,
            original_b64=base64.b64encode(origin.raw).decode(),
            rejected_at=datetime.now(UTC),
        )
        value = letter.model_dump_json().encode()

        async def send() -> None:
            fut = await self.dead_letter_topic.send(key=origin.key.encode(), value=value)
            await fut

        await self.retrying("dead-letter", send)
        self.metrics.dead_lettered.labels(reason.value).inc()
        log.warning("dead-lettered %s: %s", origin.key, reason.value)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(x) for x in first.get('loc', ()))}: {first.get('msg')}"
    return str(exc)
