"""A worker started by the demo or a test gets every setting of its parent."""

from __future__ import annotations

import os

import pytest

from cli.demo_workers import settings_env
from wardwatch.settings import Settings, TopicNames


def test_every_setting_reaches_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDWATCH_TOPICS__ALERTS", "inherited-alerts")  # overridden whole
    monkeypatch.setenv("WARDWATCH_WEBHOOK_URL", "http://inherited/")  # unset in the parent
    parent = Settings(
        escalate_after_s=5,
        artifact_confirm_s=7,
        redis_cluster=True,
        api_token="s3cret",  # noqa: S106 - a test value
        topics=TopicNames(alerts="alerts-x"),
        kafka_url="kafka://127.0.0.1:1",
        webhook_url=None,
    )
    env = settings_env(parent)
    for key in list(os.environ):
        if key.startswith("WARDWATCH_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("WARDWATCH_"):
            monkeypatch.setenv(key, value)
    child = Settings()
    for name in Settings.model_fields:
        if name == "model_registry":  # passed resolved: the child may run elsewhere
            assert child.model_registry == parent.resolved_model_registry().resolve()
            continue
        assert getattr(child, name) == getattr(parent, name), name
    assert child.api_token.get_secret_value() == "s3cret"
    assert child.webhook_url is None
