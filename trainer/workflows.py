"""Trainer entry points called by ``cli/main.py`` (train, evaluate, promote, list).

Every function returns a JSON-able dict (or list) and prints progress to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from alerts import PolicyConfig
from models.features import FEATURE_NAMES, FEATURES_VERSION, N_FEATURES, NORM
from models.fusion import FusionParams, Stacking, Thresholds
from simulator import SimConfig
from trainer import registry as reg
from trainer.dataset import Dataset, PatientSeq, from_simulation
from trainer.stacking import calibration_split, fit_stacking, stack
from trainer.stats import paired_bootstrap_auroc

__all__ = [
    "MODEL_NAME",
    "PRESETS",
    "evaluate",
    "list_models",
    "promote",
    "rechoose_operating_points",
    "run_onnx",
    "train",
]

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
    alert_budget: float | None = None,
    high_fraction: float | None = None,
    sensitivity_floor: float | None = None,
    stable_first_day_fraction: float | None = None,
) -> dict[str, Any]:
    """Simulate (or read Kafka), train, calibrate, export, check parity, stack on NEWS2,
    choose the operating points, evaluate, register (not promote).

    The validation patients are split in two halves (:func:`trainer.stacking.calibration_split`):
    one early-stops the network and fits its temperature, the other (the calibration split)
    fits the stacking on NEWS2 and chooses the operating points under the alert budget
    (pages per patient-day ``alert_budget``, high-priority pages ``high_fraction`` of it;
    defaults from ``settings``, else 0.3 and 0.2; patients without an outcome paged on
    their first day ``stable_first_day_fraction``, else from ``settings``, else 0.05) with
    the sensitivity floor (NEWS2 >= 5's on the same patients, or ``sensitivity_floor``).

    ``source="kafka"`` trains on what the system accumulated on the ``vitals`` and
    ``outcomes`` topics of ``settings`` (:func:`trainer.kafka_data.dataset_from_kafka`;
    patient splits seeded by ``seed``; ``n_patients`` is ignored).
    Returns ``{"name", "version", "path", "sha256", "metrics", "operating_points", "parity",
    "train"}``. Raises :class:`RuntimeError` when ONNX parity fails (nothing is registered
    then).
    """
    from trainer.export import INPUT_NAMES, OPSET, OUTPUT_NAMES, export_onnx, parity
    from trainer.model import TrainConfig, fit
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
    grounding = _grounding(ds.source)
    _log(
        "data: "
        + ", ".join(
            f"{s} {summary[s]['patients']} patients/{summary[s]['observations']} obs/"
            f"{summary[s]['positive_observations']} pos"
            for s in ("train", "val", "test")
        )
        + f" ({time.monotonic() - t0:.1f}s)"
    )
    tune, calib = calibration_split(ds.subset("val"), seed)
    if not tune or not calib:
        raise ValueError(f"too few validation patients to split: {len(ds.subset('val'))}")
    cfg = TrainConfig(
        hidden=hidden, epochs=epochs or preset.epochs, patience=preset.patience, seed=seed
    )
    model, info = fit(ds.subset("train"), tune, cfg)
    _log(f"best epoch {info['best_epoch']}, temperature {info['temperature']:.3f}")

    onnx_bytes = export_onnx(model)
    par = parity(model, onnx_bytes, ds.patients, n=parity_n, seed=seed)
    _log(
        f"ONNX parity: max |risk| diff random {par['max_abs_diff_risk_random']:.2e}, "
        f"real {par['max_abs_diff_risk_real']:.2e}"
    )
    if not par["passed"]:
        raise RuntimeError(f"ONNX parity failed: {par}")

    # what the worker computes: the ONNX graph's risks, stacked on NEWS2
    test = ds.subset("test")
    budget = _budget(
        settings, alert_budget, high_fraction, sensitivity_floor, stable_first_day_fraction
    )
    fusion, points, fused_calib = _calibrate(
        calib, run_onnx(onnx_bytes, calib, hidden), budget, horizon_h, seed
    )
    test_risks = run_onnx(onnx_bytes, test, hidden)
    stacking = Stacking.from_dict(fusion["stacking"])
    metrics = _test_metrics(test, test_risks, stacking, points, budget.policy, horizon_h, seed)

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
        "training_data": {
            "fingerprint": ds.fingerprint(),
            **summary,
            "calibration_split": _split_summary(calib, seed),
        },
        "training": info,
        "grounding": grounding,
        "fusion": fusion,
        "operating_points": points,
        "metrics": metrics,
        "parity": par,
        "code_version": reg.code_version(),
    }
    meta["name"], meta["version"] = name, version
    report = report_markdown(metrics, meta)
    path = reg.write_version(
        registry, name, version, onnx_bytes, meta, report, report_html(metrics, meta)
    )
    vs = compare_with_promoted(
        registry, name, version, test, stack(test, test_risks, stacking), seed
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
            "fused": metrics["fused"],
            "news2": metrics["news2"],
            "fused_vs_news2": metrics["fused_vs_news2"],
            "operating": metrics["operating"],
            "calibration_ece": metrics["calibration"]["ece"],
        },
        "stacking": fusion["stacking"],
        "operating_points": points,
        "parity": par,
        "vs_promoted": vs,
        "train": {
            "seconds_total": total_s,
            "seconds_fit": info["train_seconds"],
            "best_epoch": info["best_epoch"],
        },
    }


def _test_metrics(
    test: Sequence[PatientSeq],
    test_risks: Sequence[npt.NDArray[np.float64]],
    stacking: Stacking,
    points: dict[str, Any],
    policy: PolicyConfig,
    horizon_h: float,
    seed: int,
) -> dict[str, Any]:
    """The ``metrics`` block: the test split's risks, fused, at the operating points."""
    from trainer.evaluate import evaluate as eval_metrics

    metrics = eval_metrics(
        test,
        test_risks,
        horizon_h=horizon_h,
        fused=stack(test, test_risks, stacking),
        thresholds=(points["medium"], points["high"]),
        policy=policy,
        seed=seed,
    )
    fv = metrics["fused_vs_news2"]
    _log(
        f"test AUROC model {metrics['model']['auroc']}, fused {fv['auroc']} {fv['ci']} vs "
        f"NEWS2 {fv['news2_auroc']} {fv['news2_ci']}; fused - NEWS2 {fv['difference']} "
        f"{fv['difference_ci']}; pages/patient-day {metrics['operating']['pages_per_patient_day']}"
    )
    return metrics


def compare_with_promoted(
    registry: Path,
    name: str,
    version: str,
    test: Sequence[PatientSeq],
    fused: Sequence[npt.NDArray[np.float64]],
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Any] | None:
    """The candidate's fused AUROC against the promoted version's on the candidate's own
    test patients (a paired patient-level bootstrap), written to the candidate's
    ``vs_promoted.json`` for the promotion gate: two versions trained on different
    cohorts (another simulator, another seed) cannot be ranked by their stored figures.
    None (nothing written) when no other version is promoted; ``comparable: false`` when
    the promoted version reads other features."""
    cur = reg.promoted_version(registry, name)
    if cur is None or cur == version or not test:
        return None
    cur_meta = reg.load_metadata(registry, name, cur)
    record: dict[str, Any] = {
        "version": version,
        "promoted_version": cur,
        "promoted_sha256": cur_meta.get("sha256"),
        "test_patients": len(test),
    }
    if int(cur_meta.get("features_version", -1)) != FEATURES_VERSION:
        record.update(comparable=False, reason="the promoted version reads other features")
    else:
        cur_risks = run_onnx(
            registry / name / cur / "model.onnx", test, int(cur_meta["hidden_size"])
        )
        params = FusionParams.from_meta(cur_meta)
        theirs = cur_risks if params.stacking is None else stack(test, cur_risks, params.stacking)
        y = np.concatenate([p.y for p in test]).astype(np.float64)
        pid = np.concatenate([np.full(len(p.y), i) for i, p in enumerate(test)])
        b = paired_bootstrap_auroc(
            y,
            [np.concatenate(list(fused)), np.concatenate(list(theirs))],
            pid,
            n_boot=n_boot,
            seed=seed,
        )
        record.update(
            comparable=True,
            auroc=b["auroc"][0],
            promoted_auroc=b["auroc"][1],
            difference=b["difference"],
            difference_ci=b["difference_ci"],
            n_boot=n_boot,
            resampled=b["resampled"],
        )
        _log(
            f"on its test patients: {version} fused AUROC {record['auroc']} vs promoted "
            f"{cur}'s {record['promoted_auroc']}, difference {record['difference']} "
            f"{record['difference_ci']}"
        )
    reg.write_vs_promoted(registry, name, version, record)
    return record


@dataclass(frozen=True)
class Budget:
    """What the operating points are chosen under (``trainer.operating``)."""

    pages: float  # pages per patient-day
    high_fraction: float
    stable_first_day: float  # share of patients without an outcome paged on their first day
    floor: float | None  # None: NEWS2 >= 5's sensitivity
    policy: PolicyConfig


def _budget(
    settings: Any | None,
    alert_budget: float | None,
    high_fraction: float | None,
    sensitivity_floor: float | None,
    stable_first_day_fraction: float | None = None,
) -> Budget:
    """The alert budget, its high fraction, the first-day budget of patients without an
    outcome, the sensitivity floor (None: NEWS2 >= 5's) and the policy whose hold times
    count the pages: the arguments, else ``settings``, else the defaults."""
    from trainer.operating import (
        DEFAULT_BUDGET,
        DEFAULT_HIGH_FRACTION,
        DEFAULT_STABLE_FIRST_DAY_FRACTION,
    )

    if settings is not None:
        return Budget(
            alert_budget or float(settings.alert_budget_pages_per_patient_day),
            high_fraction or float(settings.alert_budget_high_fraction),
            stable_first_day_fraction or float(settings.alert_budget_stable_first_day_fraction),
            settings.sensitivity_floor if sensitivity_floor is None else sensitivity_floor,
            PolicyConfig.from_settings(settings),
        )
    return Budget(
        alert_budget or DEFAULT_BUDGET,
        high_fraction or DEFAULT_HIGH_FRACTION,
        stable_first_day_fraction or DEFAULT_STABLE_FIRST_DAY_FRACTION,
        sensitivity_floor,
        PolicyConfig(),
    )


def _calibrate(
    calib: Sequence[PatientSeq],
    risks: Sequence[npt.NDArray[np.float64]],
    budget: Budget,
    horizon_h: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any], list[npt.NDArray[np.float64]]]:
    """On the calibration split: the ``fusion`` block (stacking on NEWS2) and the
    ``operating_points`` block, and the fused risks they were chosen on."""
    fit_ = fit_stacking(
        np.concatenate([p.news2 for p in calib]),
        np.concatenate(list(risks)),
        np.concatenate([p.y for p in calib]),
        np.concatenate([np.full(len(p.y), i) for i, p in enumerate(calib)]),
        seed=seed,
    )
    stacking = Stacking.from_dict(fit_)
    fused = stack(calib, risks, stacking)
    _log(
        f"stacking a={stacking.a:.4f} b={stacking.b:.4f} c={stacking.c:.4f} "
        f"(model term {'kept' if fit_['uses_model'] else 'dropped'})"
    )
    points = _choose_points(calib, fused, budget, horizon_h)
    fusion = {"imaging_weight": 0.5, "imaging_prior": 0.1, "stacking": fit_}
    return fusion, points, fused


