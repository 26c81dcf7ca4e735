"""The worker's deterioration model: verified loads from the registry, and promotions
followed on the ``control`` topic (hot reload between batches, no restart)."""

from __future__ import annotations

import asyncio
import logging

from agents.kafka_clients import aiokafka_security
from agents.metrics import Metrics
from agents.model_stage import ModelHolder
from agents.retry import keep_running
from models.runtime import DeteriorationModel
from models.session import choose_providers
from wardwatch.errors import ModelError
from wardwatch.schemas import ModelPromotion
from wardwatch.settings import Settings

log = logging.getLogger("wardwatch.worker")


class ModelControl:
    """Loads and switches the model the pipeline's ``holder`` gives to each batch."""

    def __init__(self, settings: Settings, metrics: Metrics, holder: ModelHolder) -> None:
        self.settings = settings
        self.metrics = metrics
        self.holder = holder
        self.registry = settings.resolved_model_registry()
        metrics.model_load_failures.labels(settings.model_name).inc(0)

    def load(self, version: str | None, sha256: str | None) -> bool:
        """Load a verified version (the promoted one when ``version`` is None) and switch
        to it; on any failure keep the current model and count the failure."""
        name = self.settings.model_name
        try:
            model = DeteriorationModel.from_registry(
                self.registry,
                name,
                version,
                expected_sha256=sha256,
                providers=choose_providers(self.settings.onnx_provider),
            )
        except ModelError as exc:
            self.metrics.model_load_failures.labels(name).inc()
            current = self.holder.current
            log.error(
                "model %s %s refused: %s; keeping %s",
                name,
                version or "(promoted)",
                exc,
                f"{current.version}" if current else "rules-only scoring",
            )
            return False
        self.holder.current = model  # atomic: the next batch uses it
        self.metrics.model_info.info(
            {
                "name": model.name,
                "version": model.version,
                "sha256": model.sha256[:16],
                "provider": model.session.provider,
            }
        )
        return True

    async def follow(self) -> None:
        """Every worker reads the whole control topic (no consumer group) and switches
        to each promoted version of its model, between batches; after a failure the
        topic is read again and the current model stays in use."""
        await keep_running("promotions", self._follow, self._failed)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap(),
            enable_auto_commit=False,
            group_id=None,
            **aiokafka_security(s),
        )
        await consumer.start()
        try:
            tp = TopicPartition(s.topics.control, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            loop = asyncio.get_running_loop()
            while True:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                latest: ModelPromotion | None = None
                for msg in batches.get(tp, []):
                    try:
                        promo = ModelPromotion.model_validate_json(msg.value or b"")
                    except ValueError:
                        log.error("unreadable promotion message at offset %d", msg.offset)
                        continue
                    if promo.model_name == s.model_name:
                        latest = promo
                current = self.holder.current
                if latest is None or (
                    current is not None
                    and (current.version, current.sha256) == (latest.version, latest.sha256)
                ):
                    continue
                log.info("promotion of %s %s received", latest.model_name, latest.version)
                await loop.run_in_executor(None, self.load, latest.version, latest.sha256)
        finally:
            await consumer.stop()

    def _failed(self, what: str) -> None:
        self.metrics.background_failures.labels(what).inc()
