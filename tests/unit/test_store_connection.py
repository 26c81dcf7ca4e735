"""How the worker's store connects: one server or a Redis Cluster, the same options."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from wardwatch.errors import ConfigError
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore


def _settings(**kw: object) -> Settings:
    return Settings(
        redis_url="rediss://127.0.0.1:7000/0",
        redis_socket_timeout_s=2.5,
        redis_connect_timeout_s=1.5,
        redis_health_check_interval_s=7.0,
        redis_ssl_ca_certs="/etc/ssl/private-ca.pem",
        **kw,
    )


@pytest.mark.parametrize("cluster", [False, True])
def test_one_server_and_a_cluster_get_the_same_timeouts_health_checks_and_tls(
    cluster: bool,
) -> None:
    store = RedisStateStore.from_settings(_settings(redis_cluster=cluster))
    assert store.cluster is cluster
    if cluster:
        assert isinstance(store.r, aioredis.RedisCluster)
        options = store.r.connection_kwargs
        connection = options["connection_class"]
    else:
        assert isinstance(store.r, aioredis.Redis)
        options = store.r.connection_pool.connection_kwargs
        connection = store.r.connection_pool.connection_class
    assert options["socket_timeout"] == 2.5
    assert options["socket_connect_timeout"] == 1.5
    assert options["health_check_interval"] == 7.0
    assert options["ssl_ca_certs"] == "/etc/ssl/private-ca.pem"
    assert issubclass(connection, aioredis.SSLConnection)  # rediss://


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValidationError):
        _settings(redis_prefix="w{w}")
    with pytest.raises(ConfigError):
        RedisStateStore(aioredis.Redis(), prefix="w{w}")
