"""Recalibration on an export (``wardwatch train --export``): the patient-level split, the
fit points of the fit patients only, the new version's metadata, the gate's rules for a
recalibrated version, and the command end to end on a small generic export into a copy of
the registry."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cli.main import main
from models.registry import load_metadata, promoted_version, sha256_file
from models.runtime import DeteriorationModel
from trainer import registry as reg
from trainer.recalibrate import (
    export_fingerprint,
    fit_points,
    ids_sha256,
    select_task,
    split_patients,
    subset_task,
)
from trainer.validation.run import replay_task
from wardwatch.settings import Settings

REPO_REGISTRY = Settings().resolved_model_registry()
T0 = datetime(2025, 3, 1, tzinfo=UTC)
HEADER = "patient_id,time,heart_rate_bpm,respiratory_rate_per_min,spo2_pct,systolic_bp_mmhg,diastolic_bp_mmhg,temperature_c,on_oxygen,consciousness"


def _iso(h: float) -> str:
    return (T0 + timedelta(hours=h)).isoformat().replace("+00:00", "Z")


def write_cohort(folder: Path, n: int = 40, sick_every: int = 3, seed: int = 5) -> Path:
    """``n`` patients over 16 h, hourly; every ``sick_every``-th deteriorates from 4 h and
    has an ICU transfer at 14 h; noise seeded."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [HEADER]
    outcomes = ["patient_id,outcome_time,outcome"]
    for i in range(n):
        pid = f"w-{i:03d}"
        sick = i % sick_every == 0
        for h in range(16):
            worse = max(0, h - 4) * (0.6 + 0.8 * rng.random()) if sick else 0.0
            hr = 78 + 8 * rng.standard_normal() + 4 * worse
            rr = 16 + 1.5 * rng.standard_normal() + 1.2 * worse
            spo2 = min(100.0, 97 + rng.standard_normal() - 0.6 * worse)
            sbp = 125 + 10 * rng.standard_normal() - 3 * worse
            rows.append(
                f"{pid},{_iso(h)},{hr:.0f},{rr:.0f},{spo2:.0f},{sbp:.0f},75,37.0,"
                f"{'yes' if sick and h >= 10 else 'no'},A"
            )
        outcomes.append(f"{pid},{_iso(14)},icu_transfer" if sick else f"{pid},,none")
    (folder / "vitals.csv").write_text("\n".join(rows) + "\n")
    (folder / "outcomes.csv").write_text("\n".join(outcomes) + "\n")
    return folder


# ------------------------------------------------------------------------------- split


def test_split_is_patient_level_stratified_and_deterministic() -> None:
    ids = [f"p{i:02d}" for i in range(50)]
    pos = ids[::5]  # 10 with the outcome
    a = split_patients(ids, pos, seed=3, test_fraction=0.3)
    b = split_patients(list(reversed(ids)), pos, seed=3, test_fraction=0.3)
    assert a == b  # the same ids in any order, the same seed
    assert not set(a.fit) & set(a.held_out) and sorted(a.fit + a.held_out) == ids
    assert len(a.held_out) == 15 and a.stratified
    assert len(set(a.held_out) & set(pos)) == 3  # 30 % of each stratum
    c = split_patients(ids, pos, seed=4, test_fraction=0.3)
    assert c.held_out != a.held_out
    assert len(split_patients(ids, pos, seed=3, test_fraction=0.5).held_out) == 25
    # a stratum of one stays with the fit patients: not stratified
    one = split_patients(ids, ["p07"], seed=3, test_fraction=0.3)
    assert "p07" in one.fit and not one.stratified
    with pytest.raises(ValueError, match="test fraction"):
        split_patients(ids, pos, seed=0, test_fraction=1.0)


def test_ids_hash_and_fingerprint(tmp_path: Path) -> None:
    assert ids_sha256(["b", "a"]) == ids_sha256(["a", "b"]) != ids_sha256(["a"])
    export = write_cohort(tmp_path / "e", n=6)
    fp = export_fingerprint(export)
    assert fp["files"] == 2 and len(fp["sha256"]) == 64
    (export / "outcomes.csv").write_text((export / "outcomes.csv").read_text() + "\n")
    assert export_fingerprint(export)["sha256"] != fp["sha256"]


@pytest.mark.skipif(
    promoted_version(REPO_REGISTRY, "deterioration") is None, reason="no promoted model"
)
def test_fit_points_come_from_the_fit_patients_only(tmp_path: Path) -> None:
    task = select_task(write_cohort(tmp_path / "e", n=20), None)
    split = split_patients(task.patients, task.positives, seed=0, test_fraction=0.3)
    fit_task = subset_task(task, split.fit)
    assert {m.patient for m in fit_task.messages} <= set(split.fit)
    assert set(fit_task.outcome_ms) <= set(split.fit)
    model = DeteriorationModel.from_registry(REPO_REGISTRY, "deterioration")
    rep = replay_task(fit_task, Settings(), model)
    assert set(rep.scores) <= set(split.fit)
    n2, risk, y, who = fit_points(fit_task, rep)
    assert len(n2) == len(risk) == len(y) == len(who) > 0
    assert set(who.tolist()) <= set(split.fit) and not set(who.tolist()) & set(split.held_out)
    assert np.isfinite(n2).all() and np.isfinite(risk).all() and 0 < y.sum() < len(y)


