"""``wardwatch score``: one output line per input line, the worker's scoring on replayed
vitals (retrospective gaps, missing parameters, bad lines, duplicates, stale events),
batch boundaries that never matter, NEWS2-only without a model, progress on stderr."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import re
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.pipeline import Scored
from agents.score_lines import _row, _scored_json, score_stream
from cli.score import run_score
from models.news2 import news2_from_vitals
from models.qsofa import qsofa_from_vitals
from models.registry import promoted_version
from tests.commands import run_command, wardwatch_command
from wardwatch.schemas import VITAL_FIELDS, RejectReason
from wardwatch.settings import Settings

REGISTRY = Settings().resolved_model_registry()
PROMOTED = promoted_version(REGISTRY, "deterioration")
needs_model = pytest.mark.skipif(PROMOTED is None, reason="no shipped model")

T0 = datetime(2025, 6, 1, tzinfo=UTC)  # retrospective: well before now
FRESH = timedelta(hours=4)  # the worker's vitals_max_age_s
VITALS = VITAL_FIELDS
ROW_KEYS = {
    "patient_id",
    "ts",
    "news2",
    "news2_complete",
    "model_risk",
    "fused_risk",
    "model_version",
}
# a full NEWS2 set scoring 0 (diastolic is not a NEWS2 parameter)
FULL: dict[str, Any] = {
    "respiratory_rate_per_min": 18,
    "spo2_pct": 97,
    "on_oxygen": False,
    "systolic_bp_mmhg": 120,
    "diastolic_bp_mmhg": 75,
    "heart_rate_bpm": 80,
    "consciousness": "A",
    "temperature_c": 37.0,
}


@pytest.fixture
def score_settings() -> Settings:
    return Settings(model_registry=REGISTRY, onnx_provider="cpu")


@pytest.fixture
def no_model_settings(tmp_path: Path) -> Settings:
    empty = tmp_path / "registry"
    empty.mkdir()
    return Settings(model_registry=empty, onnx_provider="cpu")


def event(pid: str, at: datetime | timedelta, **values: Any) -> dict[str, Any]:
    ts = T0 + at if isinstance(at, timedelta) else at
    return {"patient_id": pid, "ts": ts.isoformat(), **values}


def encode(lines: Sequence[str | bytes | dict[str, Any]]) -> bytes:
    parts = []
    for line in lines:
        if isinstance(line, dict):
            parts.append(json.dumps(line).encode())
        else:
            parts.append(line if isinstance(line, bytes) else line.encode())
    return b"\n".join(parts) + b"\n"


async def score_raw(
    lines: Sequence[str | bytes | dict[str, Any]], settings: Settings, **kw: Any
) -> tuple[str, dict[str, Any]]:
    out = io.StringIO()
    counts = await score_stream(io.BytesIO(encode(lines)), out, settings, **kw)
    return out.getvalue(), counts


async def score(
    lines: Sequence[str | bytes | dict[str, Any]], settings: Settings, **kw: Any
) -> list[dict[str, Any]]:
    text, _ = await score_raw(lines, settings, **kw)
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def expected_news2(events: Sequence[dict[str, Any]]) -> Iterator[tuple[int | None, bool]]:
    """Reference: NEWS2 on each patient's latest value of every vital seen within 4 h of
    the event, on the SpO2 scale the device last sent (events in time order per patient)."""
    latest: dict[str, dict[str, tuple[Any, datetime]]] = {}
    scales: dict[str, int] = {}
    for e in events:
        pid, ts = e["patient_id"], datetime.fromisoformat(e["ts"])
        mine = latest.setdefault(pid, {})
        for name in VITALS:
            if name in e:
                mine[name] = (e[name], ts)
        if "spo2_scale" in e:
            scales[pid] = e["spo2_scale"]
        current = {k: v for k, (v, seen) in mine.items() if ts - seen <= FRESH}
        n2 = news2_from_vitals(current, spo2_scale=scales.get(pid, 1))
        yield n2.total, n2.complete


def assert_scored(row: dict[str, Any], *, with_model: bool) -> None:
    if with_model:
        assert set(row) == ROW_KEYS, row
        risk = row["model_risk"]
        assert isinstance(risk, float) and 0.0 <= risk <= 1.0, row
        assert isinstance(row["fused_risk"], float) and 0.0 <= row["fused_risk"] <= 1.0, row
        assert row["model_version"] == PROMOTED
    else:
        assert set(row) == ROW_KEYS | {"model_reason"}, row
        assert row["model_risk"] is None and row["fused_risk"] is None
        assert row["model_version"] is None and row["model_reason"] == "no_model"
    assert row["news2"] is None or isinstance(row["news2"], int)
    assert isinstance(row["news2_complete"], bool)


def is_skipped(row: dict[str, Any]) -> bool:
    return set(row) == {"patient_id", "ts", "skipped"} and isinstance(row["skipped"], str)


# clinically wide but plausible values for the randomized streams (no ingest rejects)
VITAL_RANGES: dict[str, tuple[float, float]] = {
    "heart_rate_bpm": (35, 150),
    "respiratory_rate_per_min": (6, 35),
    "spo2_pct": (82, 100),
    "systolic_bp_mmhg": (80, 230),
    "temperature_c": (34.5, 40.0),
}


def mixed_stream(seed: int, n: int = 300) -> list[str]:
    """Several patients, random parameter subsets and gaps, SpO2 scale changes, devices,
    and every kind of line the scorer treats specially (bad, duplicate, stale, blank)."""
    rng = random.Random(seed)
    ranges = VITAL_RANGES
    clock = {f"mix-{k}": T0 for k in range(6)}
    bad = [
        "{not json",
        "[1, 2]",
        json.dumps(event("mix-0", T0, heart_rate_bpm=400)),
        json.dumps({"ts": T0.isoformat(), "heart_rate_bpm": 80}),
        json.dumps({"patient_id": "mix-1", "ts": "2025-06-01T00:00:00", "heart_rate_bpm": 80}),
    ]
    lines: list[str] = []
    for _ in range(n):
        pid = rng.choice(sorted(clock))
        r = rng.random()
        if r < 0.06 and lines:
            lines.append(rng.choice(lines))  # a duplicate (or a stale copy)
            continue
        if r < 0.10:
            lines.append(rng.choice([*bad, "", "   "]))
            continue
        step = timedelta(minutes=rng.choice([0, 15, 60, 60, 300, 600]))
        ts = clock[pid] + step if rng.random() > 0.05 else clock[pid] - timedelta(hours=1)
        clock[pid] = max(clock[pid], ts)
        e = event(pid, ts)
        for name, (lo, hi) in ranges.items():
            if rng.random() < 0.5:
                e[name] = round(rng.uniform(lo, hi), 1 if name == "temperature_c" else 0)
        if rng.random() < 0.3:
            e["on_oxygen"] = rng.random() < 0.5
        if rng.random() < 0.3:
            e["consciousness"] = rng.choice("ACVPU")
        if rng.random() < 0.05:
            e["spo2_scale"] = rng.choice([1, 2])
        if rng.random() < 0.1:
            e["device_id"] = rng.choice(["mon-1", "mon-2"])
        e.setdefault("heart_rate_bpm", 77.0)
        lines.append(json.dumps(e))
    return lines


def fhir_obs(pid: str, ts: datetime, code: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": ts.isoformat(),
        "valueQuantity": {"value": value, "unit": "/min"},
    }


# ---- 1. one line out per line in, in order -----------------------------------------------
async def test_one_output_line_per_input_line_in_input_order(score_settings: Settings) -> None:
    pids = ["ord-a", "ord-b", "ord-c"]
    events = [
        event(pids[i % 3], timedelta(minutes=15 * (i // 3)), heart_rate_bpm=70 + i)
        for i in range(12)
    ]
    # a non-UTC offset is kept as sent
    events.append(
        {"patient_id": "ord-b", "ts": "2025-06-01T06:00:00+02:00", "respiratory_rate_per_min": 16}
    )
    lines: list[str | dict[str, Any]] = []
    for i, e in enumerate(events):
        lines.append(e)
        if i % 4 == 1:
            lines += ["", "   ", "\t", "\r"]  # blank lines: no output, no error
    text, counts = await score_raw(lines, score_settings)
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == len(events) == 13
    assert [(r["patient_id"], r["ts"]) for r in rows] == [
        (e["patient_id"], e["ts"]) for e in events
    ]
    for r in rows:
        assert_scored(r, with_model=PROMOTED is not None)
    assert counts["lines"] == counts["scored"] == 13
    assert counts["rejected"] == counts["skipped"] == 0


async def test_a_multi_event_line_gives_one_line_with_its_events(
    score_settings: Settings,
) -> None:
    """A FHIR Bundle with two instants: one output line, the last event's fields on top
    and every event under "events"."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": fhir_obs("fh-1", T0, "8867-4", 80)},  # heart rate
            {"resource": fhir_obs("fh-1", T0 + timedelta(hours=1), "9279-1", 25)},  # RR
        ],
    }
    rows = await score([event("fh-0", T0, heart_rate_bpm=80), bundle], score_settings)
    assert len(rows) == 2
    top = rows[1]
    assert [(e["patient_id"], e["ts"]) for e in top["events"]] == [
        ("fh-1", "2025-06-01T00:00:00+00:00"),
        ("fh-1", "2025-06-01T01:00:00+00:00"),
    ]
    assert [e["news2"] for e in top["events"]] == [0, 3]  # HR 80 -> 0; RR 25 -> 3 (+HR 0)
    assert {k: v for k, v in top.items() if k != "events"} == top["events"][-1]


