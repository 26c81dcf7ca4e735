"""Recalibration on a hospital's export (``wardwatch train --export``, ``docs/validation.md``).

A registered version (the *base*, by default the promoted one) keeps its network and is
refitted to the export: the stacking on NEWS2 (``a + b · NEWS2 + c · logit(p_model)``,
:func:`trainer.stacking.fit_stacking`, the model's term dropped when it does not help on
cross-fitting) and the operating points under the alert budget
(:func:`trainer.operating.choose_operating_points`), both on the **fit patients**; the
figures are those of ``wardwatch validate`` on the **held-out patients** (whole patients,
a seeded split stratified by outcome), for the base version and for the new one, each
replayed through the worker's scoring path (:mod:`trainer.validation`). Nothing here
scores a patient another way.

The new version (the registry's next) is the base's ONNX file and metadata with the new
``fusion.stacking`` and ``operating_points``, held-out ``metrics``, and a
``recalibration`` block: the base version, the export's fingerprint, the task, the split
(seed, fraction, the SHA-256 of the held-out patient ids, never the ids) and the
held-out figures of both versions, which the promotion gate reads
(:func:`trainer.registry.gate`).

Torch-free (ONNX Runtime through the worker's code).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from alerts import PolicyConfig
from models.fusion import FusionParams, Stacking, Thresholds, fuse_arrays
from models.registry import load_metadata, promoted_version, version_dir
from models.runtime import DeteriorationModel
from models.session import choose_providers
from trainer import registry as reg
from trainer.dataset import PatientSeq
from trainer.operating import choose_operating_points, operating_summary
from trainer.report import operating_lines, stacking_lines
from trainer.stacking import fit_stacking
from trainer.validation.evaluate import task_points
from trainer.validation.html import report_html
from trainer.validation.metrics import auroc, bootstrap
from trainer.validation.run import find_tasks, replay_task, task_entry
from trainer.validation.scoring import Replayed
from trainer.validation.task import Task
from wardwatch.settings import Settings

__all__ = [
    "DEFAULT_TEST_FRACTION",
    "Split",
    "export_fingerprint",
    "fit_points",
    "ids_sha256",
    "patient_series",
    "recalibrate_export",
    "select_task",
    "split_patients",
    "subset_task",
]

DEFAULT_TEST_FRACTION = 0.3
_H_MS = 3_600_000
_SPLIT_TAG = 0x52454341  # "RECA": this split's own stream of the seed
F = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Split:
    """Whole patients, fit or held out (both sorted)."""

    fit: list[str]
    held_out: list[str]
    seed: int
    test_fraction: float
    stratified: bool


def split_patients(
    patients: Iterable[str], positives: Iterable[str], *, seed: int, test_fraction: float
) -> Split:
    """A seeded patient-level split: within each outcome stratum (with and without), the
    sorted ids permuted and ``round(test_fraction · n)`` of them held out, at least one
    and at most ``n - 1`` where the stratum has two or more (stratified); a stratum of
    one goes to the fit patients. The same ids, positives, seed and fraction give the
    same split."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be in (0, 1), got {test_fraction}")
    every = sorted(set(patients))
    pos = set(positives) & set(every)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_TAG]))
    fit: list[str] = []
    held: list[str] = []
    stratified = True
    for stratum in (sorted(pos), [p for p in every if p not in pos]):
        n = len(stratum)
        if n == 0:
            continue
        k = int(round(test_fraction * n))
        if n >= 2:
            k = min(max(k, 1), n - 1)
        else:
            k, stratified = 0, False
        order = [stratum[int(i)] for i in rng.permutation(n)]
        held += order[:k]
        fit += order[k:]
    return Split(sorted(fit), sorted(held), seed, test_fraction, stratified and bool(pos))