# -------------------------------------------------------------------------------- gate


def _version(root: Path, version: str, recal: dict[str, Any] | None = None, **op: Any) -> None:
    ops = {
        "medium": 0.3,
        "high": 0.7,
        "pages_per_patient_day": 0.22,
        "upper_bound": 0.27,
        "high_pages_per_patient_day": 0.03,
        "high_upper_bound": 0.05,
        "sensitivity": 0.97,
        "sensitivity_lower_bound": 0.93,
        "news2_ge5_sensitivity": 0.92,
        "patients_with_outcome": 120,
        "alpha": 0.05,
        **op,
    }
    meta: dict[str, Any] = {
        "metrics": {
            "model": {"auroc": 0.7},
            "fused": {"auroc": 0.74},
            "news2": {"auroc": 0.66},
            "fused_vs_news2": {
                "auroc": 0.74,
                "news2_auroc": 0.66,
                "difference": 0.08,
                "difference_ci": [0.01, 0.15],
            },
        },
        "operating_points": ops,
        "parity": {"passed": True},
    }
    if recal is not None:
        meta["recalibration"] = recal
    reg.write_version(root, "m", version, b"onnx", meta, "# r\n")


def _recal(base: str, base_fused: float) -> dict[str, Any]:
    return {
        "base_version": base,
        "task": "t",
        "split": {"held_out_ids_sha256": "0" * 64},
        "held_out": {"base_fused_auroc": base_fused},
    }


def test_gate_compares_a_recalibrated_version_with_its_base_on_the_same_patients(
    tmp_path: Path,
) -> None:
    _version(tmp_path, "v1")
    _version(tmp_path, "v2", _recal("v1", 0.70))  # 0.74 beats the base's 0.70 there
    _version(tmp_path, "v3", _recal("v1", 0.80))
    _version(tmp_path, "v4", _recal("v3", 0.70))
    # before anything is promoted, a recalibrated version has no base to stand on
    none = reg.gate(tmp_path, "m", "v2")
    assert not none.passed and none.reasons == ["recalibrated from v1, but no version is promoted"]
    assert reg.promote(tmp_path, "m", "v1")["promoted"]
    # v1's own test AUROC (0.74 on another set) is not what v2 is ranked against
    ok = reg.gate(tmp_path, "m", "v2")
    assert ok.passed and ok.candidate["rules"]["base_is_promoted"]
    assert ok.candidate["recalibration"]["base_fused_auroc"] == 0.70
    (why,) = reg.gate(tmp_path, "m", "v3").reasons
    assert why == (
        "fused AUROC 0.74 on the held-out patients does not beat base v1's 0.8 on the same patients"
    )
    (why,) = reg.gate(tmp_path, "m", "v4").reasons
    assert why == "recalibrated from v3, but the promoted version is v1"
    assert reg.promote(tmp_path, "m", "v2")["promoted"]


def test_gate_says_when_the_sensitivity_floor_is_untestable(tmp_path: Path) -> None:
    # 15 patients with an outcome: 0.05 ** (1 / 15) = 0.819 at best, under 0.92
    _version(tmp_path, "v1", patients_with_outcome=15, sensitivity=1.0)
    _version(tmp_path, "v2", patients_with_outcome=0, sensitivity=None)
    _version(tmp_path, "v3", patients_with_outcome=60, sensitivity_lower_bound=0.93)
    (why,) = reg.gate(tmp_path, "m", "v1").reasons
    assert why.startswith("sensitivity floor untestable: with 15 patients with an outcome")
    assert "at most 0.819 even if every one is detected" in why and "NEWS2 >= 5's 0.92" in why
    assert reg.gate(tmp_path, "m", "v1", sensitivity_floor=0.8).passed  # testable then
    (why,) = reg.gate(tmp_path, "m", "v2").reasons
    assert "untestable: with 0 patients" in why
    assert reg.gate(tmp_path, "m", "v3").passed  # 0.05 ** (1 / 60) = 0.951: testable


# --------------------------------------------------------------------------------- CLI