# ---- 2. retrospective data: gaps and missing parameters -----------------------------------
RETRO: list[tuple[dict[str, Any], int, bool]] = [
    # (event, expected NEWS2 total, expected complete), computed by hand from the chart
    (event("retro", timedelta(hours=0), **FULL), 0, True),
    # heart rate only for 6 hours: HR 95 -> 1; the full set stays fresh for 4 h (inclusive)
    (event("retro", timedelta(hours=1), heart_rate_bpm=95), 1, True),
    (event("retro", timedelta(hours=2), heart_rate_bpm=95), 1, True),
    (event("retro", timedelta(hours=3), heart_rate_bpm=95), 1, True),
    (event("retro", timedelta(hours=4), heart_rate_bpm=95), 1, True),
    (event("retro", timedelta(hours=4, minutes=1), heart_rate_bpm=95), 1, False),
    (event("retro", timedelta(hours=5), heart_rate_bpm=95), 1, False),
    (event("retro", timedelta(hours=6), heart_rate_bpm=95), 1, False),
    # a 10 h gap, then a full set with RR 25 -> 3
    (event("retro", timedelta(hours=16), **{**FULL, "respiratory_rate_per_min": 25}), 3, True),
    # HR 135 -> 3, on top of the fresh RR 25 -> 3
    (event("retro", timedelta(hours=17), heart_rate_bpm=135), 6, True),
    # 30 h gap: SpO2 93 on scale 1 -> 2, everything else too old
    (event("retro", timedelta(hours=47), spo2_pct=93), 2, False),
    # the device switches to scale 2: SpO2 89 on air -> 0 (on scale 1 it would be 3)
    (event("retro", timedelta(hours=48), spo2_pct=89, on_oxygen=False, spo2_scale=2), 0, False),
    (event("retro", timedelta(hours=49), spo2_pct=89), 0, False),  # scale 2 remembered
    # temperature 35.0 -> 3, confusion -> 3, SBP 100 -> 2; SpO2 89 on air still fresh -> 0
    (event("retro", timedelta(hours=50), temperature_c=35.0, consciousness="C"), 6, False),
    (event("retro", timedelta(hours=51), systolic_bp_mmhg=100, diastolic_bp_mmhg=60), 8, False),
]


