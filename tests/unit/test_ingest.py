"""Ingest decoder: every rejection reason, the FHIR mapping, plausibility limits and
warnings, and property tests that no input bytes can make the decoder raise."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wardwatch.ingest.decode as ingest
from tests.fhir import coding, observation, qty
from wardwatch.ingest import (
    PLAUSIBLE_RANGES,
    VITAL_LIMITS,
    Checked,
    Decoded,
    IngestUsageError,
    Rejection,
    decode_vitals,
    validate_event,
)
from wardwatch.schemas import VITAL_FIELDS, RejectReason, VitalsEvent

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
TS = "2024-06-01T11:55:00Z"
PID = "MRN-7731-QX"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"patient_id": PID, "ts": TS, "heart_rate_bpm": 88}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def enc(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def obs(code: str | None = "8867-4", value: Any = 88, unit: str | None = "/min", **extra: Any):
    return observation(code, value, unit, pid=PID, ts=TS, **extra)


def bp_panel(sbp: float = 120, dbp: float = 80, **extra: Any) -> dict[str, Any]:
    return obs(
        "85354-9",
        None,
        component=[
            {"code": coding("8480-6"), "valueQuantity": qty(sbp, "mm[Hg]")},
            {"code": coding("8462-4"), "valueQuantity": qty(dbp, "mm[Hg]")},
        ],
        **extra,
    )


def bundle(*resources: dict[str, Any], btype: str = "collection") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": btype, "entry": [{"resource": r} for r in resources]}


def decode(raw: bytes | dict[str, Any], **kw: Any) -> Decoded | Rejection:
    return decode_vitals(raw if isinstance(raw, bytes) else enc(raw), now=NOW, **kw)


def ok(raw: bytes | dict[str, Any], **kw: Any) -> Decoded:
    out = decode(raw, **kw)
    assert isinstance(out, Decoded), out
    assert out.events
    return out


def rejected(raw: bytes | dict[str, Any], reason: RejectReason, **kw: Any) -> Rejection:
    out = decode(raw, **kw)
    assert isinstance(out, Rejection), out
    assert out.reason is reason, out
    assert PID not in out.detail
    return out


# ---------------------------------------------------------------------------------------
# One case (at least) per rejection reason; the detail names the field
# ---------------------------------------------------------------------------------------

REJECTIONS: list[tuple[str, bytes | dict[str, Any], RejectReason, str]] = [
    ("not json", b"{patient_id: 1", RejectReason.MALFORMED_JSON, "JSON"),
    ("invalid utf-8", b'{"patient_id": "\xff"}', RejectReason.MALFORMED_JSON, "UTF-8"),
    ("NaN token", b'{"heart_rate_bpm": NaN}', RejectReason.MALFORMED_JSON, "JSON"),
    ("empty", b"", RejectReason.MALFORMED_JSON, "empty"),
    ("array", b"[1, 2]", RejectReason.NOT_AN_OBJECT, "array"),
    ("string", b'"hello"', RejectReason.NOT_AN_OBJECT, "string"),
    ("number as string", event(heart_rate_bpm="88"), RejectReason.SCHEMA, "heart_rate_bpm"),
    ("unknown field", event(pulse=88), RejectReason.SCHEMA, "pulse"),
    ("naive ts", event(ts="2024-06-01T11:55:00"), RejectReason.SCHEMA, "ts"),
    ("date-only ts", event(ts="2024-06-01"), RejectReason.SCHEMA, "ts"),
    ("bad ACVPU", event(consciousness="X"), RejectReason.SCHEMA, "consciousness"),
    ("bool as number", event(spo2_pct=True), RejectReason.SCHEMA, "spo2_pct"),
    ("no patient_id", event(patient_id=...), RejectReason.MISSING_PATIENT_ID, "patient_id"),
    ("empty patient_id", event(patient_id=""), RejectReason.MISSING_PATIENT_ID, "patient_id"),
    ("null patient_id", event(patient_id=None), RejectReason.MISSING_PATIENT_ID, "patient_id"),
    ("blank patient_id", event(patient_id="  "), RejectReason.MISSING_PATIENT_ID, "patient_id"),
    ("no ts", event(ts=...), RejectReason.MISSING_TIMESTAMP, "ts"),
    ("null ts", event(ts=None), RejectReason.MISSING_TIMESTAMP, "ts"),
    ("no vitals", event(heart_rate_bpm=..., device_id="mon-1"), RejectReason.NO_VITALS, "vital"),
    ("hr 0", event(heart_rate_bpm=0), RejectReason.IMPOSSIBLE_VALUE, "heart_rate_bpm"),
    ("hr 400", event(heart_rate_bpm=400), RejectReason.IMPOSSIBLE_VALUE, "heart_rate_bpm"),
    # a vital outside its possible range is set aside; with nothing else left to score,
    # the event is dead-lettered
    (
        "spo2 101 alone",
        event(heart_rate_bpm=..., spo2_pct=101),
        RejectReason.IMPOSSIBLE_VALUE,
        "spo2_pct",
    ),
    (
        "temp 60 alone",
        event(heart_rate_bpm=..., temperature_c=60),
        RejectReason.IMPOSSIBLE_VALUE,
        "temperature_c",
    ),
    (
        "temp 1e400",
        b'{"patient_id": "x", "ts": "2024-06-01T11:55:00Z", "temperature_c": 1e400}',
        RejectReason.IMPOSSIBLE_VALUE,
        "temperature_c",
    ),
    ("ts 1969", event(ts="1969-12-31T23:59:59Z"), RejectReason.IMPOSSIBLE_VALUE, "ts"),
    ("future ts", event(ts="2024-06-01T12:06:00Z"), RejectReason.FUTURE_TIMESTAMP, "ts"),
    (
        "sbp <= dbp alone",
        event(heart_rate_bpm=..., systolic_bp_mmhg=80, diastolic_bp_mmhg=80),
        RejectReason.INCONSISTENT,
        "systolic_bp_mmhg",
    ),
    ("fhir bad value type", obs(value="88"), RejectReason.FHIR_INVALID, "valueQuantity.value"),
    ("fhir no status", obs(status=...), RejectReason.FHIR_INVALID, "status"),
    ("fhir bad status", obs(status="done"), RejectReason.FHIR_INVALID, "status"),
    ("fhir subject not object", obs(subject="Patient/1"), RejectReason.FHIR_INVALID, "subject"),
    (
        "fhir bad entry",
        {"resourceType": "Bundle", "type": "batch", "entry": [1]},
        RejectReason.FHIR_INVALID,
        "entry[0]",
    ),
    ("fhir glucose", obs("2339-0", 5.4, "mmol/L"), RejectReason.FHIR_UNSUPPORTED, "2339-0"),
    (
        "fhir patient",
        {"resourceType": "Patient", "id": "x"},
        RejectReason.FHIR_UNSUPPORTED,
        "resourceType",
    ),
    ("fhir searchset", bundle(obs(), btype="searchset"), RejectReason.FHIR_UNSUPPORTED, "type"),
    (
        "fhir entered-in-error",
        obs(status="entered-in-error"),
        RejectReason.FHIR_UNSUPPORTED,
        "entered-in-error",
    ),
    (
        "fhir comparator",
        obs(valueQuantity={"value": 40, "comparator": "<", "code": "/min"}),
        RejectReason.FHIR_UNSUPPORTED,
        "comparator",
    ),
    ("fhir no subject", obs(subject=...), RejectReason.MISSING_PATIENT_ID, "subject"),
    (
        "fhir device subject",
        obs(subject={"reference": "Device/monitor-3"}),
        RejectReason.MISSING_PATIENT_ID,
        "subject.reference",
    ),
    ("fhir no effective", obs(effectiveDateTime=...), RejectReason.MISSING_TIMESTAMP, "effective"),
    (
        "fhir date-only",
        obs(effectiveDateTime="2024-06-01"),
        RejectReason.SCHEMA,
        "effectiveDateTime",
    ),
    (
        "fhir naive",
        obs(effectiveDateTime="2024-06-01T11:55:00"),
        RejectReason.SCHEMA,
        "effectiveDateTime",
    ),
    ("fhir unit bpm", obs(unit="bpm"), RejectReason.UNIT_UNSUPPORTED, "heart_rate_bpm"),
    ("fhir no unit", obs(unit=None), RejectReason.UNIT_UNSUPPORTED, "heart_rate_bpm"),
    (
        "fhir spo2 fraction unit",
        obs("2708-6", 0.97, "1"),
        RejectReason.UNIT_UNSUPPORTED,
        "spo2_pct",
    ),
    (
        "fhir no value",
        obs(value=None, dataAbsentReason={"text": "asked"}),
        RejectReason.NO_VITALS,
        "heart_rate_bpm",
    ),
    ("fhir hr 400", obs(value=400), RejectReason.IMPOSSIBLE_VALUE, "heart_rate_bpm"),
    (
        "fhir negative o2 flow",
        obs("3151-8", -1, "L/min"),
        RejectReason.IMPOSSIBLE_VALUE,
        "oxygen flow",
    ),
    ("fhir bp panel inverted", bp_panel(70, 90), RejectReason.INCONSISTENT, "systolic_bp_mmhg"),
    (
        "fhir conflicting duplicates",
        bundle(obs(value=88), obs(value=92)),
        RejectReason.INCONSISTENT,
        "heart_rate_bpm",
    ),
    (
        "fhir future",
        obs(effectiveDateTime="2024-06-01T13:00:00+00:00"),
        RejectReason.FUTURE_TIMESTAMP,
        "ts",
    ),
]


@pytest.mark.parametrize(
    ("raw", "reason", "names"), [c[1:] for c in REJECTIONS], ids=[c[0] for c in REJECTIONS]
)
def test_rejection(raw: bytes | dict[str, Any], reason: RejectReason, names: str) -> None:
    out = rejected(raw, reason)
    assert names in out.detail


def test_every_reject_reason_is_exercised() -> None:
    assert {c[2] for c in REJECTIONS} == set(RejectReason)


def test_fahrenheit_in_celsius_field_is_rejected_with_a_hint() -> None:
    for f in (90.0, 98.6, 104, 113):
        out = rejected(event(heart_rate_bpm=..., temperature_c=f), RejectReason.IMPOSSIBLE_VALUE)
        assert "temperature_c" in out.detail
        assert "Fahrenheit" in out.detail


@pytest.mark.parametrize(
    ("fields", "field", "hint"),
    [
        ({"temperature_c": 98.6}, "temperature_c", "looks like Fahrenheit (98.6 °F = 37.0 °C)"),
        ({"temperature_c": 310.15}, "temperature_c", "looks like kelvin (310.15 K = 37.0 °C)"),
        ({"spo2_pct": 0.97}, "spo2_pct", "looks like a fraction"),
        ({"respiratory_rate_per_min": 0}, "respiratory_rate_per_min", "no signal"),
    ],
)
def test_a_set_aside_reading_keeps_its_unit_hint(
    fields: dict[str, Any], field: str, hint: str
) -> None:
    """Beside a valid vital, the wrong-unit reading is set aside (the rest is scored) and
    the flag's detail keeps the hint."""
    out = ok(event(**fields))
    (ev,) = out.events
    assert ev.vitals() == {"heart_rate_bpm": 88.0}
    (flag,) = out.flags
    assert (flag.code, flag.field, flag.tier) == ("reading_set_aside", field, "impossible")
    assert hint in flag.detail and field in flag.detail
    assert out.warnings == ["reading_set_aside"]


