"""Trainer entry points called by ``cli/main.py`` (train, evaluate, promote, list).

Every function returns a JSON-able dict (or list) and prints progress to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from models.features import FEATURE_NAMES, FEATURES_VERSION, N_FEATURES, NORM
from trainer import registry as reg
from trainer.dataset import Dataset, PatientSeq, from_simulation

__all__ = ["MODEL_NAME", "PRESETS", "evaluate", "list_models", "promote", "run_onnx", "train"]

MODEL_NAME = "deterioration"


@dataclass(frozen=True)
class Preset:
    patients: int
    epochs: int
    patience: int


PRESETS = {
    # quick: < 2 min on 2 CPU cores, still clearly above NEWS2 on held-out AUROC
    "quick": Preset(patients=1500, epochs=30, patience=6),
    "full": Preset(patients=6000, epochs=60, patience=8),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(
    quick: bool,
    registry: Path,
    seed: int = 0,
    *,
    name: str = MODEL_NAME,
    version: str | None = None,
    n_patients: int | None = None,
    epochs: int | None = None,
    hidden: int = 32,
    horizon_h: float = 12.0,
    parity_n: int = 1000,
    source: Literal["simulation", "kafka"] = "simulation",
    settings: Any | None = None,
    kafka_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Simulate (or read Kafka), train, calibrate, export, check parity, evaluate, register
    (not promote).

    ``source="kafka"`` trains on what the system accumulated on the ``vitals`` and
    ``outcomes`` topics of ``settings`` (:func:`trainer.kafka_data.dataset_from_kafka`;
    patient splits seeded by ``seed``; ``n_patients`` is ignored).
    Returns ``{"name", "version", "path", "sha256", "metrics", "parity", "train"}``.
    Raises :class:`RuntimeError` when ONNX parity fails (nothing is registered then).
    """
    from trainer.evaluate import evaluate as eval_metrics
    from trainer.export import INPUT_NAMES, OPSET, OUTPUT_NAMES, export_onnx, parity
    from trainer.model import TrainConfig, fit, predict
    from trainer.report import report_html, report_markdown

    preset = PRESETS["quick" if quick else "full"]
    n = n_patients or preset.patients
    t0 = time.monotonic()
    if source == "kafka":
        from trainer.kafka_data import dataset_from_kafka

        if settings is None:
            raise ValueError('source="kafka" needs settings (broker and topic names)')
        _log(f"reading {settings.topics.vitals} + {settings.topics.outcomes} from Kafka ...")
        ds = dataset_from_kafka(
            settings, horizon_h=horizon_h, split_seed=seed, timeout_s=kafka_timeout_s
        )
        if not all(ds.subset(s) for s in ("train", "val", "test")):
            raise ValueError(f"too little data on Kafka to train: {len(ds.patients)} patients")
    elif source == "simulation":
        _log(f"simulating {n} patients (seed {seed}) ...")
        ds = from_simulation(n, seed=seed, horizon_h=horizon_h)
    else:
        raise ValueError(f"unknown data source {source!r}")
    summary = ds.summary()
    _log(
        "data: "
        + ", ".join(
            f"{s} {summary[s]['patients']} patients/{summary[s]['observations']} obs/"
            f"{summary[s]['positive_observations']} pos"
            for s in ("train", "val", "test")
        )
        + f" ({time.monotonic() - t0:.1f}s)"
    )
    cfg = TrainConfig(
        hidden=hidden, epochs=epochs or preset.epochs, patience=preset.patience, seed=seed
    )
    model, info = fit(ds.subset("train"), ds.subset("val"), cfg)
    _log(f"best epoch {info['best_epoch']}, temperature {info['temperature']:.3f}")

    test = ds.subset("test")
    metrics = eval_metrics(test, predict(model, test), horizon_h=horizon_h)
    _log(
        f"test AUROC model {metrics['model']['auroc']} vs NEWS2 {metrics['news2']['auroc']}; "
        f"alerts/patient-day {metrics['model']['alerts_per_patient_day']}"
    )

    onnx_bytes = export_onnx(model)
    par = parity(model, onnx_bytes, ds.patients, n=parity_n, seed=seed)
    _log(
        f"ONNX parity: max |risk| diff random {par['max_abs_diff_risk_random']:.2e}, "
        f"real {par['max_abs_diff_risk_real']:.2e}"
    )
    if not par["passed"]:
        raise RuntimeError(f"ONNX parity failed: {par}")

    version = version or reg.next_version(registry, name)
    meta: dict[str, Any] = {
        "smoke": _smoke(model, test or ds.patients),
        "created_at": datetime.now(UTC).isoformat(),
        "kind": "deterioration-gru-step",
        "inputs": {
            INPUT_NAMES[0]: {"shape": ["batch", N_FEATURES], "dtype": "float32"},
            INPUT_NAMES[1]: {"shape": ["batch", hidden], "dtype": "float32"},
        },
        "outputs": {
            OUTPUT_NAMES[0]: {"shape": ["batch", 1], "dtype": "float32"},
            OUTPUT_NAMES[1]: {"shape": ["batch", hidden], "dtype": "float32"},
        },
        "opset": OPSET,
        "hidden_size": hidden,
        "initial_hidden": "zeros",
        "features_version": FEATURES_VERSION,
        "feature_names": list(FEATURE_NAMES),
        "normalization": NORM,
        "norm": NORM,  # the key models/runtime.py reads
        "label_horizon_h": horizon_h,
        "training_data": {"fingerprint": ds.fingerprint(), **summary},
        "training": info,
        "metrics": metrics,
        "parity": par,
        "code_version": reg.code_version(),
    }
    meta["name"], meta["version"] = name, version
    report = report_markdown(metrics, meta)
    path = reg.write_version(
        registry, name, version, onnx_bytes, meta, report, report_html(metrics, meta)
    )
    total_s = round(time.monotonic() - t0, 1)
    _log(f"registered {name} {version} at {path} ({total_s}s total)")
    return {
        "name": name,
        "version": version,
        "path": str(path),
        "sha256": reg.load_metadata(registry, name, version)["sha256"],
        "metrics": {
            "model": metrics["model"],
            "news2": metrics["news2"],
            "calibration_ece": metrics["calibration"]["ece"],
        },
        "parity": par,
        "train": {
            "seconds_total": total_s,
            "seconds_fit": info["train_seconds"],
            "best_epoch": info["best_epoch"],
        },
    }