@needs_model
async def test_retrospective_gaps_and_missing_parameters(score_settings: Settings) -> None:
    events = [e for e, _, _ in RETRO]
    rows = await score(events, score_settings)
    assert len(rows) == len(events)
    for row, (e, total, complete) in zip(rows, RETRO, strict=True):
        assert_scored(row, with_model=True)
        assert (row["ts"], row["news2"], row["news2_complete"]) == (e["ts"], total, complete)
    # the hand-made expectations agree with the reference on the fresh values
    assert list(expected_news2(events)) == [(t, c) for _, t, c in RETRO]
    assert len({r["model_risk"] for r in rows}) > 5  # the model really follows the patient


@needs_model
async def test_random_retrospective_stream_matches_news2_on_fresh_values(
    score_settings: Settings,
) -> None:
    """Hourly-ish history for interleaved patients: parameters missing for hours, gaps of
    up to two days; every line scored, NEWS2 as the reference says."""
    rng = random.Random(11)
    ranges = VITAL_RANGES
    clock = {f"hist-{k}": T0 for k in range(5)}
    events = []
    for _ in range(250):
        pid = rng.choice(sorted(clock))
        clock[pid] += timedelta(hours=rng.choice([1, 1, 1, 2, 3, 5, 9, 30, 48]))
        e = event(pid, clock[pid])
        present = rng.sample(sorted(ranges), rng.choice([1, 1, 2, 5]))
        for name in present:
            lo, hi = ranges[name]
            e[name] = round(rng.uniform(lo, hi), 1 if name == "temperature_c" else 0)
        if rng.random() < 0.3:
            e["on_oxygen"] = rng.random() < 0.3
        if rng.random() < 0.3:
            e["consciousness"] = rng.choice("AAAACVPU")
        events.append(e)
    rows = await score(events, score_settings)
    assert len(rows) == len(events)
    for row in rows:
        assert_scored(row, with_model=True)
    got = [(r["news2"], r["news2_complete"]) for r in rows]
    assert got == list(expected_news2(events))
    assert {c for _, c in got} == {True, False}  # both cases really occur


