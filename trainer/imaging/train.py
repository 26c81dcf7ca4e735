"""``wardwatch train-imaging``: train the lung-nodule CNN on synthetic volumes, evaluate
it on held-out ones, export it to ONNX with a parity check and register it as
``lung-nodule vN`` (``docs/imaging.md``, "The nodule model").

* **Data**: one synthetic volume per synthetic patient (:mod:`trainer.imaging.synth`),
  half with nodules; patients ``[0, n_train)`` train, the next ``n_val`` validate and the
  next ``n_test`` test, so no patient is in two splits; a volume's seed is
  ``seed * 1_000_000 + patient``.
* **Training**: Adam (lr 1.5e-3, cosine decay), binary cross-entropy on the logit plus
  the class map's against the nodule masks on the CAM grid (:func:`_fit`), batches of 4, left-right flips as augmentation; the training volumes kept in float16.
* **Threshold**: on the validation patients, the probability that maximises Youden's J
  (sensitivity + specificity - 1).
* **Test**: AUROC with a 95 % patient bootstrap interval (:func:`trainer.stats.
  paired_bootstrap_auroc`), sensitivity and specificity at the threshold with exact
  Clopper-Pearson bounds, sensitivity by nodule size band (the largest nodule of a
  volume), density and margin, and how often the CAM's peak falls on a nodule.
* **Export**: ONNX (opset 17, dynamic batch), input ``volume``, outputs ``probability``
  and ``cam``; parity: torch and ONNX Runtime on test volumes and random ones, the largest
  absolute differences of both outputs, passed under :data:`PARITY_TOL_PROB` and
  :data:`PARITY_TOL_CAM`; a version that fails it is not registered.
* **Against the promoted version**: its ONNX file is scored on the same test patients
  and the paired bootstrap of the AUROC difference stored in ``metadata["vs_promoted"]``;
  the registry's gate ranks by it (:func:`trainer.registry.gate`).
"""

from __future__ import annotations

import io
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import nn

from models.imaging.preprocess import PreprocessConfig
from models.registry import load_metadata, promoted_version, version_dir
from trainer import registry as reg
from trainer.imaging.model import CHANNELS, NoduleCNN, cam_shape
from trainer.imaging.synth import SynthConfig, SynthVolume, generate_batch
from trainer.stats import clopper_pearson_lower, clopper_pearson_upper, paired_bootstrap_auroc

__all__ = [
    "FULL",
    "KIND",
    "MODEL_NAME",
    "QUICK",
    "ImagingTrainConfig",
    "export_onnx",
    "parity",
    "train_imaging",
]

MODEL_NAME: Final = "lung-nodule"
KIND: Final = "ct-nodule-cnn"
OPSET: Final = 17
INPUT_NAMES: Final = ("volume",)
OUTPUT_NAMES: Final = ("probability", "cam")
PARITY_TOL_PROB: Final = 1e-4
PARITY_TOL_CAM: Final = 1e-3
SIZE_BANDS_MM: Final = ((4.0, 6.0), (6.0, 10.0), (10.0, 20.0), (20.0, 30.0))
F32 = npt.NDArray[np.float32]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagingTrainConfig:
    n_train: int = 1400
    n_val: int = 300
    n_test: int = 300
    epochs: int = 6
    batch_size: int = 4
    lr: float = 1.5e-3
    seed: int = 0
    n_boot: int = 1000
    shape: tuple[int, int, int] = (64, 128, 128)
    cell_loss_weight: float = 1.0
    cell_pos_weight: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL: Final = ImagingTrainConfig()