def test_future_skew_is_configurable() -> None:
    late = event(ts="2024-06-01T12:04:00Z")  # 4 min ahead of NOW
    ok(late)
    rejected(late, RejectReason.FUTURE_TIMESTAMP, max_future_skew_s=60)


# ---------------------------------------------------------------------------------------
# JSON events and plausibility limits
# ---------------------------------------------------------------------------------------


def test_json_event_all_fields() -> None:
    raw = event(
        respiratory_rate_per_min=18,
        spo2_pct=96.5,
        on_oxygen=False,
        systolic_bp_mmhg=121,
        diastolic_bp_mmhg=79,
        temperature_c=37.2,
        consciousness="A",
        device_id="mon-12",
        spo2_scale=2,
    )
    out = ok(raw)
    assert out.format == "json"
    assert out.warnings == []
    (ev,) = out.events
    assert ev.patient_id == PID
    assert ev.ts == datetime(2024, 6, 1, 11, 55, tzinfo=UTC)
    assert ev.spo2_pct == 96.5 and ev.consciousness == "A" and ev.spo2_scale == 2


def _other(field: str) -> dict[str, Any]:
    """Another valid vital to go with ``field`` (or none)."""
    return {"respiratory_rate_per_min": 16} if field == "heart_rate_bpm" else {}


