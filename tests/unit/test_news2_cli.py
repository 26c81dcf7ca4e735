"""``wardwatch news2``: one JSON line out per line in, never a crash."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from cli.news2 import run_news2
from models.news2 import news2_from_vitals
from wardwatch.settings import Settings

TS = "2026-01-01T08:00:00+00:00"


def run(lines: list[bytes]) -> list[dict]:
    out = io.StringIO()
    run_news2(io.BytesIO(b"\n".join(lines) + b"\n"), out, Settings())
    return [json.loads(x) for x in out.getvalue().splitlines()]


def line(**vitals: object) -> bytes:
    return json.dumps({"patient_id": "p", "ts": TS, **vitals}).encode()


def test_worked_example_and_contract_fields() -> None:
    (out,) = run(
        [
            line(
                respiratory_rate_per_min=25,
                spo2_pct=95,
                on_oxygen=True,
                systolic_bp_mmhg=105,
                heart_rate_bpm=115,
                consciousness="A",
                temperature_c=38.5,
            )
        ]
    )
    assert out["news2"] == 10 and out["risk"] == "high" and out["complete"] is True
    assert set(out) >= {
        "patient_id",
        "news2",
        "complete",
        "missing",
        "components",
        "risk",
        "response",
        "qsofa",
    }


def test_boundaries_agree_with_the_scoring_functions() -> None:
    cases = (
        [{"respiratory_rate_per_min": v} for v in (8, 9, 11, 12, 20, 21, 24, 25)]
        + [{"systolic_bp_mmhg": v} for v in (90, 91, 100, 101, 110, 111, 219, 220)]
        + [{"heart_rate_bpm": v} for v in (40, 41, 50, 51, 90, 91, 110, 111, 130, 131)]
        + [{"temperature_c": v} for v in (35.0, 35.1, 36.0, 36.1, 38.0, 38.1, 39.0, 39.1)]
        + [
            {"spo2_pct": v, "on_oxygen": o, "spo2_scale": 2}
            for v in (83, 84, 85, 86, 87, 88, 92, 93, 94, 95, 96, 97)
            for o in (False, True)
        ]
    )
    outs = run([line(**c) for c in cases])
    assert len(outs) == len(cases)
    for case, out in zip(cases, outs, strict=True):
        scale = int(case.pop("spo2_scale", 1))  # type: ignore[call-overload]
        expected = news2_from_vitals(case, spo2_scale=scale)
        assert out["news2"] == expected.total and out["components"] == expected.components


def test_bad_lines_give_errors_and_the_command_goes_on() -> None:
    outs = run([b"{nope", line(heart_rate_bpm=400), line(heart_rate_bpm=80), b"[]"])
    assert [o.get("error") for o in outs] == [
        "malformed_json",
        "impossible_value",
        None,
        "not_an_object",
    ]
    assert outs[2]["news2"] == 0 and outs[2]["complete"] is False


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200).filter(lambda b: b"\n" not in b and b.strip()), max_size=5))
def test_never_crashes_on_arbitrary_bytes(lines: list[bytes]) -> None:
    outs = run(lines)
    assert len(outs) == len([x for x in lines if x.strip()])


def test_console_script_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "news2"],
        input=line(respiratory_rate_per_min=25) + b"\n\xff\xfe\n",
        capture_output=True,
        timeout=60,
        check=True,
    )
    first, second = (json.loads(x) for x in proc.stdout.splitlines())
    assert first["news2"] == 3 and second["error"] == "malformed_json"


def test_a_reading_set_aside_is_listed_and_the_rest_scored() -> None:
    (out,) = run([line(heart_rate_bpm=0, systolic_bp_mmhg=36, respiratory_rate_per_min=18)])
    assert out["components"] == {"respiration_rate": 0, "systolic_bp": 3}
    assert out["warnings"][:2] == ["reading_set_aside", "verify_reading"]
    assert [(f["code"], f["field"], f["tier"], f["event"]) for f in out["flags"]] == [
        ("reading_set_aside", "heart_rate_bpm", "impossible", 0),
        ("verify_reading", "systolic_bp_mmhg", "extreme", 0),
    ]