@pytest.mark.slow
@pytest.mark.skipif(
    promoted_version(REPO_REGISTRY, "deterioration") is None, reason="no promoted model"
)
def test_train_export_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "registry"
    shutil.copytree(REPO_REGISTRY, root)
    repo_versions = reg.list_versions(REPO_REGISTRY, "deterioration")
    base = promoted_version(root, "deterioration")
    assert base is not None
    new = reg.next_version(root, "deterioration")
    export = write_cohort(tmp_path / "export")
    monkeypatch.setenv("WARDWATCH_MODEL_REGISTRY", str(root))
    args = ["train", "--export", str(export), "--bootstrap", "50", "--seed", "2"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == new and out["base"] == base and out["task"] == "deterioration_12h"
    st = out["stacking"]
    assert st["b"] > 0 and st["c"] >= 0 and (st["c"] > 0) == st["uses_model"]
    assert 0 < out["operating_points"]["medium"] <= out["operating_points"]["high"] <= 1

    meta = load_metadata(root, "deterioration", new)
    d = root / "deterioration" / new
    assert sha256_file(d / "model.onnx") == sha256_file(
        root / "deterioration" / base / "model.onnx"
    )
    assert meta["sha256"] == meta["recalibration"]["base_sha256"]
    rc = meta["recalibration"]
    assert rc["base_version"] == base and rc["task"] == "deterioration_12h"
    assert rc["export"]["fingerprint"] == export_fingerprint(export)["sha256"]
    task = select_task(export, None)
    split = split_patients(task.patients, task.positives, seed=2, test_fraction=0.3)
    assert rc["split"]["held_out_ids_sha256"] == ids_sha256(split.held_out)
    assert rc["split"]["seed"] == 2 and rc["split"]["held_out_patients"] == len(split.held_out)
    assert meta["fusion"]["stacking"]["fit_on"]["patients"] <= len(split.fit)
    assert meta["fusion"]["stacking"]["a"] == st["a"]
    assert meta["operating_points"]["split"] == "fit"
    held = rc["held_out"]
    assert held["base_fused_auroc"] == held["base"]["fused_auroc"]["value"]
    assert meta["metrics"]["fused"]["auroc"] == held["recalibrated"]["fused_auroc"]["value"]
    for key in ("ece", "pages_per_patient_day", "news2_auroc"):
        assert key in held["base"] and key in held["recalibrated"]
    # the network's metadata is the base's; no patient id anywhere in the new version
    base_meta = load_metadata(root, "deterioration", base)
    assert meta["feature_names"] == base_meta["feature_names"]
    assert meta["parity"] == base_meta["parity"]
    for f in ("metadata.json", "report.md", "report.html"):
        assert "w-0" not in (d / f).read_text()
    assert "Held-out patients" in (d / "report.md").read_text()
    model = DeteriorationModel.from_registry(root, "deterioration", new)
    assert model.fusion.stacking is not None and model.thresholds is not None
    # the repository's registry is untouched
    assert reg.list_versions(REPO_REGISTRY, "deterioration") == repo_versions

    # --promote: the gate decides; the JSON says what it said
    code = main([*args, "--promote"])
    out = json.loads(capsys.readouterr().out)
    gate = out["promotion"]
    assert out["version"] == f"v{int(new[1:]) + 1}"
    assert code == (0 if gate["promoted"] else 1)
    assert gate["promoted"] == gate["passed"] and gate["reasons"]
    assert "base_is_promoted" in gate["candidate"]["rules"]
    assert promoted_version(root, "deterioration") == (out["version"] if gate["passed"] else base)

    # an export with more than one task needs --task
    write_cohort(tmp_path / "two" / "a", n=6)
    write_cohort(tmp_path / "two" / "b", n=6)
    assert main(["train", "--export", str(tmp_path / "two")]) == 2


def test_a_news2_only_recalibration_may_replace_a_base_not_shown_better_than_news2(
    tmp_path: Path,
) -> None:
    """A refit that dropped the model term ranks as NEWS2: it passes the rule against its
    base when the base's fused risk is not shown better than NEWS2 on the same held-out
    patients, and is still refused when the base is better there."""

    def news2_only(base_ci: list[float]) -> dict[str, Any]:
        rc = _recal("v1", 0.80)  # the base ranks these patients better than 0.74 ...
        rc["held_out"]["base"] = {"fused_minus_news2": {"value": 0.0, "ci": base_ci}}
        return rc

    _version(tmp_path, "v1")
    assert reg.promote(tmp_path, "m", "v1")["promoted"]
    for version, ci in (("v2", [-0.3, 0.1]), ("v3", [0.02, 0.2])):
        _version(tmp_path, version, news2_only(ci))
        d = tmp_path / "m" / version / "metadata.json"
        meta = json.loads(d.read_text())
        meta["fusion"] = {"stacking": {"a": -2.0, "b": 0.3, "c": 0.0, "tag": "news2-logit-v1"}}
        d.write_text(json.dumps(meta))
    # ... but not beyond NEWS2's interval: falling back to NEWS2 gives up nothing shown
    assert reg.gate(tmp_path, "m", "v2").passed
    (why,) = reg.gate(tmp_path, "m", "v3").reasons
    assert "the base is better than NEWS2 there" in why
