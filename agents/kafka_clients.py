"""Kafka client security from the settings, for Faust and for plain aiokafka clients."""

from __future__ import annotations

import ssl
from typing import Any

import faust

from wardwatch.settings import KafkaSecurity, Settings


def _ssl_context(sec: KafkaSecurity) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(sec.ssl_cafile) if sec.ssl_cafile else None)
    if sec.ssl_certfile:
        ctx.load_cert_chain(str(sec.ssl_certfile), str(sec.ssl_keyfile or "") or None)
    return ctx


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """Security keyword arguments for plain aiokafka clients."""
    sec = settings.kafka_security
    kw: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.protocol.endswith("SSL"):
        kw["ssl_context"] = _ssl_context(sec)
    if sec.protocol.startswith("SASL"):
        kw["sasl_mechanism"] = sec.sasl_mechanism
        kw["sasl_plain_username"] = sec.sasl_username
        kw["sasl_plain_password"] = (
            sec.sasl_password.get_secret_value() if sec.sasl_password else None
        )
    return kw


def faust_broker_credentials(settings: Settings) -> Any:
    """Faust's broker credentials (None for PLAINTEXT)."""
    sec = settings.kafka_security
    if sec.protocol == "PLAINTEXT":
        return None
    ctx = _ssl_context(sec) if sec.protocol.endswith("SSL") else None
    if sec.protocol.startswith("SASL"):
        password = sec.sasl_password.get_secret_value() if sec.sasl_password else ""
        return faust.SASLCredentials(
            username=sec.sasl_username or "",
            password=password,
            mechanism=sec.sasl_mechanism,
            ssl_context=ctx,
        )
    return faust.SSLCredentials(ctx)