def _smoke(model: Any, patients: Sequence[PatientSeq], n: int = 4) -> dict[str, Any]:
    """A few (features, h_in) -> risk triples the worker re-checks after loading the file."""
    import torch

    from trainer.model import StepModule

    rows = [p.x[min(len(p.y) - 1, 5)] for p in patients[:n]]
    feats = np.stack(rows).astype(np.float32)
    rng = np.random.default_rng(0)
    h = rng.normal(0.0, 0.3, size=(len(rows), model.hidden)).astype(np.float32)
    with torch.no_grad():
        risk, _ = StepModule(model).eval()(torch.from_numpy(feats), torch.from_numpy(h))
    return {
        "features": feats.tolist(),
        "h_in": h.tolist(),
        "risk": risk.numpy().reshape(-1).tolist(),
    }


def run_onnx(
    onnx_path: Path, patients: Sequence[PatientSeq], hidden: int
) -> list[npt.NDArray[np.float64]]:
    """Risk per observation from the ONNX step model (ONNX Runtime only, no torch)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if not patients:
        return []
    t_max = max(len(p.y) for p in patients)
    x = np.zeros((len(patients), t_max, patients[0].x.shape[1]), dtype=np.float32)
    for i, p in enumerate(patients):
        x[i, : len(p.y)] = p.x
    h = np.zeros((len(patients), hidden), dtype=np.float32)
    risk = np.zeros((len(patients), t_max), dtype=np.float64)
    for t in range(t_max):
        r, h = sess.run(["risk", "h_out"], {"features": x[:, t], "h_in": h})
        risk[:, t] = r[:, 0]
    return [risk[i, : len(p.y)] for i, p in enumerate(patients)]


def _dataset_from_meta(meta: dict[str, Any], settings: Any | None = None) -> Dataset:
    src = meta["training_data"]["source"]
    if src.get("kind") == "kafka":
        if settings is None:
            raise reg.RegistryError("training data came from Kafka: evaluate needs settings")
        from trainer.kafka_data import dataset_from_kafka, end_offsets_from_source

        # the recorded topics, up to the recorded end offsets (while still retained)
        topics = settings.topics.model_copy(update=dict(src["topics"]))
        return dataset_from_kafka(
            settings.model_copy(update={"topics": topics}),
            horizon_h=float(meta["label_horizon_h"]),
            split_seed=int(src["seed"]),
            end_offsets=end_offsets_from_source(src),
        )
    if src.get("kind") != "simulation":
        raise reg.RegistryError(f"cannot rebuild training data of kind {src.get('kind')!r}")
    return from_simulation(
        int(src["n_patients"]), seed=int(src["seed"]), horizon_h=float(meta["label_horizon_h"])
    )


def evaluate(
    registry: Path,
    version: str | None = None,
    name: str = MODEL_NAME,
    *,
    external: bool = True,
    settings: Any | None = None,
) -> dict[str, Any]:
    """Re-evaluate a registered version (default: the promoted one) from its ONNX file.

    Rebuilds the data from the recorded source, checks its fingerprint, runs the ONNX
    model with ONNX Runtime on the test split and recomputes the metrics; reports them
    with the stored ones and whether they match. With ``external`` (default) the result
    also has an ``external`` section: :func:`trainer.external.external_check` on real ICU
    data (``{"available": False, "reason": ...}`` without ``survset``). A model trained on
    Kafka data is rebuilt by re-reading the topics up to the recorded end offsets, which
    needs ``settings``.
    """
    from trainer.evaluate import evaluate as eval_metrics

    version = version or reg.promoted_version(registry, name)
    if version is None:
        raise reg.RegistryError(f"no version of {name} given and none promoted")
    reg.verify(registry, name, version)
    meta = reg.load_metadata(registry, name, version)
    _log(f"rebuilding training data for {name} {version} ...")
    ds = _dataset_from_meta(meta, settings)
    fp_ok = ds.fingerprint() == meta["training_data"]["fingerprint"]
    test = ds.subset("test")
    risks = run_onnx(registry / name / version / "model.onnx", test, int(meta["hidden_size"]))
    metrics = eval_metrics(test, risks, horizon_h=float(meta["label_horizon_h"]))
    stored = meta["metrics"]["model"]["auroc"]
    out: dict[str, Any] = {
        "name": name,
        "version": version,
        "fingerprint_matches": fp_ok,
        "metrics": metrics,
        "stored_auroc": stored,
        "auroc_matches": stored is not None
        and metrics["model"]["auroc"] is not None
        and abs(float(metrics["model"]["auroc"]) - float(stored)) < 1e-3,
    }
    if external:
        out["external"] = _external(registry, version, name)
    return out


def _external(registry: Path, version: str, name: str) -> dict[str, Any]:
    """The real-data check (``trainer/external.py``), or why it could not run."""
    from trainer.external import external_check

    _log("external check on real ICU data (survset: support2, rhc) ...")
    try:
        return external_check(registry, version, name)
    except ImportError as exc:
        return {"available": False, "reason": str(exc)}


def promote(
    registry: Path,
    version: str,
    *,
    name: str = MODEL_NAME,
    alert_budget: float = reg.DEFAULT_ALERT_BUDGET,
    force: bool = False,
    settings: Any | None = None,
) -> dict[str, Any]:
    """Gate and promote ``version``; with ``settings`` also publish on ``control``."""
    out = reg.promote(registry, name, version, alert_budget=alert_budget, force=force)
    _log(f"promotion of {name} {version}: {'done' if out['promoted'] else 'refused'}")
    for r in out["reasons"]:
        _log(f"  - {r}")
    if out["promoted"] and settings is not None:
        out["published"] = reg.publish_promotion(settings, name, version, out["sha256"])
    return out


def list_models(registry: Path) -> list[dict[str, Any]]:
    """Every registered version: name, version, promoted, created, AUROC, NEWS2 AUROC."""
    rows: list[dict[str, Any]] = []
    for name in reg.list_models(registry):
        promoted = reg.promoted_version(registry, name)
        for v in reg.list_versions(registry, name):
            meta = reg.load_metadata(registry, name, v)
            m = meta.get("metrics", {})
            rows.append(
                {
                    "name": name,
                    "version": v,
                    "promoted": v == promoted,
                    "created_at": meta.get("created_at"),
                    "sha256": meta.get("sha256"),
                    "auroc": m.get("model", {}).get("auroc"),
                    "news2_auroc": m.get("news2", {}).get("auroc"),
                    "alerts_per_patient_day": m.get("model", {}).get("alerts_per_patient_day"),
                }
            )
    return rows
