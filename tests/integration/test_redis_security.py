"""Redis AUTH, ACL users and TLS against a real redis-server started here with
``--requirepass``, a least-privilege ACL user (the one docs/operations.md gives) and, when
the binary was built with TLS, a TLS port that requires client certificates."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from agents.model_stage import Incoming
from agents.pipeline import ScoringPipeline
from cli.demo_workers import settings_env
from tests.integration.helpers import deteriorating
from tests.tls import CertAuthority, Pem
from wardwatch.errors import ConfigError
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.stack import ChildProcess, free_port, redis_binary
from wardwatch.store import RedisStateStore

pytestmark = pytest.mark.integration

ADMIN_PW = "admin-Secret-123"
WW_PW = "ww-Secret-456"
# least privilege: the store's key namespace, no pub/sub channels, reads, writes, Lua
# scripts and connection commands, nothing administrative (docker-compose.yml's user)
ACL_RULES = [
    "on",
    f">{WW_PW}",
    "resetchannels",
    "~ww:*",
    "-@all",
    "+@read",
    "+@write",
    "+@scripting",
    "+@connection",
    "+@transaction",
    "-@dangerous",
    "+select",  # a database other than 0 (Redis 6.2 has SELECT outside @connection)
]


@dataclass
class SecuredRedis:
    port: int
    tls_port: int | None  # None: the binary has no TLS
    tls_why: str
    ca: CertAuthority | None
    client: Pem | None


def _start(argv: list[str], port: int, log: Path) -> ChildProcess:
    proc = ChildProcess("redis-server (secured)", argv, "127.0.0.1", port, log)
    proc.start()
    return proc


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredRedis]:
    root = tmp_path_factory.mktemp("secured-redis")
    port = free_port()
    base = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(root),
        "--save",
        "",
        "--appendonly",
        "no",
        "--requirepass",
        ADMIN_PW,
        "--user",
        "wardwatch",
        *ACL_RULES,
    ]
    ca = CertAuthority.create(root / "pki")
    server, client = ca.issue("redis-server"), ca.issue("wardwatch-client")
    tls_port = free_port()
    tls_args = [
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(server.cert),
        "--tls-key-file",
        str(server.key),
        "--tls-ca-cert-file",
        str(ca.ca.cert),
        "--tls-auth-clients",
        "yes",
    ]
    try:
        proc = _start([*base, *tls_args], port, root / "redis.log")
        yield SecuredRedis(port, tls_port, "", ca, client)
    except Exception as exc:  # noqa: BLE001 - the binary may lack TLS: say so, go on
        log = (root / "redis.log").read_text(errors="replace")
        if "tls" not in log.lower():
            raise
        why = f"{redis_binary()} was built without TLS ({exc!s:.200})"
        proc = _start(base, port, root / "redis-plain.log")
        yield SecuredRedis(port, None, why, None, None)
    proc.stop()


def _settings(url: str, **kw: object) -> Settings:
    return Settings(redis_url=url, redis_prefix="ww", **kw)  # type: ignore[arg-type]


async def _access(settings: Settings) -> None:
    store = RedisStateStore.from_settings(settings)
    try:
        await store.check_access()
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "redis://wardwatch:not-the-password@127.0.0.1:{port}/0",
        "redis://:not-the-password@127.0.0.1:{port}/0",  # requirepass, default user
        "redis://nobody:not-the-password@127.0.0.1:{port}/0",
    ],
)
async def test_wrong_password_is_refused_with_a_clear_error(
    secured: SecuredRedis, url: str
) -> None:
    with pytest.raises(ConfigError) as info:
        await _access(_settings(url.format(port=secured.port)))
    message = str(info.value)
    assert "credentials" in message and "not-the-password" not in message
    assert WW_PW not in message and ADMIN_PW not in message


async def test_no_password_is_refused(secured: SecuredRedis) -> None:
    with pytest.raises(ConfigError, match="credentials"):
        await _access(_settings(f"redis://127.0.0.1:{secured.port}/0"))


async def test_acl_user_is_kept_to_its_key_namespace(secured: SecuredRedis) -> None:
    url = f"redis://wardwatch:{WW_PW}@127.0.0.1:{secured.port}/0"
    await _access(_settings(url))  # ww:* is allowed
    with pytest.raises(ConfigError) as info:
        await _access(Settings(redis_url=url, redis_prefix="other"))
    assert "other:*" in str(info.value) and WW_PW not in str(info.value)
    # and nothing administrative
    r = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.config_get("requirepass")
    r.close()


def test_worker_refuses_to_start_on_wrong_redis_credentials(
    secured: SecuredRedis, kafka_url: str, tmp_path: Path
) -> None:
    s = _settings(
        f"redis://wardwatch:wrong-Password-789@127.0.0.1:{secured.port}/0",
        kafka_url=kafka_url,
        data_dir=tmp_path,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"],
        env=settings_env(s),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Redis refused the credentials" in proc.stderr
    assert "wrong-Password-789" not in proc.stderr + proc.stdout


async def _score_a_patient(settings: Settings, pid: str) -> None:
    """The store as a worker uses it: a deteriorating patient scored through the
    pipeline's Lua commits, an alert opened, read back."""
    store = RedisStateStore.from_settings(settings)
    try:
        await store.check_access()
        pipe = ScoringPipeline(store)
        start = datetime.now(UTC) - timedelta(hours=3)
        batch = [
            Incoming(VitalsEvent.model_validate_json(raw), f"e{i}")
            for i, raw in enumerate(deteriorating(pid, start))
        ]
        result = await pipe.process(batch)
        assert len(result.scored) == len(batch) and result.conflicts == []
        assert result.emitted, "a patient worsening to NEWS2 >= 7 opens an alert"
        assert any(a["patient_id"] == pid for a in await store.open_alerts())
        assert len(await store.history(pid, 48)) == len(batch)
    finally:
        await store.close()


async def test_acl_user_scores_events_through_the_store(secured: SecuredRedis) -> None:
    url = f"redis://wardwatch:{WW_PW}@127.0.0.1:{secured.port}/1"
    await _score_a_patient(_settings(url), "acl-patient")


async def test_rediss_with_mutual_tls_scores_events(secured: SecuredRedis) -> None:
    if secured.tls_port is None:
        pytest.skip(secured.tls_why)
    assert secured.ca is not None and secured.client is not None
    url = f"rediss://wardwatch:{WW_PW}@127.0.0.1:{secured.tls_port}/2"
    s = _settings(
        url,
        redis_ssl_ca_certs=secured.ca.ca.cert,
        redis_ssl_certfile=secured.client.cert,
        redis_ssl_keyfile=secured.client.key,
    )
    await _score_a_patient(s, "tls-patient")
    # without the client certificate the server refuses the handshake
    no_cert = _settings(url, redis_ssl_ca_certs=secured.ca.ca.cert)
    with pytest.raises((redis.exceptions.ConnectionError, OSError)):
        await _access(no_cert)
    # and a server certificate from another CA is not trusted
    other = CertAuthority.create(secured.ca.root / "other")
    untrusted = _settings(
        url,
        redis_ssl_ca_certs=other.ca.cert,
        redis_ssl_certfile=secured.client.cert,
        redis_ssl_keyfile=secured.client.key,
    )
    with pytest.raises((redis.exceptions.ConnectionError, OSError)):
        await _access(untrusted)