@pytest.mark.parametrize("field", sorted(PLAUSIBLE_RANGES))
def test_possible_limits_are_inclusive(field: str) -> None:
    """At the possible limits a value is scored; just outside, alone it dead-letters the
    event, and beside another vital it is set aside and the other one scored."""
    lo, hi = PLAUSIBLE_RANGES[field]
    alone: dict[str, Any] = {"heart_rate_bpm": ...}
    for v in (lo, hi):
        (ev,) = ok(event(**{**alone, field: v})).events
        assert getattr(ev, field) == v
    for v in (lo - 0.1, hi + 0.1):
        out = rejected(event(**{**alone, field: v}), RejectReason.IMPOSSIBLE_VALUE)
        assert field in out.detail and "possible range" in out.detail
        kept = ok(event(**{**_other(field), field: v}))
        (ev,) = kept.events
        assert getattr(ev, field) is None
        assert ev.vitals() == {
            k: float(x)
            for k, x in {**event(), **_other(field)}.items()
            if k in VITAL_FIELDS and k != field
        }
        (flag,) = kept.flags
        assert (flag.code, flag.field, flag.value, flag.tier) == (
            "reading_set_aside",
            field,
            pytest.approx(v),
            "impossible",
        )


@pytest.mark.parametrize("field", sorted(VITAL_LIMITS))
def test_extreme_limits_are_inclusive_and_scored(field: str) -> None:
    """At or beyond an extreme limit (inside the possible range) the value is scored, as
    received, and flagged verify_reading; just inside the ordinary range it is not."""
    limits = VITAL_LIMITS[field]
    step = 0.1
    cases: list[tuple[float, bool]] = []
    if limits.extreme_low is not None:
        cases += [(limits.possible_low, True), (limits.extreme_low, True)]
        cases += [(limits.extreme_low + step, False)]
    if limits.extreme_high is not None:
        cases += [(limits.possible_high, True), (limits.extreme_high, True)]
        cases += [(limits.extreme_high - step, False)]
    for v, extreme in cases:
        out = ok(event(**{"heart_rate_bpm": ..., field: v}))
        (ev,) = out.events
        assert getattr(ev, field) == v
        verify = [f for f in out.flags if f.code == "verify_reading"]
        if extreme:
            assert [(f.field, f.value, f.tier) for f in verify] == [(field, v, "extreme")]
            assert "verify_reading" in out.warnings
        else:
            assert verify == [] and "verify_reading" not in out.warnings
        assert not any(f.set_aside for f in out.flags)


def test_limits() -> None:
    """The two tiers (docs/ingest.md has each one's source)."""
    table = {
        f: (x.possible_low, x.possible_high, x.extreme_low, x.extreme_high)
        for f, x in VITAL_LIMITS.items()
    }
    assert table == {
        "heart_rate_bpm": (15, 300, 30, 220),
        "respiratory_rate_per_min": (1, 120, 5, 60),
        "spo2_pct": (20, 100, 60, None),
        "systolic_bp_mmhg": (20, 300, 50, 250),
        "diastolic_bp_mmhg": (10, 250, 20, 150),
        "temperature_c": (13.7, 46.5, 32.0, 42.0),
    }
    assert {f: (t[0], t[1]) for f, t in table.items()} == PLAUSIBLE_RANGES


