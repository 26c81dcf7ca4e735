"""The compose stack's exposure and secrets: only the HTTPS page is published on every
interface, Kafka and Redis live on an internal network, Redis connects through a
least-privilege ACL user, and every secret comes from an uncommitted .env file whose
template (.env.example) holds placeholders a worker refuses."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr

from wardwatch.settings import Settings
from wardwatch.transport import unsafe_start_problems

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
WORKERS = ("worker-1", "worker-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml: ModuleType = pytest.importorskip("yaml")
    with COMPOSE.open(encoding="utf-8") as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded


def _networks(service: dict[str, Any]) -> list[str]:
    return list(service.get("networks", ["default"]))


def test_only_the_page_is_published_beyond_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            spec = str(port)
            if name in WORKERS:
                assert spec.endswith(":6066"), (name, spec)
            else:
                assert spec.startswith("127.0.0.1:"), f"{name} publishes {spec} on every interface"


def test_kafka_and_redis_are_on_an_internal_network_only(compose: dict[str, Any]) -> None:
    networks = compose["networks"]
    for name in ("kafka", "redis"):
        service = compose["services"][name]
        assert "ports" not in service, name
        for net in _networks(service):
            assert networks[net].get("internal") is True, f"{name} on non-internal {net}"


def test_redis_uses_a_least_privilege_acl_user(compose: dict[str, Any]) -> None:
    cmd = [str(x) for x in compose["services"]["redis"]["command"]]
    assert "--requirepass" in cmd
    user = cmd[cmd.index("--user") + 1 :]
    user = user[: next((i for i, x in enumerate(user) if x.startswith("--")), len(user))]
    assert user[0] == "wardwatch" and "on" in user
    assert "~ww:*" in user and "resetchannels" in user and "-@dangerous" in user
    assert "+@all" not in user and "~*" not in user and "allkeys" not in user
    # the very rules the Redis tests run the store and a worker's commits under
    from tests.integration.test_redis_security import ACL_RULES

    assert [r for r in user[1:] if not r.startswith(">")] == [
        r for r in ACL_RULES if not r.startswith(">")
    ]
    assert Settings().redis_prefix == "ww"  # the ACL's key pattern is the store's namespace
    env = compose["x-wardwatch-env"]
    assert env["WARDWATCH_REDIS_URL"].startswith("redis://wardwatch:${REDIS_PASSWORD")


def test_workers_serve_https_and_prometheus_trusts_them(compose: dict[str, Any]) -> None:
    secrets = compose["secrets"]
    for name in WORKERS:
        worker = compose["services"][name]
        env = worker["environment"]
        assert env["WARDWATCH_WEB_TLS_CERT"] == "/run/secrets/web_tls_cert"
        assert env["WARDWATCH_WEB_TLS_KEY"] == "/run/secrets/web_tls_key"
        assert {"web_tls_cert", "web_tls_key"} <= set(worker["secrets"])
        assert "https://127.0.0.1:6066/readyz" in " ".join(worker["healthcheck"]["test"])
        assert env.get("WARDWATCH_ALLOW_INSECURE_HTTP") in (None, "false")
    for secret in secrets.values():
        assert secret["file"].startswith("./secrets/")
    prom = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert re.search(r"job_name: wardwatch\n(?:\s+.*\n)*?\s+scheme: https", prom)
    assert "web_tls_ca" in compose["services"]["prometheus"]["secrets"]


def test_secrets_come_from_env_without_defaults(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    # ${VAR} is compose's interpolation; $${VAR} is left to the container's shell
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    secret_like = {v for v in used if re.search(r"PASSWORD|TOKEN|KEY|SECRET", v)}
    assert {"WARDWATCH_LOG_HASH_KEY", "REDIS_PASSWORD"} <= secret_like
    # no shared all-access token in production: people sign in, services get scoped tokens
    assert "WARDWATCH_API_TOKEN" not in text
    for var in secret_like:  # never a fallback value: unset is an error at `compose up`
        for m in re.finditer(rf"(?<!\$)\$\{{{var}(?P<op>:?[-?+])?", text):
            assert m.group("op") in (":?", "?"), f"${{{var}}} has a default"
    assert "change-me" not in text
    # .env.example names every variable the compose file reads
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert used <= set(example), used - set(example)
    # its placeholders are refused by a worker, as a copied template would be
    for var in ("WARDWATCH_LOG_HASH_KEY",):
        s = Settings(
            web_host="0.0.0.0",
            allow_insecure_http=True,
            api_token=SecretStr("x" * 32),
            log_hash_key=SecretStr("y" * 32),
        )
        field = var.removeprefix("WARDWATCH_").lower()
        s = s.model_copy(update={field: SecretStr(example[var])})
        (problem,) = unsafe_start_problems(s)
        assert var in problem


def test_env_file_and_secrets_are_not_committed() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and "/secrets/" in ignored
    assert not (ROOT / ".env").exists() or ".env" in ignored