# ---- 3. bad lines ---------------------------------------------------------------------------
async def test_bad_lines_give_an_error_line_in_place_and_processing_continues(
    score_settings: Settings,
) -> None:
    future = datetime.now(UTC) + timedelta(days=1)
    lines: list[str | bytes | dict[str, Any]] = [
        event("bad-1", timedelta(hours=0), heart_rate_bpm=80, respiratory_rate_per_min=16),
        "{not json",
        event("bad-1", timedelta(hours=1), heart_rate_bpm=400),
        {"ts": (T0 + timedelta(hours=1)).isoformat(), "heart_rate_bpm": 80},
        {"patient_id": "bad-1", "ts": "2025-06-01T01:00:00", "heart_rate_bpm": 80},
        event("bad-1", future, heart_rate_bpm=80),
        event("bad-1", timedelta(hours=1)),
        "[1, 2]",
        b"\xff\xfe\x00",
        event("bad-1", timedelta(hours=2), respiratory_rate_per_min=25),
    ]
    rows = await score(lines, score_settings)
    assert len(rows) == len(lines)
    errors = [
        RejectReason.MALFORMED_JSON,
        RejectReason.IMPOSSIBLE_VALUE,
        RejectReason.MISSING_PATIENT_ID,
        RejectReason.SCHEMA,  # naive timestamp
        RejectReason.FUTURE_TIMESTAMP,
        RejectReason.NO_VITALS,
        RejectReason.NOT_AN_OBJECT,
        RejectReason.MALFORMED_JSON,  # not UTF-8
    ]
    for row, reason in zip(rows[1:-1], errors, strict=True):
        assert set(row) == {"error", "detail"}, row
        assert row["error"] == reason.value
        assert isinstance(row["detail"], str) and row["detail"]
    assert "heart_rate_bpm" in rows[2]["detail"] and "400" in rows[2]["detail"]
    assert "offset" in rows[4]["detail"]
    with_model = PROMOTED is not None
    assert_scored(rows[0], with_model=with_model)
    assert_scored(rows[-1], with_model=with_model)
    # RR 25 -> 3 with the fresh HR 80 -> 0: the rejected HR 400 (-> 3) never took effect
    assert (rows[0]["news2"], rows[-1]["news2"]) == (0, 3)


async def test_rejections_are_counted(no_model_settings: Settings) -> None:
    lines: list[str | dict[str, Any]] = [
        "{",
        event("cnt", T0, heart_rate_bpm=80),
        event("cnt", T0, heart_rate_bpm=999),
    ]
    _, counts = await score_raw(lines, no_model_settings)
    assert {k: counts[k] for k in ("lines", "scored", "rejected", "skipped")} == {
        "lines": 3,
        "scored": 1,
        "rejected": 2,
        "skipped": 0,
    }


async def test_error_detail_is_readable_for_a_short_patient_id(
    no_model_settings: Settings,
) -> None:
    """The patient id is scrubbed from details as a whole token, not inside numbers."""
    (row,) = await score([event("0", T0, heart_rate_bpm=400)], no_model_settings)
    assert row["error"] == RejectReason.IMPOSSIBLE_VALUE.value
    assert "heart_rate_bpm=400" in row["detail"] and "[15, 300]" in row["detail"]