def test_the_documented_limits_are_the_code_limits() -> None:
    """docs/ingest.md's table of limits says what VITAL_LIMITS holds."""
    text = (Path(__file__).parents[2] / "docs" / "ingest.md").read_text(encoding="utf-8")
    rows: dict[str, tuple[float | None, ...]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[0].startswith("`") and cells[0].strip("`") in VITAL_LIMITS:
            rows[cells[0].strip("`")] = tuple(
                None if c in ("–", "-", "") else float(c.split()[0]) for c in cells[1:5]
            )
    assert rows == {
        f: (x.possible_low, x.possible_high, x.extreme_low, x.extreme_high)
        for f, x in VITAL_LIMITS.items()
    }


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        # an extreme temperature is also a reading to verify (the same limits)
        ({"temperature_c": 31.5}, ["verify_reading", "temperature_extreme"]),
        ({"temperature_c": 32.0}, ["verify_reading", "temperature_extreme"]),
        ({"temperature_c": 42.0}, ["verify_reading", "temperature_extreme"]),
        ({"temperature_c": 44.9}, ["verify_reading", "temperature_extreme"]),
        ({"systolic_bp_mmhg": 85, "diastolic_bp_mmhg": 78}, ["pulse_pressure_narrow"]),
        ({"spo2_pct": 69}, ["spo2_possible_probe_artifact"]),
        ({"spo2_pct": 55}, ["verify_reading", "spo2_possible_probe_artifact"]),
        ({"ts": "2024-05-30T11:00:00Z"}, ["timestamp_stale"]),
    ],
)
def test_warnings(fields: dict[str, Any], code: list[str]) -> None:
    assert ok(event(**fields)).warnings == code


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature_c": 32.1},
        {"temperature_c": 41.9},
        {"systolic_bp_mmhg": 90, "diastolic_bp_mmhg": 80},
        {"spo2_pct": 70},
        {"ts": "2024-05-31T12:00:01Z"},
    ],
)
def test_no_warning_just_inside(fields: dict[str, Any]) -> None:
    assert ok(event(**fields)).warnings == []


def test_validate_event_directly() -> None:
    ev = VitalsEvent(patient_id=PID, ts=NOW, spo2_pct=65.0)
    checked = validate_event(ev, now=NOW)
    assert isinstance(checked, Checked)
    assert checked.event == ev and checked.flags == []
    assert checked.warnings == ["spo2_possible_probe_artifact"]
    bad = VitalsEvent(patient_id=PID, ts=NOW, spo2_pct=120.0)
    out = validate_event(bad, now=NOW)
    assert isinstance(out, Rejection) and out.reason is RejectReason.IMPOSSIBLE_VALUE
    nan = VitalsEvent(patient_id=PID, ts=NOW, heart_rate_bpm=math.nan)
    out = validate_event(nan, now=NOW)
    assert isinstance(out, Rejection) and "heart_rate_bpm" in out.detail
    # beside a valid vital the impossible one is set aside: the event to score lacks it
    both = VitalsEvent(patient_id=PID, ts=NOW, spo2_pct=120.0, heart_rate_bpm=math.inf)
    out = validate_event(both.model_copy(update={"heart_rate_bpm": 70.0}), now=NOW)
    assert isinstance(out, Checked)
    assert out.event.vitals() == {"heart_rate_bpm": 70.0}
    assert [(f.field, f.tier) for f in out.flags] == [("spo2_pct", "impossible")]


def test_naive_now_is_a_usage_error() -> None:
    with pytest.raises(IngestUsageError):
        decode_vitals(enc(event()), now=datetime(2024, 6, 1, 12))
    with pytest.raises(IngestUsageError):
        validate_event(
            VitalsEvent(patient_id="x", ts=NOW, spo2_pct=97.0), now=NOW.replace(tzinfo=None)
        )


def test_non_bytes_input_is_rejected_not_raised() -> None:
    for raw in (None, 42, "text"):
        out = decode_vitals(raw, now=NOW)  # type: ignore[arg-type]
        assert isinstance(out, Rejection) and out.reason is RejectReason.MALFORMED_JSON
    assert isinstance(decode_vitals(memoryview(enc(event())), now=NOW), Decoded)  # type: ignore[arg-type]


def test_safety_net_turns_a_decoder_bug_into_a_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any) -> None:
        raise KeyError(PID)

    monkeypatch.setattr(ingest, "_decode", boom)
    out = decode(event())
    assert isinstance(out, Rejection) and out.reason is RejectReason.SCHEMA
    assert PID not in out.detail


def test_detail_is_scrubbed_of_the_patient_id() -> None:
    # An unknown field named after the patient id must not leak it into the detail.
    out = rejected(event(**{PID: 1}), RejectReason.SCHEMA)
    assert "<patient_id>" in out.detail


# ---------------------------------------------------------------------------------------
# FHIR
# ---------------------------------------------------------------------------------------


def test_fhir_single_observation() -> None:
    out = ok(obs(device={"reference": "Device/mon-7"}))
    assert out.format == "fhir-observation"
    (ev,) = out.events
    assert ev.patient_id == PID
    assert ev.ts == datetime(2024, 6, 1, 11, 55, tzinfo=UTC)
    assert ev.heart_rate_bpm == 88.0
    assert ev.device_id == "mon-7"
    assert ev.vitals() == {"heart_rate_bpm": 88.0}


