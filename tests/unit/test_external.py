"""External check on real ICU data (SurvSet, shipped in the wheel): mapping and report."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("SurvSet")
pytest.importorskip("sklearn")

from models.registry import promoted_version  # noqa: E402
from trainer.external import (  # noqa: E402
    DATASETS,
    external_check,
    external_markdown,
    load_rows,
    local_recalibration,
)
from trainer.stats import auroc  # noqa: E402
from wardwatch.ingest import PLAUSIBLE_RANGES  # noqa: E402

REGISTRY = Path(__file__).resolve().parents[2] / "model-registry"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped registry (never touched in place)."""
    if not (REGISTRY / "deterioration" / "v1" / "model.onnx").exists():
        pytest.skip("shipped model not present")
    dst = tmp_path_factory.mktemp("registry") / "model-registry"
    shutil.copytree(REGISTRY, dst)
    return dst


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_rows_map_vitals_and_labels(name: str) -> None:
    rows = load_rows(name, horizon_days=30, max_rows=300, seed=1)
    assert len(rows.events) == len(rows.y) == 300
    assert set(np.unique(rows.y)) == {0, 1}
    for ev in rows.events:
        assert "systolic_bp_mmhg" not in ev and "spo2_pct" not in ev  # never invented
        assert ev["consciousness"] in ("A", "C", None)
        for field in DATASETS[name].vitals:
            v = ev[field]
            if v is not None:
                lo, hi = PLAUSIBLE_RANGES[field]
                assert lo <= v <= hi
    # the same seed gives the same subset
    again = load_rows(name, horizon_days=30, max_rows=300, seed=1)
    assert [e["patient_id"] for e in again.events] == [e["patient_id"] for e in rows.events]


def test_censored_rows_are_excluded_from_the_label() -> None:
    full = load_rows("rhc", horizon_days=180)
    # RHC has patients censored alive before 180 days: they have no label
    assert full.excluded_censored > 0
    assert len(full.events) + full.excluded_censored == full.total_rows


def _check_block(d: dict[str, Any]) -> None:
    assert d["n"] == 300
    assert 0 < d["prevalence"] < 1
    for who in ("model", "news2"):
        for k in ("auroc", "auprc"):
            v = d[who][k]
            assert v is not None and 0.0 <= v <= 1.0 and math.isfinite(v)
    used = d["news2_parameters"]["used"]
    assert used == ["respiration_rate", "pulse", "consciousness", "temperature"]
    assert {"spo2", "systolic_bp", "air_or_oxygen"} <= set(d["news2_parameters"]["missing"])
    assert "consciousness" not in d["vitals_only"]["news2_parameters_used"]
    fused = d["fused"]
    rec = fused["recalibrated"]
    assert rec["folds"] == 5 and rec["stacking"]["b"] > 0
    lo, hi = rec["difference_ci"]
    assert lo <= rec["difference"] <= hi
    if not rec["uses_model"]:  # c = 0: exactly NEWS2's ranking, no uncertainty left
        assert rec["stacking"]["c"] == 0.0
        assert rec["auroc"] == rec["news2_auroc"] and rec["difference_ci"] == [0.0, 0.0]
    assert "transported" in fused and "model_vs_news2" in fused


def test_external_check_scores_the_registered_model_and_partial_news2(registry: Path) -> None:
    out = external_check(registry, None, "deterioration", max_rows=300, seed=0)
    assert out["model"]["version"] == promoted_version(registry, "deterioration")
    assert "MAP is not systolic" in out["sbp"]
    assert any("Snapshot" in c for c in out["caveats"])
    assert set(out["datasets"]) == {"support2", "rhc"}
    for d in out["datasets"].values():
        _check_block(d)
    md = external_markdown(out)
    assert "| support2 | 300 |" in md and "| rhc | 300 |" in md
    assert "recalibrated fused AUROC" in md


def _external_like(informative: bool, n: int = 3000, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n2 = rng.poisson(3.0, n).clip(0, 12).astype(float)
    hidden = rng.normal(0, 1, n)
    z = -1.5 + 0.2 * n2 + (1.0 * hidden if informative else 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    lp = hidden if informative else rng.normal(0, 1, n)
    return n2, 1 / (1 + np.exp(-lp)), y


def test_local_recalibration_drops_a_model_that_does_not_help_there() -> None:
    n2, risk, y = _external_like(informative=False)
    out = local_recalibration(n2, risk, y)
    assert not out["uses_model"] and out["stacking"]["c"] == 0.0
    assert auroc(y, out["scores"]) == auroc(y, n2)  # NEWS2's ranking, ties included


def test_local_recalibration_cross_fits_a_model_that_helps() -> None:
    n2, risk, y = _external_like(informative=True)
    out = local_recalibration(n2, risk, y)
    assert out["uses_model"] and out["stacking"]["c"] > 0.5
    # out-of-fold scores: each row scored by a fit that did not see it
    assert auroc(y, out["scores"]) > auroc(y, n2) + 0.05


def test_model_snapshot_risk_is_the_first_step_from_a_fresh_state(registry: Path) -> None:
    """The check's risks equal a direct ONNX step on single-observation features."""
    from models.features import FeatureState, step
    from models.runtime import DeteriorationModel
    from trainer.external import _score_model

    model = DeteriorationModel.from_registry(registry, "deterioration", "v1")
    rows = load_rows("support2", max_rows=20, seed=2)
    risks = _score_model(model, rows.events)
    feats = np.stack([step(FeatureState(), ev, model.norm)[0] for ev in rows.events])
    direct, _ = model.step_batch(feats, np.zeros((len(feats), model.hidden), np.float32))
    np.testing.assert_allclose(risks, direct, atol=1e-6)


def test_evaluate_includes_the_external_section(
    registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trainer.workflows.evaluate`` keeps its keys and adds ``external`` (data rebuild stubbed)."""
    import trainer.external as ext
    import trainer.workflows as cli

    calls: list[tuple[Any, ...]] = []

    def fake_external(reg: Path, version: str, name: str) -> dict[str, Any]:
        calls.append((reg, version, name))
        return {"datasets": {}}

    monkeypatch.setattr(ext, "external_check", fake_external)
    monkeypatch.setattr(cli, "_dataset_from_meta", _tiny_dataset)
    out = cli.evaluate(registry, "v1")
    assert {"name", "version", "fingerprint_matches", "metrics", "stored_auroc"} <= set(out)
    assert "auroc_matches" in out and out["external"] == {"datasets": {}}
    assert calls == [(registry, "v1", "deterioration")]
    assert "external" not in cli.evaluate(registry, "v1", external=False)


def _tiny_dataset(meta: dict[str, Any], settings: Any = None) -> Any:
    from trainer.dataset import from_simulation

    return from_simulation(10, seed=0, horizon_h=float(meta["label_horizon_h"]))