# ---- 4. duplicates and stale events ---------------------------------------------------------
DUP_EVENTS = [
    event("dup", timedelta(hours=0), heart_rate_bpm=80, respiratory_rate_per_min=16),
    event("dup", timedelta(hours=1), heart_rate_bpm=118, respiratory_rate_per_min=24),
    event("dup", timedelta(hours=2), heart_rate_bpm=125, respiratory_rate_per_min=26),
]


async def test_duplicates_are_skipped_and_late_events_scored_for_the_record(
    score_settings: Settings,
) -> None:
    e1, e2, e3 = DUP_EVENTS
    late = {**e1, "heart_rate_bpm": 140}  # older than the applied e2, different content
    clean = await score([e1, e2, e3], score_settings)
    rows = await score([e1, e2, e2, late, e3], score_settings)
    assert len(rows) == 5
    assert is_skipped(rows[2]) and rows[2]["skipped"] == "duplicate"
    assert (rows[2]["patient_id"], rows[2]["ts"]) == (e2["patient_id"], e2["ts"])
    # the late one: scored on its own values, no model (it runs in event order)
    assert rows[3]["late"] is True and rows[3]["ts"] == late["ts"]
    assert rows[3]["news2"] == 3 and rows[3]["model_risk"] is None  # HR 140: 3, RR 16: 0
    assert rows[3]["model_reason"] == "late"
    assert [rows[0], rows[1], rows[4]] == clean  # no effect on NEWS2 or the model after it
    assert [r["news2"] for r in clean] == [0, 4, 5]  # HR 118 -> 2 + RR 24 -> 2; 125/26 -> 2+3
    _, counts = await score_raw([e1, e2, e2, late, e3], score_settings)
    assert (counts["scored"], counts["skipped"]) == (4, 1)


async def test_an_event_older_than_the_late_window_is_an_error_row(
    no_model_settings: Settings,
) -> None:
    e1, e2, e3 = DUP_EVENTS
    settings = no_model_settings.model_copy(update={"late_window_s": 1800.0})
    rows, counts = await score_raw([e1, e3, e2], settings)
    row = json.loads(rows.splitlines()[2])
    assert row["error"] == "too_late" and "1800 s older" in row["detail"]
    assert counts["rejected"] == 1


@needs_model
async def test_an_applied_second_copy_would_change_the_next_risk(
    score_settings: Settings,
) -> None:
    """Guards the test above: the same vitals from another device at the same time are a
    real second observation and do move the model, so 'no second effect' means something."""
    e1, e2, e3 = DUP_EVENTS
    clean = await score([e1, e2, e3], score_settings)
    twice = await score([e1, e2, {**e2, "device_id": "mon-2"}, e3], score_settings)
    assert not is_skipped(twice[2])
    assert twice[3]["news2"] == clean[2]["news2"]
    assert twice[3]["model_risk"] != clean[2]["model_risk"]


async def test_skipped_rows_say_which_kind(no_model_settings: Settings) -> None:
    e1, e2, _ = DUP_EVENTS
    rows = await score([e1, e2, e2, e1], no_model_settings)
    # the second e1 is older than e2 but already applied: a duplicate, not late news
    assert (rows[2]["skipped"], rows[3]["skipped"]) == ("duplicate", "duplicate")


# ---- 5. batch boundaries ----------------------------------------------------------------------
async def test_batch_boundaries_never_change_the_output(score_settings: Settings) -> None:
    lines: list[str | dict[str, Any]] = list(mixed_stream(seed=5))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": fhir_obs("mix-2", T0 + timedelta(days=9), "8867-4", 131)},
            {"resource": fhir_obs("mix-2", T0 + timedelta(days=9, hours=1), "9279-1", 9)},
        ],
    }
    lines[100:100] = [bundle]
    outputs = {}
    for size in (1, 7, 512):
        text, counts = await score_raw(lines, score_settings, batch_size=size)
        outputs[size] = text
    assert outputs[1] == outputs[7] == outputs[512]
    # the stream really exercises every path
    assert counts["rejected"] > 0 and counts["skipped"] > 0 and counts["scored"] > 200
    rows = [json.loads(line) for line in outputs[512].splitlines()]
    assert len(rows) == counts["lines"] == sum(1 for x in lines if isinstance(x, dict) or x.strip())
    if PROMOTED is not None:
        risks = {r["model_risk"] for r in rows if "news2" in r and not r.get("late")}
        assert None not in risks and len(risks) > 50