@pytest.mark.parametrize(
    ("code", "value", "unit", "field", "expected"),
    [
        ("8867-4", 72, "{beats}/min", "heart_rate_bpm", 72.0),
        ("9279-1", 22, "{breaths}/min", "respiratory_rate_per_min", 22.0),
        ("9279-1", 22, "/min", "respiratory_rate_per_min", 22.0),
        ("2708-6", 95, "%", "spo2_pct", 95.0),
        ("59408-5", 93, "%", "spo2_pct", 93.0),
        ("8310-5", 38.4, "Cel", "temperature_c", 38.4),
        ("8310-5", 98.6, "[degF]", "temperature_c", 37.0),
        ("8310-5", 310.15, "K", "temperature_c", 37.0),
        ("8480-6", 135, "mm[Hg]", "systolic_bp_mmhg", 135.0),
        ("8462-4", 85, "mm[Hg]", "diastolic_bp_mmhg", 85.0),
    ],
)
def test_fhir_loinc_and_ucum(code: str, value: float, unit: str, field: str, expected: float):
    (ev,) = ok(obs(code, value, unit)).events
    assert ev.vitals() == {field: expected}


def test_fahrenheit_conversion() -> None:
    (ev,) = ok(obs("8310-5", 98.6, "[degF]")).events
    assert ev.temperature_c == 37.0


def test_unit_falls_back_to_display_unit() -> None:
    o = obs("8310-5", None, valueQuantity={"value": 101.3, "unit": "°F"})
    (ev,) = ok(o).events
    assert ev.temperature_c == 38.5


def test_bp_panel_with_components() -> None:
    (ev,) = ok(bp_panel(132, 84)).events
    assert ev.systolic_bp_mmhg == 132.0
    assert ev.diastolic_bp_mmhg == 84.0


def test_bp_panel_ignores_other_components_and_absent_values() -> None:
    panel = bp_panel(118, 76)
    panel["component"].append({"code": coding("8478-0"), "valueQuantity": qty(90, "mm[Hg]")})
    panel["component"][1] = {"code": coding("8462-4"), "dataAbsentReason": {"text": "error"}}
    (ev,) = ok(panel).events
    assert ev.vitals() == {"systolic_bp_mmhg": 118.0}


@pytest.mark.parametrize(("flow", "on_oxygen"), [(2, True), (0.5, True), (0, False)])
def test_oxygen_flow_maps_to_on_oxygen(flow: float, on_oxygen: bool) -> None:
    (ev,) = ok(obs("3151-8", flow, "L/min")).events
    assert ev.on_oxygen is on_oxygen
    assert ev.vitals() == {"on_oxygen": on_oxygen}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"valueCodeableConcept": {"text": "Alert"}}, "A"),
        ({"valueCodeableConcept": coding("V", "http://example.org/acvpu")}, "V"),
        ({"valueString": "p"}, "P"),
        ({"valueString": "New confusion"}, "C"),
        (
            {
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "422768004",
                            "display": "Unresponsive (finding)",
                        }
                    ]
                }
            },
            "U",
        ),
    ],
)
def test_consciousness_loinc_67775_7(extra: dict[str, Any], expected: str) -> None:
    (ev,) = ok(obs("67775-7", None, **extra)).events
    assert ev.consciousness == expected


def test_consciousness_under_another_code_needs_a_label() -> None:
    labelled = obs(None, None, valueString="V")
    labelled["code"] = {"text": "ACVPU level of consciousness"}
    (ev,) = ok(labelled).events
    assert ev.consciousness == "V"
    # A bare "A" under an unrelated code (an ABO blood group, say) is not "Alert".
    blood_group = obs("883-9", None, valueString="A")
    out = rejected(blood_group, RejectReason.FHIR_UNSUPPORTED)
    assert "883-9" in out.detail


def test_consciousness_unknown_value() -> None:
    out = rejected(obs("67775-7", None, valueString="drowsy"), RejectReason.FHIR_UNSUPPORTED)
    assert "consciousness" in out.detail


def test_bundle_groups_by_patient_and_time() -> None:
    t1, t2 = "2024-06-01T11:00:00Z", "2024-06-01T11:30:00+01:00"  # t2 is 10:30Z: earlier
    b = bundle(
        obs("8867-4", 90, "/min", effectiveDateTime=t1),
        obs("9279-1", 20, "/min", effectiveDateTime=t1),
        bp_panel(125, 82, effectiveDateTime=t1),
        obs("8867-4", 95, "/min", effectiveDateTime=t2),
        obs("2708-6", 94, "%", effectiveDateTime=t2),
        btype="transaction",
    )
    out = ok(b)
    assert out.format == "fhir-bundle"
    assert out.warnings == []
    early, late = out.events
    assert early.ts == datetime(2024, 6, 1, 10, 30, tzinfo=UTC)
    assert early.vitals() == {"heart_rate_bpm": 95.0, "spo2_pct": 94.0}
    assert late.vitals() == {
        "heart_rate_bpm": 90.0,
        "respiratory_rate_per_min": 20.0,
        "systolic_bp_mmhg": 125.0,
        "diastolic_bp_mmhg": 82.0,
    }


def test_bundle_same_instant_different_offsets_is_one_event() -> None:
    b = bundle(
        obs("8867-4", 90, "/min", effectiveDateTime="2024-06-01T11:00:00Z"),
        obs("2708-6", 97, "%", effectiveDateTime="2024-06-01T13:00:00+02:00"),
    )
    (ev,) = ok(b).events
    assert ev.vitals() == {"heart_rate_bpm": 90.0, "spo2_pct": 97.0}


