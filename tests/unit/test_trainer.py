"""Offline trainer: data set, evaluation definitions, registry gate, tiny end-to-end run."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from models.features import N_FEATURES
from trainer import registry as reg
from trainer.dataset import PatientSeq, from_events, from_simulation, news2_sequence
from trainer.evaluate import evaluate
from trainer.report import report_markdown

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def ev(pid: str, minutes: float, **values: Any) -> dict[str, Any]:
    return {"patient_id": pid, "ts": T0 + timedelta(minutes=minutes), **values}


# ------------------------------------------------------------------------------ dataset


def test_labels_follow_the_horizon_and_events_after_outcome_are_dropped() -> None:
    events = [ev("a", 60 * h, heart_rate_bpm=80) for h in range(0, 20)]
    events += [ev("b", 60 * h, heart_rate_bpm=80) for h in range(0, 5)]
    outcomes = [{"patient_id": "a", "ts": T0 + timedelta(hours=15), "kind": "icu_transfer"}]
    ds = from_events(events, outcomes, horizon_h=12.0, fractions=(0.5, 0.0))
    a = next(p for p in ds.patients if p.patient_id == "a")
    b = next(p for p in ds.patients if p.patient_id == "b")
    assert len(a.y) == 15  # hours 0..14, the rest is after the outcome
    assert a.y.tolist() == [0, 0, 0] + [1] * 12  # 15 - h <= 12  <=>  h >= 3
    assert a.outcome_h == 15.0
    assert b.y.sum() == 0 and b.outcome_h is None
    assert a.x.shape == (15, N_FEATURES)


def test_news2_uses_carried_forward_vitals_within_4h() -> None:
    events = [
        ev("p", 0, respiratory_rate_per_min=26),  # RR >= 25: 3 points
        ev("p", 60, heart_rate_bpm=80),
        ev("p", 5 * 60, heart_rate_bpm=80),  # RR now 5 h old: dropped
    ]
    assert news2_sequence(events).tolist() == [3, 3, 0]


def test_simulated_splits_are_disjoint_and_deterministic() -> None:
    a = from_simulation(30, seed=5)
    b = from_simulation(30, seed=5)
    ids = {s: {a.patients[i].patient_id for i in a.split[s]} for s in ("train", "val", "test")}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"])
    assert not (ids["val"] & ids["test"])
    assert sum(len(v) for v in ids.values()) == len(a.patients) == 30
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != from_simulation(30, seed=6).fingerprint()
    s = a.summary()
    assert s["train"]["patients"] == 18 and s["test"]["patients"] == 6


# --------------------------------------------------------------------------- evaluation


def _seq(pid: str, y: list[int], news2: list[int], outcome_h: float | None, scale: int = 1):
    n = len(y)
    return PatientSeq(
        patient_id=pid,
        x=np.zeros((n, N_FEATURES), dtype=np.float32),
        y=np.array(y, dtype=np.int8),
        news2=np.array(news2, dtype=np.int16),
        t_h=np.arange(n, dtype=np.float64),
        outcome_h=outcome_h,
        spo2_scale=scale,
    )


def test_alerts_count_crossings_and_lead_time() -> None:
    # patient 1: outcome at 6 h; NEWS2 >= 5 from 3 h; model above its threshold from 1 h
    p1 = _seq("1", [0, 1, 1, 1, 1, 1], [0, 1, 2, 5, 6, 7], outcome_h=6.0)
    # patient 2: no outcome, NEWS2 flickers above 5 twice (two crossings)
    p2 = _seq("2", [0, 0, 0, 0, 0, 0], [5, 1, 5, 5, 0, 0], outcome_h=None, scale=2)
    r1 = np.array([0.1, 0.2, 0.8, 0.9, 0.9, 0.95])
    # NEWS2 >= 5 flags 6 of 12 observations: the model threshold is the median, 0.15
    r2 = np.array([0.5, 0.05, 0.05, 0.05, 0.05, 0.05])
    m = evaluate([p1, p2], [r1, r2], horizon_h=12.0, lookback_h=24.0)
    assert m["news2"]["alert_rate"] == pytest.approx(6 / 12, abs=1e-4)
    assert m["news2"]["alerts"] == 3  # p1 once, p2 twice
    assert m["news2"]["median_lead_time_h"] == 3.0
    days = (5 + 5) / 24
    assert m["news2"]["alerts_per_patient_day"] == pytest.approx(3 / days, abs=1e-3)
    assert m["model"]["threshold"] == pytest.approx(0.15)
    assert m["model"]["alert_rate"] == pytest.approx(6 / 12, abs=1e-4)
    assert m["model"]["alerts"] == 2  # p1 at 1 h, p2 at 0 h
    assert m["model"]["median_lead_time_h"] == 5.0
    assert m["model"]["auroc"] == pytest.approx(34 / 35, abs=1e-4)  # 0.2 < 0.5 misordered
    assert m["model"]["sensitivity"] == 1.0
    assert m["subgroups"]["spo2_scale2"]["patients"] == 1
    assert len(m["calibration"]["bins"]) == 10
    assert sum(b["n"] for b in m["calibration"]["bins"]) == 12
    json.dumps(m)
    md = report_markdown(m, {"name": "deterioration", "version": "v0"})
    assert "| AUROC | 0.9714 |" in md and "SpO2 scale 2" in md


# ----------------------------------------------------------------------------- registry


def _fake_version(root: Path, version: str, auroc: float, news2: float, apd: float) -> None:
    meta = {
        "metrics": {
            "model": {"auroc": auroc, "alerts_per_patient_day": apd},
            "news2": {"auroc": news2},
        },
        "parity": {"passed": True},
    }
    reg.write_version(root, "m", version, b"onnx-bytes-" + version.encode(), meta, "# r\n")


def test_registry_gate(tmp_path: Path) -> None:
    _fake_version(tmp_path, "v1", auroc=0.70, news2=0.75, apd=0.5)  # worse than NEWS2
    _fake_version(tmp_path, "v2", auroc=0.80, news2=0.75, apd=0.5)
    _fake_version(tmp_path, "v3", auroc=0.80, news2=0.75, apd=0.5)  # ties v2
    _fake_version(tmp_path, "v10", auroc=0.85, news2=0.75, apd=2.0)  # over the budget
    assert reg.list_versions(tmp_path, "m") == ["v1", "v2", "v3", "v10"]
    assert reg.next_version(tmp_path, "m") == "v11"
    assert reg.promoted_version(tmp_path, "m") is None

    out = reg.promote(tmp_path, "m", "v1")
    assert not out["promoted"] and "NEWS2" in out["reasons"][0]
    assert reg.promote(tmp_path, "m", "v2")["promoted"]
    assert reg.promoted_version(tmp_path, "m") == "v2"
    out = reg.promote(tmp_path, "m", "v3")
    assert not out["promoted"] and any("promoted v2" in r for r in out["reasons"])
    out = reg.promote(tmp_path, "m", "v10")
    assert not out["promoted"] and any("budget" in r for r in out["reasons"])
    assert reg.promote(tmp_path, "m", "v10", alert_budget=3.0)["promoted"]
    assert reg.promoted_version(tmp_path, "m") == "v10"

    # tampering is detected before any promotion
    (tmp_path / "m" / "v3" / "model.onnx").write_bytes(b"evil")
    with pytest.raises(reg.RegistryError, match="sha256"):
        reg.promote(tmp_path, "m", "v3", force=True)
    with pytest.raises(reg.RegistryError):
        reg.load_metadata(tmp_path, "m", "v99")
    with pytest.raises(reg.RegistryError):
        reg.load_metadata(tmp_path, "m", "../etc")
    with pytest.raises(reg.RegistryError, match="exists"):
        _fake_version(tmp_path, "v2", 0.9, 0.5, 0.1)


def _stacked_version(root: Path, version: str, **changes: Any) -> None:
    """A version with a fused risk and operating points that pass every rule, changed."""
    op = {
        "medium": 0.3,
        "high": 0.7,
        "pages_per_patient_day": 0.22,
        "upper_bound": 0.27,
        "high_pages_per_patient_day": 0.03,
        "high_upper_bound": 0.05,
        "sensitivity": 0.97,
        "sensitivity_lower_bound": 0.93,
        "news2_ge5_sensitivity": 0.92,
    }
    cmp_ = {"auroc": 0.74, "news2_auroc": 0.66, "difference": 0.08, "difference_ci": [0.04, 0.11]}
    op.update(changes.get("op", {}))
    cmp_.update(changes.get("cmp", {}))
    meta = {
        "metrics": {
            "model": {"auroc": 0.73, "alerts_per_patient_day": 5.0},  # not what is gated
            "fused": {"auroc": changes.get("fused_auroc", 0.74)},
            "news2": {"auroc": 0.66},
            "fused_vs_news2": cmp_,
        },
        "operating_points": op,
        "parity": {"passed": True},
    }
    reg.write_version(root, "m", version, b"onnx-" + version.encode(), meta, "# r\n")


def test_gate_on_operating_points_and_the_fused_interval(tmp_path: Path) -> None:
    _stacked_version(tmp_path, "v1")
    _stacked_version(tmp_path, "v2", op={"upper_bound": 0.31})
    _stacked_version(tmp_path, "v3", op={"high_upper_bound": 0.07})
    _stacked_version(tmp_path, "v4", op={"sensitivity_lower_bound": 0.90})
    _stacked_version(
        tmp_path, "v5", cmp={"auroc": 0.60, "difference": -0.06, "difference_ci": [-0.09, -0.02]}
    )
    # below NEWS2 but within its interval: not refused for that
    _stacked_version(
        tmp_path, "v6", cmp={"difference": -0.01, "difference_ci": [-0.03, 0.01]}, fused_auroc=0.9
    )
    _stacked_version(
        tmp_path,
        "v7",
        op={"upper_bound": 0.5, "sensitivity_lower_bound": 0.5},
        cmp={"difference_ci": [-0.2, -0.1]},
    )

    def gate(version: str, **kw: Any) -> reg.GateResult:
        return reg.gate(tmp_path, "m", version, **kw)

    ok = gate("v1")
    assert ok.passed and ok.reasons == ["all gates passed"]
    assert all(ok.candidate["rules"].values())
    (why,) = gate("v2").reasons
    assert "upper bound 0.31 over the budget 0.3" in why
    assert gate("v2", pages_budget=0.35).passed  # a larger budget (the setting)
    (why,) = gate("v3").reasons
    assert "high pages" in why and "0.07" in why
    (why,) = gate("v4").reasons
    assert "lower bound 0.9 under NEWS2 >= 5's 0.92" in why
    assert gate("v4", sensitivity_floor=0.85).passed  # a set floor replaces NEWS2's
    (why,) = gate("v5").reasons
    assert "below NEWS2's 0.66 beyond its interval" in why
    assert gate("v6").passed
    refused = gate("v7")
    assert len(refused.reasons) == 3 and not refused.passed
    assert {r for r, ok_ in refused.candidate["rules"].items() if not ok_} == {
        "fused_vs_news2",
        "pages_budget",
        "sensitivity_floor",
    }
    # against the promoted version: ranked by the fused AUROC
    assert reg.promote(tmp_path, "m", "v6")["promoted"]
    out = reg.promote(tmp_path, "m", "v1")
    assert not out["promoted"] and out["reasons"] == ["AUROC 0.74 does not beat promoted v6's 0.9"]


def test_gate_holds_the_model_s_own_pages_and_admits_new_points_on_the_promoted_network(
    tmp_path: Path,
) -> None:
    _stacked_version(tmp_path, "v1")
    assert reg.promote(tmp_path, "m", "v1")["promoted"]
    base = reg.load_metadata(tmp_path, "m", "v1")
    onnx = (tmp_path / "m" / "v1" / "model.onnx").read_bytes()

    def rechosen(version: str, own_ub: float, onnx_bytes: bytes, **meta_changes: Any) -> None:
        op = {
            **base["operating_points"],
            "counting": {"news2_high": 7},
            # with NEWS2 >= 7's pages: over the budget, as NEWS2 alone nearly is
            "pages_per_patient_day": 0.33,
            "upper_bound": 0.34,
            "high_pages_per_patient_day": 0.2,
            "high_upper_bound": 0.21,
            "patient_days": 100.0,
            "model_trigger_alone": {
                "pages": 20,
                "high_pages": 3,
                "upper_bound": own_ub,
                "high_upper_bound": 0.05,
            },
        }
        meta = {
            "metrics": base["metrics"],
            "parity": {"passed": True},
            "operating_points": op,
            "operating_points_from": {"base_version": "v1", "base_sha256": base["sha256"]},
            **meta_changes,
        }
        reg.write_version(tmp_path, "m", version, onnx_bytes, meta, "# r\n")

    rechosen("v2", 0.27, onnx)
    ok = reg.gate(tmp_path, "m", "v2")
    assert ok.passed, ok.reasons  # no better AUROC (the same risks), the same network
    rechosen("v3", 0.31, onnx)
    (why,) = reg.gate(tmp_path, "m", "v3").reasons
    assert why == "the model's own pages per patient-day 0.2: upper bound 0.31 over the budget 0.3"
    rechosen("v4", 0.27, b"another network")
    (why,) = reg.gate(tmp_path, "m", "v4").reasons
    assert "network or stacking differ from the promoted v1's" in why
    rechosen(
        "v5",
        0.27,
        onnx,
        fusion={"stacking": {"tag": "news2-logit-v1", "a": 0.0, "b": 1.0, "c": 0.0}},
    )
    (why,) = reg.gate(tmp_path, "m", "v5").reasons
    assert "network or stacking differ" in why
    assert reg.promote(tmp_path, "m", "v2")["promoted"]
    (why,) = reg.gate(tmp_path, "m", "v3").reasons[-1:]
    assert "chosen again from v1, but the promoted version is v2" in why


def test_gate_ranks_versions_from_other_cohorts_only_on_the_same_patients(
    tmp_path: Path,
) -> None:
    for version, fp in (("v1", "cohort-a"), ("v2", "cohort-b")):
        _stacked_version(tmp_path, version, fused_auroc=0.74 if version == "v1" else 0.80)
        path = tmp_path / "m" / version / "metadata.json"
        meta = json.loads(path.read_text())
        meta["training_data"] = {"fingerprint": fp}
        path.write_text(json.dumps(meta))
    assert reg.promote(tmp_path, "m", "v1")["promoted"]
    # 0.80 on cohort b against 0.74 on cohort a says nothing: refused, with the way out
    refused = reg.gate(tmp_path, "m", "v2")
    (why,) = refused.reasons
    assert "trained on other data than promoted v1" in why
    assert "wardwatch evaluate --model v2 --against-promoted" in why
    sha1 = reg.load_metadata(tmp_path, "m", "v1")["sha256"]
    record = {
        "version": "v2",
        "promoted_version": "v1",
        "promoted_sha256": sha1,
        "comparable": True,
        "test_patients": 300,
        "auroc": 0.80,
        "promoted_auroc": 0.78,
        "difference": 0.02,
        "difference_ci": [0.0, 0.04],
    }
    reg.write_vs_promoted(tmp_path, "m", "v2", record)
    assert reg.gate(tmp_path, "m", "v2").passed
    reg.write_vs_promoted(tmp_path, "m", "v2", {**record, "promoted_auroc": 0.81})
    (why,) = reg.gate(tmp_path, "m", "v2").reasons
    assert "does not beat promoted v1's 0.81 on the same 300 test patients" in why
    # computed against another file of the promoted version: not trusted
    reg.write_vs_promoted(tmp_path, "m", "v2", {**record, "promoted_sha256": "0" * 64})
    (why,) = reg.gate(tmp_path, "m", "v2").reasons
    assert "another v1 file" in why
    reg.write_vs_promoted(tmp_path, "m", "v2", {**record, "comparable": False, "reason": "x"})
    assert "not comparable" in reg.gate(tmp_path, "m", "v2").reasons[0]


def test_publish_promotion_uses_the_control_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, Any, bytes]] = []

    class FakeProducer:
        def send(self, topic: str, key: Any = None, value: bytes = b"") -> Any:
            sent.append((topic, key, value))
            return SimpleNamespace(get=lambda timeout: SimpleNamespace(partition=0, offset=7))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    import wardwatch.topics

    monkeypatch.setattr(wardwatch.topics, "producer", lambda settings: FakeProducer())
    settings = SimpleNamespace(topics=SimpleNamespace(control="ctl"))
    out = reg.publish_promotion(settings, "deterioration", "v2", "ab" * 32)
    assert out == {"topic": "ctl", "partition": 0, "offset": 7}
    topic, key, value = sent[0]
    assert topic == "ctl" and key == "deterioration"
    body = json.loads(value)
    assert body["version"] == "v2" and body["sha256"] == "ab" * 32
    assert body["model_name"] == "deterioration"


def test_registry_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trainer.registry, models.features; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path: Path) -> None:
    import onnxruntime as ort

    from trainer import workflows as cli

    out = cli.train(True, tmp_path, seed=3, n_patients=150, epochs=3, parity_n=200)
    assert out["version"] == "v1"
    assert out["parity"]["passed"]
    assert out["parity"]["max_abs_diff_risk_real"] < 1e-4
    assert out["parity"]["max_abs_diff_risk_random"] < 1e-4
    vdir = tmp_path / "deterioration" / "v1"
    assert {p.name for p in vdir.iterdir()} == {
        "model.onnx",
        "metadata.json",
        "report.md",
        "report.html",
    }
    meta = reg.load_metadata(tmp_path, "deterioration", "v1")
    assert reg.verify(tmp_path, "deterioration", "v1") == meta["sha256"]
    for key in (
        "created_at",
        "feature_names",
        "normalization",
        "label_horizon_h",
        "training_data",
        "metrics",
        "parity",
        "code_version",
        "hidden_size",
        "inputs",
        "outputs",
        "fusion",
        "operating_points",
    ):
        assert key in meta
    assert len(meta["feature_names"]) == N_FEATURES
    # stacked on NEWS2 and operating points from the calibration split (half of val)
    st = meta["fusion"]["stacking"]
    assert st["tag"] == "news2-logit-v1" and st["b"] > 0 and st["c"] >= 0
    assert (st["c"] > 0) == st["uses_model"]
    op = meta["operating_points"]
    calib = meta["training_data"]["calibration_split"]
    assert (
        op["patients"] == calib["patients"] == (meta["training_data"]["val"]["patients"] + 1) // 2
    )
    assert 0 < op["medium"] <= op["high"] <= 1 and op["budget"] == 0.3
    for key in ("upper_bound", "sensitivity_lower_bound", "news2_ge5_sensitivity"):
        assert key in op
    assert {"fused", "fused_vs_news2", "model_vs_news2", "operating"} <= set(meta["metrics"])

    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["features", "h_in"]
    assert [o.name for o in sess.get_outputs()] == ["risk", "h_out"]
    risk, h = sess.run(
        None,
        {
            "features": np.zeros((5, N_FEATURES), np.float32),
            "h_in": np.zeros((5, meta["hidden_size"]), np.float32),
        },
    )
    assert risk.shape == (5, 1) and h.shape == (5, meta["hidden_size"])
    assert ((risk > 0) & (risk < 1)).all()
    smoke = meta["smoke"]
    r_smoke, _ = sess.run(
        None,
        {
            "features": np.array(smoke["features"], np.float32),
            "h_in": np.array(smoke["h_in"], np.float32),
        },
    )
    assert np.abs(r_smoke[:, 0] - np.array(smoke["risk"])).max() < 1e-4
    assert meta["norm"] == meta["normalization"]

    # re-evaluation from the ONNX file reproduces the stored metrics
    again = cli.evaluate(tmp_path, "v1")
    assert again["fingerprint_matches"] and again["auroc_matches"]
    assert again["fused_auroc_matches"]
    assert again["metrics"]["operating"] == meta["metrics"]["operating"]

    # promote v1 (forced: a 3-epoch model need not beat NEWS2), then a copy of it,
    # no better than the promoted one, is refused
    assert cli.promote(tmp_path, "v1", force=True)["promoted"]
    shutil.copytree(vdir, tmp_path / "deterioration" / "v2")
    meta2 = json.loads((tmp_path / "deterioration" / "v2" / "metadata.json").read_text())
    meta2["version"] = "v2"
    (tmp_path / "deterioration" / "v2" / "metadata.json").write_text(json.dumps(meta2))
    refused = cli.promote(tmp_path, "v2")
    assert not refused["promoted"]
    assert any("promoted v1" in r for r in refused["reasons"])
    assert reg.promoted_version(tmp_path, "deterioration") == "v1"
    rows = cli.list_models(tmp_path)
    assert [(r["version"], r["promoted"]) for r in rows] == [("v1", True), ("v2", False)]

    # a version trained on another cohort (another seed) is ranked against the promoted
    # one on its own test patients, not by the two stored figures
    out3 = cli.train(True, tmp_path, seed=4, n_patients=150, epochs=3, parity_n=50)
    vs = out3["vs_promoted"]
    assert vs is not None and vs["comparable"] and vs["promoted_version"] == "v1"
    assert vs["promoted_sha256"] == meta["sha256"] and vs["test_patients"] > 0
    assert vs["auroc"] == out3["metrics"]["fused"]["auroc"]
    assert reg.read_vs_promoted(tmp_path, "deterioration", "v3") == vs
    again3 = cli.evaluate(tmp_path, "v3", external=False, against_promoted=True)
    assert again3["vs_promoted"] == vs  # rebuilt from the recorded source: the same record
    gated = reg.gate(tmp_path, "deterioration", "v3")
    same = vs["auroc"] > vs["promoted_auroc"]
    assert gated.candidate["rules"]["beats_promoted"] is same
    if not same:
        assert any("on the same" in r and "test patients" in r for r in gated.reasons)


def test_html_report_has_roc_and_calibration_plots() -> None:
    from models.registry import load_metadata, promoted_version
    from trainer.report import report_html
    from wardwatch.settings import Settings

    root = Settings().resolved_model_registry()
    version = promoted_version(root, "deterioration")
    assert version is not None
    meta = load_metadata(root, "deterioration", version)
    metrics = dict(meta["metrics"])
    metrics["roc"] = {"model": [[0, 0], [0.2, 0.6], [1, 1]], "news2": [[0, 0], [0.3, 0.5], [1, 1]]}
    page = report_html(metrics, meta, {"datasets": {"support2": {"n": 10, "prevalence": 0.3}}})
    assert page.count("<svg") == 2 and "ROC" in page and "Calibration" in page
    assert "support2" in page and f"{meta['metrics']['model']['auroc']:.4g}" in page


@pytest.mark.slow
def test_operating_points_only_registers_a_candidate_without_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main
    from trainer import workflows as cli

    cli.train(True, tmp_path, seed=3, n_patients=150, epochs=3, parity_n=50)
    assert cli.promote(tmp_path, "v1", force=True)["promoted"]
    monkeypatch.setenv("WARDWATCH_MODEL_REGISTRY", str(tmp_path))
    monkeypatch.setenv("WARDWATCH_ALERT_BUDGET_STABLE_FIRST_DAY_FRACTION", "0.02")
    capsys.readouterr()
    assert main(["train", "--operating-points-only", "--base", "v1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == "v2" and out["base"] == "v1"
    m1 = reg.load_metadata(tmp_path, "deterioration", "v1")
    m2 = reg.load_metadata(tmp_path, "deterioration", "v2")
    # the same network, stacking and data; new operating points under today's budgets
    assert m2["sha256"] == m1["sha256"] and reg.verify(tmp_path, "deterioration", "v2")
    assert m2["fusion"] == m1["fusion"] and m2["training_data"] == m1["training_data"]
    op = m2["operating_points"]
    assert op["counting"]["news2_high"] == 7 and op["stable_first_day_fraction_budget"] == 0.02
    assert op["patients"] == m1["operating_points"]["patients"]
    assert op["meets_stable_first_day"] == (op["stable_first_day_upper_bound"] <= 0.02)
    assert op["medium"] >= m1["operating_points"]["medium"] or op["medium_held_by_floor"]
    assert m2["operating_points_from"]["base_version"] == "v1"
    assert m2["operating_points_from"]["base_sha256"] == m1["sha256"]
    assert m2["metrics"]["fused"]["auroc"] == m1["metrics"]["fused"]["auroc"]
    assert m2["metrics"]["operating"]["patients"] == m1["metrics"]["operating"]["patients"]
    # a candidate like any other: compared with the promoted version on its test patients
    vs = reg.read_vs_promoted(tmp_path, "deterioration", "v2")
    assert vs is not None and vs["promoted_version"] == "v1" and vs["difference"] == 0
    gated = reg.gate(tmp_path, "deterioration", "v2")
    # the same ranking cannot beat it, but it is the promoted network and stacking exactly:
    # only its operating points differ, which the budget and floor rules judge
    assert gated.candidate["rules"]["beats_promoted"]
    assert main(["train", "--operating-points-only", "--base", "v9"]) == 2