# ---- 6. no model --------------------------------------------------------------------------
async def test_without_a_model_news2_is_still_scored(no_model_settings: Settings) -> None:
    events = [e for e, _, _ in RETRO]
    progress = io.StringIO()
    rows = await score(events, no_model_settings, progress=progress)
    assert len(rows) == len(events)
    for row, (_, total, complete) in zip(rows, RETRO, strict=True):
        assert_scored(row, with_model=False)
        assert (row["news2"], row["news2_complete"]) == (total, complete)
    assert progress.getvalue() == (
        "wardwatch score: no model: no promoted version of 'deterioration' in "
        f"{no_model_settings.model_registry}; NEWS2 only\n"
    )


async def test_unknown_model_version_scores_news2_only(
    score_settings: Settings, no_model_settings: Settings
) -> None:
    """``--model`` naming a version that is not in the registry: no error, the same
    NEWS2-only output as with no model at all, and the reason on the progress stream."""
    lines: list[str | dict[str, Any]] = [*(e for e, _, _ in RETRO), "{oops"]
    progress = io.StringIO()
    unknown, _ = await score_raw(
        lines, score_settings, version="no-such-version", progress=progress
    )
    none, _ = await score_raw(lines, no_model_settings)
    assert unknown == none
    assert "no model deterioration no-such-version" in progress.getvalue()
    assert progress.getvalue().endswith("; NEWS2 only\n")


@needs_model
async def test_explicit_promoted_version_equals_the_default(score_settings: Settings) -> None:
    events = [e for e, _, _ in RETRO]
    default, _ = await score_raw(events, score_settings)
    explicit, _ = await score_raw(events, score_settings, version=PROMOTED)
    assert default == explicit


