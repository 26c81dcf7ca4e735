"""Training data from what the running system accumulated on Kafka (offline only).

:func:`read_topics` reads every partition of the ``vitals`` and ``outcomes`` topics from
the beginning up to the end offsets they have when the read starts (messages that
arrive during the read are left for the next one), with a plain kafka-python
``KafkaConsumer``: ``assign`` + ``seek_to_beginning``, no consumer group, no committed
offsets, so it never disturbs the workers' group and can be repeated. The end of a
partition is the larger of ``end_offsets()`` and the high watermark of the first fetch
response (the embedded Tansu broker answers ``ListOffsets(latest)`` with a stale or
off-by-one offset; on Apache Kafka both agree).

* ``vitals``: JSON :class:`~wardwatch.schemas.VitalsEvent` messages only. Anything
  else is skipped and counted by reason: ``not_json`` (not UTF-8 JSON / not an object),
  ``fhir`` (FHIR resources: the ingest stage maps those, the trainer does not),
  ``schema`` (fails ``VitalsEvent`` validation), ``implausible`` (every vital outside
  :data:`wardwatch.ingest.PLAUSIBLE_RANGES`: the worker dead-letters those; a single
  reading outside it is set aside, as the worker does, and counted in
  ``readings_set_aside``) and
  ``duplicate`` (same patient, time and content as an earlier message: at-least-once
  delivery; the worker ignores them too).
* ``outcomes``: :class:`~wardwatch.schemas.Outcome` JSON; invalid ones are skipped and
  counted.

:func:`dataset_from_kafka` turns the result into a :class:`~trainer.dataset.Dataset`
with :func:`trainer.dataset.from_events`: the same labels, NEWS2 and patient-level
splits as the simulator path. Its ``source`` records the topics and the end offsets
read, so the same data can be re-read later (``end_offsets=``) while the topics still
retain it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from trainer.dataset import Dataset, from_events
from wardwatch.ingest import PLAUSIBLE_RANGES
from wardwatch.schemas import VITAL_FIELDS, Outcome, VitalsEvent

__all__ = [
    "KafkaRead",
    "KafkaReadError",
    "dataset_from_kafka",
    "end_offsets_from_source",
    "read_topics",
    "read_topics_full",
]

EndOffsets = dict[str, dict[int, int]]
"""topic -> partition -> offset to stop before (exclusive)."""


class KafkaReadError(RuntimeError):
    """The topics could not be read completely (missing topic, timeout)."""


@dataclass
class KafkaRead:
    events: list[dict[str, Any]]
    outcomes: list[Outcome]
    end_offsets: EndOffsets
    stats: dict[str, Any] = field(default_factory=dict)


def _consumer(settings: Any) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="wardwatch-trainer-reader",
        max_poll_records=5000,
        request_timeout_ms=30_000,
        **settings.kafka_python_security(),
    )


def _partitions(consumer: Any, topic: str, deadline: float) -> list[int]:
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise KafkaReadError(f"topic {topic!r} not found (or no partitions)")
        time.sleep(0.2)


def _vitals(
    raw: bytes | None,
    seen: set[tuple[str, str]],
    skipped: dict[str, int],
    readings: dict[str, int],
) -> Any:
    """The event dict of one vitals message, or None (and a count in ``skipped``)."""
    if raw is None:
        skipped["not_json"] += 1
        return None
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict):
        skipped["not_json"] += 1
        return None
    if "resourceType" in obj:
        skipped["fhir"] += 1
        return None
    try:
        ev = VitalsEvent.model_validate_json(raw)
    except ValidationError:
        skipped["schema"] += 1
        return None
    values = ev.model_dump()
    aside = 0
    for name, (lo, hi) in PLAUSIBLE_RANGES.items():
        v = values.get(name)
        if v is not None and not lo <= v <= hi:  # NaN fails too
            values[name] = None  # set aside, as the worker does
            aside += 1
    if aside:
        if all(values.get(name) is None for name in VITAL_FIELDS):
            skipped["implausible"] += 1
            return None
        readings["set_aside"] += aside
    key = (ev.patient_id, ev.model_dump_json())
    if key in seen:
        skipped["duplicate"] += 1
        return None
    seen.add(key)
    return values


def records_to_end(
    consumer: Any,
    ends: dict[Any, int],
    settled: set[Any],
    deadline: float,
    timeout_s: float,
) -> Iterator[tuple[str, bytes | None]]:
    """``(topic, value)`` of every record of the assigned partitions ``ends`` (partition ->
    end offset, updated in place) up to their end offsets, in partition order.

    Some Kafka-wire brokers (the embedded Tansu) answer ListOffsets(latest) with a stale
    or off-by-one offset; the high watermark of the first fetch response is exact, so a
    partition not yet ``settled`` ends at the larger of the two. KafkaReadError when the
    ends are not reached by ``deadline``."""
    pending = set(ends)
    while pending:
        if time.monotonic() > deadline:
            left = {f"{tp.topic}[{tp.partition}]": ends[tp] for tp in pending}
            raise KafkaReadError(f"end offsets not reached within {timeout_s}s: {left}")
        batch = consumer.poll(timeout_ms=500)
        for tp in pending - settled:
            hw = consumer.highwater(tp)
            if hw is not None:
                ends[tp] = max(ends[tp], int(hw))
                settled.add(tp)
        for tp, records in batch.items():
            for rec in records:
                if rec.offset >= ends[tp]:
                    break
                yield tp.topic, rec.value
        for tp in list(pending & settled):
            if consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
                consumer.pause(tp)


def read_topics_full(
    settings: Any,
    *,
    timeout_s: float = 120.0,
    end_offsets: EndOffsets | None = None,
) -> KafkaRead:
    """Read ``vitals`` and ``outcomes`` from the beginning to their end offsets.

    ``end_offsets`` (topic -> partition -> offset) replaces the current end offsets, to
    re-read exactly what an earlier read saw. Raises :class:`KafkaReadError` when a
    topic does not exist or the end is not reached within ``timeout_s``.
    """
    from kafka import TopicPartition

    topics = (settings.topics.vitals, settings.topics.outcomes)
    deadline = time.monotonic() + timeout_s
    consumer = _consumer(settings)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in _partitions(consumer, t, deadline)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        if end_offsets is None:
            ends = {tp: int(o) for tp, o in consumer.end_offsets(tps).items()}
            settled: set[Any] = set()  # partitions whose end is final
        else:
            ends = {tp: int(end_offsets.get(tp.topic, {}).get(tp.partition, 0)) for tp in tps}
            settled = set(tps)

        events: list[dict[str, Any]] = []
        outcomes: list[Outcome] = []
        seen: set[tuple[str, str]] = set()
        skipped_v = dict.fromkeys(("not_json", "fhir", "schema", "implausible", "duplicate"), 0)
        skipped_o = {"invalid": 0}
        readings = {"set_aside": 0}  # single readings set aside from events kept
        messages = dict.fromkeys(topics, 0)
        for topic, value in records_to_end(consumer, ends, settled, deadline, timeout_s):
            messages[topic] += 1
            if topic == settings.topics.vitals:
                ev = _vitals(value, seen, skipped_v, readings)
                if ev is not None:
                    events.append(ev)
            else:
                try:
                    outcomes.append(Outcome.model_validate_json(value or b""))
                except ValidationError:
                    skipped_o["invalid"] += 1
    finally:
        consumer.close()

    recorded: EndOffsets = {t: {} for t in topics}
    for tp, off in ends.items():
        recorded[tp.topic][tp.partition] = off
    stats = {
        "read_at": datetime.now(UTC).isoformat(),
        "vitals": {
            "topic": settings.topics.vitals,
            "messages": messages[settings.topics.vitals],
            "events": len(events),
            "skipped": skipped_v,
            "readings_set_aside": readings["set_aside"],
        },
        "outcomes": {
            "topic": settings.topics.outcomes,
            "messages": messages[settings.topics.outcomes],
            "outcomes": len(outcomes),
            "skipped": skipped_o,
        },
    }
    return KafkaRead(events, outcomes, recorded, stats)


def read_topics(
    settings: Any, *, timeout_s: float = 120.0
) -> tuple[list[dict[str, Any]], list[Outcome]]:
    """Vitals event dicts and outcomes on the topics now (see :func:`read_topics_full`)."""
    res = read_topics_full(settings, timeout_s=timeout_s)
    return res.events, res.outcomes


def dataset_from_kafka(
    settings: Any,
    *,
    horizon_h: float = 12.0,
    split_seed: int = 0,
    fractions: tuple[float, float] = (0.6, 0.2),
    timeout_s: float = 120.0,
    end_offsets: EndOffsets | None = None,
) -> Dataset:
    """A :class:`Dataset` of everything on ``vitals`` + ``outcomes`` (as the simulator path).

    ``source`` records ``kind="kafka"``, the topics, the end offsets read (JSON: partition
    numbers as strings), the split seed and the read statistics.
    """
    res = read_topics_full(settings, timeout_s=timeout_s, end_offsets=end_offsets)
    source = {
        "kind": "kafka",
        "bootstrap": settings.kafka_bootstrap(),
        "topics": {"vitals": settings.topics.vitals, "outcomes": settings.topics.outcomes},
        "end_offsets": {
            t: {str(p): o for p, o in sorted(parts.items())} for t, parts in res.end_offsets.items()
        },
        "seed": split_seed,
        "read": res.stats,
    }
    return from_events(
        res.events,
        res.outcomes,
        horizon_h=horizon_h,
        split_seed=split_seed,
        fractions=fractions,
        source=source,
    )


def end_offsets_from_source(source: dict[str, Any]) -> EndOffsets:
    """The ``end_offsets`` recorded by :func:`dataset_from_kafka`, for a re-read."""
    return {
        t: {int(p): int(o) for p, o in parts.items()}
        for t, parts in source.get("end_offsets", {}).items()
    }
