"""What a loader makes of an export: per task, the vitals as the messages a feed would
send, and the labels with the times they are scored at.

Three kinds of task (``docs/validation.md``):

* ``stay``: one label per stay, predicted at a fixed time after admission
  (``stay_points``); the YAIB ``mortality24`` task;
* ``hourly``: one label per stay-hour (``hour_points``), scored with the score available
  at that hour; the YAIB ``sepsis`` and ``aki`` tasks;
* ``horizon``: deterioration within ``window_ms`` of each scored observation, from an
  outcome time per patient (``outcome_ms``); the generic format. Its points are the scored
  observations themselves, known only after the replay.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["EPOCH", "Message", "Point", "Task", "TaskKind", "epoch_ms", "iso", "message_json"]

TaskKind = Literal["stay", "hourly", "horizon"]

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""Where an export that gives times since admission starts every stay (the same for all
stays, so that they share one timeline, as the patients of a ward do)."""


def epoch_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime, as ``VitalsEvent.ts_ms`` computes them."""
    return int(dt.timestamp() * 1000)


def iso(ms: int) -> str:
    """An epoch time in milliseconds as ISO-8601 UTC, the form the vitals schema reads."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


@dataclass(frozen=True, slots=True)
class Message:
    """One row of the export as the JSON vitals message a feed would publish."""

    row: int  # 1-based row number in its source table (header not counted)
    raw: bytes
    sort_ms: int  # its time if it has one that parses, else -1 (sent first, rejected)
    patient: str  # for ordering only; never reported


@dataclass(frozen=True, slots=True)
class Point:
    """A label and the time its score is read (the latest score at or before ``t_ms``)."""

    patient: str
    t_ms: int
    label: int


@dataclass
class Task:
    """One task of an export, ready to replay and evaluate."""

    name: str
    kind: TaskKind
    source: str  # "yaib" or "generic"
    label: str  # what a positive label means, in words
    messages: list[Message]
    patients: list[str]  # the cohort: every stay or patient with a label, sorted
    window_ms: int  # an alert counts for a positive point within this long before it
    rows: int = 0  # rows read from the vitals table
    rows_without_vitals: int = 0  # YAIB hours with no vital sign (labs only): not sent
    points: list[Point] = field(default_factory=list)  # stay and hourly tasks
    # label onset per positive patient (lead time); stay tasks have none
    onsets: dict[str, int] = field(default_factory=dict)
    outcome_ms: dict[str, int] = field(default_factory=dict)  # horizon: first outcome
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)  # ADT context
    rejected_labels: dict[str, int] = field(default_factory=dict)  # reason -> rows
    notes: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def positives(self) -> list[str]:
        """Patients with a positive label (or an outcome), sorted."""
        if self.kind == "horizon":
            return sorted(self.outcome_ms)
        return sorted({p.patient for p in self.points if p.label})


def message_json(patient: str | None, ts: str | None, vitals: Mapping[str, Any]) -> bytes:
    """The vitals message of one row: the fields present, a missing value left out (a
    NaN number is missing; so is ``None``). An infinite number is written ``1e999``, the
    JSON a feed would send for it (ingest sets it aside as impossible)."""
    out: dict[str, Any] = {}
    if patient is not None:
        out["patient_id"] = patient
    if ts is not None:
        out["ts"] = ts
    for k, v in vitals.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[k] = v
    parts = []
    for k, v in out.items():
        if isinstance(v, float) and math.isinf(v):
            value = "1e999" if v > 0 else "-1e999"
        else:
            value = json.dumps(v)
        parts.append(f"{json.dumps(k)}:{value}")
    return ("{" + ",".join(parts) + "}").encode()
