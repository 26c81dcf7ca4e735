"""Alert explanations (texts, drivers, trend, model, guideline response) and their FHIR R4
DetectedIssue rendering."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from fhir.resources.R4B.detectedissue import DetectedIssue

from alerts import (
    AlertEvent,
    AlertState,
    Observation,
    PolicyConfig,
    acknowledge,
    evaluate,
    resolve,
    tick,
)
from alerts.explain import action_explanation, explain, news2_rise
from alerts.fhir import NEWS2_SNOMED, detected_issue, fhir_datetime
from models.news2 import news2_from_vitals
from tests.unit.observations import MIN, NORMAL, T0
from wardwatch.ingest import ReadingFlag

PID = "pt-SECRET-9137"
N5 = {"heart_rate_bpm": 95, "respiratory_rate_per_min": 22, "temperature_c": 38.3, "spo2_pct": 95}
N7 = {**N5, "heart_rate_bpm": 112, "spo2_pct": 94, "systolic_bp_mmhg": 108}


def obs(t_min: float, changes: dict[str, Any] | None = None, **kw: Any) -> Observation:
    vitals = {**NORMAL, **(changes or {})}
    vitals.update({k: kw.pop(k) for k in list(kw) if k in NORMAL})
    scale = kw.pop("scale", 1)
    drop = kw.pop("drop", ())
    for name in drop:
        vitals.pop(name)
    return Observation(
        ts_ms=T0 + int(t_min * MIN),
        news2=news2_from_vitals(vitals, spo2_scale=scale),
        vitals=vitals,
        baseline_z=kw.pop("z", {}),
        baseline_n=kw.pop("n", 0),
        event_id=f"vitals:0:{t_min}",
        **kw,
    )


def lifecycle() -> list[AlertEvent]:
    """Every transition kind, for one patient."""
    cfg = PolicyConfig()
    st = AlertState()
    events: list[AlertEvent] = []

    def feed(o: Observation) -> None:
        nonlocal st
        st, ev = evaluate(PID, st, o, cfg)
        events.extend(ev)

    feed(obs(0))
    feed(obs(10, spo2_pct=72))  # held
    feed(obs(11, spo2_pct=73))  # confirmed: OPEN medium
    st, ev = tick(PID, st, T0 + 26 * MIN, cfg)  # ESCALATED (unacknowledged)
    events.extend(ev)
    st, ev = acknowledge(PID, st, "nurse-7", T0 + 27 * MIN)
    events.extend(ev)
    feed(obs(30, N7, model_risk=0.8, model_version="det-1.2.0"))  # ESCALATED high
    for m in range(40, 170, 10):
        feed(obs(m, N5))  # UPDATED medium after an hour lower
    for m in range(170, 240, 10):
        feed(obs(m))  # RESOLVED after an hour of NEWS2 0
    feed(obs(300, N7))  # new episode
    st, ev = resolve(PID, st, "Practitioner/dr-3", T0 + 301 * MIN)
    events.extend(ev)
    return events


@pytest.fixture(scope="module")
def events() -> list[AlertEvent]:
    return lifecycle()


def test_lifecycle_covers_every_transition(events: list[AlertEvent]) -> None:
    assert [e.transition for e in events] == [
        "OPEN",
        "ESCALATED",
        "ACKNOWLEDGED",
        "ESCALATED",
        "UPDATED",
        "RESOLVED",
        "OPEN",
        "RESOLVED",
    ]


def test_no_patient_id_in_any_explanation(events: list[AlertEvent]) -> None:
    for e in events:
        assert PID not in json.dumps(e.explanation)
        assert PID not in e.explanation["summary"]
        for d in e.explanation["drivers"]:
            assert PID not in d["text"]


def test_every_explanation_has_the_contract_keys(events: list[AlertEvent]) -> None:
    for e in events:
        x = e.explanation
        assert {"summary", "news2", "drivers", "trend", "model", "response", "priority"} <= set(x)
        assert x["priority"] == e.priority
        assert x["response"]["text"] and x["response"]["min_obs_frequency"]
        assert x["summary"].endswith(".") and x["summary"].count(". ") == 0
        json.dumps(x)  # JSON-ready


def test_drivers_units_points_and_baseline_text() -> None:
    o = obs(
        0,
        {"respiratory_rate_per_min": 26, "heart_rate_bpm": 112, "temperature_c": 38.4},
        z={"respiratory_rate_per_min": 4.2, "heart_rate_bpm": 2.1, "systolic_bp_mmhg": -3.4},
        baseline_mean={"respiratory_rate_per_min": 18.0, "systolic_bp_mmhg": 150.0},
        n=30,
    )
    x = explain(PID, o, AlertState(), "medium", ["news2_threshold"])
    drivers = x["drivers"]
    assert [d["parameter"] for d in drivers] == [
        "respiratory_rate_per_min",  # 3 points
        "heart_rate_bpm",  # 2 points
        "temperature_c",  # 1 point
        "systolic_bp_mmhg",  # 0 points but |z| >= 3
    ]
    rr = drivers[0]
    assert rr["text"] == "Respiratory rate 26 /min (3 points), 8/min above this patient's baseline"
    assert rr["unit"] == "/min" and rr["points"] == 3 and rr["baseline_mean"] == 18.0
    assert rr["delta_from_baseline"] == 8.0
    assert drivers[2]["text"] == "Temperature 38.4 °C (1 point)"
    sbp = drivers[3]
    assert sbp["points"] == 0 and sbp["unit"] == "mmHg"
    assert "25 mmHg below this patient's baseline" in sbp["text"]
    assert "systolic BP 125 mmHg (25 mmHg below usual) unusual for this patient" in x["summary"]
    assert x["summary"].startswith("Medium priority: NEWS2 6; driven by respiratory rate 26 /min")


def test_consciousness_oxygen_and_spo2_texts() -> None:
    o = obs(0, {"consciousness": "C", "on_oxygen": True, "spo2_pct": 93})
    texts = [d["text"] for d in explain(PID, o, AlertState(), "high", [])["drivers"]]
    assert texts == [
        "Consciousness: new confusion (ACVPU C) (3 points)",
        "SpO2 93% (2 points)",
        "On supplemental oxygen (2 points)",
    ]


def test_trend_in_explanation() -> None:
    st = AlertState(recent_news2=[(T0 - 120 * MIN, 1), (T0 - 60 * MIN, 3)])
    x = explain(PID, obs(0, N5), st, "medium", ["news2_threshold", "news2_trend"])
    assert x["trend"] == {"news2_rise": 4, "window_h": 6.0, "from": 1, "to": 5}
    assert "NEWS2 5, up 4 in the last 6 h" in x["summary"]
    assert explain(PID, obs(0), AlertState(), "low", [])["trend"] is None
    # entries at or after the observation time are ignored (state before or after)
    assert news2_rise([(T0, 5), (T0 - MIN, 2)], T0, 5, 3600) == 3
    assert news2_rise([(T0 - 7 * 3600_000, 0)], T0, 5, 6 * 3600) == 0


def test_model_section_and_guideline_note() -> None:
    o = obs(
        0,
        model_risk=0.72,
        model_version="det-1.2.0",
        model_contributions={"hr_slope": 0.1, "spo2_min": -0.3, "age": 0.05},
    )
    x = explain(PID, o, AlertState(), "high", ["model_risk"])
    assert x["model"]["risk"] == 0.72 and x["model"]["version"] == "det-1.2.0"
    assert list(x["model"]["contributions"]) == ["spo2_min", "hr_slope", "age"]
    assert "deterioration model risk 72%" in x["summary"]
    # the response stays the NEWS2 guideline response; the note says so
    assert x["response"]["text"] == o.news2.response
    assert "guideline response" in x["response"]["note"]
    assert explain(PID, obs(0), AlertState(), "low", [])["model"] is None


def test_partial_score_and_scale_2_are_explained() -> None:
    o = obs(0, drop=("temperature_c", "consciousness"), spo2_pct=89, scale=2)
    x = explain(PID, o, AlertState(), "low", [])
    assert "partial set (missing consciousness, temperature)" in x["summary"]
    assert x["personal"]["spo2_scale"] == 2 and "88-92%" in x["personal"]["spo2_target"]
    assert x["news2"]["complete"] is False


def test_action_explanation_without_a_previous_one() -> None:
    x = action_explanation(None, "medium", ["acknowledged"], "Acknowledged.")
    assert x["summary"] == "Acknowledged." and x["response"]["text"] and x["drivers"] == []


def test_no_treatment_orders_in_texts(events: list[AlertEvent]) -> None:
    forbidden = re.compile(r"\b(administer|give|mg\b|dose|start (antibiotics|fluids))", re.I)
    for e in events:
        assert not forbidden.search(json.dumps(e.explanation))


# ---------------------------------------------------------------------------------------
# FHIR DetectedIssue
# ---------------------------------------------------------------------------------------

STATUS = {
    "OPEN": "preliminary",
    "ESCALATED": "preliminary",
    "UPDATED": "preliminary",
    "ACKNOWLEDGED": "final",
    "RESOLVED": "cancelled",
}
SEVERITY = {"high": "high", "medium": "moderate", "low": "low"}


def test_detected_issue_validates_for_every_transition(events: list[AlertEvent]) -> None:
    for e in events:
        resource = detected_issue(e, evidence_observation_ids=["obs-1", "Observation/obs-2"])
        json.dumps(resource)
        model = DetectedIssue.model_validate(resource)
        assert model.status == STATUS[e.transition]
        assert model.severity == SEVERITY[e.priority]
        assert resource["patient"] == {"reference": f"Patient/{PID}"}
        assert resource["id"] == e.alert_id
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", resource["identifiedDateTime"]
        )
        assert resource["detail"] == e.explanation["summary"]
        refs = [r["reference"] for ev in resource["evidence"] for r in ev.get("detail", [])]
        assert refs == ["Observation/obs-1", "Observation/obs-2"]


def test_detected_issue_codes_news2_and_mitigation(events: list[AlertEvent]) -> None:
    opened = events[0]
    r = detected_issue(opened)
    codes = [c["code"] for c in r["code"]["coding"]]
    assert NEWS2_SNOMED in codes and "single_parameter_3" in codes
    assert r["identifiedDateTime"] == fhir_datetime(opened.ts_ms)
    assert "mitigation" not in r

    ack = next(e for e in events if e.transition == "ACKNOWLEDGED")
    ack_codes = [c["code"] for c in detected_issue(ack)["code"]["coding"]]
    assert ack_codes[0] == NEWS2_SNOMED and {"acknowledged", "single_parameter_3"} <= set(ack_codes)
    m = detected_issue(ack)["mitigation"][0]
    assert m["author"] == {"display": "nurse-7"} and m["date"] == fhir_datetime(ack.ts_ms)
    DetectedIssue.model_validate(detected_issue(ack))

    manual = events[-1]
    assert manual.transition == "RESOLVED" and manual.actor == "Practitioner/dr-3"
    m = detected_issue(manual)["mitigation"][0]
    assert m["author"] == {"reference": "Practitioner/dr-3"}
    auto = events[5]
    assert "automatically" in detected_issue(auto)["mitigation"][0]["action"]["text"]


def test_model_only_alert_has_no_news2_code() -> None:
    st, ev = evaluate(PID, AlertState(), obs(0, model_risk=0.9), PolicyConfig())
    r = detected_issue(ev[0])
    assert [c["code"] for c in r["code"]["coding"]] == ["model_risk"]
    assert r["severity"] == "high"
    DetectedIssue.model_validate(r)


def test_fhir_datetime_is_utc() -> None:
    assert fhir_datetime(0) == "1970-01-01T00:00:00.000Z"
    assert fhir_datetime(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"


def test_model_driven_summary_names_the_vitals_the_model_weighed_most() -> None:
    from alerts import AlertState, Observation
    from alerts.explain import explain
    from models.news2 import news2_from_vitals

    v = dict(
        respiratory_rate_per_min=22,
        spo2_pct=94,
        on_oxygen=False,
        systolic_bp_mmhg=118,
        heart_rate_bpm=104,
        temperature_c=37.9,
        consciousness="A",
    )
    obs = Observation(
        ts_ms=1000,
        news2=news2_from_vitals(v),
        vitals=v,
        baseline_z={"respiratory_rate_per_min": 4.2},
        baseline_n=20,
        baseline_mean={"respiratory_rate_per_min": 15.0},
        model_risk=0.45,
        model_version="v1",
        model_contributions={"heart_rate_bpm": 0.05, "respiratory_rate_per_min": 0.12},
        event_id="x",
    )
    out = explain("bed-9", obs, AlertState(), "medium", ["model_risk"])
    assert "respiratory rate 22 /min (7/min above usual)" in out["summary"]
    assert out["summary"].endswith(
        "deterioration model risk 45%, mostly from respiratory rate and pulse."
    )
    assert list(out["model"]["contributions"]) == ["respiratory_rate_per_min", "heart_rate_bpm"]


def _aside(field: str, value: float, tier: str = "impossible") -> ReadingFlag:
    return ReadingFlag("reading_set_aside", field, value, tier, f"{field}={value} set aside")  # type: ignore[arg-type]


def test_an_extreme_reading_the_score_used_is_to_verify() -> None:
    """SBP 36 mmHg scores its 3 points and the explanation asks to verify it."""
    o = obs(0, systolic_bp_mmhg=36)
    x = explain(PID, o, AlertState(), "medium", ["single_parameter_3"])
    assert x["news2"]["components"]["systolic_bp"] == 3
    assert x["reading_flags"] == [
        {
            "parameter": "systolic_bp_mmhg",
            "value": 36.0,
            "tier": "extreme",
            "set_aside": False,
            "text": "verify reading: systolic BP 36 mmHg",
        }
    ]
    assert "; verify reading: systolic BP 36 mmHg." in x["summary"]
    assert x["summary"].count(". ") == 0
    # an extreme value carried forward from an earlier event is still to verify
    x2 = explain(PID, obs(5, heart_rate_bpm=25, temperature_c=31.5), AlertState(), "high", [])
    assert [r["text"] for r in x2["reading_flags"]] == [
        "verify reading: pulse 25 /min",
        "verify reading: temperature 31.5 °C",
    ]


def test_an_ordinary_observation_has_no_reading_flags() -> None:
    x = explain(PID, obs(0, N7), AlertState(), "medium", ["news2_threshold"])
    assert x["reading_flags"] == [] and "verify" not in x["summary"]
    assert "set aside" not in x["summary"]


def test_a_reading_set_aside_at_ingest_is_shown() -> None:
    o = obs(
        0,
        N7,
        flags=(
            _aside("respiratory_rate_per_min", 0.0),
            _aside("systolic_bp_mmhg", 80.0, "inconsistent"),
            _aside("diastolic_bp_mmhg", 95.0, "inconsistent"),
            _aside("heart_rate_bpm", float("inf")),
            _aside("on_oxygen", 500.0),
        ),
    )
    x = explain(PID, o, AlertState(), "medium", ["news2_threshold"])
    texts = [r["text"] for r in x["reading_flags"]]
    assert texts == [
        "set aside, not scored: respiratory rate 0 /min (outside the possible range)",
        "set aside, not scored: systolic BP 80 mmHg (systolic not above diastolic)",
        "set aside, not scored: diastolic BP 95 mmHg (systolic not above diastolic)",
        "set aside, not scored: pulse (not a finite number)",
        "set aside, not scored: oxygen flow 500.0 L/min (outside the possible range)",
    ]
    assert all(t in x["summary"] for t in texts)
    json.dumps(x, allow_nan=False)  # the infinite value is not in it


def test_an_alert_on_an_extreme_reading_says_verify_in_its_page_and_fhir_text() -> None:
    """An SBP of 36 (single parameter 3) is held, confirmed by the next reading and
    opened: the OPEN transition's explanation, its FHIR DetectedIssue and the page text
    (the summary) carry "verify reading"."""
    cfg = PolicyConfig()
    st, out = AlertState(), []
    for t, sbp in ((0, 125), (10, 36), (11, 38)):
        st, ev = evaluate(PID, st, obs(t, systolic_bp_mmhg=sbp), cfg)
        out += ev
    (opened,) = out
    assert opened.transition == "OPEN"
    assert "verify reading: systolic BP 38 mmHg" in opened.explanation["summary"]
    issue = detected_issue(opened)
    assert "verify reading: systolic BP 38 mmHg" in issue["detail"]
    DetectedIssue.model_validate(issue)


def test_the_patient_s_context_is_shown_and_never_changes_the_score() -> None:
    """Age band, documented conditions and ward come with the explanation; COPD with SpO2
    scale 1 in use prompts a review of the prescribed target (the scale is a clinician's
    decision, never switched by a listed condition); on scale 2 there is nothing to add."""
    from alerts.explain import explain

    ctx = {"age_band": "80+", "conditions": ["copd", "diabetes"], "ward": "7B"}
    o = obs(0, N5, context=ctx)
    plain = obs(0, N5)
    assert o.news2 == plain.news2  # context changes no score
    ex = explain(PID, o, AlertState(), "medium", ["news2_threshold"])
    personal = ex["personal"]
    assert (personal["age_band"], personal["conditions"], personal["ward"]) == (
        "80+",
        ["copd", "diabetes"],
        "7B",
    )
    assert "copd documented and SpO2 scale 1 in use" in personal["spo2_scale_note"]
    assert (
        ex["summary"] == explain(PID, plain, AlertState(), "medium", ["news2_threshold"])["summary"]
    )
    on_scale_2 = explain(PID, obs(0, N5, scale=2, context=ctx), AlertState(), "medium", [])
    assert "spo2_scale_note" not in on_scale_2["personal"]
    assert on_scale_2["personal"]["spo2_target"].startswith("88-92%")
    no_context = explain(PID, plain, AlertState(), "medium", [])["personal"]
    assert set(no_context) == {"spo2_scale", "baseline_observations"}


def test_fused_risk_is_explained_beside_the_model_own_risk() -> None:
    """With a stacking, the summary names the fused risk and the model's own risk, and the
    feature contributions (of the model's own risk) appear only where it carries weight."""
    from models.fusion import FusionParams, Stacking

    contrib = {"hr_slope": 0.1, "spo2_min": -0.3}
    with_model = FusionParams(Stacking(a=-3.0, b=0.4, c=0.8))
    parts = with_model.parts(0.2, 5)
    assert parts is not None
    assert parts["base"] == -3.0 and parts["news2"] == pytest.approx(2.0)
    assert parts["model"] == pytest.approx(0.8 * math.log(0.2 / 0.8)) and parts["imaging"] == 0
    fused = with_model.fuse(0.2, 5)
    assert fused is not None
    assert 1 / (1 + math.exp(-sum(parts.values()))) == pytest.approx(fused)  # they add up
    o = obs(
        0,
        model_risk=fused,
        model_own_risk=0.2,
        risk_parts=parts,
        model_version="v2",
        model_contributions=contrib,
    )
    x = explain(PID, o, AlertState(), "medium", ["model_risk"])
    assert x["model"]["risk"] == round(fused, 4) and x["model"]["own_risk"] == 0.2
    assert x["model"]["carries_weight"] is True and list(x["model"]["contributions"]) == list(
        sorted(contrib, key=lambda k: -abs(contrib[k]))
    )
    assert (
        f"combined risk {round(fused * 100)}% from NEWS2 and the deterioration model "
        "(its own risk 20%, mostly from hr_slope)" in x["summary"]
    )
    # a version whose stacking dropped the model term: NEWS2 alone, no model attributions
    news2_only = FusionParams(Stacking(a=-2.5, b=0.3, c=0.0))
    p0 = news2_only.parts(0.9, 5)
    assert p0 is not None and p0["model"] == 0.0
    f0 = news2_only.fuse(0.9, 5)
    assert f0 is not None
    o0 = obs(
        0,
        model_risk=f0,
        model_own_risk=0.9,
        risk_parts=p0,
        model_version="v3",
        model_contributions=contrib,
    )
    x0 = explain(PID, o0, AlertState(), "medium", ["model_risk"])
    assert x0["model"]["carries_weight"] is False and x0["model"]["contributions"] == {}
    assert "from NEWS2 alone (the deterioration model carries no weight" in x0["summary"]
    assert "90%" not in x0["summary"]  # the model's own risk is not presented as a reason
    # no stacking (a version whose fused risk is the model's own): parts are None
    assert FusionParams().parts(0.3, 5) is None
    assert FusionParams(Stacking(a=0, b=1, c=1)).parts(None, 5) is None
