"""The demo's terminal view and its summary: live alerts, a progress line, the final figures.

:class:`AlertWatcher` reads the alerts and dead-letter topics like a care-team client and
prints each alert as it arrives; :func:`print_progress` prints the running counters;
:func:`demo_summary` builds the JSON summary the demo prints (and writes on request) at
the end, from the publisher's statistics, the workers' counters and what the view saw.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kafka import KafkaConsumer, TopicPartition

from alerts.webhook import should_page, withheld_because
from simulator.publish import PublishStats
from wardwatch.settings import Settings

__all__ = ["AlertWatcher", "demo_summary", "percentile", "print_progress", "write_summary"]

COLORS = {"high": "\033[1;31m", "medium": "\033[33m", "low": "\033[36m"}
RESET = "\033[0m"


@dataclass
class AlertWatcher:
    """Reads the alerts and dead-letter topics from the start, like a care-team client."""

    settings: Settings
    out: TextIO
    color: bool
    transitions: Counter[str] = field(default_factory=Counter)
    by_priority: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    pages: int = 0
    pages_withheld: int = 0  # paging transitions about data older than the horizon
    alerts: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    on_page: Callable[[dict[str, Any]], None] | None = None  # each page, once

    @property
    def max_data_age_s(self) -> float:
        return float(self.settings.page_max_data_age_s)

    def run(self) -> None:
        t = self.settings.topics
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap(),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=200,
            **self.settings.kafka_python_security(),
        )
        parts = [
            TopicPartition(topic, p)
            for topic in (t.alerts, t.dead_letter)
            for p in range(self.settings.partitions)
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        try:
            while not self.stop.is_set():
                batches = consumer.poll(timeout_ms=200)
                for tp, records in batches.items():
                    for rec in records:
                        if tp.topic == t.alerts:
                            self.on_alert(json.loads(rec.value), rec)
                        else:
                            self.dead_letters[json.loads(rec.value).get("reason", "?")] += 1
        finally:
            consumer.close()

    def on_alert(self, msg: dict[str, Any], rec: Any) -> None:
        tid = msg.get("transition_id", "")
        if tid in self.seen:
            self.duplicates += 1
            return
        self.seen.add(tid)
        self.alerts.append(msg)
        transition, priority = msg.get("transition", "?"), msg.get("priority", "?")
        self.transitions[transition] += 1
        self.by_priority[priority] += 1
        if should_page(msg):
            if withheld_because(msg, self.max_data_age_s) is not None:
                self.pages_withheld += 1
            else:
                self.pages += 1
                if self.on_page is not None:
                    self.on_page(msg)
        if msg.get("source_ts_ms") and transition in ("OPEN", "ESCALATED"):
            self.latencies_ms.append(max(0.0, time.time() * 1000 - msg["source_ts_ms"]))
        summary = (msg.get("explanation") or {}).get("summary", "")
        if transition in ("OPEN", "ESCALATED") and not should_page(msg):
            summary = "[on the page, not paged] " + summary
        color = COLORS.get(priority, "") if self.color else ""
        reset = RESET if self.color else ""
        stamp = time.strftime("%H:%M:%S")
        line = (
            f"{stamp} {color}{transition:<12} {priority.upper():<6}{reset} "
            f"{msg.get('patient_id', '?'):<10} NEWS2 {msg.get('news2_total')!s:>2}  {summary}"
        )
        print("\r\033[K" + line if self.color else line, file=self.out, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


def print_progress(
    out: TextIO,
    tty: bool,
    pub: PublishStats,
    tot: dict[str, float],
    watcher: AlertWatcher,
    elapsed: float,
) -> None:
    """One line of running counters (rewritten in place on a terminal)."""
    pr = watcher.by_priority
    line = (
        f"[{elapsed:5.0f}s] sim {pub.sim_hours:5.1f} h | published {pub.vitals} | "
        f"scored {tot['scored']:.0f} | dead-letter {tot['dead']:.0f} | alerts "
        f"high {pr['high']} medium {pr['medium']} low {pr['low']}"
    )
    if tty:
        print("\r\033[K" + line, end="", file=out, flush=True)
    else:
        print(line, file=out, flush=True)


def demo_summary(
    pub: PublishStats,
    scored: dict[str, float],
    watcher: AlertWatcher | None,
    errors: list[str],
    elapsed: float,
) -> dict[str, Any]:
    """The figures of one demo run (``watcher`` is None when the workers never came up)."""
    lat = watcher.latencies_ms if watcher else []
    patient_days = pub.patients * pub.sim_hours / 24
    return {
        "elapsed_s": round(elapsed, 1),
        "simulated_hours": round(pub.sim_hours, 2),
        "events_published": pub.vitals,
        "outcomes_published": pub.outcomes,
        "events_consumed": int(scored.get("consumed", 0)),
        "events_scored": int(scored.get("scored", 0)),
        "events_skipped": int(scored.get("skipped", 0)),
        "events_model_scored": int(scored.get("scored", 0) - scored.get("rules_only", 0)),
        "model": _model_label(str(scored.get("model", ""))),
        "dead_lettered": int(scored.get("dead", 0)),
        "dead_letter_reasons": dict(watcher.dead_letters) if watcher else {},
        "alert_transitions": dict(watcher.transitions) if watcher else {},
        "alerts_by_priority": dict(watcher.by_priority) if watcher else {},
        "alerts_opened": watcher.transitions.get("OPEN", 0) if watcher else 0,
        "patient_days": round(patient_days, 2),
        "alerts_opened_per_patient_day": round(
            (watcher.transitions.get("OPEN", 0) if watcher else 0) / patient_days, 3
        )
        if patient_days
        else None,
        "pages_per_patient_day": round((watcher.pages if watcher else 0) / patient_days, 3)
        if patient_days
        else None,
        "pages": watcher.pages if watcher else 0,
        "pages_withheld_stale_data": watcher.pages_withheld if watcher else 0,
        "re_pages_unacknowledged": sum(
            1
            for a in (watcher.alerts if watcher else [])
            if should_page(a) and "unacknowledged" in (a.get("reason") or [])
        ),
        "re_page_interval_s": watcher.settings.escalate_after_s if watcher else None,
        "alerts_opened_without_page": sum(
            1
            for a in (watcher.alerts if watcher else [])
            if a.get("transition") == "OPEN"
            and a.get("priority") in ("medium", "high")
            and not should_page(a)
        ),
        "duplicate_transitions_seen": watcher.duplicates if watcher else 0,
        "commands": {
            "applied": int(scored.get("commands_applied", 0)),
            "no_effect": int(scored.get("commands_no_effect", 0)),
            "stale": int(scored.get("commands_stale", 0)),
        },
        "conflict_retries": int(scored.get("conflict_retries", 0)),
        "event_to_alert_latency_ms": {"p50": percentile(lat, 50), "p99": percentile(lat, 99)},
        "errors": errors,
    }


def _model_label(info_sample: str) -> str | None:
    """'deterioration v1' from a wardwatch_model_info sample name."""
    if "version=" not in info_sample:
        return None
    labels = dict(
        part.split("=", 1) for part in info_sample.split("{", 1)[1].rstrip("}").split(",")
    )
    return f"{labels.get('name', '').strip(chr(34))} {labels.get('version', '').strip(chr(34))}"


def write_summary(path: Path | None, summary: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(summary, indent=2) + "\n")