QUICK: Final = ImagingTrainConfig(n_train=160, n_val=80, n_test=80, epochs=2, n_boot=500)
"""``--quick``: the same input size, a small cohort (160 / 80 / 80 volumes, 2 epochs)."""


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _split(cfg: ImagingTrainConfig) -> dict[str, tuple[list[int], list[int]]]:
    """Patients (volume seeds) and labels of each split, balanced within each."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0x5350]))
    out: dict[str, tuple[list[int], list[int]]] = {}
    start = 0
    for name, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
        labels = (rng.permutation(n) % 2).tolist()
        seeds = [cfg.seed * 1_000_000 + start + i for i in range(n)]
        out[name] = (seeds, [int(x) for x in labels])
        start += n
    return out


def _synth_config(cfg: ImagingTrainConfig) -> SynthConfig:
    return SynthConfig(preprocess=PreprocessConfig(shape=cfg.shape))


def _predict(model: NoduleCNN, x: F32, device: torch.device, batch: int = 8) -> tuple[F32, F32]:
    model.eval()
    probs, cams = [], []
    with torch.no_grad():
        for a in range(0, len(x), batch):
            p, c = model(torch.from_numpy(np.asarray(x[a : a + batch], np.float32)).to(device))
            probs.append(p.cpu().numpy())
            cams.append(c.cpu().numpy())
    return np.concatenate(probs), np.concatenate(cams)


def cell_masks(vols: list[SynthVolume], grid: tuple[int, int, int]) -> npt.NDArray[np.bool_]:
    """Each volume's nodule mask on the CAM's grid: a cell is on when any voxel is."""
    out = np.zeros((len(vols), *grid), dtype=bool)
    for n, v in enumerate(vols):
        d, h, w = v.mask.shape
        f = (d // grid[0], h // grid[1], w // grid[2])
        m = v.mask[: grid[0] * f[0], : grid[1] * f[1], : grid[2] * f[2]]
        out[n] = m.reshape(grid[0], f[0], grid[1], f[1], grid[2], f[2]).any(axis=(1, 3, 5))
    return out


def _fit(
    model: NoduleCNN,
    x: npt.NDArray[np.float16],
    y: npt.NDArray[np.float32],
    cells: npt.NDArray[np.bool_],
    cfg: ImagingTrainConfig,
) -> list[dict[str, float]]:
    """Adam on the volume's loss (BCE of the logit) plus the map's: BCE of each cell's
    class-map value (and a bias of its own, used only in training) against the nodule
    mask on the CAM's grid, so the CAM learns where the nodules are from the start."""
    device = _device()
    gen = torch.Generator().manual_seed(cfg.seed)
    cell_bias = torch.nn.Parameter(torch.tensor(-4.0, device=device))
    opt = torch.optim.Adam([*model.parameters(), cell_bias], lr=cfg.lr)
    pos_weight = torch.tensor(cfg.cell_pos_weight, device=device)
    steps = cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    loss_fn = nn.BCEWithLogitsLoss()
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen).numpy()
        total, t0 = 0.0, time.perf_counter()
        for a in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[a : a + cfg.batch_size])
            xb = torch.from_numpy(x[idx].astype(np.float32))
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb[flip] = torch.flip(xb[flip], dims=(4,))
            cb = torch.from_numpy(cells[idx].astype(np.float32))
            cb[flip] = torch.flip(cb[flip], dims=(3,))
            yb = torch.from_numpy(y[idx])
            logit, maps = model.logits_and_maps(xb.to(device))
            cell_logit = model.class_map(maps) + cell_bias
            cell_loss = nn.functional.binary_cross_entropy_with_logits(
                cell_logit, cb.to(device), pos_weight=pos_weight
            )
            loss = loss_fn(logit, yb.to(device)) + cfg.cell_loss_weight * cell_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(total / len(x), 4),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        log.info("train-imaging epoch %s", history[-1])
    return history


def youden_threshold(y: npt.NDArray[Any], p: npt.NDArray[Any]) -> dict[str, Any]:
    """The probability maximising sensitivity + specificity - 1 on ``(y, p)``: the
    midpoint between the chosen score and the next lower one (0.5 when one class is
    absent)."""
    yy = np.asarray(y, bool)
    if yy.all() or not yy.any():
        return {"value": 0.5, "method": "default 0.5 (one class absent on validation)"}
    cand = np.unique(p)
    best, best_t = -1.0, 0.5
    for t in cand:
        sens = float(np.mean(p[yy] >= t))
        spec = float(np.mean(p[~yy] < t))
        if sens + spec - 1 > best:
            best, best_t = sens + spec - 1, float(t)
    lower = p[p < best_t]
    value = (best_t + float(lower.max())) / 2 if len(lower) else best_t
    return {
        "value": round(value, 6),
        "method": "Youden's J (sensitivity + specificity - 1) maximised on the validation patients",
        "youden_j": round(best, 4),
    }


def _rate(hits: int, n: int) -> dict[str, Any]:
    return {
        "value": None if n == 0 else round(hits / n, 4),
        "n": n,
        "ci95_exact": [
            None if n == 0 else round(clopper_pearson_lower(hits, n, 0.025) or 0.0, 4),
            None if n == 0 else round(clopper_pearson_upper(hits, n, 0.025) or 1.0, 4),
        ],
    }