def _choose_points(
    calib: Sequence[PatientSeq],
    fused: Sequence[npt.NDArray[np.float64]],
    budget: Budget,
    horizon_h: float,
) -> dict[str, Any]:
    """The ``operating_points`` block on the calibration split's fused risks."""
    from trainer.operating import choose_operating_points

    points = choose_operating_points(
        calib,
        fused,
        budget=budget.pages,
        high_fraction=budget.high_fraction,
        sensitivity_floor=budget.floor,
        stable_first_day_fraction=budget.stable_first_day,
        policy=budget.policy,
        window_h=horizon_h,
    )
    _log(
        f"thresholds medium {points['medium']:.4f} high {points['high']:.4f}: "
        f"{points['pages_per_patient_day']} pages/patient-day (upper bound "
        f"{points['upper_bound']}, budget {budget.pages}), patients without an outcome paged "
        f"on their first day {points['stable_first_day_fraction']} (upper bound "
        f"{points['stable_first_day_upper_bound']}, budget {budget.stable_first_day}), "
        f"sensitivity {points['sensitivity']} (lower bound {points['sensitivity_lower_bound']}, "
        f"NEWS2 >= 5 {points['news2_ge5_sensitivity']})"
    )
    return points


def _grounding(source: dict[str, Any]) -> dict[str, Any]:
    """The simulated cohort's vitals against the MIMIC-IV demo's (committed summary), with
    the hand-chosen simulator as before (:func:`trainer.grounding.training_grounding`)."""
    from trainer.grounding import training_grounding

    t0 = time.monotonic()
    out = training_grounding(source)
    if out.get("available"):
        a, b = out["after"], out["before"]
        _log(
            f"grounding vs MIMIC-IV demo: mean KS {b['ks_mean']} -> {a['ks_mean']}, Spearman "
            f"max |diff| {b['spearman_max_abs_diff']} -> {a['spearman_max_abs_diff']} "
            f"({time.monotonic() - t0:.1f}s)"
        )
    return out