def ids_sha256(ids: Iterable[str]) -> str:
    """SHA-256 of the sorted ids, one a line: names a set of patients without listing it."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def export_fingerprint(folder: Path) -> dict[str, Any]:
    """SHA-256 over the export's files (each relative path and its bytes, in path order)."""
    root = folder if folder.is_dir() else folder.parent
    files = sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return {"sha256": h.hexdigest(), "files": len(files)}


def subset_task(task: Task, patients: Iterable[str]) -> Task:
    """``task`` restricted to ``patients``: their messages, labels, onsets and contexts."""
    keep = set(patients)
    return replace(
        task,
        messages=[m for m in task.messages if m.patient in keep],
        patients=[p for p in task.patients if p in keep],
        points=[p for p in task.points if p.patient in keep],
        onsets={k: v for k, v in task.onsets.items() if k in keep},
        outcome_ms={k: v for k, v in task.outcome_ms.items() if k in keep},
        contexts={k: v for k, v in task.contexts.items() if k in keep},
        notes=list(task.notes),
    )


def fit_points(task: Task, rep: Replayed) -> tuple[F, F, F, npt.NDArray[np.str_]]:
    """The observations the stacking is fitted on, per scored hour: NEWS2 total, the
    model's risk, the label and the patient (those with both scores). Hourly and horizon
    tasks: their labelled points (the score available at each). A stay task: every
    scored observation of the stay's window, each with the stay's label (the fused risk
    the policy reads every hour then estimates the stay's outcome)."""
    news2: list[float] = []
    risk: list[float] = []
    y: list[float] = []
    who: list[str] = []
    if task.kind == "stay":
        for p in task.points:
            s = rep.scores.get(p.patient)
            if s is None or s.risk is None:
                continue
            sel = (s.ts <= p.t_ms) & (s.ts >= p.t_ms - task.window_ms)
            news2 += s.news2[sel].tolist()
            risk += s.risk[sel].tolist()
            y += [float(p.label)] * int(sel.sum())
            who += [p.patient] * int(sel.sum())
    else:
        pts = task_points(task, rep)
        news2, risk, y, who = pts.news2, pts.risk, [float(v) for v in pts.label], pts.patient
    n2, r, yy = (np.asarray(v, dtype=np.float64) for v in (news2, risk, y))
    ok = np.isfinite(n2) & np.isfinite(r)
    return n2[ok], r[ok], yy[ok], np.asarray(who, dtype=np.str_)[ok]


def _outcome_ms(task: Task, pid: str) -> int | None:
    """When the patient's outcome counts for the operating points' sensitivity."""
    if task.kind == "horizon":
        return task.outcome_ms.get(pid)
    if task.kind == "hourly":
        return task.onsets.get(pid)
    return next((p.t_ms for p in task.points if p.patient == pid and p.label), None)


def patient_series(
    task: Task, rep: Replayed, patients: Sequence[str]
) -> tuple[list[PatientSeq], list[F], list[F]]:
    """Each patient's scored observations (for a horizon task, those before the outcome)
    as :class:`~trainer.dataset.PatientSeq` for :mod:`trainer.operating` (the times, the
    NEWS2 total, 0 when nothing was scoreable as the worker fuses it, and the outcome
    time), with the model's risk (NaN: none) and the NEWS2 totals, per patient."""
    seqs: list[PatientSeq] = []
    risks: list[F] = []
    totals: list[F] = []
    for pid in patients:
        s = rep.scores.get(pid)
        if s is None or not len(s.ts):
            continue
        sel = np.ones(len(s.ts), dtype=bool)
        cut = task.outcome_ms.get(pid) if task.kind == "horizon" else None
        if cut is not None:
            sel = s.ts < cut
        if not sel.any():
            continue
        ts = s.ts[sel]
        t0 = int(ts[0])
        n2 = np.nan_to_num(s.news2[sel], nan=0.0)
        out = _outcome_ms(task, pid)
        seqs.append(
            PatientSeq(
                patient_id=pid,
                x=np.zeros((len(ts), 0), dtype=np.float32),
                y=np.zeros(len(ts), dtype=np.int8),
                news2=n2.astype(np.int16),
                t_h=(ts - t0) / _H_MS,
                outcome_h=None if out is None else (out - t0) / _H_MS,
                spo2_scale=int(task.contexts.get(pid, {}).get("spo2_scale") or 1),
            )
        )
        risks.append(
            s.risk[sel].astype(np.float64) if s.risk is not None else np.full(len(ts), np.nan)
        )
        totals.append(n2)
    return seqs, risks, totals


