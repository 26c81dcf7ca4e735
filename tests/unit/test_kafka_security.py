"""Kafka SASL_SSL settings reach every client wardwatch builds: the Faust app (its
consumer and producer), the plain aiokafka consumers (pager, model control), the
kafka-python clients (topic admin, producers: simulator and re-publishing tools, the
trainer's and the demo's consumers). The embedded broker cannot serve SASL_SSL (see
docs/operations.md), so this checks the configuration each client is given, built by
the real constructors where they do not connect."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from agents.app import build_app
from agents.kafka_clients import aiokafka_security
from tests.tls import CertAuthority
from wardwatch.settings import KafkaSecurity, Settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ["wardwatch", "cli", "simulator", "agents", "trainer", "benchmarks"]
PASSWORD = "kafka-Secret-123"


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    return CertAuthority.create(tmp_path / "pki")


def _secured(ca: CertAuthority, tmp_path: Path, mechanism: str = "SCRAM-SHA-512") -> Settings:
    client = ca.issue("kafka-client")
    return Settings(
        kafka_url="kafka://broker-1:9093,kafka://broker-2:9093",
        kafka_security=KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism=mechanism,  # type: ignore[arg-type]
            sasl_username="wardwatch",
            sasl_password=SecretStr(PASSWORD),
            ssl_cafile=ca.ca.cert,
            ssl_certfile=client.cert,
            ssl_keyfile=client.key,
        ),
        data_dir=tmp_path / "data",
    )


def _trusts(ctx: ssl.SSLContext, ca: CertAuthority) -> bool:
    return any(
        dict(x[0] for x in c["subject"]).get("commonName") == "wardwatch test CA"
        for c in ctx.get_ca_certs()
    )


def test_kafka_python_clients_get_sasl_ssl(ca: CertAuthority, tmp_path: Path) -> None:
    s = _secured(ca, tmp_path)
    kw = s.kafka_python_security()
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "wardwatch" and kw["sasl_plain_password"] == PASSWORD
    assert kw["ssl_cafile"] == str(ca.ca.cert)
    assert kw["ssl_certfile"] and kw["ssl_keyfile"]
    assert s.kafka_bootstrap() == "broker-1:9093,broker-2:9093"
    # the settings' own text never shows the password
    assert PASSWORD not in repr(s) and PASSWORD not in str(s.model_dump())


def test_plaintext_clients_get_no_security_options(tmp_path: Path) -> None:
    s = Settings(kafka_url="kafka://127.0.0.1:9092", data_dir=tmp_path)
    assert s.kafka_python_security() == {"security_protocol": "PLAINTEXT"}
    assert aiokafka_security(s) == {"security_protocol": "PLAINTEXT"}


async def test_aiokafka_consumers_get_sasl_ssl(ca: CertAuthority, tmp_path: Path) -> None:
    from aiokafka import AIOKafkaConsumer

    s = _secured(ca, tmp_path, "SCRAM-SHA-256")
    kw = aiokafka_security(s)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kw["sasl_plain_password"] == PASSWORD and _trusts(kw["ssl_context"], ca)
    # the real constructor takes them (it connects only on start)
    consumer = AIOKafkaConsumer(bootstrap_servers=s.kafka_bootstrap(), **kw)
    client = consumer._client
    assert client._security_protocol == "SASL_SSL"
    assert client._sasl_mechanism == "SCRAM-SHA-256"
    assert client._sasl_plain_username == "wardwatch"


def test_faust_app_gets_sasl_ssl(ca: CertAuthority, tmp_path: Path) -> None:
    s = _secured(ca, tmp_path)
    app = build_app(s, CollectorRegistry())
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)  # what Faust's
    assert auth["security_protocol"] == "SASL_SSL"  # consumer and producer are given
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "wardwatch"
    assert auth["sasl_plain_password"] == PASSWORD
    assert _trusts(auth["ssl_context"], ca)
    assert [str(u) for u in app.conf.broker] == ["kafka://broker-1:9093", "kafka://broker-2:9093"]


def test_faust_app_gets_ssl_only(ca: CertAuthority, tmp_path: Path) -> None:
    s = Settings(
        kafka_url="kafka://broker:9093",
        kafka_security=KafkaSecurity(protocol="SSL", ssl_cafile=ca.ca.cert),
        data_dir=tmp_path,
    )
    auth = credentials_to_aiokafka_auth(build_app(s, CollectorRegistry()).conf.broker_credentials)
    assert auth["security_protocol"] == "SSL" and _trusts(auth["ssl_context"], ca)


CONSTRUCTORS = r"\b(KafkaProducer|KafkaConsumer|KafkaAdminClient|AIOKafkaConsumer|AIOKafkaProducer|AIOKafkaAdminClient|faust\.App)\("
SECURITY = re.compile(r"kafka_python_security\(\)|aiokafka_security\(|broker_credentials=")


def test_every_kafka_client_in_the_product_is_given_the_security_settings() -> None:
    """Each client constructor call in the product passes the settings' security (a new
    client without it would talk PLAINTEXT to a SASL_SSL broker and fail in production)."""
    missing = []
    seen = 0
    for pkg in PRODUCT:
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            for m in re.finditer(CONSTRUCTORS, text):
                if text[: m.start()].rstrip().endswith(("import", "from")):
                    continue
                call = text[m.end() : m.end() + 6000]  # a whole call, however long
                depth, end = 1, 0
                for i, ch in enumerate(call):
                    depth += {"(": 1, ")": -1}.get(ch, 0)
                    if depth == 0:
                        end = i
                        break
                seen += 1
                args = call[:end]
                if "**opts" in args:  # options assembled just before the call
                    args += text[max(0, m.start() - 800) : m.start()]
                if not SECURITY.search(args):
                    line = text[: m.start()].count("\n") + 1
                    missing.append(f"{path.relative_to(ROOT)}:{line} {m.group(1)}")
    assert seen >= 6, "the scan found too few clients: the pattern is out of date"
    assert missing == []
