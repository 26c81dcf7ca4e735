"""The Faust app of a worker: broker, consumer group, web server and Faust's own sensors.

The worker (``agents.worker``) registers its agents, timers and tasks on it; the web
views (``agents.views`` for operations, ``agents.web`` for the care team) add routes.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.transport.drivers import aiokafka as faust_aiokafka
from prometheus_client import CollectorRegistry

from agents.kafka_clients import faust_broker_credentials
from wardwatch.settings import Settings
from wardwatch.transport import check_safe_start, web_ssl_context


def fetch_wait_transport(app: faust.App, fetch_max_wait_ms: int) -> faust_aiokafka.Transport:
    """Faust's aiokafka transport for ``app`` whose worker consumer waits at most
    ``fetch_max_wait_ms`` for data on a fetch. Faust's driver passes a fixed 1,500 ms to
    aiokafka; this sets the value the consumer hands its fetcher when it starts."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by start()
            return consumer

    class FetchWaitConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> ConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = FetchWaitConsumer

    return Transport(app.conf.broker_consumer, app)


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
        producer_linger_ms=1,
        logging_config=None,
    )
    app.transport = fetch_wait_transport(app, s.kafka_fetch_max_wait_ms)
    # Faust's own sensors (messages, streams, commits, rebalances, send latency) on the
    # same injected registry, under the wardwatch_faust_ prefix
    app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, "wardwatch_faust"))
    return app
