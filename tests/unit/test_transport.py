"""Transport security from the settings: loopback detection, the start-up refusal, the
web server's TLS context, URLs safe to print, the TLS settings' pairing."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tests.tls import CertAuthority
from wardwatch.errors import ConfigError
from wardwatch.settings import Settings
from wardwatch.transport import (
    check_safe_start,
    is_loopback,
    redact_url,
    static_token,
    unsafe_start_problems,
    weak_secret,
    web_client_ssl_context,
    web_scheme,
    web_ssl_context,
)

STRONG = {"api_token": SecretStr("a" * 8 + "-Token-0123"), "log_hash_key": SecretStr("k" * 20)}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "192.168.0.5", "no.such.host."])
def test_non_loopback_hosts(host: str) -> None:
    assert not is_loopback(host)


def test_loopback_keeps_working_with_the_defaults() -> None:
    assert unsafe_start_problems(Settings()) == []
    check_safe_start(Settings(web_host="localhost"))


def test_exposed_worker_with_defaults_is_refused_for_every_reason() -> None:
    problems = unsafe_start_problems(Settings(web_host="0.0.0.0"))
    assert len(problems) == 2  # the static API token is off by default: nothing to refuse
    text = " ".join(problems)
    assert "WARDWATCH_API_TOKEN" not in text and "WARDWATCH_LOG_HASH_KEY" in text
    assert "without TLS" in text and "WARDWATCH_ALLOW_INSECURE_HTTP" in text
    with pytest.raises(ConfigError, match="refusing to start"):
        check_safe_start(Settings(web_host="0.0.0.0"))


@pytest.mark.parametrize(
    "secret", ["", "change-me", "CHANGE-ME", "wardwatch-log-key", "replace-me-api-token", "tiny-x"]
)
def test_weak_secrets(secret: str) -> None:
    """A weak log hash key is refused; the static API token, off when empty or the
    default, is refused only when it is on and weak (services use scoped tokens)."""
    assert weak_secret(secret)
    s = Settings(web_host="10.0.0.7", **{**STRONG, "log_hash_key": SecretStr(secret)})
    s = s.model_copy(update={"allow_insecure_http": True})
    (problem,) = unsafe_start_problems(s)
    assert "WARDWATCH_LOG_HASH_KEY" in problem and (not secret or secret not in problem)
    s = Settings(web_host="10.0.0.7", **{**STRONG, "api_token": SecretStr(secret)})
    s = s.model_copy(update={"allow_insecure_http": True})
    if secret in ("", "change-me"):
        assert static_token(s) == "" and unsafe_start_problems(s) == []  # off: nothing to guess
    else:
        assert static_token(s) == secret
        (problem,) = unsafe_start_problems(s)
        assert "WARDWATCH_API_TOKEN" in problem and secret not in problem


def test_exposed_worker_with_secrets_needs_tls_or_the_opt_out(tmp_path: Path) -> None:
    s = Settings(web_host="0.0.0.0", **STRONG)
    (problem,) = unsafe_start_problems(s)
    assert "without TLS" in problem
    assert unsafe_start_problems(s.model_copy(update={"allow_insecure_http": True})) == []
    ca = CertAuthority.create(tmp_path)
    leaf = ca.issue("web")
    tls = Settings(web_host="0.0.0.0", web_tls_cert=leaf.cert, web_tls_key=leaf.key, **STRONG)
    assert tls.web_tls_enabled and unsafe_start_problems(tls) == []


def test_tls_cert_and_key_go_together(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="go together"):
        Settings(web_tls_cert=tmp_path / "c.pem")
    with pytest.raises(ValidationError, match="go together"):
        Settings(web_tls_key=tmp_path / "k.pem")
    assert not Settings().web_tls_enabled and web_scheme(Settings()) == "http"
    assert web_ssl_context(Settings()) is None and web_client_ssl_context(Settings()) is None


def test_tls_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARDWATCH_WEB_TLS_CERT", str(tmp_path / "c.pem"))
    monkeypatch.setenv("WARDWATCH_WEB_TLS_KEY", str(tmp_path / "k.pem"))
    monkeypatch.setenv("WARDWATCH_ALLOW_INSECURE_HTTP", "true")
    s = Settings()
    assert s.web_tls_enabled and s.allow_insecure_http and web_scheme(s) == "https"


def test_web_ssl_context_loads_the_pair_and_refuses_a_mismatch(tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path)
    a, b = ca.issue("a"), ca.issue("b")
    ctx = web_ssl_context(Settings(web_tls_cert=a.cert, web_tls_key=a.key))
    assert isinstance(ctx, ssl.SSLContext) and ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    with pytest.raises(ConfigError, match="cannot load the web TLS certificate"):
        web_ssl_context(Settings(web_tls_cert=a.cert, web_tls_key=b.key))
    with pytest.raises(ConfigError, match="cannot load"):
        web_ssl_context(Settings(web_tls_cert=tmp_path / "none", web_tls_key=a.key))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://wardwatch:s3cret@redis:6379/0", "redis://wardwatch:***@redis:6379/0"),
        ("rediss://:s3cret@10.0.0.1:6380/2", "rediss://:***@10.0.0.1:6380/2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (None, ""),
    ],
)
def test_redact_url(url: str | None, shown: str) -> None:
    assert redact_url(url) == shown


def test_settings_command_masks_passwords_in_urls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    monkeypatch.setenv("WARDWATCH_REDIS_URL", "rediss://wardwatch:Pw-0123456789@redis:6380/0")
    monkeypatch.setenv("WARDWATCH_API_TOKEN", "Token-0123456789-abc")
    monkeypatch.setenv("WARDWATCH_KAFKA_SECURITY__SASL_PASSWORD", "Kafka-0123456789")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "rediss://wardwatch:***@redis:6380/0" in out
    for secret in ("Pw-0123456789", "Token-0123456789-abc", "Kafka-0123456789"):
        assert secret not in out
