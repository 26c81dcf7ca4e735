"""The lung-nodule CNN's trainer: synthetic volumes, the model's outputs, a tiny training
run into a temporary registry, ONNX parity, the series writer and the promotion gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from models.imaging.dicom import load_ct_series
from models.imaging.preprocess import PreprocessConfig, preprocess
from models.registry import load_metadata, promoted_version, sha256_file
from trainer import registry as reg
from trainer.imaging import train as train_mod
from trainer.imaging.model import NoduleCNN, cam_shape
from trainer.imaging.synth import SynthConfig, generate, write_dicom_series
from trainer.imaging.train import (
    KIND,
    MODEL_NAME,
    ImagingTrainConfig,
    export_onnx,
    onnx_predict,
    parity,
    train_imaging,
    youden_threshold,
)
from trainer.workflows import list_models

TINY = ImagingTrainConfig(
    n_train=16, n_val=8, n_test=8, epochs=1, batch_size=4, n_boot=50, shape=(32, 64, 64)
)
SMALL = SynthConfig(preprocess=PreprocessConfig(shape=(32, 64, 64)))


# ------------------------------------------------------------------------ synthetic data


def test_synth_is_deterministic_by_seed() -> None:
    a, b = generate(7, positive=True), generate(7, positive=True)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.mask, b.mask)
    assert a.nodules == b.nodules
    c = generate(8, positive=True)
    assert not np.array_equal(a.hu, c.hu)


def test_synth_geometry_window_and_labels() -> None:
    v = generate(3, positive=True)
    assert v.voxels.shape == (64, 128, 128) and v.voxels.dtype == np.float32
    assert float(v.voxels.min()) >= 0.0 and float(v.voxels.max()) <= 1.0
    assert v.label == 1 and 1 <= len(v.nodules) <= 3
    n = generate(3, positive=False)
    assert n.label == 0 and not n.nodules and not n.mask.any()
    # negatives have lungs and vessels in them (denser than -500 HU inside the lungs)
    assert ((n.hu > -950) & (n.hu < -700)).sum() > 100_000
    assert n.vessel_voxels > 2000 and v.vessel_voxels > 2000


def test_nodules_appear_where_placed() -> None:
    for seed in range(6):
        v = generate(seed, positive=True)
        for nod in v.nodules:
            k, j, i = (int(round(c)) for c in nod.centre)
            assert v.mask[k, j, i], (seed, nod)
            expect = nod.hu if nod.density != "ground_glass" else -600.0
            # the centre is the nodule's density (noise 20 HU; a solid core if part-solid)
            assert abs(float(v.hu[k, j, i]) - expect) < 250, (seed, nod, v.hu[k, j, i])
            assert 4.0 <= nod.diameter_mm <= 30.0
        # the mask is the nodules: its volume is near theirs
        expected = sum(np.pi / 6 * (n.diameter_mm / 1.5) ** 3 for n in v.nodules)
        assert 0.3 * expected < v.mask.sum() < 3.0 * expected


def test_synthetic_series_round_trips_through_the_loader(tmp_path: Path) -> None:
    v = generate(4, positive=True, config=SMALL)
    paths = write_dicom_series(v, tmp_path / "s")
    assert len(paths) == 32
    series = load_ct_series(tmp_path / "s", None)
    assert series.hu.shape == (32, 64, 64)
    clipped = np.clip(np.round(v.hu), -1024, 4095 - 1024)
    assert np.abs(series.hu - clipped).max() <= 1.0  # float32 rounding
    prepared = preprocess(series, SMALL.preprocess)
    assert prepared.voxels.shape == (32, 64, 64)


# ---------------------------------------------------------------------------------- model


def test_model_forward_shapes_and_cam_range() -> None:
    torch.manual_seed(0)
    m = NoduleCNN().eval()
    with torch.no_grad():
        m.head.weight.abs_()  # positive weights: a non-zero map
        p, cam = m(torch.rand(2, 1, 32, 64, 64))
    assert p.shape == (2,) and cam.shape == (2, *cam_shape((32, 64, 64))) == (2, 8, 16, 16)
    assert cam_shape((64, 128, 128)) == (16, 32, 32)
    assert ((p > 0) & (p < 1)).all()
    assert float(cam.min()) >= 0.0
    assert torch.allclose(cam.amax(dim=(1, 2, 3)), torch.ones(2))
    with torch.no_grad():
        m.head.weight.zero_()
        _, zero = m(torch.rand(1, 1, 32, 64, 64))
    assert float(zero.abs().max()) == 0.0  # a map whose max is 0 stays zeros


def test_onnx_parity_probability_and_cam() -> None:
    torch.manual_seed(1)
    m = NoduleCNN().eval()
    with torch.no_grad():
        m.head.weight.abs_()
    data = export_onnx(m, (32, 64, 64))
    x = np.stack([generate(s, config=SMALL).voxels for s in range(2)])[:, None]
    par = parity(m, data, x)
    assert par["passed"] and par["output_shapes"]["cam"] == [4, 8, 16, 16]
    p, cam = onnx_predict(data, x)
    assert p.shape == (2,) and float(cam.max()) == pytest.approx(1.0, abs=1e-5)


def test_youden_threshold() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.9])
    t = youden_threshold(y, p)
    assert t["youden_j"] == pytest.approx(2 / 3, abs=1e-4)
    assert 0.2 < t["value"] <= 0.4 or 0.6 < t["value"] <= 0.7


# ------------------------------------------------------------------- training + registry


@pytest.mark.slow
def test_tiny_training_run_registers_and_promotes(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    out = train_imaging(root, TINY, promote=True)
    assert out["registered"] and out["version"] == "v1"
    gate = out["promotion"]
    assert gate["candidate"]["rules"]["onnx_parity"]
    # 8 test volumes: the interval may well reach 0.5, the only rule that may refuse
    if not gate["promoted"]:
        assert gate["candidate"]["rules"] == {"onnx_parity": True, "auroc_above_chance": False}
        assert reg.promote(root, MODEL_NAME, "v1", force=True)["promoted"]
    meta = load_metadata(root, MODEL_NAME, "v1")
    d = root / MODEL_NAME / "v1"
    assert meta["sha256"] == sha256_file(d / "model.onnx")
    assert (d / "report.md").read_text().startswith("# lung-nodule v1")
    assert meta["kind"] == KIND and meta["input_shape"] == [32, 64, 64]
    assert meta["cam_shape"] == [8, 16, 16]
    assert meta["outputs"] == {"probability": ["N"], "cam": ["N", 8, 16, 16]}
    assert meta["preprocess"]["window_center_hu"] == -600.0
    assert meta["preprocess"]["window_width_hu"] == 1500.0
    assert meta["preprocess"]["shape"] == [32, 64, 64]
    assert meta["parity"]["passed"] and "method" in meta["threshold"]
    m = meta["metrics"]
    assert m["volumes"] == 8 and len(m["auroc_ci95"]) == 2
    assert set(m["sensitivity_by_size"]) == {"4-6 mm", "6-10 mm", "10-20 mm", "20-30 mm"}
    for key in ("training", "code_version", "created_at", "inputs"):
        assert key in meta
    assert (d / "model.onnx").stat().st_size < 5_000_000
    assert promoted_version(root, MODEL_NAME) == "v1"
    (row,) = list_models(root)  # `wardwatch models`
    assert row["name"] == MODEL_NAME and row["auroc"] == m["auroc"] and row["promoted"]

    # a second version is compared with the promoted one on the same test volumes
    out2 = train_imaging(root, TINY, promote=True)
    vs = load_metadata(root, MODEL_NAME, out2["version"])["vs_promoted"]
    assert vs["promoted_version"] == "v1" and vs["comparable"]
    # same seed and data: the same network, so it cannot beat the promoted one
    assert not out2["promotion"]["promoted"]
    assert any("does not beat promoted v1" in r for r in out2["promotion"]["reasons"])
    assert promoted_version(root, MODEL_NAME) == "v1"


def _write(
    root: Path,
    version: str,
    auroc: float,
    *,
    parity_ok: bool = True,
    seed: int = 0,
    **extra: object,
) -> None:
    meta = {
        "kind": KIND,
        "metrics": {"auroc": auroc, "auroc_ci95": [auroc - 0.05, auroc + 0.05]},
        "parity": {"passed": parity_ok},
        "training": {
            "config": {"seed": seed, "n_train": 1, "n_val": 1, "n_test": 1, "shape": [1, 1, 1]}
        },
        **extra,
    }
    reg.write_version(root, MODEL_NAME, version, f"onnx {version}".encode(), meta, "# r\n")


def test_gate_refuses_a_worse_version_and_failed_parity(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    _write(root, "v1", 0.80)
    assert reg.promote(root, MODEL_NAME, "v1")["promoted"]
    v1_sha = load_metadata(root, MODEL_NAME, "v1")["sha256"]
    worse = {
        "promoted_version": "v1",
        "promoted_sha256": v1_sha,
        "comparable": True,
        "auroc": 0.75,
        "promoted_auroc": 0.80,
        "difference": -0.05,
        "test_volumes": 10,
    }
    _write(root, "v2", 0.75, vs_promoted=worse)
    out = reg.promote(root, MODEL_NAME, "v2")
    assert not out["promoted"] and "does not beat promoted v1" in out["reasons"][0]
    better = {**worse, "auroc": 0.85, "difference": 0.05}
    _write(root, "v3", 0.85, parity_ok=False, vs_promoted=better)
    out = reg.promote(root, MODEL_NAME, "v3")
    assert not out["promoted"] and out["reasons"][0].startswith("ONNX parity not passed")
    # ranked by the paired comparison, never by a figure from other volumes
    _write(root, "v4", 0.70, vs_promoted=better)
    assert reg.promote(root, MODEL_NAME, "v4")["promoted"]
    assert promoted_version(root, MODEL_NAME) == "v4"
    # not shown better than chance: refused whatever the promoted version
    _write(root, "v7", 0.53, vs_promoted={**better, "promoted_version": "v4", "auroc": 0.9})
    out = reg.promote(root, MODEL_NAME, "v7")
    assert not out["promoted"] and "better than chance" in out["reasons"][0]
    # compared with an older promoted version, on other volumes: not ranked
    _write(root, "v5", 0.99, seed=1, vs_promoted=better)
    out = reg.promote(root, MODEL_NAME, "v5")
    assert not out["promoted"] and "other synthetic volumes" in out["reasons"][0]
    # on the same volumes, the stored figures rank
    _write(root, "v6", 0.60)
    assert not reg.promote(root, MODEL_NAME, "v6")["promoted"]


def test_cli_train_imaging_quick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(train_mod, "QUICK", TINY)
    monkeypatch.setenv("WARDWATCH_MODEL_REGISTRY", str(tmp_path / "registry"))
    assert main(["train-imaging", "--quick", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == "v1" and out["registered"] and "promotion" not in out
    meta = load_metadata(tmp_path / "registry", MODEL_NAME, "v1")
    assert meta["training"]["seed"] == 3