def select_task(export: Path, name: str | None, *, horizon_h: float = 12.0) -> Task:
    """The export's task ``name`` (needed when the export has more than one)."""
    tasks = find_tasks(export, horizon_h=horizon_h)
    if name is None:
        if len(tasks) > 1:
            names = ", ".join(t.name for t in tasks)
            raise ValueError(f"{export} has {len(tasks)} tasks ({names}): name one with --task")
        return tasks[0]
    for t in tasks:
        if t.name == name:
            return t
    raise ValueError(f"{export} has no task {name!r} ({', '.join(t.name for t in tasks)})")


def _value(block: dict[str, Any] | None, metric: str = "auroc") -> dict[str, Any] | None:
    if not block:
        return None
    m = block[metric]
    return {"value": m["value"], "ci": m["ci"]}


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    """The figures of one held-out report entry that the metadata keeps."""
    d = entry["discrimination"]
    cal = entry.get("calibration") or {}
    return {
        "news2_auroc": _value(d["news2"]),
        "fused_auroc": _value(d.get("fused")),
        "fused_auprc": _value(d.get("fused"), "auprc"),
        "fused_minus_news2": (d.get("difference") or {}).get("auroc"),
        "ece": cal.get("ece"),
        "brier": cal.get("brier"),
        "pages_per_patient_day": entry["alerts"].get("pages_per_patient_day"),
        "alerts_per_patient_day": entry["alerts"].get("alerts_per_patient_day"),
        "sensitivity": entry["sensitivity"].get("sensitivity"),
        "sensitivity_patients": entry["sensitivity"].get("sensitivity_patients"),
    }


