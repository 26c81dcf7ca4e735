"""Transport security from the settings: the web server's TLS context, the start-up
safety check, and URLs safe to print.

A worker whose web server is reachable from other machines (it binds a non-loopback
address) must have real secrets and serve HTTPS; on loopback (the demo, tests) the
defaults keep working. :func:`unsafe_start_problems` says what is wrong, in words an
operator can act on, and never echoes a secret.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import urllib.parse

from wardwatch.errors import ConfigError
from wardwatch.settings import Settings

# defaults shipped in the code, and the placeholders of .env.example: no secret
DEFAULT_SECRETS = frozenset({"", "change-me", "changeme", "wardwatch-log-key"})
PLACEHOLDER_PREFIXES = ("change-me", "replace-me")
MIN_SECRET_CHARS = 16


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (127.0.0.0/8, ::1, ``localhost``).
    An empty host or ``0.0.0.0``/``::`` binds every interface: not loopback."""
    name = host.strip().strip("[]")
    if name.lower() in {"localhost", "localhost.localdomain", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:  # a host name: loopback only if every address it resolves to is
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(str(a)).is_loopback for a in addrs)


def weak_secret(secret: str) -> bool:
    """A default, a placeholder, or shorter than 16 characters."""
    value = secret.strip().lower()
    return (
        value in DEFAULT_SECRETS
        or value.startswith(PLACEHOLDER_PREFIXES)
        or len(value) < MIN_SECRET_CHARS
    )


STATIC_TOKEN_OFF = "change-me"
"""``WARDWATCH_API_TOKEN``'s default: the static all-access token is off."""


def static_token(settings: Settings) -> str:
    """The static API token, or "" when it is off (empty or the default): services use
    their own scoped tokens (``wardwatch tokens add``) instead."""
    value = settings.api_token.get_secret_value()
    return "" if value in ("", STATIC_TOKEN_OFF) else value


def unsafe_start_problems(settings: Settings) -> list[str]:
    """Why a worker with these settings must not start (empty: it may). Only a web server
    bound to a non-loopback address is checked."""
    s = settings
    if is_loopback(s.web_host):
        return []
    where = f"the web server binds {s.web_host or 'every interface'}:{s.web_port}"
    problems = []
    secrets = [("WARDWATCH_LOG_HASH_KEY", s.log_hash_key.get_secret_value())]
    if static_token(s):  # off (the default) is safe; on, it must be strong
        secrets.insert(0, ("WARDWATCH_API_TOKEN", static_token(s)))
    for env, secret in secrets:
        if weak_secret(secret):
            problems.append(
                f"{where} but {env} is empty, a default or placeholder, or shorter than "
                f"{MIN_SECRET_CHARS} characters"
            )
    if not s.web_tls_enabled and not s.allow_insecure_http:
        problems.append(
            f"{where} without TLS: set WARDWATCH_WEB_TLS_CERT and WARDWATCH_WEB_TLS_KEY, or "
            "WARDWATCH_ALLOW_INSECURE_HTTP=true when a TLS proxy in front of it is the only "
            "way in"
        )
    return problems


def check_safe_start(settings: Settings) -> None:
    """Raise :class:`ConfigError` listing every problem of :func:`unsafe_start_problems`."""
    problems = unsafe_start_problems(settings)
    if problems:
        raise ConfigError("refusing to start: " + "; ".join(problems))


def web_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The web server's TLS context (TLS 1.2 or later), or None when TLS is not set.
    An unreadable certificate or a key that does not match it is a ConfigError now, not
    a failure on the first connection."""
    if not settings.web_tls_enabled:
        return None
    assert settings.web_tls_cert is not None and settings.web_tls_key is not None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(settings.web_tls_cert), str(settings.web_tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the web TLS certificate {settings.web_tls_cert} with its key "
            f"{settings.web_tls_key}: {exc}"
        ) from exc
    return ctx


def web_scheme(settings: Settings) -> str:
    return "https" if settings.web_tls_enabled else "http"


def web_client_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A client context that trusts the web server's own certificate, for probes of a
    worker this process started on loopback (the demo, tests): the certificate is the
    trust anchor, so a self-signed one verifies; the host name is not checked (the probe
    connects to 127.0.0.1, which a hospital's certificate does not name)."""
    if not settings.web_tls_enabled:
        return None
    ctx = ssl.create_default_context(cafile=str(settings.web_tls_cert))
    ctx.check_hostname = False
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-issued leaf as the anchor
    return ctx


def redact_url(url: str | None) -> str:
    """``url`` with any password replaced by ``***`` (user names and hosts kept)."""
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