def _sim_config(src: dict[str, Any]) -> SimConfig:
    """The simulator config a version's training data was drawn with; versions recorded
    before the simulator's grounding have no ``grounding``: the hand-chosen parameters."""
    return SimConfig(**{"grounding": "hand", **dict(src.get("config") or {})})


def _counting_policy(meta: dict[str, Any]) -> PolicyConfig:
    """The policy hold times the version's pages were counted with."""
    counting = (meta.get("operating_points") or {}).get("counting") or {}
    base = PolicyConfig()
    return replace(
        base,
        resolve_hold_s=float(counting.get("resolve_hold_s", base.resolve_hold_s)),
        cooldown_s=float(counting.get("cooldown_s", base.cooldown_s)),
        downgrade_hold_s=float(counting.get("downgrade_hold_s", base.downgrade_hold_s)),
    )


def _counting_news2_high(meta: dict[str, Any]) -> int | None:
    """The NEWS2 high trigger the version's pages were counted with (None: versions
    chosen before it was counted, on the model-risk trigger alone)."""
    counting = (meta.get("operating_points") or {}).get("counting") or {}
    value = counting.get("news2_high")
    return None if value is None else int(value)


def _split_summary(patients: Sequence[PatientSeq], seed: int) -> dict[str, Any]:
    return {
        "of": "val",
        "seed": seed,
        "method": "trainer.stacking.calibration_split",
        "patients": len(patients),
        "observations": int(sum(len(p.y) for p in patients)),
        "positive_observations": int(sum(int(p.y.sum()) for p in patients)),
        "patients_with_outcome": sum(p.outcome_h is not None for p in patients),
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
    onnx: Path | bytes, patients: Sequence[PatientSeq], hidden: int
) -> list[npt.NDArray[np.float64]]:
    """Risk per observation from the ONNX step model (a file or its bytes; ONNX Runtime
    only, no torch)."""
    import onnxruntime as ort

    source = onnx if isinstance(onnx, bytes) else str(onnx)
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
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
        int(src["n_patients"]),
        seed=int(src["seed"]),
        horizon_h=float(meta["label_horizon_h"]),
        config=_sim_config(src),
    )


