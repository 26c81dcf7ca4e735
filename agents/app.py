"""The Faust app of a worker: broker, consumer group, web server and Faust's own sensors.

The worker (``agents.worker``) registers its agents, timers and tasks on it; the web
views (``agents.views`` for operations, ``agents.web`` for the care team) add routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import CollectorRegistry

from agents.kafka_clients import faust_broker_credentials
from wardwatch.settings import Settings
from wardwatch.transport import check_safe_start, web_ssl_context


class BatchIntake:
    """The records of one topic, handed from the consumer's fetch loop to one task a
    chunk at a time instead of through Faust's per-message path (conductor callback,
    channel queue, stream iterator, per-event acknowledgement): the shim in
    ``BatchConsumer._drain_messages``.

    What Faust guarantees still holds: every record handed over is tracked as unacked
    (a rebalance's ``wait_empty`` waits for it), the queue is one of Faust's flow-
    controlled queues (cleared when a rebalance revokes partitions, so nothing of a
    revoked partition is handed out afterwards), and a record is acknowledged only by
    :meth:`ack`, which the task calls once the batch is done; Faust commits only
    acknowledged offsets."""

    def __init__(self, app: faust.App, topic: faust.TopicT, max_chunks: int) -> None:
        self.app = app
        self.topic = topic.get_topic_name()
        self.queue: Any = app.FlowControlQueue(maxsize=max_chunks, clear_on_resume=True)
        app.topics.add(topic)  # subscribed (and acknowledged) like an agent's topic

    async def batches(self, size: int, within: float) -> AsyncIterator[list[Any]]:
        """Lists of at most ``size`` records (Faust ``Message``: ``topic``, ``partition``,
        ``offset``, ``timestamp``, ``key``, ``value``), each yielded once ``size`` are in
        or ``within`` seconds after its first, like ``Stream.take_events``."""
        q = self.queue
        loop = asyncio.get_running_loop()
        while True:
            batch: list[Any] = list(await q.get())
            deadline = loop.time() + within
            while len(batch) < size:
                if q.empty():
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        chunk = await asyncio.wait_for(q.get(), left)
                    except TimeoutError:
                        break
                    batch.extend(chunk)
                elif len(batch) + len(q._queue[0]) <= size:  # the next chunk fits
                    batch.extend(q.get_nowait())
                else:
                    break
            if not self.app.flow_control.is_active():
                # taken while a rebalance revokes: dropped, never acknowledged; no
                # reference kept, so the rebalance's wait for unacked records ends
                batch.clear()
                continue
            yield batch

    def ack(self, records: list[Any]) -> None:
        """Acknowledge ``records`` (all done): their offsets may be committed."""
        ack = self.app.consumer.ack
        for message in records:
            ack(message)


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetch loop hands the records of a ``BatchIntake``
    topic over in chunks; every other topic goes Faust's way, record by record.

    ``_drain_messages`` is Faust's own loop (faust-streaming 0.15, ``faust.transport.
    consumer.Consumer._drain_messages``: read offsets, gaps, ``broker_commit_every``,
    flow suspension) with that one branch added."""

    intakes: dict[str, BatchIntake]
    chunk: int = 256

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - Faust's
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        intakes, chunk = self.intakes, self.chunk
        track = self.track_message
        suspended = self.suspend_flow.wait
        pending: dict[str, list[Any]] = {}
        num_since_yield = 0

        async def hand_over(name: str) -> None:
            records = pending.pop(name)
            await self.wait_first(intakes[name].queue.put(records), suspended())

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > 100:
                            await asyncio.sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if tp.topic in intakes:
                                track(message)
                                records = pending.setdefault(tp.topic, [])
                                records.append(message)
                                if len(records) >= chunk:
                                    await hand_over(tp.topic)
                            else:
                                await self.wait_first(callback(message), suspended())
                            set_read_offset(tp, offset)
                    for name in list(pending):
                        await hand_over(name)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


def consumer_transport(app: faust.App, settings: Settings) -> faust_aiokafka.Transport:
    """Faust's aiokafka transport for ``app`` whose worker consumer waits at most
    ``kafka_fetch_max_wait_ms`` for data on a fetch, returns at most
    ``kafka_fetch_max_bytes`` per fetch (Faust's driver passes a fixed 1,500 ms and
    aiokafka's default byte limit; this sets the values the consumer hands its fetcher
    when it starts) and hands ``BatchIntake`` topics over in chunks."""
    fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    fetch_max_bytes = settings.kafka_fetch_max_bytes
    intakes: dict[str, BatchIntake] = {}

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # both read by start()
            consumer._fetch_max_bytes = fetch_max_bytes
            return consumer

    class WorkerConsumer(BatchConsumer):
        chunk = settings.batch_size

        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    WorkerConsumer.intakes = intakes

    class Transport(faust_aiokafka.Transport):
        Consumer = WorkerConsumer

    transport = Transport(app.conf.broker_consumer, app)
    transport.intakes = intakes  # type: ignore[attr-defined]
    return transport


def batch_intake(app: faust.App, topic: faust.TopicT, max_chunks: int = 64) -> BatchIntake:
    """A ``BatchIntake`` for ``topic`` on an app from ``build_app`` (in place of an agent
    on that topic)."""
    intake = BatchIntake(app, topic, max_chunks)
    app.transport.intakes[intake.topic] = intake  # type: ignore[attr-defined]
    return intake


class Sensors(PrometheusMonitor):
    """Faust's Prometheus sensors, the partition end offset (set for every record
    fetched) through one cached gauge per partition instead of a label look-up each."""

    _end_offsets: dict[Any, Any]

    def track_tp_end_offset(self, tp: Any, offset: int) -> None:
        self.tp_end_offsets[tp] = offset
        try:
            gauge = self._end_offsets[tp]
        except AttributeError:
            self._end_offsets = {}
            gauge = None
        except KeyError:
            gauge = None
        if gauge is None:
            metric = self._metrics.topic_partition_end_offset
            gauge = self._end_offsets[tp] = metric.labels(topic=tp.topic, partition=tp.partition)
        gauge.set(offset)


class NoMessageSensors(Sensors):
    """Faust's Prometheus sensors without its four per-message hooks (message in, stream
    event in and out, message out), which every event pays for in the consuming loop.
    Rebalances, commits, sends, assignments and the web stay measured."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


def build_app(settings: Settings, registry: CollectorRegistry) -> faust.App:
    """A Faust app for ``settings``, its sensors on the injected ``registry``. Refuses
    (ConfigError) a web server reachable from other machines without real secrets and
    TLS (``wardwatch.transport.check_safe_start``); serves HTTPS when TLS is set."""
    s = settings
    check_safe_start(s)
    datadir = s.data_dir / f"{s.app_id}-{s.web_port}"
    datadir.mkdir(parents=True, exist_ok=True)
    urls = ";".join(f"kafka://{h}" for h in s.kafka_bootstrap().split(","))
    app = faust.App(
        s.app_id,
        broker=urls,
        broker_credentials=faust_broker_credentials(s),
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        topic_allow_declare=True,  # Faust's internal leader-assignor topic
        store="memory://",
        web_host=s.web_host,
        web_port=s.web_port,
        web_ssl_context=web_ssl_context(s),
        web_in_thread=False,
        # none of Faust's own views (router, tables, graph, stats, performance): the web
        # server serves only the care-team page and API and the operations views
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_rebalance_timeout=s.kafka_rebalance_timeout_s,
        broker_session_timeout=s.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, s.kafka_session_timeout_s / 5),
        broker_commit_interval=1.0,
        broker_max_poll_records=s.kafka_max_poll_records,
        consumer_max_fetch_size=s.kafka_max_partition_fetch_bytes,
        producer_linger_ms=1,
        logging_config=None,
    )
    app.transport = consumer_transport(app, s)
    # Faust's own sensors (commits, rebalances, send latency; with faust_message_sensors
    # also messages and streams) on the same injected registry, prefix wardwatch_faust_
    monitor = Sensors if s.faust_message_sensors else NoMessageSensors
    app.monitor = monitor(metrics=FaustMetrics.create(registry, "wardwatch_faust"))
    return app
