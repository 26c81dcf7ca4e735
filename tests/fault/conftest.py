"""The fault suite's scenario and its reference run (no fault), once per session."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.fault.scenario import Outcome, Scenario, build_scenario, run_scenario
from wardwatch.settings import Settings, TopicNames


def private_settings(kafka_url: str, redis_url: str, data_dir: Path) -> Settings:
    """Settings with their own topics, consumer group and Redis prefix."""
    tag = uuid.uuid4().hex[:8]
    topics = TopicNames(**{role: f"{name}-{tag}" for role, name in TopicNames().all().items()})
    return Settings(
        kafka_url=kafka_url,
        redis_url=redis_url,
        redis_prefix=f"t{tag}",
        topics=topics,
        app_id=f"wardwatch-{tag}",
        partitions=4,
        batch_within_s=0.02,
        data_dir=data_dir,
    )


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return build_scenario()


@pytest.fixture(scope="session")
def reference(
    scenario: Scenario, kafka_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    """The scenario through one worker with no fault: what every fault run must give."""
    tmp = tmp_path_factory.mktemp("reference")
    return run_scenario(private_settings(kafka_url, redis_url, tmp / "data"), tmp, scenario)