def test_bundle_two_patients() -> None:
    other = obs("8867-4", 70, "/min", subject={"reference": "https://ehr.example/fhir/Patient/B2"})
    out = ok(bundle(obs(), other))
    assert sorted(e.patient_id for e in out.events) == sorted([PID, "B2"])


def test_bundle_ignores_non_observations_and_says_so() -> None:
    header = {"resourceType": "MessageHeader", "eventCoding": {"code": "vitals"}}
    out = ok(bundle(header, obs(), obs("2339-0", 5.4, "mmol/L"), btype="message"))
    assert out.events[0].vitals() == {"heart_rate_bpm": 88.0}
    assert out.warnings == ["fhir_non_observation_ignored", "fhir_unsupported_code_ignored"]


def test_bundle_without_observations() -> None:
    out = rejected(bundle({"resourceType": "Patient"}), RejectReason.FHIR_UNSUPPORTED)
    assert "Observation" in out.detail


def test_status_skip_inside_bundle() -> None:
    out = ok(bundle(obs(status="entered-in-error", value=300), obs("2708-6", 96, "%")))
    assert out.events[0].vitals() == {"spo2_pct": 96.0}
    assert out.warnings == ["fhir_status_skipped"]


def test_bundle_sets_aside_one_impossible_value_and_keeps_the_others() -> None:
    out = ok(bundle(obs("2708-6", 96, "%"), obs(value=0)))
    (ev,) = out.events
    assert ev.vitals() == {"spo2_pct": 96.0}
    (flag,) = out.flags
    assert (flag.field, flag.value, flag.tier, flag.event) == ("heart_rate_bpm", 0, "impossible", 0)
    assert "no signal" in flag.detail
    assert out.warnings == ["reading_set_aside"]


def test_bundle_is_rejected_whole_when_one_instant_has_nothing_left() -> None:
    """A Bundle is atomic: an instant whose every reading is set aside has nothing to
    score; the message is dead-lettered whole (the other instant's events with it)."""
    later = obs(value=0, effectiveDateTime="2024-06-01T11:58:00Z")
    out = rejected(bundle(obs("2708-6", 96, "%"), later), RejectReason.IMPOSSIBLE_VALUE)
    assert "heart_rate_bpm=0" in out.detail


def test_bp_panel_with_one_impossible_component_keeps_the_other() -> None:
    out = ok(bundle(bp_panel(0, 70), obs(value=92)))
    (ev,) = out.events
    assert ev.vitals() == {"diastolic_bp_mmhg": 70.0, "heart_rate_bpm": 92.0}
    assert [(f.field, f.tier) for f in out.flags] == [("systolic_bp_mmhg", "impossible")]


def test_inverted_bp_panel_beside_a_heart_rate_sets_both_pressures_aside() -> None:
    out = ok(bundle(bp_panel(70, 90), obs(value=92)))
    (ev,) = out.events
    assert ev.vitals() == {"heart_rate_bpm": 92.0}
    assert [(f.field, f.value, f.tier) for f in out.flags] == [
        ("systolic_bp_mmhg", 70.0, "inconsistent"),
        ("diastolic_bp_mmhg", 90.0, "inconsistent"),
    ]


def test_an_impossible_oxygen_flow_is_set_aside_beside_other_vitals() -> None:
    out = ok(bundle(obs("3151-8", 500, "L/min"), obs(value=92)))
    (ev,) = out.events
    assert ev.vitals() == {"heart_rate_bpm": 92.0}
    (flag,) = out.flags
    assert (flag.field, flag.value, flag.tier) == ("on_oxygen", 500.0, "impossible")
    assert "oxygen flow" in flag.detail


def test_an_integer_beyond_any_float_is_set_aside_not_fatal() -> None:
    huge = enc(bundle(obs(value=92), obs("2708-6", 96, "%"))).replace(b"92", b"9" * 400, 1)
    out = ok(huge)
    (ev,) = out.events
    assert ev.vitals() == {"spo2_pct": 96.0}
    (flag,) = out.flags
    assert flag.field == "heart_rate_bpm" and "not a finite number" in flag.detail
    assert flag.to_dict()["value"] is None  # JSON-safe
    json.dumps(flag.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "effective",
    [
        {"effectiveInstant": "2024-06-01T11:55:00.123+00:00"},
        {"effectivePeriod": {"start": "2024-06-01T11:55:00Z", "end": "2024-06-01T11:56:00Z"}},
    ],
)
def test_other_effective_forms(effective: dict[str, Any]) -> None:
    (ev,) = ok(obs(effectiveDateTime=..., **effective)).events
    assert abs(ev.ts - datetime(2024, 6, 1, 11, 55, tzinfo=UTC)) < timedelta(seconds=1)


def test_full_validation_agrees_on_valid_input() -> None:
    for msg in (
        obs(),
        bp_panel(),
        bundle(obs(), bp_panel(), obs("67775-7", None, valueString="A")),
    ):
        fast, full = ok(msg), ok(msg, fhir_validation="full")
        assert fast == full


def test_full_validation_catches_what_the_fast_path_ignores() -> None:
    odd = obs(interpretation="high")  # must be a list of CodeableConcept
    ok(odd)
    out = rejected(odd, RejectReason.FHIR_INVALID, fhir_validation="full")
    assert "interpretation" in out.detail


