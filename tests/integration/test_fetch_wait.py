"""WARDWATCH_KAFKA_FETCH_MAX_WAIT_MS reaches the worker's Kafka consumer (Faust's driver
hard-codes 1,500 ms; ``agents.app.consumer_transport`` replaces it)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agents.app import build_app
from wardwatch.settings import Settings


async def _started_fetch_wait(settings: Settings) -> tuple[int, int]:
    """The consumer's own and its started fetcher's fetch wait, on the real broker."""
    app = build_app(settings, CollectorRegistry())
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    await consumer.start()
    try:
        return consumer._fetch_max_wait_ms, consumer._fetcher._fetch_max_wait_ms
    finally:
        await consumer.stop()


async def test_fetch_wait_setting_reaches_the_started_consumer(settings: Settings) -> None:
    s = settings.model_copy(update={"kafka_fetch_max_wait_ms": 100})
    assert await _started_fetch_wait(s) == (100, 100)


async def test_default_fetch_wait_is_100_ms_not_faust_s(settings: Settings) -> None:
    # Faust's 1,500 ms puts up to 1.5 s on every event of a quiet partition
    assert Settings().kafka_fetch_max_wait_ms == 100
    assert await _started_fetch_wait(settings) == (100, 100)
