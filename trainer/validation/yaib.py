"""The hourly YAIB format (``dyn.parquet``, ``outc.parquet``, ``sta.parquet`` per task
folder), as the MIMIC-IV demo export has it; ``docs/validation.md`` has the columns.

Each stay starts at :data:`~trainer.validation.task.EPOCH` (``time`` is the time since
admission), so every stay has deterministic absolute timestamps and all stays share one
timeline. An hour row becomes one vitals message with the vitals it has; an hour with
none (laboratory values only) is not a vitals message and is counted, not sent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from trainer.validation.task import EPOCH, Message, Point, Task, epoch_ms, iso, message_json

__all__ = ["LABEL_WINDOW_H", "VITALS", "is_yaib_task", "load_yaib_task"]

VITALS: dict[str, str] = {
    "hr": "heart_rate_bpm",
    "resp": "respiratory_rate_per_min",
    "o2sat": "spo2_pct",
    "sbp": "systolic_bp_mmhg",
    "dbp": "diastolic_bp_mmhg",
    "temp": "temperature_c",
}
"""YAIB column -> vitals event field (same units). ``fio2`` gives ``on_oxygen``."""

ROOM_AIR_FIO2_PCT = 21.0  # above: supplemental oxygen
LABEL_WINDOW_H = 6.0
"""YAIB's hourly labels (sepsis, AKI) are positive from 6 h before the onset (to 6 h
after it, where the stay is cut): an alert counts for a positive hour within this long
before it."""

_H_MS = 3_600_000


def is_yaib_task(folder: Path) -> bool:
    return (folder / "dyn.parquet").is_file() and (folder / "outc.parquet").is_file()


def _ms(seconds: Any) -> int | None:
    """A ``time`` value (a timedelta, from pyarrow's duration type) in milliseconds."""
    if seconds is None:
        return None
    return int(round(seconds.total_seconds() * 1000))


def _age_band(age: float | None) -> str | None:
    if age is None or not math.isfinite(age) or age < 18:
        return None
    return "18-39" if age < 40 else "40-64" if age < 65 else "65-79" if age < 80 else "80+"


def _messages(table: Any) -> tuple[list[Message], int]:
    names = set(table.column_names)
    wanted = ["stay_id", "time", *(c for c in (*VITALS, "fio2") if c in names)]
    cols = table.select(wanted).to_pydict()
    n = table.num_rows
    messages: list[Message] = []
    without = 0
    for i in range(n):
        vitals: dict[str, Any] = {}
        for col, name in VITALS.items():
            if col in cols:
                v = cols[col][i]
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    vitals[name] = float(v)
        fio2 = cols["fio2"][i] if "fio2" in cols else None
        if fio2 is not None and not (isinstance(fio2, float) and math.isnan(fio2)):
            vitals["on_oxygen"] = bool(fio2 > ROOM_AIR_FIO2_PCT)
        if not vitals:
            without += 1
            continue
        pid = str(cols["stay_id"][i])
        t = _ms(cols["time"][i])
        ts_ms = None if t is None else epoch_ms(EPOCH) + t
        raw = message_json(pid, None if ts_ms is None else iso(ts_ms), vitals)
        messages.append(Message(i + 1, raw, -1 if ts_ms is None else ts_ms, pid))
    return messages, without


def load_yaib_task(folder: Path) -> Task:
    """One YAIB task folder: ``stay`` when ``outc.parquet`` has no ``time`` (one label
    per stay), else ``hourly``."""
    dyn = pq.read_table(folder / "dyn.parquet")
    outc = pq.read_table(folder / "outc.parquet").to_pydict()
    messages, without = _messages(dyn)
    t0 = epoch_ms(EPOCH)
    times = [_ms(t) for t in dyn.column("time").to_pylist()]
    labels = [int(bool(v)) for v in outc["label"]]
    stays = [str(s) for s in outc["stay_id"]]
    task = Task(
        name=folder.name,
        kind="hourly" if "time" in outc else "stay",
        source="yaib",
        label="",
        messages=messages,
        patients=sorted(set(stays), key=_stay_order),
        window_ms=0,
        rows=dyn.num_rows,
        rows_without_vitals=without,
    )
    if task.kind == "stay":
        # predicted at the end of the observation window the export gives (24 h for
        # mortality24): the last hour any stay has in dyn.parquet
        end = max((t for t in times if t is not None), default=0)
        task.points = [Point(s, t0 + end, y) for s, y in zip(stays, labels, strict=True)]
        task.window_ms = end
        task.label = (
            f"one label per stay, scored at {end / _H_MS:g} h after admission "
            "(the end of the observation window the export gives)"
        )
    else:
        hours = [_ms(t) for t in outc["time"]]
        task.points = [
            Point(s, t0 + h, y)
            for s, h, y in zip(stays, hours, labels, strict=True)
            if h is not None
        ]
        task.window_ms = int(LABEL_WINDOW_H * _H_MS)
        for p in task.points:  # label onset: the first hour labelled positive
            if p.label and (p.patient not in task.onsets or p.t_ms < task.onsets[p.patient]):
                task.onsets[p.patient] = p.t_ms
        task.label = (
            f"one label per stay-hour, scored with the score available at that "
            f"hour; positive from {LABEL_WINDOW_H:g} h before the onset"
        )
        missing = sum(h is None for h in hours)
        if missing:
            task.rejected_labels["label_without_time"] = missing
    task.contexts = _contexts(folder)
    return task


def _stay_order(s: str) -> tuple[int, str]:
    return (int(s), s) if s.isdigit() else (-1, s)


def _contexts(folder: Path) -> dict[str, dict[str, Any]]:
    """The ADT context of each stay (its age band), as ``wardwatch context`` sends it."""
    path = folder / "sta.parquet"
    if not path.is_file():
        return {}
    sta = pq.read_table(path).to_pydict()
    ages: Sequence[Any] = sta.get("age", [None] * len(sta["stay_id"]))
    out: dict[str, dict[str, Any]] = {}
    for stay, age in zip(sta["stay_id"], ages, strict=True):
        band = _age_band(None if age is None else float(age))
        if band is not None:
            out[str(stay)] = {"age_band": band}
    return out
