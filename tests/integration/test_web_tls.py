"""The worker's web server over HTTPS (a certificate from a private CA), and the
start-up refusal of a worker reachable from other machines without secrets or TLS."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.demo_workers import settings_env
from tests.integration.helpers import consume, hours_ago, publish, start_worker
from tests.integration.helpers import deteriorating as worsening
from tests.tls import CertAuthority
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics

pytestmark = pytest.mark.integration

TOKEN = "tls-Test-Token-0123456789"


@pytest.mark.slow
def test_worker_serves_the_page_over_https_only(settings: Settings, tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "pki")
    leaf = ca.issue("wardwatch-web")
    s = settings.model_copy(
        update={
            "web_tls_cert": leaf.cert,
            "web_tls_key": leaf.key,
            "api_token": SecretStr(TOKEN),
            "require_model": False,
        }
    )
    assert s.web_tls_enabled
    ensure_topics(s)
    wp = start_worker(s, tmp_path)  # probes /readyz over https
    try:
        assert wp.url.startswith("https://")
        trusted = ssl.create_default_context(cafile=str(ca.ca.cert))  # host name checked
        base = f"https://127.0.0.1:{wp.web_port}"
        with urllib.request.urlopen(base + "/login", context=trusted, timeout=5) as resp:
            assert resp.status == 200 and "wardwatch" in resp.read().decode()
        req = urllib.request.Request(base + "/", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, context=trusted, timeout=5) as resp:
            assert resp.status == 200 and "<html" in resp.read().decode().lower()

        # scoring runs as usual behind it: an alert from a worsening patient
        publish(s, s.topics.vitals, [("tls-p1", v) for v in worsening("tls-p1", hours_ago(3))])
        alerts = consume(s, s.topics.alerts, until=lambda m: len(m) > 0, timeout_s=60)
        assert alerts and alerts[0]["patient_id"] == "tls-p1"
        req = urllib.request.Request(
            base + "/api/alerts", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(req, context=trusted, timeout=5) as resp:
            assert b"tls-p1" in resp.read()

        # plain HTTP on the same port gets no page
        conn = http.client.HTTPConnection("127.0.0.1", wp.web_port, timeout=5)
        answered: tuple[int, bytes] | None = None
        try:
            conn.request("GET", "/login")
            resp = conn.getresponse()
            answered = resp.status, resp.read()
        except (http.client.HTTPException, OSError):
            pass  # the TLS server drops the connection
        finally:
            conn.close()
        assert answered is None, f"plain HTTP answered {answered}"
        # a client that does not trust the CA refuses the certificate
        with pytest.raises(urllib.error.URLError) as info:
            urllib.request.urlopen(base + "/login", context=ssl.create_default_context())
        assert isinstance(info.value.reason, ssl.SSLCertVerificationError)
    finally:
        wp.stop()


def _worker_exit(settings: Settings, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"],
        env={**settings_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_exposed_worker_with_default_secrets_refuses_to_start(
    settings: Settings, tmp_path: Path
) -> None:
    proc = _worker_exit(settings, WARDWATCH_WEB_HOST="0.0.0.0")
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr
    assert "refusing to start" in err
    assert "WARDWATCH_LOG_HASH_KEY" in err and "without TLS" in err
    assert "WARDWATCH_API_TOKEN" not in err  # the static token is off by default: safe
    assert "change-me" not in err  # the refusal never echoes a secret


def test_exposed_worker_without_tls_needs_the_explicit_opt_out(
    settings: Settings, tmp_path: Path
) -> None:
    secrets = {
        "WARDWATCH_WEB_HOST": "0.0.0.0",
        "WARDWATCH_API_TOKEN": TOKEN,
        "WARDWATCH_LOG_HASH_KEY": "log-Key-0123456789",
    }
    proc = _worker_exit(settings, **secrets)
    assert proc.returncode == 2 and "without TLS" in proc.stderr, proc.stderr[-2000:]
    assert "WARDWATCH_API_TOKEN" not in proc.stderr and TOKEN not in proc.stderr
    # a TLS certificate that does not load is refused as clearly
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    proc = _worker_exit(
        settings, **secrets, WARDWATCH_WEB_TLS_CERT=str(bad), WARDWATCH_WEB_TLS_KEY=str(bad)
    )
    assert proc.returncode == 2 and "cannot load the web TLS certificate" in proc.stderr


@pytest.mark.slow
def test_exposed_worker_starts_with_secrets_and_the_opt_out(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(
        update={
            "web_host": "0.0.0.0",
            "api_token": SecretStr(TOKEN),
            "log_hash_key": SecretStr("log-Key-0123456789"),
            "allow_insecure_http": True,
            "require_model": False,
        }
    )
    ensure_topics(s)
    wp = start_worker(s, tmp_path)
    try:
        with urllib.request.urlopen(wp.url + "/healthz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        wp.stop()