def test_fhir_offsets_are_kept() -> None:
    (ev,) = ok(obs(effectiveDateTime="2024-06-01T13:55:00+02:00")).events
    assert ev.ts.utcoffset() == timedelta(hours=2)
    assert ev.ts == datetime(2024, 6, 1, 11, 55, tzinfo=UTC)


# ---------------------------------------------------------------------------------------
# Property tests: never raise; accepted events are plausible; no patient id in details
# ---------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
timestamps = st.one_of(
    st.datetimes(
        min_value=datetime(1960, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
    ).map(lambda d: d.isoformat()),
    st.sampled_from(["2024-06-01T11:55:00Z", "2024-06-01", "2024-06-01T11:55:00", "yesterday"]),
)
field_values: dict[str, st.SearchStrategy[Any]] = {
    "patient_id": st.one_of(st.just(PID), st.text(max_size=5), json_scalars),
    "ts": st.one_of(timestamps, json_scalars),
    "consciousness": st.one_of(st.sampled_from("ACVPUX"), json_scalars),
    "on_oxygen": st.one_of(st.booleans(), json_scalars),
    "spo2_scale": st.one_of(st.sampled_from([1, 2, 3]), json_scalars),
    "device_id": st.one_of(st.text(max_size=140), json_scalars),
}
for _f in PLAUSIBLE_RANGES:
    field_values[_f] = st.one_of(
        st.floats(min_value=-50, max_value=500, allow_nan=False), json_scalars
    )
json_events = st.fixed_dictionaries({}, optional={**field_values, "extra": json_values})


def assert_well_formed(out: object) -> None:
    assert isinstance(out, Decoded | Rejection)
    if isinstance(out, Rejection):
        assert isinstance(out.reason, RejectReason)
        assert isinstance(out.detail, str) and out.detail
        return
    assert out.events
    assert all(isinstance(w, str) for w in out.warnings)
    for ev in out.events:
        assert ev.vitals()
        for field, (lo, hi) in PLAUSIBLE_RANGES.items():
            v = getattr(ev, field)
            assert v is None or lo <= v <= hi
        if ev.systolic_bp_mmhg is not None and ev.diastolic_bp_mmhg is not None:
            assert ev.systolic_bp_mmhg > ev.diastolic_bp_mmhg
        assert ev.ts <= NOW + timedelta(seconds=300)
    for flag in out.flags:  # a reading set aside is not in its event; a flagged one is
        assert 0 <= flag.event < len(out.events)
        value = getattr(out.events[flag.event], flag.field)
        if flag.set_aside:
            assert flag.field == "on_oxygen" or value is None
            assert "reading_set_aside" in out.warnings
        else:
            assert value == flag.value and flag.tier == "extreme"
            assert "verify_reading" in out.warnings
        json.dumps(flag.to_dict(), allow_nan=False)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    assert_well_formed(decode_vitals(raw, now=NOW))


@FUZZ
@given(json_values)
def test_fuzz_arbitrary_json_values(value: Any) -> None:
    assert_well_formed(decode_vitals(json.dumps(value).encode(), now=NOW))


@FUZZ
@given(json_events)
def test_fuzz_json_events_with_random_types(obj: dict[str, Any]) -> None:
    out = decode_vitals(json.dumps(obj).encode(), now=NOW)
    assert_well_formed(out)
    if isinstance(out, Rejection):
        assert PID not in out.detail
    if isinstance(out, Decoded):
        assert set(obj) <= {"patient_id", "ts", "device_id", "spo2_scale", *VITAL_FIELDS}


SAMPLES = [obs(), bp_panel(), obs("67775-7", None, valueString="A"), obs("3151-8", 2, "L/min")]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def corrupted_fhir(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Observation or Bundle with a few subtrees replaced by random JSON."""
    members = draw(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=3))
    doc: dict[str, Any] = (
        copy.deepcopy(members[0]) if len(members) == 1 else bundle(*copy.deepcopy(members))
    )
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return doc


@FUZZ
@given(corrupted_fhir(), st.sampled_from(["fast", "full"]))
def test_fuzz_corrupted_fhir(doc: dict[str, Any], mode: str) -> None:
    out = decode_vitals(json.dumps(doc).encode(), now=NOW, fhir_validation=mode)  # type: ignore[arg-type]
    assert_well_formed(out)
    if isinstance(out, Rejection):
        assert PID not in out.detail
        assert not out.detail.startswith("unexpected decoder error"), out.detail


@FUZZ
@given(
    st.from_regex(r"[A-Za-z][A-Za-z0-9\-.]{5,20}", fullmatch=True),
    st.sampled_from(REJECTIONS),
)
def test_details_never_contain_the_patient_id(pid: str, case: Any) -> None:
    raw = case[1]
    if not isinstance(raw, dict):
        return
    text = json.dumps(raw).replace(PID, pid)
    out = decode_vitals(text.encode(), now=NOW)
    assert isinstance(out, Rejection)
    assert pid not in out.detail


@pytest.mark.parametrize("scale", [True, False, "1", 3])
def test_a_spo2_scale_that_is_not_1_or_2_is_rejected_booleans_included(scale: Any) -> None:
    """``true == 1`` in Python: the scale's literal alone would take a boolean for 1."""
    result = ingest.decode_vitals(enc(event(spo2_scale=scale)), now=NOW)
    assert isinstance(result, Rejection) and result.reason is RejectReason.SCHEMA


@pytest.mark.parametrize("scale", [1, 2])
def test_a_spo2_scale_of_1_or_2_is_taken(scale: int) -> None:
    result = ingest.decode_vitals(enc(event(spo2_scale=scale)), now=NOW)
    assert isinstance(result, Decoded) and result.events[0].spo2_scale == scale


# ---------------------------------------------------------------------------------------
# Two tiers of limits: properties (JSON and FHIR alike)
# ---------------------------------------------------------------------------------------

_FHIR_CODES: dict[str, tuple[str, str]] = {
    "heart_rate_bpm": ("8867-4", "/min"),
    "respiratory_rate_per_min": ("9279-1", "/min"),
    "spo2_pct": ("2708-6", "%"),
    "systolic_bp_mmhg": ("8480-6", "mm[Hg]"),
    "diastolic_bp_mmhg": ("8462-4", "mm[Hg]"),
    "temperature_c": ("8310-5", "Cel"),
}


def _as_fhir(vitals: dict[str, float]) -> dict[str, Any]:
    """The same vitals as a Bundle of one Observation each (one instant)."""
    return bundle(*(obs(*_FHIR_CODES[f][:1], v, _FHIR_CODES[f][1]) for f, v in vitals.items()))


def _possible(field: str) -> st.SearchStrategy[float]:
    lo, hi = PLAUSIBLE_RANGES[field]
    return st.floats(min_value=lo, max_value=hi, allow_nan=False)


def _impossible(field: str) -> st.SearchStrategy[float]:
    lo, hi = PLAUSIBLE_RANGES[field]
    return st.one_of(
        st.floats(max_value=lo, exclude_max=True, allow_nan=False, allow_infinity=False),
        st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False),
    )


@st.composite
def observation_sets(draw: st.DrawFn) -> tuple[dict[str, float], set[str]]:
    """Numeric vitals, some of them impossible (which ones: the second item)."""
    fields = draw(st.lists(st.sampled_from(sorted(PLAUSIBLE_RANGES)), min_size=1, unique=True))
    values: dict[str, float] = {}
    bad: set[str] = set()
    for f in fields:
        if draw(st.booleans()):
            values[f] = draw(_impossible(f))
            bad.add(f)
        else:
            values[f] = draw(_possible(f))
    return values, bad


def _check_tiers(out: Decoded | Rejection, values: dict[str, float], bad: set[str]) -> None:
    sbp, dbp = values.get("systolic_bp_mmhg"), values.get("diastolic_bp_mmhg")
    pair = (
        {"systolic_bp_mmhg", "diastolic_bp_mmhg"}
        if sbp is not None
        and dbp is not None
        and not bad & {"systolic_bp_mmhg", "diastolic_bp_mmhg"}
        and sbp <= dbp
        else set()
    )
    kept = {f: v for f, v in values.items() if f not in bad | pair}
    if not kept:  # nothing scoreable remains: the whole event, with every reason
        assert isinstance(out, Rejection)
        assert out.reason is (
            RejectReason.IMPOSSIBLE_VALUE if bad else RejectReason.INCONSISTENT
        ), out
        for f in bad | pair:
            assert f in out.detail
        return
    # never dead-lettered while a valid vital remains
    assert isinstance(out, Decoded), out
    (ev,) = out.events
    assert ev.vitals() == kept
    aside = {(f.field, f.tier) for f in out.flags if f.set_aside}
    assert aside == {(f, "impossible") for f in bad} | {(f, "inconsistent") for f in pair}
    verify = {f.field for f in out.flags if f.code == "verify_reading"}
    assert verify == {f for f, v in kept.items() if VITAL_LIMITS[f].tier(v) == "extreme"}
    assert ("reading_set_aside" in out.warnings) == bool(aside)
    assert ("verify_reading" in out.warnings) == bool(verify)


@FUZZ
@given(observation_sets())
def test_a_possible_value_is_scored_an_impossible_one_set_aside(
    case: tuple[dict[str, float], set[str]],
) -> None:
    values, bad = case
    _check_tiers(decode(event(**{"heart_rate_bpm": ..., **values})), values, bad)


@FUZZ
@given(observation_sets())
def test_fhir_sets_aside_and_flags_as_json_does(
    case: tuple[dict[str, float], set[str]],
) -> None:
    values, bad = case
    fhir = decode(_as_fhir(values))
    _check_tiers(fhir, values, bad)
    plain = decode(event(**{"heart_rate_bpm": ..., **values}))
    if isinstance(fhir, Decoded):
        assert isinstance(plain, Decoded)
        assert fhir.events[0].vitals() == plain.events[0].vitals()
        assert sorted((f.field, f.tier, f.value) for f in fhir.flags) == sorted(
            (f.field, f.tier, f.value) for f in plain.flags
        )
    else:
        assert isinstance(plain, Rejection) and plain.reason is fhir.reason


@FUZZ
@given(st.sampled_from(sorted(PLAUSIBLE_RANGES)), st.data())
def test_an_impossible_value_never_dead_letters_an_event_with_another_valid_vital(
    field: str, data: st.DataObject
) -> None:
    value = data.draw(_impossible(field) | st.sampled_from([0.0, -1.0, 1e308]))
    other = "heart_rate_bpm" if field != "heart_rate_bpm" else "spo2_pct"
    out = decode(
        {
            "patient_id": PID,
            "ts": TS,
            field: value,
            other: data.draw(_possible(other)),
        }
    )
    assert isinstance(out, Decoded)
    assert getattr(out.events[0], field) is None
