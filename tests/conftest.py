"""Shared fixtures: a real Kafka-wire broker and a real Redis server for the session.

Each test gets its own topic names, consumer group and Redis key prefix, so tests cannot
see each other's messages or state. Servers run on free loopback ports and are stopped
at the end of the session even when tests fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from wardwatch.settings import Settings, TopicNames
from wardwatch.stack import (
    ChildProcess,
    EmbeddedCluster,
    embedded_broker,
    embedded_redis,
    embedded_redis_cluster,
)


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def broker(stack_dir: Path) -> Iterator[ChildProcess]:
    if os.environ.get("WARDWATCH_TEST_KAFKA_URL"):
        pytest.skip("external Kafka configured; embedded broker not started")
    proc = embedded_broker(stack_dir)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_server(stack_dir: Path) -> Iterator[ChildProcess]:
    proc = embedded_redis(stack_dir)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_cluster(stack_dir: Path) -> Iterator[EmbeddedCluster]:
    """A three-primary Redis Cluster (started on first use)."""
    cluster = embedded_redis_cluster(stack_dir / "cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kafka_url(broker: ChildProcess) -> str:
    return f"kafka://127.0.0.1:{broker.port}"


@pytest.fixture(scope="session")
def redis_url(redis_server: ChildProcess) -> str:
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture
def redis_settings(redis_url: str, tmp_path: Path) -> Settings:
    """Settings with a private Redis key prefix (no Kafka)."""
    return Settings(
        redis_url=redis_url,
        redis_prefix=f"t{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path / "data",
    )


@pytest.fixture
def settings(kafka_url: str, redis_settings: Settings) -> Settings:
    """Settings with private topics, consumer group and Redis prefix on the real stack."""
    tag = uuid.uuid4().hex[:8]
    topics = TopicNames(**{role: f"{name}-{tag}" for role, name in TopicNames().all().items()})
    return redis_settings.model_copy(
        update={
            "kafka_url": kafka_url,
            "topics": topics,
            "app_id": f"wardwatch-{tag}",
            "partitions": 4,
            "batch_within_s": 0.02,
        }
    )


# Tests that load the whole machine (several worker processes, timed faults, benchmark
# ratios) run one after another in the same test process, never beside each other; the
# rest share the other process (pyproject.toml: `-n 2 --dist loadgroup`).
HEAVY = ("tests/fault/", "tests/integration/test_bench_e2e.py", "tests/unit/test_benchmarks.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        rel = Path(str(item.path)).relative_to(root).as_posix()
        if rel.startswith(HEAVY):
            item.add_marker(pytest.mark.xdist_group("heavy"))