def test_run_score_reports_to_stderr_and_returns_0(
    no_model_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    stdout = io.StringIO()
    code = run_score(
        io.BytesIO(encode([event("rs", T0, respiratory_rate_per_min=25)])),
        stdout,
        no_model_settings,
        None,
    )
    assert code == 0
    (row,) = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert (row["news2"], row["model_reason"]) == (3, "no_model")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "NEWS2 only" in captured.err


# ---- 7. the console command ---------------------------------------------------------------
def _run_cli(args: Sequence[str], stdin: bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {"WARDWATCH_MODEL_REGISTRY": str(REGISTRY), "WARDWATCH_ONNX_PROVIDER": "cpu"}
    return run_command([*wardwatch_command(), *args], stdin, cwd, env)


def test_console_command(tmp_path: Path) -> None:
    stdin = encode(
        [
            event("cli-a", timedelta(hours=0), **FULL),
            "",
            event("cli-b", timedelta(hours=0), respiratory_rate_per_min=25),
            "{broken",
            b"\xff\xfe",
            event("cli-a", timedelta(hours=1), heart_rate_bpm=135),
        ]
    )
    proc = _run_cli(["score"], stdin, tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == 5
    assert [r.get("patient_id") for r in rows] == ["cli-a", "cli-b", None, None, "cli-a"]
    assert [r.get("news2") for r in rows] == [0, 3, None, None, 3]
    assert rows[0]["news2_complete"] is True and rows[1]["news2_complete"] is False
    assert [r.get("error") for r in rows[2:4]] == ["malformed_json", "malformed_json"]
    for r in (rows[0], rows[1], rows[4]):
        assert_scored(r, with_model=PROMOTED is not None)

    proc = _run_cli(["score", "--model", "no-such-version"], stdin, tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [r.get("news2") for r in rows] == [0, 3, None, None, 3]
    for r in (rows[0], rows[1], rows[4]):
        assert_scored(r, with_model=False)
    assert "no model deterioration no-such-version" in proc.stderr.decode()


# ---- 8. progress ----------------------------------------------------------------------------
def _many(n: int) -> bytes:
    out = []
    for i in range(n):
        ts = (T0 + timedelta(minutes=15 * (i // 50))).isoformat()
        out.append(
            f'{{"patient_id":"bulk-{i % 50}","ts":"{ts}",'
            f'"heart_rate_bpm":{60 + i % 40},"respiratory_rate_per_min":{12 + i % 10}}}'
        )
    return ("\n".join(out) + "\n").encode()


async def test_progress_after_more_than_10000_lines(score_settings: Settings) -> None:
    n = 10_001
    stdout, progress = io.StringIO(), io.StringIO()
    counts = await score_stream(io.BytesIO(_many(n)), stdout, score_settings, progress=progress)
    lines = stdout.getvalue().splitlines()
    assert len(lines) == n == counts["lines"] == counts["scored"]
    assert all(line.startswith('{"patient_id":"bulk-') for line in lines)
    assert all(json.loads(line)["news2"] is not None for line in lines[:: n // 50])
    assert re.search(rf"\rscored {n} lines in \d+\.\d s\n\Z", progress.getvalue())
    # only progress messages (a model message only when there is no model)
    assert all(
        part.startswith("scored ") or part.startswith("wardwatch score: no model")
        for part in progress.getvalue().replace("\n", "\r").split("\r")
        if part
    )


async def test_no_final_progress_message_up_to_10000_lines(score_settings: Settings) -> None:
    stdout, progress = io.StringIO(), io.StringIO()
    counts = await score_stream(
        io.BytesIO(_many(10_000)), stdout, score_settings, progress=progress
    )
    assert counts["lines"] == 10_000 == len(stdout.getvalue().splitlines())
    assert "lines in" not in progress.getvalue()  # no final message (model: nothing at all)
    if PROMOTED is not None:
        assert progress.getvalue() == ""


@settings(max_examples=300, deadline=None)
@given(
    pid=st.text(min_size=1, max_size=12),
    risk=st.one_of(st.none(), st.floats(0, 1)),
    imaging=st.booleans(),
    total=st.one_of(st.none(), st.integers(0, 20)),
    version=st.one_of(st.none(), st.text(max_size=6)),
    reason=st.one_of(st.none(), st.sampled_from(["no_model", "model_error"])),
)
def test_output_line_is_the_row_as_json_dumps_writes_it(
    pid: str,
    risk: float | None,
    imaging: bool,
    total: int | None,
    version: str | None,
    reason: str | None,
) -> None:
    """Each scored line is written directly for speed; it is exactly json.dumps of the row."""
    n2 = news2_from_vitals({} if total is None else {"respiratory_rate_per_min": 16})
    n2 = dataclasses.replace(n2, total=total)
    fused = None if risk is None else (risk * 0.5 if imaging else risk)
    s = Scored(pid, 0, n2, qsofa_from_vitals({}), risk, version, fused, reason)
    ts = "2025-06-01T00:00:00+02:00"
    assert _scored_json(s, ts) == json.dumps(_row(s, ts), separators=(",", ":")) + "\n"


async def test_a_reading_set_aside_or_to_verify_is_in_the_scored_row(
    no_model_settings: Settings,
) -> None:
    """The row keeps what ingest set aside or flagged; the other vitals are scored."""
    lines = [
        event("fl", timedelta(hours=0), heart_rate_bpm=80, respiratory_rate_per_min=16),
        # a respiratory rate of 0: set aside, the heart rate scored (the 16 still current)
        event("fl", timedelta(hours=1), heart_rate_bpm=82, respiratory_rate_per_min=0),
        # SBP 36 in shock: scored with its 3 points, to verify
        event("fl", timedelta(hours=2), systolic_bp_mmhg=36, diastolic_bp_mmhg=20),
        event("fl", timedelta(hours=3), heart_rate_bpm=81),
    ]
    rows = await score(lines, no_model_settings)
    assert "flags" not in rows[0] and "flags" not in rows[3]
    assert rows[1]["news2"] == rows[0]["news2"] == 0
    assert rows[1]["flags"] == [
        {
            "code": "reading_set_aside",
            "field": "respiratory_rate_per_min",
            "value": 0.0,
            "tier": "impossible",
            "detail": "respiratory_rate_per_min=0 below the possible range [1, 120]; "
            "0 usually means no signal (leads, probe or cuff off)",
        }
    ]
    assert rows[2]["news2"] == 3
    assert [(f["code"], f["field"], f["value"]) for f in rows[2]["flags"]] == [
        ("verify_reading", "systolic_bp_mmhg", 36.0),
        ("verify_reading", "diastolic_bp_mmhg", 20.0),
    ]
    assert set(rows[2]) == ROW_KEYS | {"model_reason", "flags"}
