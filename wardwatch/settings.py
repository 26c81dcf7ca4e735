"""The one settings object. Built once at the edge (CLI, test fixture) and passed in.

Every value can be set from the environment with the prefix ``WARDWATCH_``; nested
groups use a double underscore, e.g. ``WARDWATCH_TOPICS__VITALS=icu-vitals``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TopicNames(BaseModel):
    vitals: str = "vitals"
    imaging_studies: str = "imaging-studies"
    patient_context: str = "patient-context"
    alerts: str = "alerts"
    dead_letter: str = "dead-letter"
    outcomes: str = "outcomes"
    control: str = "control"

    def all(self) -> dict[str, str]:
        return self.model_dump()


class KafkaSecurity(BaseModel):
    """Client security for a production broker (ignored by the embedded one)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WARDWATCH_", env_nested_delimiter="__", extra="ignore"
    )

    # --- Kafka ---------------------------------------------------------------------------
    kafka_url: str | None = Field(
        default=None,
        description="Bootstrap servers, e.g. kafka://broker:9092 or host:9092. "
        "Unset: `wardwatch demo` starts the embedded broker.",
    )
    kafka_security: KafkaSecurity = KafkaSecurity()
    topics: TopicNames = TopicNames()
    partitions: int = Field(4, ge=1, description="partitions of the patient-keyed topics")
    replication_factor: int = Field(1, ge=1)
    app_id: str = Field("wardwatch", description="Faust app id = Kafka consumer group")
    kafka_session_timeout_s: float = Field(
        10.0, description="a worker silent this long loses its partitions to the others"
    )
    kafka_rebalance_timeout_s: float = 10.0

    # --- Redis ---------------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="redis://[:password@]host:port/db or rediss:// for TLS. "
        "Unset: `wardwatch demo` starts a private redis-server.",
    )
    redis_prefix: str = Field("ww", description="key namespace; tests use their own")
    redis_ssl_ca_certs: Path | None = None
    state_ttl_s: int = Field(7 * 24 * 3600, description="forget patients silent this long")

    # --- scoring -------------------------------------------------------------------------
    batch_size: int = Field(256, ge=1, description="max events per scoring batch")
    batch_within_s: float = Field(0.05, gt=0, description="max wait to fill a batch")
    max_future_skew_s: float = Field(300.0, description="reject events further in the future")
    model_registry: Path = Field(Path("model-registry"), description="model registry root")
    model_name: str = Field("deterioration", description="registry name of the vitals model")
    onnx_provider: Literal["auto", "cpu", "cuda"] = "auto"
    require_model: bool = Field(
        True, description="/readyz fails without a loaded model (False: rules-only is ready)"
    )

    time_scale: float = Field(
        1.0,
        gt=0,
        description="1: timers run on the wall clock. >1: they run on event time advanced "
        "this many times faster than the wall clock (the demo's compressed simulation)",
    )

    # --- alert policy --------------------------------------------------------------------
    alert_cooldown_s: float = 15 * 60
    escalate_after_s: float = 15 * 60
    artifact_confirm_s: float = Field(
        20 * 60,
        description="an isolated single-parameter extreme reading waits this long for a "
        "confirming observation before it alerts; set just above the devices' interval",
    )

    webhook_url: str | None = Field(None, description="POST paging transitions here (optional)")
    webhook_secret: SecretStr | None = None
    webhook_min_priority: Literal["medium", "high"] = "medium"

    # --- web / metrics -------------------------------------------------------------------
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    metrics_port: int | None = Field(None, description="separate /metrics port; None = web port")
    api_token: SecretStr = Field(
        SecretStr("change-me"), description="bearer token for the care-team page and API"
    )
    log_json: bool = False
    log_hash_key: SecretStr = Field(
        SecretStr("wardwatch-log-key"), description="key of the patient-id hash used in logs"
    )
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    data_dir: Path = Field(Path(".wardwatch"), description="Faust table data, demo scratch")

    def resolved_model_registry(self) -> Path:
        """The registry path; a relative default that does not exist here falls back to
        the registry shipped beside the source tree (the repository's ``model-registry``)."""
        path = self.model_registry
        if path.is_absolute() or path.exists():
            return path
        shipped = Path(__file__).resolve().parents[1] / path
        return shipped if shipped.exists() else path

    def kafka_bootstrap(self) -> str:
        """host:port[,host:port] without a scheme, for kafka-python and aiokafka."""
        if not self.kafka_url:
            raise ValueError("WARDWATCH_KAFKA_URL is not set and no embedded broker was started")
        return ",".join(
            part.split("://", 1)[-1] for part in self.kafka_url.replace(";", ",").split(",")
        )

    def kafka_python_security(self) -> dict[str, object]:
        """Security keyword arguments for kafka-python clients."""
        sec = self.kafka_security
        kw: dict[str, object] = {"security_protocol": sec.protocol}
        if sec.protocol.startswith("SASL"):
            kw["sasl_mechanism"] = sec.sasl_mechanism
            kw["sasl_plain_username"] = sec.sasl_username
            kw["sasl_plain_password"] = (
                sec.sasl_password.get_secret_value() if sec.sasl_password else None
            )
        if sec.protocol.endswith("SSL"):
            kw["ssl_cafile"] = str(sec.ssl_cafile) if sec.ssl_cafile else None
            kw["ssl_certfile"] = str(sec.ssl_certfile) if sec.ssl_certfile else None
            kw["ssl_keyfile"] = str(sec.ssl_keyfile) if sec.ssl_keyfile else None
        return kw
