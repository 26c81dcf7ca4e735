"""Topic creation (idempotent) and the kafka-python producer used outside the workers."""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from wardwatch.errors import ConfigError
from wardwatch.settings import Settings

log = logging.getLogger(__name__)

# Single-partition topics: promotions must reach every worker in order.
SINGLE_PARTITION = ("control",)


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as kafka-python,
    aiokafka and the Java client compute it): the partition that owns a patient."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Every topic name with its partition count."""
    out: dict[str, int] = {}
    for role, name in settings.topics.all().items():
        out[name] = 1 if role in SINGLE_PARTITION else settings.partitions
    return out


def admin_client(settings: Settings, timeout_s: float = 20.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap(),
                client_id="wardwatch-admin",
                request_timeout_ms=10_000,
                **settings.kafka_python_security(),
            )
        except KafkaError:
            if time.monotonic() > deadline:
                raise ConfigError(f"no Kafka broker at {settings.kafka_bootstrap()}") from None
            time.sleep(0.2)


def ensure_topics(settings: Settings, extra: dict[str, int] | None = None) -> dict[str, int]:
    """Create the topics that do not exist yet, with explicit partition counts."""
    wanted = topic_partitions(settings) | (extra or {})
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=settings.replication_factor)
            for name, n in wanted.items()
            if name not in existing
        ]
        for topic in missing:  # one by one: a race with another worker is fine
            try:
                admin.create_topics([topic], timeout_ms=10_000)
                log.info("created topic %s (%d partitions)", topic.name, topic.num_partitions)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    return wanted


def delete_topics(settings: Settings, names: list[str]) -> None:
    admin = admin_client(settings)
    try:
        admin.delete_topics(names, timeout_ms=10_000)
    except KafkaError as exc:  # deleting is best-effort cleanup
        log.warning("could not delete topics: %s", exc)
    finally:
        admin.close()


def producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A kafka-python producer: batched, acks=all, keyed by patient id."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap(),
        "acks": "all",
        "linger_ms": 5,
        "batch_size": 64 * 1024,
        "retries": 5,
        "key_serializer": lambda k: k.encode() if isinstance(k, str) else k,
        "client_id": "wardwatch-producer",
    }
    opts.update(settings.kafka_python_security())
    opts.update(overrides)
    return KafkaProducer(**opts)
