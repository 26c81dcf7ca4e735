"""The one settings object. Built once at the edge (CLI, test fixture) and passed in.

Every value can be set from the environment with the prefix ``WARDWATCH_``; nested
groups use a double underscore, e.g. ``WARDWATCH_TOPICS__VITALS=icu-vitals``. Every field
carries a description: ``docs/configuration.md`` is generated from them
(``wardwatch settings --markdown``) and a test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "WARDWATCH_"


class TopicNames(BaseModel):
    """Kafka topic names, by role."""

    vitals: str = Field("vitals", description="vital-sign observations, keyed by patient id")
    imaging_studies: str = Field(
        "imaging-studies", description="new imaging studies (DICOM URI), keyed by patient id"
    )
    imaging_findings: str = Field(
        "imaging-findings",
        description="lung-nodule findings of scored studies (JSON, heatmap paths), keyed by "
        "patient id",
    )
    patient_context: str = Field(
        "patient-context", description="ADT context (age band, SpO2 scale, ward), keyed by patient"
    )
    alerts: str = Field("alerts", description="alert transitions with their explanation")
    alerts_shadow: str = Field(
        "alerts-shadow",
        description="a shadow model's would-be alert transitions, keyed by patient; never "
        "paged (no pager or webhook reads it), compared by `wardwatch validate --shadow`",
    )
    dead_letter: str = Field(
        "dead-letter", description="rejected messages: original bytes, reason, source offset"
    )
    outcomes: str = Field("outcomes", description="deterioration outcomes, for the trainer")
    control: str = Field("control", description="model promotions, read by every worker")
    alert_commands: str = Field(
        "alert-commands",
        description="acknowledge/resolve from the page and API, keyed by patient: applied "
        "by the worker that owns the patient's partition",
    )

    def all(self) -> dict[str, str]:
        return self.model_dump()


class KafkaSecurity(BaseModel):
    """Client security for a production broker (ignored by the embedded one)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (SASL_* protocols)"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password")
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certs")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client certificate's private key")


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
    kafka_security: KafkaSecurity = Field(
        default_factory=KafkaSecurity, description="client security for a production broker"
    )
    topics: TopicNames = Field(default_factory=TopicNames, description="topic names by role")
    partitions: int = Field(
        4, ge=1, description="partitions of the patient-keyed topics (created idempotently)"
    )
    replication_factor: int = Field(1, ge=1, description="replication of topics wardwatch creates")
    app_id: str = Field("wardwatch", description="Faust app id = Kafka consumer group")
    kafka_session_timeout_s: float = Field(
        10.0, description="a worker silent this long loses its partitions to the others"
    )
    kafka_rebalance_timeout_s: float = Field(
        10.0, description="how long the consumer group waits for members during a rebalance"
    )
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=60_000,
        description="longest the broker holds a worker's fetch while it has no new data "
        "(lower: an event on a quiet partition is read sooner, at more fetch requests)",
    )
    kafka_max_poll_records: int | None = Field(
        None,
        ge=1,
        description="most records a worker's consumer hands over per poll "
        "(unset: everything fetched)",
    )
    kafka_max_partition_fetch_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="most bytes a worker's fetch returns per partition",
    )
    kafka_fetch_max_bytes: int = Field(
        52_428_800,
        ge=1024,
        description="most bytes a worker's fetch returns in all",
    )
    faust_message_sensors: bool = Field(
        False,
        description="Faust's per-message sensors (wardwatch_faust_messages_*, "
        "_events_*): a cost on every event; the worker's own counters cover them. "
        "Rebalance, commit and send sensors are always on",
    )

    # --- Redis ---------------------------------------------------------------------------
    redis_url: str | None = Field(
        default=None,
        description="redis://[:password@]host:port/db or rediss:// for TLS. "
        "Unset: `wardwatch demo` starts a private redis-server.",
    )
    redis_cluster: bool = Field(
        False,
        description="true: WARDWATCH_REDIS_URL (database 0) names one node of a Redis "
        "Cluster, which the client discovers from it and follows through slot moves; TLS, "
        "CA and timeouts apply as for one server. Same keys and scripts in both modes; a "
        "commit takes one round trip on a server and two on a cluster (one more when an "
        "index shrinks or a transition is accepted)",
    )
    redis_prefix: str = Field(
        "ww",
        pattern=r"^[^{}]+$",
        description="key namespace, without braces (they would break the hash tags); "
        "tests use their own",
    )
    redis_ssl_ca_certs: Path | None = Field(
        None, description="CA bundle for a rediss:// server with a private CA"
    )
    redis_ssl_certfile: Path | None = Field(
        None,
        description="client certificate for a rediss:// server that requires one "
        "(`tls-auth-clients yes`, mutual TLS)",
    )
    redis_ssl_keyfile: Path | None = Field(
        None, description="private key of WARDWATCH_REDIS_SSL_CERTFILE"
    )
    state_ttl_s: int = Field(7 * 24 * 3600, description="forget patients silent this long")
    redis_socket_timeout_s: float = Field(
        5.0, gt=0, description="a Redis command unanswered this long fails (and is retried)"
    )
    redis_connect_timeout_s: float = Field(3.0, gt=0, description="Redis connection timeout")
    redis_health_check_interval_s: float = Field(
        15.0, ge=0, description="ping an idle Redis connection before reusing it after this long"
    )

    # --- failure handling ----------------------------------------------------------------
    retry_max_s: float = Field(
        600.0,
        gt=0,
        description="a stage retries a Redis or Kafka failure this long, backing off with "
        "jitter, before the worker stops uncommitted for its supervisor to restart it",
    )
    outbox_sweep_s: float = Field(
        5.0,
        gt=0,
        description="every this long a worker re-publishes its patients' alert transitions "
        "committed longer ago than this but not confirmed published (a publisher that died)",
    )
    poison_streak_limit: int = Field(
        20,
        ge=1,
        description="an event that fails alone is dead-lettered as `processing_error`; this "
        "many in a row is a fault, not bad input, and stops the worker uncommitted",
    )

    # --- scoring -------------------------------------------------------------------------
    batch_size: int = Field(256, ge=1, description="max events per scoring batch")
    batch_within_s: float = Field(0.05, gt=0, description="max wait to fill a batch")
    max_future_skew_s: float = Field(
        300.0,
        ge=0,
        description="events stamped further in the future are dead-lettered "
        "(`future_timestamp`); ones ahead by less are taken as received now "
        "(`timestamp_ahead`)",
    )
    late_window_s: float = Field(
        3600.0,
        ge=0,
        description="an event up to this much older than its patient's newest one (a "
        "monitor reconnecting, a late manual entry) is merged into the record and scored "
        "without paging; an older one is dead-lettered (`too_late`)",
    )
    stream_lateness_s: float = Field(
        60.0,
        ge=0,
        description="event time of a partition is taken as its newest event time less "
        "this (devices' clocks disagree): a held reading of a silent patient is raised "
        "when that has passed its hold",
    )
    stream_idle_s: float = Field(
        120.0,
        gt=0,
        description="a partition with no new event for this long (wall clock) lets event "
        "time advance with the clock, so that a held reading is raised even when no data "
        "arrive",
    )
    model_registry: Path = Field(Path("model-registry"), description="model registry root")
    model_name: str = Field("deterioration", description="registry name of the vitals model")
    onnx_provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime provider: auto = CUDA when available, else CPU"
    )
    imaging_enabled: bool | None = Field(
        None,
        description="score chest-CT studies from `imaging-studies`; unset: on when a "
        "`lung-nodule` model is promoted in the registry, else off (one log line says so)",
    )
    imaging_model_version: str = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$",
        description="registry version of the `lung-nodule` model the worker scores with; "
        "empty: the promoted one",
    )
    imaging_workers: int = Field(
        1,
        ge=1,
        le=16,
        description="threads scoring studies beside the event loop (studies in flight at "
        "once); ONNX Runtime releases the GIL, so vitals are never held up by a CT",
    )
    imaging_output_dir: Path = Field(
        Path("imaging-findings"),
        description="directory the findings' heatmap files (PNG, JSON, DICOM Secondary "
        "Capture) are written to",
    )
    require_model: bool = Field(
        True, description="/readyz fails without a loaded model (False: rules-only is ready)"
    )
    shadow_model_version: str = Field(
        "",
        pattern=r"^([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$",
        description="registry version of a candidate model the workers run in shadow beside "
        "the live one (own model and alert state, its would-be transitions on "
        "`alerts-shadow`, never paged); empty: off",
    )

    time_scale: float = Field(
        1.0,
        gt=0,
        description="1: timers run on the wall clock. >1: they run on event time advanced "
        "this many times faster than the wall clock (the demo's compressed simulation)",
    )

    # --- alert policy --------------------------------------------------------------------
    alert_cooldown_s: float = Field(
        15 * 60, description="no new alert for a patient this long after a resolution"
    )
    review_hold_s: float = Field(
        4 * 3600,
        ge=0,
        description="after a clinician resolves an alert (a review), no new alert for the "
        "patient this long unless it is high or the patient is worse than at the review "
        "(a higher NEWS2 total or priority); 0: off",
    )
    escalate_after_s: float = Field(
        15 * 60, description="re-page an alert nobody acknowledged within this long"
    )
    artifact_confirm_s: float = Field(
        20 * 60,
        description="an isolated single-parameter extreme reading waits this long for a "
        "confirming observation before it alerts; set just above the devices' interval",
    )
    medium_confirm_obs: int = Field(
        2,
        ge=1,
        description="a medium alert is on the page at once but pages only when the model's "
        "risk supports it or this many consecutive medium+ observation sets confirm it "
        "(1: every medium alert pages at once); high alerts always page",
    )
    medium_confirm_wait_s: float = Field(
        3600.0,
        ge=0,
        description="a medium alert with no repeat observation set within this long pages "
        "anyway (NEWS2 5-6 asks for at least hourly observations)",
    )

    # --- operating points of a model version (trainer, promotion gate) ----------------
    alert_budget_pages_per_patient_day: float = Field(
        0.3,
        gt=0,
        description="pages per patient-day the model-risk trigger and the NEWS2 >= 7 trigger "
        "together may send, counted as the worker raises them: `wardwatch train` chooses a "
        "version's thresholds so that the 95 % upper bound of its pages on the calibration "
        "split stays within this (as far as the sensitivity floor allows), and "
        "`wardwatch promote` refuses a version whose bound exceeds it",
    )
    alert_budget_high_fraction: float = Field(
        0.2,
        gt=0,
        le=1,
        description="the share of that budget the high-priority pages may use (the high "
        "threshold; where the NEWS2 >= 7 pages alone exceed it, the model's own high pages "
        "are held to it)",
    )
    alert_budget_stable_first_day_fraction: float = Field(
        0.05,
        gt=0,
        le=1,
        description="share of patients without an outcome the pages may reach within their "
        "first 24 h of monitoring (counted with the NEWS2 >= 7 pages, which always page): "
        "`wardwatch train` keeps its 95 % upper bound on the calibration split within this "
        "as far as the sensitivity floor allows",
    )
    promotion_min_shadow_h: float = Field(
        0.0,
        ge=0,
        description="`wardwatch promote` refuses a version without a shadow record "
        "(`wardwatch validate --shadow`) covering at least this many hours, or whose shadow "
        "pages per patient-day exceed the alert budget; 0: no shadow period required",
    )
    sensitivity_floor: float | None = Field(
        None,
        ge=0,
        le=1,
        description="lowest patient-level sensitivity (95 % lower bound) a version may have at "
        "its operating point; unset: NEWS2 >= 5's on the same patients",
    )

    webhook_url: str | None = Field(None, description="POST paging transitions here (optional)")
    webhook_secret: SecretStr | None = Field(
        None, description="bearer token sent to the paging webhook (Authorization header)"
    )
    webhook_min_priority: Literal["medium", "high"] = Field(
        "medium", description="lowest priority the webhook pages for"
    )
    page_max_age_s: float = Field(
        1800.0,
        gt=0,
        description="a page not delivered this long after its transition is given up and "
        "dead-lettered as `page_expired` (the alert stays on the page and re-pages by "
        "escalation)",
    )
    page_max_data_age_s: float = Field(
        3600.0,
        gt=0,
        description="a transition about data older than this when it is emitted (backfill, "
        "a monitor's backlog) is scored and shown but never paged; counted in "
        "`wardwatch_pages_withheld_total`",
    )

    # --- web / metrics -------------------------------------------------------------------
    web_host: str = Field(
        "127.0.0.1", description="worker web server address (page, API, /metrics, health)"
    )
    web_port: int = Field(6066, description="worker web server port")
    web_tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) the web server presents: set with "
        "WARDWATCH_WEB_TLS_KEY to serve the page, API and /metrics over HTTPS only",
    )
    web_tls_key: Path | None = Field(None, description="private key of WARDWATCH_WEB_TLS_CERT")
    allow_insecure_http: bool = Field(
        False,
        description="let a worker whose web server binds a non-loopback address serve plain "
        "HTTP (TLS terminated by a proxy in front of it); without it such a worker refuses "
        "to start",
    )
    api_token: SecretStr = Field(
        SecretStr("change-me"),
        description="legacy static bearer token for the API, principal `service:api` (read, "
        "ack, resolve, audit; all wards); off when empty or the default `change-me` (the "
        "default); a worker exposed beyond loopback refuses a weak one. Prefer scoped "
        "tokens (`wardwatch tokens add`)",
    )
    # --- access control (docs/security.md) --------------------------------------------
    session_idle_s: int = Field(
        900, ge=1, description="a page session unused this long ends (sign in again)"
    )
    session_max_s: int = Field(
        43200, ge=60, description="a page session ends this long after sign-in, used or not"
    )
    session_cookie_secure: bool = Field(
        False,
        description="mark the session cookie Secure (it always is when the page is served "
        "over HTTPS)",
    )
    login_max_failures: int = Field(
        5, ge=1, description="failed sign-ins of one user name within the window that lock it"
    )
    login_max_failures_per_address: int = Field(
        20,
        ge=1,
        description="failed sign-ins from one client address within the window that lock it",
    )
    login_window_s: int = Field(900, ge=1, description="window of the failed sign-in counts")
    login_lockout_s: int = Field(
        900, ge=1, description="how long a locked user name or client address is refused"
    )
    max_request_bytes: int = Field(
        65536, ge=1024, description="larger request bodies are refused with 413"
    )
    log_json: bool = Field(False, description="log one JSON object per line")
    log_hash_key: SecretStr = Field(
        SecretStr("wardwatch-log-key"),
        description="key of the keyed hash that stands for a patient id in log lines",
    )
    log_level: Literal["debug", "info", "warn", "error"] = Field(
        "info", description="log level (`warn` is Faust's spelling)"
    )
    data_dir: Path = Field(Path(".wardwatch"), description="Faust table data, demo scratch")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.web_tls_cert is None) != (self.web_tls_key is None):
            raise ValueError("WARDWATCH_WEB_TLS_CERT and WARDWATCH_WEB_TLS_KEY go together")
        if (self.redis_ssl_keyfile is not None) and self.redis_ssl_certfile is None:
            raise ValueError("WARDWATCH_REDIS_SSL_KEYFILE needs WARDWATCH_REDIS_SSL_CERTFILE")
        return self

    @property
    def web_tls_enabled(self) -> bool:
        """True when the web server serves HTTPS (session cookies get ``Secure``)."""
        return self.web_tls_cert is not None and self.web_tls_key is not None

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


def _default_text(field: Any) -> str:
    if field.default_factory is not None:
        return ""
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        value = str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def reference(
    model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX
) -> Iterator[tuple[str, str, str]]:
    """(environment variable, default, description) of every setting, nested groups
    expanded (``WARDWATCH_TOPICS__VITALS``), in declaration order."""
    for name, field in model.model_fields.items():
        env = f"{prefix}{name.upper()}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from reference(annotation, env + "__")
        else:
            yield env, _default_text(field), field.description or ""


def reference_markdown() -> str:
    """The settings table of ``docs/configuration.md``."""
    lines = [
        "# Configuration",
        "",
        "Generated from `wardwatch/settings.py` by `wardwatch settings --markdown`; a test",
        "keeps this page equal to the code. Every setting comes from the environment with the",
        "prefix `WARDWATCH_`; nested groups use a double underscore.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{env}` | {default} | {desc} |" for env, default, desc in reference()]
    return "\n".join(lines) + "\n"