def _versus_base(
    task: Task, base: Replayed, new: Replayed, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """Recalibrated − base fused AUROC on the same held-out points, paired bootstrap."""
    pb, pn = task_points(task, base), task_points(task, new)
    if (pb.patient, pb.t_ms) != (pn.patient, pn.t_ms):
        return None
    fb, fn, n2 = (np.asarray(v, dtype=np.float64) for v in (pb.fused, pn.fused, pb.news2))
    ok = np.isfinite(fb) & np.isfinite(fn) & np.isfinite(n2)
    y = np.asarray(pb.label, dtype=np.float64)[ok]
    if not len(y) or y.min() == y.max():
        return None
    who = [p for p, k in zip(pb.patient, ok.tolist(), strict=True) if k]
    index = {p: i for i, p in enumerate(sorted(set(who)))}
    units = np.array([index[p] for p in who], dtype=np.intp)
    b = bootstrap(
        y,
        {"recalibrated": fn[ok], "base": fb[ok]},
        units,
        n=n_boot,
        seed=seed,
        paired=("recalibrated", "base"),
    )
    out: dict[str, Any] = b["difference"]["auroc"]
    return out


def _model_auroc(task: Task, rep: Replayed) -> float | None:
    pts = task_points(task, rep)
    r, n2 = np.asarray(pts.risk, dtype=np.float64), np.asarray(pts.news2, dtype=np.float64)
    ok = np.isfinite(r) & np.isfinite(n2)
    v = auroc(np.asarray(pts.label, dtype=np.float64)[ok], r[ok])
    return None if v is None else round(v, 4)


def _markdown(meta: dict[str, Any]) -> str:
    rc = meta["recalibration"]
    held = rc["held_out"]
    base, new = held["base"], held["recalibrated"]
    sp = rc["split"]

    def ci(m: dict[str, Any] | None) -> str:
        if not m or m.get("value") is None:
            return "n/a"
        c = m.get("ci")
        return f"{m['value']:.3f}" + (f" [{c[0]:.3f}, {c[1]:.3f}]" if c else "")

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    diff = held.get("recalibrated_minus_base")
    lines = [
        f"# {meta['name']} {meta['version']}: {rc['base_version']} recalibrated on an export",
        "",
        f"- created: {meta['created_at']}",
        f"- export: task `{rc['task']}` ({rc['export']['format']}), fingerprint "
        f"`{rc['export']['fingerprint']}` ({rc['export']['files']} files)",
        f"- split: whole patients, seed {sp['seed']}, {sp['test_fraction']:g} held out "
        f"({'stratified by outcome' if sp['stratified'] else 'not stratified'}): "
        f"{sp['fit_patients']} fit ({sp['fit_positive_patients']} with the outcome), "
        f"{sp['held_out_patients']} held out ({sp['held_out_positive_patients']}); held-out "
        f"ids SHA-256 `{sp['held_out_ids_sha256']}`",
        f"- network: {rc['base_version']}'s ONNX file unchanged (sha256 `{meta['sha256']}`)",
        f"- code version: {meta.get('code_version', 'n/a')}",
        "",
        *stacking_lines(meta.get("fusion"), split="fit patients of the export"),
        *operating_lines(meta.get("operating_points"), held.get("operating"), test_name="held out"),
        "## Held-out patients, replayed through the worker's scoring path",
        "",
        f"Label: {rc['label']}. NEWS2 is partial where the export lacks a parameter "
        "(report.html gives the shares).",
        "",
        "| | NEWS2 | base fused | recalibrated fused |",
        "|---|---|---|---|",
        f"| AUROC [95 % CI] | {ci(new['news2_auroc'])} | {ci(base['fused_auroc'])} "
        f"| {ci(new['fused_auroc'])} |",
        f"| ECE | | {f(base['ece'])} | {f(new['ece'])} |",
        f"| pages per patient-day | | {f(base['pages_per_patient_day'])} "
        f"| {f(new['pages_per_patient_day'])} |",
        f"| sensitivity (points) | | {f(base['sensitivity'])} | {f(new['sensitivity'])} |",
        "",
        "Recalibrated − base fused AUROC on the same points: "
        + (ci(diff) if diff else "n/a")
        + ". Laboratory values in the export are not used (the model has no laboratory "
        "inputs).",
        "",
    ]
    return "\n".join(lines)


def recalibrate_export(
    export: Path,
    settings: Settings,
    *,
    base: str | None = None,
    task_name: str | None = None,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    n_boot: int = 1000,
    horizon_h: float = 12.0,
    progress: IO[str] | None = sys.stderr,
) -> dict[str, Any]:
    """Recalibrate ``base`` (default: the promoted version) on ``export`` and register the
    result as the registry's next version (not promoted). Returns the new version, its
    stacking, operating points and held-out figures, and where the report is."""
    root = settings.resolved_model_registry()
    name = settings.model_name
    base = base or promoted_version(root, name)
    if base is None:
        raise ValueError(f"no promoted version of {name!r} in {root}: name one with --base")
    task = select_task(export, task_name, horizon_h=horizon_h)
    split = split_patients(task.patients, task.positives, seed=seed, test_fraction=test_fraction)
    fit_task, held_task = subset_task(task, split.fit), subset_task(task, split.held_out)
    if not fit_task.positives or len(fit_task.positives) == len(fit_task.patients):
        raise ValueError(f"{task.name}: the fit patients have one class only; nothing to fit")
    model = DeteriorationModel.from_registry(
        root, name, base, providers=choose_providers(settings.onnx_provider)
    )
    base_meta = load_metadata(root, name, base)
    policy = PolicyConfig.from_settings(settings)

    def log(msg: str) -> None:
        if progress:
            print(f"wardwatch train --export: {msg}", file=progress, flush=True)

    # the fit patients, replayed with the base version: the model's risk and NEWS2
    rep_fit = replay_task(fit_task, settings, model)
    n2, risk, y, who = fit_points(fit_task, rep_fit)
    if not len(y) or y.min() == y.max():
        raise ValueError(f"{task.name}: the fit patients' scored points have one class only")
    stacking_fit = fit_stacking(n2, risk, y, who, seed=seed)
    stacking = Stacking.from_dict(stacking_fit)
    seqs, risks, totals = patient_series(fit_task, rep_fit, split.fit)
    fused = [fuse_arrays(r, t, stacking) for r, t in zip(risks, totals, strict=True)]
    points = choose_operating_points(
        seqs,
        fused,
        budget=float(settings.alert_budget_pages_per_patient_day),
        high_fraction=float(settings.alert_budget_high_fraction),
        sensitivity_floor=settings.sensitivity_floor,
        stable_first_day_fraction=float(settings.alert_budget_stable_first_day_fraction),
        policy=policy,
        window_h=task.window_ms / _H_MS,
        split="fit",
    )
    log(
        f"{task.name}: stacking a={stacking.a:.4f} b={stacking.b:.4f} c={stacking.c:.4f} on "
        f"{len(split.fit)} fit patients; thresholds medium {points['medium']:.4f} high "
        f"{points['high']:.4f}"
    )
    version = reg.next_version(root, name)
    fusion = {**(base_meta.get("fusion") or {}), "stacking": stacking_fit}
    candidate_meta = {**base_meta, "fusion": fusion, "operating_points": points}
    new_model = replace(
        model,
        version=version,
        meta=candidate_meta,
        fusion=FusionParams.from_meta(candidate_meta),
        thresholds=Thresholds.from_meta(candidate_meta),
    )
    # the held-out patients, replayed with each version: the same report as validate
    rep_base = replay_task(held_task, settings, model)
    rep_new = replay_task(held_task, settings, new_model)
    entry_base = task_entry(held_task, rep_base, n_boot=n_boot, seed=seed)
    entry_new = task_entry(held_task, rep_new, n_boot=n_boot, seed=seed)
    h_seqs, h_risks, h_totals = patient_series(held_task, rep_new, split.held_out)
    held_operating = operating_summary(
        h_seqs,
        [fuse_arrays(r, t, stacking) for r, t in zip(h_risks, h_totals, strict=True)],
        points["medium"],
        points["high"],
        policy,
        window_h=points["window_h"],
        alpha=points["alpha"],
    )
    held_base, held_new = _summary(entry_base), _summary(entry_new)
    versus_base = _versus_base(held_task, rep_base, rep_new, n_boot, seed)
    d_new = entry_new["discrimination"]
    diff = (d_new.get("difference") or {}).get("auroc") or {}
    model_auroc = _model_auroc(held_task, rep_base)
    metrics = {
        "source": f"held-out patients of the export (task {task.name})",
        "patients": len(split.held_out),
        "model": {"auroc": model_auroc},
        "news2": {"auroc": (held_new["news2_auroc"] or {}).get("value")},
        "fused": {
            "auroc": (held_new["fused_auroc"] or {}).get("value"),
            "auprc": (held_new["fused_auprc"] or {}).get("value"),
        },
        "fused_vs_news2": {
            "auroc": (held_new["fused_auroc"] or {}).get("value"),
            "ci": (held_new["fused_auroc"] or {}).get("ci"),
            "news2_auroc": (held_new["news2_auroc"] or {}).get("value"),
            "news2_ci": (held_new["news2_auroc"] or {}).get("ci"),
            "difference": diff.get("value"),
            "difference_ci": diff.get("ci"),
            "n_boot": n_boot,
            "patients": len(split.held_out),
            "resampled": "patients",
        },
        "fused_calibration": {"ece": held_new["ece"], "brier": held_new["brier"]},
        "operating": held_operating,
    }
    notes = []
    if held_new["fused_auroc"] is None or held_new["fused_auroc"]["value"] is None:
        notes.append(
            f"the {len(split.held_out)} held-out patients give one class only "
            f"({len(held_task.positives)} with the outcome): no held-out AUROC, so the gate "
            "cannot compare this version with its base and refuses it"
        )
    fingerprint = export_fingerprint(export)
    recal = {
        "base_version": base,
        "base_sha256": model.sha256,
        "export": {
            "format": task.source,
            "fingerprint": fingerprint["sha256"],
            "files": fingerprint["files"],
        },
        "task": task.name,
        "kind": task.kind,
        "label": task.label,
        "split": {
            "by": "patient",
            "seed": seed,
            "test_fraction": test_fraction,
            "stratified": split.stratified,
            "fit_patients": len(split.fit),
            "fit_positive_patients": len(fit_task.positives),
            "held_out_patients": len(split.held_out),
            "held_out_positive_patients": len(held_task.positives),
            "held_out_ids_sha256": ids_sha256(split.held_out),
        },
        "fit": {"observations": int(len(y)), "positive_observations": int(y.sum())},
        "held_out": {
            "base": held_base,
            "recalibrated": held_new,
            "base_fused_auroc": (held_base["fused_auroc"] or {}).get("value"),
            "recalibrated_minus_base": versus_base,
            "operating": held_operating,
            "bootstrap_resamples": n_boot,
        },
        "notes": notes,
    }
    meta = reg.derived_metadata(
        base_meta, fusion=fusion, operating_points=points, metrics=metrics, recalibration=recal
    )
    report = {
        "report": "wardwatch train --export",
        "report_version": 1,
        "export": {"path": str(export), "format": [task.source]},
        "model": {"name": name, "version": version, "sha256": model.sha256},
        "method": {"bootstrap_resamples": n_boot, "seed": seed, "ci": 0.95},
        "notes": [
            *notes,
            f"{version} is {base} recalibrated: the stacking on NEWS2 and the operating "
            f"points refitted on {len(split.fit)} fit patients; both versions replayed on "
            f"the {len(split.held_out)} held-out patients below.",
            "Laboratory values in the export are not used (the model has no laboratory inputs).",
        ],
        "tasks": {
            f"{task.name}: held out, base {base}": entry_base,
            f"{task.name}: held out, recalibrated {version}": entry_new,
        },
    }
    onnx_bytes = (version_dir(root, name, base) / "model.onnx").read_bytes()
    meta_for_md = {**meta, "name": name, "version": version, "sha256": model.sha256}
    path = reg.write_version(
        root, name, version, onnx_bytes, meta, _markdown(meta_for_md), report_html(report)
    )
    # the version loads as a worker would load it (sha256, metadata, smoke check)
    DeteriorationModel.from_registry(root, name, version, providers=["CPUExecutionProvider"])
    log(f"registered {name} {version} at {path}")
    return {
        "name": name,
        "version": version,
        "base": base,
        "path": str(path),
        "task": task.name,
        "stacking": {k: stacking_fit[k] for k in ("a", "b", "c", "uses_model")},
        "operating_points": {
            k: points[k]
            for k in (
                "medium",
                "high",
                "pages_per_patient_day",
                "upper_bound",
                "sensitivity",
                "sensitivity_lower_bound",
                "sensitivity_floor",
            )
        },
        "split": recal["split"],
        "notes": notes,
        "held_out": {
            "news2_auroc": held_new["news2_auroc"],
            "base_fused_auroc": held_base["fused_auroc"],
            "recalibrated_fused_auroc": held_new["fused_auroc"],
            "recalibrated_minus_base": versus_base,
            "ece": {"base": held_base["ece"], "recalibrated": held_new["ece"]},
            "pages_per_patient_day": {
                "base": held_base["pages_per_patient_day"],
                "recalibrated": held_new["pages_per_patient_day"],
            },
        },
    }