def _cam_hit(cam: F32, vol: SynthVolume, input_shape: tuple[int, int, int]) -> bool:
    """Whether the CAM's peak (cell centre in input voxels) lies on a nodule: in its mask
    or within its radius + 3 mm of its centre."""
    d, h, w = cam.shape
    peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
    scale = np.asarray(input_shape, np.float64) / np.asarray((d, h, w), np.float64)
    centre = (np.asarray(peak, np.float64) + 0.5) * scale - 0.5
    ijk = tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(centre, input_shape, strict=True))
    if vol.mask[ijk]:
        return True
    for nod in vol.nodules:
        dist_mm = 1.5 * float(np.linalg.norm(centre - np.asarray(nod.centre)))
        if dist_mm <= nod.diameter_mm / 2 + 3.0:
            return True
    return False


def _metrics(
    y: npt.NDArray[Any],
    p: F32,
    cams: F32,
    vols: list[SynthVolume],
    threshold: float,
    cfg: ImagingTrainConfig,
) -> dict[str, Any]:
    boot = paired_bootstrap_auroc(y, [p], np.arange(len(y)), n_boot=cfg.n_boot, seed=cfg.seed)
    yy = np.asarray(y, bool)
    flag = p >= threshold
    pos, neg = np.flatnonzero(yy), np.flatnonzero(~yy)
    bands = {}
    for lo, hi in SIZE_BANDS_MM:
        idx = [
            i
            for i in pos
            if lo <= vols[i].max_diameter_mm < hi or (hi == 30.0 and vols[i].max_diameter_mm == hi)
        ]
        bands[f"{lo:g}-{hi:g} mm"] = _rate(int(flag[idx].sum()), len(idx))
    by_density: dict[str, Any] = {}
    by_margin: dict[str, Any] = {}
    for attr, out in (("density", by_density), ("margin", by_margin)):
        groups: dict[str, list[int]] = {}
        for i in pos:
            largest = max(vols[i].nodules, key=lambda n: n.diameter_mm)
            groups.setdefault(str(getattr(largest, attr)), []).append(int(i))
        for key, members in sorted(groups.items()):
            out[key] = _rate(int(flag[members].sum()), len(members))
    hits = [_cam_hit(cams[i], vols[i], cfg.shape) for i in pos]
    found = [h for h, i in zip(hits, pos, strict=True) if flag[i]]
    return {
        "split": "test",
        "volumes": len(y),
        "positives": len(pos),
        "auroc": boot["auroc"][0],
        "auroc_ci95": boot["ci"][0],
        "auroc_bootstrap": {"n_boot": boot["n_boot"], "resampled": "patients (volumes)"},
        "threshold": threshold,
        "sensitivity": _rate(int(flag[pos].sum()), len(pos)),
        "specificity": _rate(int((~flag[neg]).sum()), len(neg)),
        "sensitivity_by_size": bands,
        "sensitivity_by_density": by_density,
        "sensitivity_by_margin": by_margin,
        "cam_peak_on_nodule": {
            "all_positives": _rate(int(sum(hits)), len(hits)),
            "flagged_positives": _rate(int(sum(found)), len(found)),
            "rule": "peak cell centre in the nodule mask or within radius + 3 mm of a centre",
        },
    }


