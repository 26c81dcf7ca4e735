"""Validation loaders: the YAIB hourly tables and the generic format on tiny exports,
bad rows counted by the worker's own reasons (never dropped), readings set aside and
flagged as the worker's ingest does; the replay is the worker's, batch boundaries at the
timer ticks."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agents.model_stage import Incoming
from agents.replay import batches
from tests.validation_data import (
    GENERIC_OUTCOME_REJECTS,
    GENERIC_REJECTS,
    HOURS,
    write_generic,
    write_generic_parquet,
    write_yaib,
)
from trainer.validation.generic import load_generic
from trainer.validation.run import find_tasks
from trainer.validation.scoring import score_messages
from trainer.validation.task import EPOCH, epoch_ms
from trainer.validation.yaib import load_yaib_task
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings

H = 3_600_000
T_EPOCH = epoch_ms(EPOCH)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _replay(task, now: datetime = NOW, **kw):  # type: ignore[no-untyped-def]
    return asyncio.run(
        score_messages(task.messages, Settings(), None, now=now, contexts=task.contexts, **kw)
    )


def test_yaib_stay_task(tmp_path: Path) -> None:
    task = load_yaib_task(write_yaib(tmp_path / "mortality24", hourly=False))
    assert (task.name, task.kind, task.source) == ("mortality24", "stay", "yaib")
    assert task.rows == 3 * HOURS
    # stay 3 has no vitals at all, stay 2 one labs-only hour: not vitals messages
    assert task.rows_without_vitals == HOURS + 1
    assert len(task.messages) == 2 * HOURS - 1
    assert task.patients == ["1", "2", "3"] and task.positives == ["1"]
    # scored at the end of the window the export gives: 24 h after admission
    assert [(p.patient, p.t_ms, p.label) for p in task.points] == [
        ("1", T_EPOCH + 24 * H, 1),
        ("2", T_EPOCH + 24 * H, 0),
        ("3", T_EPOCH + 24 * H, 0),
    ]
    assert task.window_ms == 24 * H and task.onsets == {}
    assert task.contexts == {
        "1": {"age_band": "65-79"},
        "2": {"age_band": "18-39"},
        "3": {"age_band": "80+"},
    }
    first = json.loads(task.messages[0].raw)
    assert first == {
        "patient_id": "1",
        "ts": "2000-01-01T00:00:00+00:00",
        "heart_rate_bpm": 80.0,
        "respiratory_rate_per_min": 16.0,
        "spo2_pct": 97.0,
        "systolic_bp_mmhg": 124.0,
        "diastolic_bp_mmhg": 72.0,
        "temperature_c": 37.0,
        "on_oxygen": False,  # FiO2 21 %: room air
    }
    at12 = json.loads(task.messages[12].raw)
    assert at12["on_oxygen"] is True and "temperature_c" in at12  # FiO2 40 %
    assert "on_oxygen" not in json.loads(task.messages[1].raw)  # FiO2 not charted


def test_yaib_hourly_task(tmp_path: Path) -> None:
    task = load_yaib_task(write_yaib(tmp_path / "sepsis", hourly=True))
    assert task.kind == "hourly"
    assert len(task.points) == 3 * HOURS
    assert sum(p.label for p in task.points) == 13
    assert task.onsets == {"1": T_EPOCH + 12 * H}  # the first hour labelled positive
    assert task.window_ms == 6 * H


def test_find_tasks_in_a_folder_of_task_folders(tmp_path: Path) -> None:
    write_yaib(tmp_path / "sepsis", hourly=True)
    write_yaib(tmp_path / "mortality24", hourly=False)
    (tmp_path / "notes").mkdir()
    assert [t.name for t in find_tasks(tmp_path)] == ["mortality24", "sepsis"]
    assert [t.name for t in find_tasks(tmp_path / "sepsis")] == ["sepsis"]
    with pytest.raises(FileNotFoundError):
        find_tasks(tmp_path / "notes")


def test_yaib_bad_rows_are_counted_as_the_worker_counts_them(tmp_path: Path) -> None:
    task = load_yaib_task(write_yaib(tmp_path / "m", hourly=False))
    rep = _replay(task, now=datetime(2000, 1, 2, 1, tzinfo=UTC))
    g = rep.ingest
    assert g["messages"] == len(task.messages)
    # heart rate 0 and respiratory rate 0: both set aside, nothing left, dead-lettered
    assert g["rejected"]["by_reason"] == {"impossible_value": 1}
    (example,) = g["rejected"]["examples"]
    assert example["row"] == HOURS + 7 and "heart_rate_bpm=0" in example["detail"]
    # a respiratory rate of 0 beside valid vitals: set aside, the rest scored
    assert g["readings_set_aside"] == {
        "total": 1,
        "by_field": {"respiratory_rate_per_min": {"impossible": 1}},
    }
    assert g["accepted"] == g["events_scored"] == len(task.messages) - 1
    assert sorted(rep.scores) == ["1", "2"]
    assert rep.model_reasons == {"no_model": g["events_scored"]}
    one = rep.scores["1"]
    assert np.all(np.diff(one.ts) == H) and np.isnan(one.fused).all()
    assert all("consciousness" in m for m in one.missing)  # NEWS2 is partial
    assert one.news2[-1] > one.news2[0]  # the deteriorating stay scores higher


def test_generic_csv(tmp_path: Path) -> None:
    task = load_generic(write_generic(tmp_path / "export"))
    assert (task.name, task.kind, task.source) == ("deterioration_12h", "horizon", "generic")
    n_bad = sum(GENERIC_REJECTS.values())
    assert task.rows == len(task.messages) == 24 + 24 + 6 + n_bad
    assert task.patients == ["p-001", "p-002", "p-003"]
    assert task.outcome_ms == {"p-001": epoch_ms(datetime(2025, 3, 1, 20, tzinfo=UTC))}
    assert task.onsets == task.outcome_ms and task.window_ms == 12 * H
    assert task.rejected_labels == GENERIC_OUTCOME_REJECTS
    assert task.ignored_columns == ["ward"]
    assert any("1 patients without an outcome row" in n for n in task.notes)
    by_row = {m.row: json.loads(m.raw) for m in task.messages}
    assert by_row[1]["ts"] == "2025-03-01T00:00:00Z"  # ISO-8601 as it is
    assert by_row[13]["on_oxygen"] is True and by_row[17]["consciousness"] == "C"
    assert by_row[25]["ts"] == "2025-03-01T00:00:00+00:00"  # epoch seconds, as UTC
    assert by_row[25]["on_oxygen"] is False
    bad = {m.row: json.loads(m.raw) for m in task.messages if m.row > 54}
    assert "patient_id" not in bad[55] and "ts" not in bad[56]
    assert bad[58]["heart_rate_bpm"] == "abc"  # as it is: the ingest says why not


def test_generic_bad_rows_get_the_workers_reasons(tmp_path: Path) -> None:
    task = load_generic(write_generic(tmp_path / "export"))
    rep = _replay(task)
    g = rep.ingest
    assert g["rejected"]["by_reason"] == GENERIC_REJECTS
    assert g["rejected"]["total"] == sum(GENERIC_REJECTS.values())
    assert [e["row"] for e in g["rejected"]["examples"]] == sorted(
        e["row"] for e in g["rejected"]["examples"]
    )
    assert all("p-00" not in e["detail"] for e in g["rejected"]["examples"])  # no patient id
    assert g["readings_set_aside"] == {
        "total": 3,
        "by_field": {
            "diastolic_bp_mmhg": {"inconsistent": 1},
            "respiratory_rate_per_min": {"impossible": 1},
            "systolic_bp_mmhg": {"inconsistent": 1},
        },
    }
    assert g["readings_to_verify"] == {"total": 1, "by_field": {"spo2_pct": 1}}
    assert g["accepted"] == 24 + 24 + 6
    assert sorted(rep.scores) == ["p-001", "p-002", "p-003"]


def test_generic_parquet(tmp_path: Path) -> None:
    task = load_generic(write_generic_parquet(tmp_path / "export"))
    assert task.rows == 49 and task.outcome_ms == {
        "p-001": epoch_ms(datetime(2025, 3, 1, 20, tzinfo=UTC))
    }
    assert json.loads(task.messages[0].raw) == {
        "patient_id": "p-001",
        "ts": "2025-03-01T00:00:00+00:00",
        "heart_rate_bpm": 80.0,
        "respiratory_rate_per_min": 16.0,
        "on_oxygen": False,
        "consciousness": "A",
    }
    rep = _replay(task)
    assert rep.ingest["rejected"]["by_reason"] == {"no_vitals": 1}
    assert rep.ingest["events_scored"] == 48


def test_the_states_as_objects_score_as_the_json_round_trip(tmp_path: Path) -> None:
    task = load_generic(write_generic(tmp_path / "export"))
    objects, stored = _replay(task), _replay(task, serialize=True)
    for pid, s in objects.scores.items():
        assert np.array_equal(s.news2, stored.scores[pid].news2, equal_nan=True)

    def plain(alerts: list[dict]) -> list[dict]:  # type: ignore[type-arg]
        # delivery timing (wall clock) aside
        timing = ("emitted_ms", "data_age_s")
        return [{k: v for k, v in a.items() if k not in timing} for a in alerts]

    assert objects.alerts and plain(objects.alerts) == plain(stored.alerts)


def test_replay_batches_never_span_a_timer_tick() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    offsets_s = [0, 10, 299, 300, 301, 900, 901, 5000]
    items = [
        Incoming(VitalsEvent(patient_id=f"p{i}", ts=t0 + timedelta(seconds=s), heart_rate_bpm=80.0))
        for i, s in enumerate(offsets_s)
    ]
    got = [
        [int(it.event.ts.timestamp() - t0.timestamp()) for it in b]
        for b in batches(items, 3, tick_ms=300_000)
    ]
    assert got == [[0, 10, 299], [300, 301], [900, 901], [5000]]
    assert [len(b) for b in batches(items, 3)] == [3, 3, 2]
