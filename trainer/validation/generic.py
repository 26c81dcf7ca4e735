"""The generic export format: timestamped vitals and an outcomes file, CSV or Parquet
(``docs/validation.md`` has the columns and units).

Each vitals row becomes the JSON vitals message a feed would send, its cells as they are
(a number as a number, a word as a string): whatever the worker's ingest would
dead-letter is dead-lettered, with the worker's reason, not repaired here. Only the
spellings a table has for a missing cell, a yes/no and an epoch time are read as such.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from trainer.validation.task import Message, Task, epoch_ms, iso, message_json
from wardwatch.schemas import VITAL_FIELDS

__all__ = ["OUTCOME_KINDS", "find_file", "is_generic_export", "load_generic"]

NUMERIC = (
    "heart_rate_bpm",
    "respiratory_rate_per_min",
    "spo2_pct",
    "systolic_bp_mmhg",
    "diastolic_bp_mmhg",
    "temperature_c",
)
COLUMNS = ("patient_id", "time", *VITAL_FIELDS)
OUTCOME_KINDS = ("icu_transfer", "cardiac_arrest", "death", "rapid_response")
"""Outcome words that mean deterioration (``none`` means none), as in the outcomes topic."""
_MISSING = {"", "na", "nan", "null", "none", "n/a"}
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
_H_MS = 3_600_000


def find_file(folder: Path, stem: str) -> Path | None:
    """``stem.csv`` or ``stem.parquet`` in ``folder``."""
    for ext in (".csv", ".parquet"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def is_generic_export(folder: Path) -> bool:
    return find_file(folder, "vitals") is not None


def _rows(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The columns and the rows of a CSV (cells as strings) or Parquet table."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return list(table.column_names), iter(table.to_pylist())
    f = path.open(newline="", encoding="utf-8-sig")
    reader = csv.DictReader(f)
    names = [n.strip() for n in reader.fieldnames or []]
    reader.fieldnames = names

    def rows() -> Iterator[dict[str, Any]]:
        with f:
            yield from reader

    return names, rows()


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    return isinstance(v, str) and v.strip().lower() in _MISSING


def _number(v: Any) -> Any:
    """A numeric cell: a number if it reads as one, else as it is (ingest says why not)."""
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return v
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def _flag(v: Any) -> Any:
    """``on_oxygen``: yes/no, true/false or 1/0; anything else as it is."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        word = v.strip().lower()
        return True if word in _TRUE else False if word in _FALSE else v
    if isinstance(v, int | float) and v in (0, 1):
        return bool(v)
    return v


def _pid(v: Any) -> str | None:
    if _missing(v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip() if isinstance(v, str | int) else str(v)


def read_time(v: Any) -> tuple[Any, int | None]:
    """A time cell as the message carries it, and its epoch ms when it is a valid aware
    time: a number is epoch seconds (UTC); ISO-8601 must carry its offset (``Z`` or
    ``+hh:mm``); a naive time goes as it is (ingest rejects it)."""
    if _missing(v):
        return None, None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            return v.isoformat(), None
        return v.isoformat(), epoch_ms(v)
    num = _number(v)
    if isinstance(num, float):
        if not math.isfinite(num) or abs(num) > 1e11:  # beyond year 5000: as it is
            return v, None
        ms = int(round(num * 1000))
        return iso(ms), ms
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip())
        except ValueError:
            return v, None
        return v.strip(), (epoch_ms(dt) if dt.tzinfo is not None else None)
    return v, None


def _vitals_messages(path: Path) -> tuple[list[Message], list[str], int]:
    names, rows = _rows(path)
    ignored = sorted(set(names) - set(COLUMNS))
    messages: list[Message] = []
    n = 0
    for n, row in enumerate(rows, start=1):
        vitals: dict[str, Any] = {}
        for field in VITAL_FIELDS:
            v = row.get(field)
            if _missing(v):
                continue
            if field in NUMERIC:
                vitals[field] = _number(v)
            elif field == "on_oxygen":
                vitals[field] = _flag(v)
            else:
                vitals[field] = v.strip() if isinstance(v, str) else v
        pid = _pid(row.get("patient_id"))
        ts, ms = read_time(row.get("time"))
        raw = message_json(pid, ts, vitals)
        messages.append(Message(n, raw, -1 if ms is None else ms, pid or ""))
    return messages, ignored, n


def _outcomes(path: Path | None) -> tuple[dict[str, int], set[str], dict[str, int]]:
    """First deterioration time per patient, the patients with an outcome row, and the
    outcome rows that could not be read, counted by reason."""
    first: dict[str, int] = {}
    seen: set[str] = set()
    rejected: dict[str, int] = {}

    def reject(why: str) -> None:
        rejected[why] = rejected.get(why, 0) + 1

    if path is None:
        return first, seen, rejected
    _, rows = _rows(path)
    for row in rows:
        pid = _pid(row.get("patient_id"))
        if pid is None:
            reject("missing_patient_id")
            continue
        raw = row.get("outcome")
        word = "" if raw is None else str(raw).strip().lower()  # "none" is an outcome here
        flag = _flag(raw)
        if word in OUTCOME_KINDS or flag is True:
            positive = True
        elif word == "none" or flag is False:
            positive = False
        else:
            reject("unknown_outcome")
            continue
        if not positive:
            seen.add(pid)
            continue
        _, ms = read_time(row.get("outcome_time"))
        if ms is None:
            reject("missing_outcome_time" if _missing(row.get("outcome_time")) else "bad_time")
            continue
        seen.add(pid)
        first[pid] = min(ms, first.get(pid, ms))
    return first, seen, rejected


def load_generic(folder: Path, *, horizon_h: float = 12.0) -> Task:
    """The generic export in ``folder``: ``vitals.csv|parquet`` and
    ``outcomes.csv|parquet``; the task is deterioration within ``horizon_h``."""
    vitals_path = find_file(folder, "vitals")
    if vitals_path is None:
        raise FileNotFoundError(f"no vitals.csv or vitals.parquet in {folder}")
    outcomes_path = find_file(folder, "outcomes")
    messages, ignored, n_rows = _vitals_messages(vitals_path)
    outcome_ms, with_row, rejected = _outcomes(outcomes_path)
    in_vitals = {m.patient for m in messages if m.patient}
    task = Task(
        name=f"deterioration_{horizon_h:g}h",
        kind="horizon",
        source="generic",
        label=(
            f"deterioration (an outcome in the outcomes file) within {horizon_h:g} h of an "
            "observation; observations at or after a patient's first outcome are not scored"
        ),
        messages=messages,
        patients=sorted(in_vitals | with_row),
        window_ms=int(horizon_h * _H_MS),
        rows=n_rows,
        outcome_ms=outcome_ms,
        onsets=dict(outcome_ms),
        rejected_labels=rejected,
        ignored_columns=ignored,
    )
    if outcomes_path is None:
        task.notes.append("no outcomes file: every patient is taken as without outcome")
    no_row = len(in_vitals - with_row)
    if no_row and outcomes_path is not None:
        task.notes.append(f"{no_row} patients without an outcome row: taken as without outcome")
    no_vitals = len(with_row - in_vitals)
    if no_vitals:
        task.notes.append(f"{no_vitals} patients in the outcomes file have no vitals rows")
    if ignored:
        task.notes.append("columns not read: " + ", ".join(ignored))
    return task