def export_onnx(model: NoduleCNN, shape: tuple[int, int, int]) -> bytes:
    """Serialized ONNX of ``model`` (CPU copy, eval mode): ``volume`` -> ``probability``,
    ``cam``, dynamic batch, opset 17 (TorchScript exporter, as the deterioration model's)."""
    cpu = NoduleCNN(CHANNELS)
    cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    cpu.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            cpu,
            (torch.zeros(1, 1, *shape),),
            buf,  # type: ignore[arg-type]
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={"volume": {0: "N"}, "probability": {0: "N"}, "cam": {0: "N"}},
            opset_version=OPSET,
            dynamo=False,
        )
    data = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def _session(data: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def onnx_predict(data: bytes, x: F32, batch: int = 4) -> tuple[F32, F32]:
    sess = _session(data)
    probs, cams = [], []
    for a in range(0, len(x), batch):
        p, c = sess.run(list(OUTPUT_NAMES), {"volume": np.asarray(x[a : a + batch], np.float32)})
        probs.append(p)
        cams.append(c)
    return np.concatenate(probs), np.concatenate(cams)


def parity(
    model: NoduleCNN, data: bytes, volumes: F32, *, n_random: int = 2, seed: int = 0
) -> dict[str, Any]:
    """Torch (CPU) vs ONNX Runtime on ``volumes`` and ``n_random`` uniform-noise volumes."""
    cpu = NoduleCNN(CHANNELS)
    cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    rng = np.random.default_rng(seed)
    rand = rng.uniform(0, 1, size=(n_random, *volumes.shape[1:])).astype(np.float32)
    x = np.concatenate([np.asarray(volumes, np.float32), rand])
    p_t, c_t = _predict(cpu, x, torch.device("cpu"), batch=2)
    p_o, c_o = onnx_predict(data, x, batch=2)
    dp = float(np.abs(p_t - p_o).max())
    dc = float(np.abs(c_t - c_o).max())
    return {
        "volumes": len(volumes),
        "random_volumes": n_random,
        "max_abs_diff_probability": dp,
        "max_abs_diff_cam": dc,
        "tolerance_probability": PARITY_TOL_PROB,
        "tolerance_cam": PARITY_TOL_CAM,
        "output_shapes": {"probability": list(p_o.shape), "cam": list(c_o.shape)},
        "passed": dp < PARITY_TOL_PROB and dc < PARITY_TOL_CAM,
        "onnxruntime": ort.__version__,
    }


def _vs_promoted(
    root: Path, y: npt.NDArray[Any], p: F32, x_test: F32, cfg: ImagingTrainConfig
) -> dict[str, Any] | None:
    """The promoted version scored on the same test patients (paired bootstrap)."""
    cur = promoted_version(root, MODEL_NAME)
    if cur is None:
        return None
    meta = load_metadata(root, MODEL_NAME, cur)
    if list(meta.get("input_shape") or []) != list(cfg.shape):
        return {
            "promoted_version": cur,
            "promoted_sha256": meta.get("sha256"),
            "comparable": False,
            "reason": f"input shape {meta.get('input_shape')} differs from {list(cfg.shape)}",
        }
    data = (version_dir(root, MODEL_NAME, cur) / "model.onnx").read_bytes()
    p_cur, _ = onnx_predict(data, x_test)
    boot = paired_bootstrap_auroc(
        y, [p, p_cur], np.arange(len(y)), n_boot=cfg.n_boot, seed=cfg.seed
    )
    return {
        "promoted_version": cur,
        "promoted_sha256": meta.get("sha256"),
        "comparable": True,
        "test_volumes": len(y),
        "auroc": boot["auroc"][0],
        "promoted_auroc": boot["auroc"][1],
        "difference": boot["difference"],
        "difference_ci95": boot["difference_ci"],
    }


def _report(meta: dict[str, Any]) -> str:
    m = meta["metrics"]
    par = meta["parity"]
    lines = [
        f"# {meta['name']} {meta['version']}: lung nodule suspicion (3-D CNN)",
        "",
        f"Trained on {meta['training']['data']['train']} synthetic chest CT volumes "
        f"(seed {meta['training']['seed']}), threshold {meta['threshold']['value']} "
        f"({meta['threshold']['method']}).",
        "",
        "| held-out test | value |",
        "|---|---|",
        f"| volumes (positives) | {m['volumes']} ({m['positives']}) |",
        f"| AUROC (95 % CI) | {m['auroc']} ({m['auroc_ci95']}) |",
        f"| sensitivity at threshold | {m['sensitivity']['value']} {m['sensitivity']['ci95_exact']} |",
        f"| specificity at threshold | {m['specificity']['value']} {m['specificity']['ci95_exact']} |",
        f"| CAM peak on a nodule (flagged positives) | {m['cam_peak_on_nodule']['flagged_positives']['value']} |",
        "",
        "| nodule size | sensitivity | n |",
        "|---|---|---|",
    ]
    for band, r in m["sensitivity_by_size"].items():
        lines.append(f"| {band} | {r['value']} | {r['n']} |")
    lines += ["", "| group | sensitivity | n |", "|---|---|---|"]
    for key in ("sensitivity_by_density", "sensitivity_by_margin"):
        for g, r in m[key].items():
            lines.append(f"| {g} | {r['value']} | {r['n']} |")
    lines += [
        "",
        f"ONNX parity: probability max |diff| {par['max_abs_diff_probability']:.2e}, cam "
        f"{par['max_abs_diff_cam']:.2e}, passed: {par['passed']}.",
        "",
        f"Training: {meta['training']['seconds']} s on {meta['training']['device']}; epochs "
        + ", ".join(f"{h['loss']}" for h in meta["training"]["history"])
        + " (mean loss).",
    ]
    vs = meta.get("vs_promoted")
    if vs:
        lines += ["", f"Against promoted {vs['promoted_version']} on the same test volumes: {vs}"]
    return "\n".join(lines) + "\n"


def train_imaging(
    root: Path,
    cfg: ImagingTrainConfig = FULL,
    *,
    promote: bool = False,
    version: str | None = None,
) -> dict[str, Any]:
    """Generate, train, evaluate, export and register ``lung-nodule vN``; with
    ``promote``, run the gate on it. Returns a JSON-ready summary."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = _device()
    scfg = _synth_config(cfg)
    splits = _split(cfg)
    t0 = time.perf_counter()
    x_train, train_vols = generate_batch(*splits["train"], scfg, dtype=np.float16)
    cells = cell_masks(train_vols, cam_shape(cfg.shape))
    del train_vols
    y_train = np.asarray(splits["train"][1], np.float32)
    gen_s = time.perf_counter() - t0
    model = NoduleCNN(CHANNELS).to(device)
    t1 = time.perf_counter()
    history = _fit(model, x_train, y_train, cells, cfg)
    train_s = time.perf_counter() - t1
    del x_train
    x_val, _ = generate_batch(*splits["val"], scfg)
    y_val = np.asarray(splits["val"][1])
    p_val, _ = _predict(model, x_val, device)
    threshold = youden_threshold(y_val, p_val)
    del x_val
    x_test, vols = generate_batch(*splits["test"], scfg)
    y_test = np.asarray(splits["test"][1])
    p_test, c_test = _predict(model, x_test, device)
    metrics = _metrics(y_test, p_test, c_test, vols, threshold["value"], cfg)
    val_auroc = paired_bootstrap_auroc(y_val, [p_val], np.arange(len(y_val)), n_boot=1)["auroc"][0]
    threshold["validation_auroc"] = val_auroc
    data = export_onnx(model, cfg.shape)
    par = parity(model, data, x_test[:4], seed=cfg.seed)
    vs = _vs_promoted(root, y_test, p_test, x_test, cfg)
    del x_test
    pp = scfg.preprocess
    meta: dict[str, Any] = {
        "kind": KIND,
        "inputs": {"volume": ["N", 1, *cfg.shape]},
        "outputs": {"probability": ["N"], "cam": ["N", *cam_shape(cfg.shape)]},
        "input_shape": list(cfg.shape),
        "cam_shape": list(cam_shape(cfg.shape)),
        "opset": OPSET,
        "preprocess": {
            "spacing_mm": list(pp.spacing_mm),
            "shape": list(pp.shape),
            "window_center_hu": pp.window_level_hu,
            "window_width_hu": pp.window_width_hu,
            "body_threshold_hu": pp.body_threshold_hu,
            "pad_hu": pp.pad_hu,
        },
        "threshold": threshold,
        "metrics": metrics,
        "parity": par,
        "architecture": {
            "channels": list(CHANNELS),
            "parameters": sum(p.numel() for p in model.parameters()),
            "head": "max over cells of the class map sum_k w_k A_k, plus a bias; CAM = ReLU(sum_k w_k A_k), max-scaled",
        },
        "training": {
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "device": str(device),
            "history": history,
            "seconds": round(time.perf_counter() - t_start, 1),
            "generation_seconds": round(gen_s, 1),
            "fit_seconds": round(train_s, 1),
            "data": {
                "source": "synthetic chest CT volumes (trainer.imaging.synth)",
                "synth": scfg.to_dict(),
                "train": cfg.n_train,
                "val": cfg.n_val,
                "test": cfg.n_test,
                "split": "by synthetic patient: one volume each, disjoint seed ranges",
            },
        },
        "code_version": reg.code_version(),
        "created_at": datetime.now(UTC).isoformat(),
    }
    if vs is not None:
        meta["vs_promoted"] = vs
    result: dict[str, Any] = {
        "name": MODEL_NAME,
        "metrics": {k: metrics[k] for k in ("auroc", "auroc_ci95", "sensitivity", "specificity")},
        "sensitivity_by_size": metrics["sensitivity_by_size"],
        "threshold": threshold,
        "parity": par,
        "training_seconds": meta["training"]["seconds"],
    }
    if not par["passed"]:
        result["registered"] = False
        result["reason"] = "ONNX parity failed: not registered"
        return result
    v = version or reg.next_version(root, MODEL_NAME)
    meta["version"] = v
    meta["name"] = MODEL_NAME
    d = reg.write_version(root, MODEL_NAME, v, data, meta, _report(meta))
    result.update(registered=True, version=v, path=str(d), onnx_bytes=len(data))
    if promote:
        result["promotion"] = reg.promote(root, MODEL_NAME, v)
    return result


def config_for(quick: bool, seed: int) -> ImagingTrainConfig:
    """The full or ``--quick`` configuration with ``seed``."""
    return replace(QUICK if quick else FULL, seed=seed)
