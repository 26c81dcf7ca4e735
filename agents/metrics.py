"""Prometheus metrics of a worker, on an injected CollectorRegistry.

Labels carry only bounded, non-identifying values (topic names, reason codes, priorities,
transition names, model names/versions). Never a patient id, never free text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
SCORED_BUCKETS = (
    0.005,
    0.01,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    10,
    30,
    60,
)
IMAGING_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "wardwatch_events_consumed_total", "Messages consumed", ["topic"], registry=r
        )
        self.scored = Counter(
            "wardwatch_events_scored_total", "Vitals events scored", ["topic"], registry=r
        )
        self.skipped = Counter(
            "wardwatch_events_skipped_total",
            "Valid events with no effect (duplicate: already applied)",
            ["reason"],
            registry=r,
        )
        self.late = Counter(
            "wardwatch_events_late_total",
            "Of the events scored, the late ones: older than their patient's newest, "
            "merged for the record, never paged",
            registry=r,
        )
        self.dead_lettered = Counter(
            "wardwatch_dead_letter_total", "Messages sent to dead-letter", ["reason"], registry=r
        )
        self.warnings = Counter(
            "wardwatch_ingest_warnings_total",
            "Accepted but suspicious values",
            ["code"],
            registry=r,
        )
        self.flagged_readings = Counter(
            "wardwatch_ingest_readings_flagged_total",
            "Readings set aside (tier impossible or inconsistent: not scored) or scored and "
            "flagged verify_reading (tier extreme), by vital",
            ["field", "tier"],
            registry=r,
        )
        self.alerts = Counter(
            "wardwatch_alert_transitions_total",
            "Alert transitions emitted",
            ["transition", "priority"],
            registry=r,
        )
        self.event_to_alert = Histogram(
            "wardwatch_event_to_alert_seconds",
            "From the vitals message's produce time to its alert transition being published",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.event_to_scored = Histogram(
            "wardwatch_event_to_scored_seconds",
            "From the vitals message's produce time to its batch being scored and its "
            "alerts published",
            buckets=SCORED_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "wardwatch_batch_size", "Events per scoring batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.stage_seconds = Histogram(
            "wardwatch_stage_seconds",
            "Time per batch in each stage",
            ["stage"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.time_to_ack = Histogram(
            "wardwatch_time_to_acknowledge_seconds",
            "From alert open to acknowledgement",
            buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600),
            registry=r,
        )
        self.patients = Gauge(
            "wardwatch_patients_monitored", "Patients with an event in the state TTL", registry=r
        )
        self.open_alerts = Gauge("wardwatch_open_alerts", "Open alerts", registry=r)
        self.consumer_lag = Gauge(
            "wardwatch_consumer_lag",
            "Messages behind the end of each assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.last_vitals = Gauge(
            "wardwatch_last_vitals_timestamp_seconds",
            "Wall-clock time the newest vitals message was consumed",
            registry=r,
        )
        self.redis_seconds = Histogram(
            "wardwatch_redis_seconds",
            "Redis round-trip time",
            ["op"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "wardwatch_inference_seconds",
            "ONNX Runtime call per batch",
            ["model", "version"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.model_load_failures = Counter(
            "wardwatch_model_load_failures_total",
            "Model versions refused (missing, checksum, parity, shape)",
            ["model"],
            registry=r,
        )
        self.model_unavailable = Counter(
            "wardwatch_model_unavailable_total",
            "Events scored by the rules only because no model could score them",
            ["reason"],
            registry=r,
        )
        self.artifacts_suppressed = Counter(
            "wardwatch_artifacts_suppressed_total",
            "Isolated extreme readings held and not confirmed (no alert)",
            registry=r,
        )
        self.retries = Counter(
            "wardwatch_processing_retries_total",
            "Stages retried after a Redis or Kafka failure (the partition waits), or patients "
            "reloaded after a state version conflict (stage=conflict)",
            ["stage"],
            registry=r,
        )
        self.commands = Counter(
            "wardwatch_commands_total",
            "Care-team commands applied by this worker, by action and outcome "
            "(applied, no_effect: already in that state, stale: the alert has changed)",
            ["action", "outcome"],
            registry=r,
        )
        self.outbox_swept = Counter(
            "wardwatch_outbox_swept_total",
            "Alert transitions published by the outbox sweep (their publisher died or stalled)",
            registry=r,
        )
        self.rekeyed = Counter(
            "wardwatch_events_rekeyed_total",
            "Vitals events that arrived keyed by something other than their patient id, "
            "republished keyed by it",
            registry=r,
        )
        self.background_failures = Counter(
            "wardwatch_background_failures_total",
            "Background work that failed and runs again: escalation timer, promotions reader",
            ["task"],
            registry=r,
        )
        self.webhook = Counter(
            "wardwatch_webhook_deliveries_total",
            "Paging webhook attempts by outcome (delivered, retry, rejected, failed: expired)",
            ["outcome"],
            registry=r,
        )
        self.pages_withheld = Counter(
            "wardwatch_pages_withheld_total",
            "Paging transitions not sent, by reason (stale_data: the data behind it older "
            "than page_max_data_age_s); the alert stays on the care-team page",
            ["reason"],
            registry=r,
        )
        self.page_delay = Histogram(
            "wardwatch_page_delay_seconds",
            "From an alert transition's commit to its page's delivery",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800),
            registry=r,
        )
        self.shadow_scored = Counter(
            "wardwatch_shadow_scored_total",
            "Vitals events the shadow model scored beside the live one",
            registry=r,
        )
        self.shadow_would_page = Counter(
            "wardwatch_shadow_would_page_total",
            "Shadow transitions that would have paged (published on alerts-shadow, never paged)",
            ["priority"],
            registry=r,
        )
        self.shadow_timer_transitions = Counter(
            "wardwatch_shadow_timer_transitions_total",
            "Shadow transitions the escalation timer made (held_reading: a held reading "
            "raised at the end of its hold; no_repeat_observation: an overdue repeat paged)",
            ["kind"],
            registry=r,
        )
        self.shadow_errors = Counter(
            "wardwatch_shadow_errors_total",
            "Shadow failures, by reason (load, model_error, no_model, conflict, store, "
            "publish); live scoring and paging are never affected",
            ["reason"],
            registry=r,
        )
        self.imaging_consumed = Counter(
            "wardwatch_imaging_studies_consumed_total",
            "Imaging-study messages consumed",
            registry=r,
        )
        self.imaging_scored = Counter(
            "wardwatch_imaging_studies_scored_total",
            "Imaging studies scored and their finding acknowledged by the broker, by "
            "suspicion (true: at or over the model's threshold)",
            ["suspicious"],
            registry=r,
        )
        self.imaging_dead_lettered = Counter(
            "wardwatch_imaging_studies_dead_lettered_total",
            "Imaging-study messages sent to dead-letter, by reason (the event's decoder, "
            "the study's loading, processing_error for a model failure)",
            ["reason"],
            registry=r,
        )
        self.imaging_seconds = Histogram(
            "wardwatch_imaging_scoring_seconds",
            "Scoring of one study off the event loop, by stage (load: DICOM reading and "
            "pre-processing; infer: the ONNX call; post: finding and heatmap files)",
            ["stage"],
            buckets=IMAGING_BUCKETS,
            registry=r,
        )
        self.imaging_in_flight = Gauge(
            "wardwatch_imaging_studies_in_flight",
            "Imaging studies being scored now",
            registry=r,
        )
        self.model_info = Info("wardwatch_model", "Active model", registry=r)
        self.build_info = Info("wardwatch_build", "wardwatch version", registry=r)