def evaluate(
    registry: Path,
    version: str | None = None,
    name: str = MODEL_NAME,
    *,
    external: bool = True,
    settings: Any | None = None,
    against_promoted: bool = False,
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
    params = FusionParams.from_meta(meta)
    thresholds = Thresholds.from_meta(meta)
    seed = int((meta.get("training", {}).get("config") or {}).get("seed", 0))
    fused = None if params.stacking is None else stack(test, risks, params.stacking)
    metrics = eval_metrics(
        test,
        risks,
        horizon_h=float(meta["label_horizon_h"]),
        # a version without stacking (v1) fuses as its risk: fused figures only with it
        fused=fused,
        thresholds=None if thresholds is None else (thresholds.medium, thresholds.high),
        policy=_counting_policy(meta),
        seed=seed,
        news2_high=_counting_news2_high(meta),
    )
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
    if "fused" in metrics:
        stored_fused = (meta["metrics"].get("fused") or {}).get("auroc")
        out["stored_fused_auroc"] = stored_fused
        out["fused_auroc_matches"] = (
            stored_fused is not None
            and metrics["fused"]["auroc"] is not None
            and abs(float(metrics["fused"]["auroc"]) - float(stored_fused)) < 1e-3
        )
    if against_promoted:
        out["vs_promoted"] = compare_with_promoted(
            registry, name, version, test, risks if fused is None else fused, seed
        )
    if external:
        out["external"] = _external(registry, version, name)
    return out


def rechoose_operating_points(
    registry: Path,
    base: str | None = None,
    name: str = MODEL_NAME,
    *,
    settings: Any | None = None,
    version: str | None = None,
    alert_budget: float | None = None,
    high_fraction: float | None = None,
    sensitivity_floor: float | None = None,
    stable_first_day_fraction: float | None = None,
) -> dict[str, Any]:
    """Choose the operating points of ``base`` (default: the promoted version) again,
    without retraining, and register the result as a new version (not promoted).

    The base's training data are rebuilt from its recorded source (the fingerprint must
    match), its calibration split drawn again with its seed, its ONNX file run on it and
    its stacking on NEWS2 applied as recorded; the thresholds are chosen under today's
    budgets (as :func:`train`: the arguments, else ``settings``, else the defaults) and
    the test metrics recomputed at them. The new version is the base's ONNX file and
    metadata with the new ``operating_points`` and ``metrics`` and an
    ``operating_points_from`` block naming the base; like any candidate it is compared
    with the promoted version on its test patients (``vs_promoted.json``) for the
    promotion gate.
    """
    from trainer.report import report_html, report_markdown

    t0 = time.monotonic()
    base = base or reg.promoted_version(registry, name)
    if base is None:
        raise reg.RegistryError(f"no version of {name} given and none promoted")
    base_sha = reg.verify(registry, name, base)
    base_meta = reg.load_metadata(registry, name, base)
    if FusionParams.from_meta(base_meta).stacking is None:
        raise reg.RegistryError(f"{name} {base} has no stacking on NEWS2: retrain it instead")
    _log(f"rebuilding training data for {name} {base} ...")
    ds = _dataset_from_meta(base_meta, settings)
    if ds.fingerprint() != base_meta["training_data"]["fingerprint"]:
        raise reg.RegistryError(f"{name} {base}: the rebuilt training data differ from its own")
    seed = int((base_meta.get("training", {}).get("config") or {}).get("seed", 0))
    horizon_h = float(base_meta["label_horizon_h"])
    hidden = int(base_meta["hidden_size"])
    onnx_path = registry / name / base / "model.onnx"
    _, calib = calibration_split(ds.subset("val"), seed)
    stacking = Stacking.from_dict(base_meta["fusion"]["stacking"])
    budget = _budget(
        settings, alert_budget, high_fraction, sensitivity_floor, stable_first_day_fraction
    )
    points = _choose_points(
        calib, stack(calib, run_onnx(onnx_path, calib, hidden), stacking), budget, horizon_h
    )
    test = ds.subset("test")
    test_risks = run_onnx(onnx_path, test, hidden)
    metrics = _test_metrics(test, test_risks, stacking, points, budget.policy, horizon_h, seed)
    version = version or reg.next_version(registry, name)
    meta = reg.derived_metadata(
        base_meta,
        operating_points=points,
        metrics=metrics,
        operating_points_from={
            "base_version": base,
            "base_sha256": base_sha,
            "base_operating_points": {
                k: (base_meta.get("operating_points") or {}).get(k) for k in ("medium", "high")
            },
            "changed": "operating_points and metrics; network, stacking and data as the base",
        },
    )
    meta_named = {**meta, "name": name, "version": version}
    path = reg.write_version(
        registry,
        name,
        version,
        onnx_path.read_bytes(),
        meta,
        report_markdown(metrics, meta_named),
        report_html(metrics, meta_named),
    )
    vs = compare_with_promoted(
        registry, name, version, test, stack(test, test_risks, stacking), seed
    )
    total_s = round(time.monotonic() - t0, 1)
    _log(f"registered {name} {version} ({base}'s network, operating points re-chosen) at {path}")
    return {
        "name": name,
        "version": version,
        "base": base,
        "path": str(path),
        "operating_points": points,
        "metrics": {"fused_vs_news2": metrics["fused_vs_news2"], "operating": metrics["operating"]},
        "vs_promoted": vs,
        "seconds_total": total_s,
    }


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
    pages_budget: float = reg.DEFAULT_PAGES_BUDGET,
    high_fraction: float = reg.DEFAULT_HIGH_FRACTION,
    sensitivity_floor: float | None = None,
    force: bool = False,
    settings: Any | None = None,
    min_shadow_h: float = 0.0,
) -> dict[str, Any]:
    """Gate and promote ``version``; with ``settings`` also publish on ``control``."""
    out = reg.promote(
        registry,
        name,
        version,
        alert_budget=alert_budget,
        pages_budget=pages_budget,
        high_fraction=high_fraction,
        sensitivity_floor=sensitivity_floor,
        force=force,
        min_shadow_h=min_shadow_h,
    )
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
                    # the lung-nodule CNN's test AUROC is at the top of its metrics
                    "auroc": m.get("model", {}).get("auroc", m.get("auroc")),
                    "fused_auroc": (m.get("fused") or {}).get("auroc"),
                    "news2_auroc": m.get("news2", {}).get("auroc"),
                    "pages_per_patient_day": (meta.get("operating_points") or {}).get(
                        "pages_per_patient_day"
                    ),
                    "alerts_per_patient_day": m.get("model", {}).get("alerts_per_patient_day"),
                }
            )
    return rows
