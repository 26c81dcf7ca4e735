"""File-system model registry (no torch: workers and ops tools can import it).

Layout::

    <root>/<model_name>/<version>/model.onnx
    <root>/<model_name>/<version>/metadata.json
    <root>/<model_name>/<version>/report.md
    <root>/<model_name>/PROMOTED          # text: the promoted version

``metadata.json`` carries everything a worker needs to run the model and an auditor
needs to reproduce it: sha256 of ``model.onnx``, input/output names and shapes, hidden
size, feature names, normalization constants, label horizon, training data fingerprint,
metrics of the model and of NEWS2, ONNX parity figures and the code version.

Promotion is gated (:func:`gate`, :func:`promote`), one reason per rule that refuses:

* ONNX parity passed;
* the fused risk is not worse than NEWS2: refused when the whole 95 % paired-bootstrap
  interval of (fused − NEWS2) test AUROC is below 0 (a version without a fused risk, v1:
  its model's test AUROC must beat NEWS2's);
* its operating points hold the alert budget: refused when the 95 % upper bound of pages
  per patient-day on the calibration split exceeds the budget (or that of the high pages
  exceeds its share), or when the 95 % lower bound of the patient-level sensitivity is
  under the floor (NEWS2 >= 5's on the same patients, or a set floor); a version without
  operating points: its alerts per patient-day must be within ``alert_budget``;
* for operating points counted with NEWS2 >= 7's pages (``counting.news2_high``), the
  budget rules hold the model trigger's own pages (``model_trigger_alone``): NEWS2 >= 7
  pages the same with any model or none;
* it beats the promoted version's test AUROC (fused where both have one), measured on the
  same patients: :func:`trainer.workflows.train` (or ``wardwatch evaluate --model vN
  --against-promoted``) scores the promoted version on the candidate's test patients and
  stores the paired comparison in the candidate's ``vs_promoted.json``; the gate ranks by
  it when it names the promoted version's file (sha256). Without it, versions trained on
  different data (fingerprints differ) are refused rather than ranked by figures from two
  cohorts; on the same data the stored figures are compared. A version
  recalibrated on an export (``recalibration`` in its metadata, :mod:`trainer.recalibrate`)
  is compared with its base version's fused AUROC on the *same held-out patients* (kept
  in its metadata), and is refused unless its base is the promoted version; one whose
  refit dropped the model term (ranking as NEWS2) also passes this rule when the base's
  fused risk is not shown better than NEWS2 on those patients (the paired interval of
  base − NEWS2 reaches 0): falling back to NEWS2 then gives up nothing shown;
* a version whose operating points were chosen again (``operating_points_from``) has its
  base's risks, so no AUROC ranks it: it replaces the promoted version only when that is
  its base, with the same ONNX file (sha256) and stacking;
* with ``min_shadow_h`` > 0 (``promotion_min_shadow_h``): it ran in shadow beside the live
  model, recorded by ``wardwatch validate --shadow`` in its ``shadow.json``, over a window
  of at least that many hours, and its shadow pages per patient-day held the budget.

A lung-nodule CNN version (``kind: "ct-nodule-cnn"``, :mod:`trainer.imaging.train`) has
its own rules (:func:`_imaging_gate`): ONNX parity passed, its held-out AUROC is shown
better than chance (95 % interval above 0.5) and beats
the promoted version's on the same synthetic test volumes (or none is promoted).

The sensitivity floor rule says when it is untestable: with ``n`` patients with an
outcome, the one-sided lower bound is at most ``alpha ** (1 / n)`` (all detected); when
that is under the floor no operating point can show it, and the rule refuses with that
reason rather than a bound.

:func:`publish_promotion` announces a promotion on the Kafka ``control`` topic.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import wardwatch
from models.registry import (
    RegistryError,
    check_name,
    list_models,
    list_versions,
    load_metadata,
    promoted_version,
    sha256_file,
    verify,
    version_dir,
    version_key,
)

__all__ = [
    "DEFAULT_ALERT_BUDGET",
    "DEFAULT_HIGH_FRACTION",
    "DEFAULT_PAGES_BUDGET",
    "GateResult",
    "RegistryError",
    "code_version",
    "derived_metadata",
    "list_models",
    "list_versions",
    "load_metadata",
    "next_version",
    "promote",
    "promoted_version",
    "publish_promotion",
    "sha256_file",
    "verify",
    "write_version",
]

DEFAULT_ALERT_BUDGET = 1.0
"""Alerts per patient-day a version without operating points may produce."""
DEFAULT_PAGES_BUDGET = 0.3
"""Pages per patient-day (upper bound) a version's operating points may produce."""
DEFAULT_HIGH_FRACTION = 0.2
"""The share of that budget its high-priority pages may use."""


def code_version() -> dict[str, str]:
    """``wardwatch.__version__`` and the git commit of the source tree (or "unknown")."""
    commit = "unknown"
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if res.returncode == 0 and res.stdout.strip():
            commit = res.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"wardwatch": wardwatch.__version__, "git_commit": commit}


def next_version(root: Path, name: str) -> str:
    nums = [version_key(v)[0] for v in list_versions(root, name)]
    return f"v{max([0, *nums]) + 1}"


def write_version(
    root: Path,
    name: str,
    version: str,
    onnx_bytes: bytes,
    metadata: dict[str, Any],
    report_md: str,
    report_html: str | None = None,
) -> Path:
    """Write a new version (refuses to overwrite); fills in ``sha256``. Returns its dir."""
    d = root / check_name("model name", name) / check_name("version", version)
    if d.exists():
        raise RegistryError(f"{name} {version} already exists in {root}")
    tmp = d.with_name(f".{version}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    (tmp / "model.onnx").write_bytes(onnx_bytes)
    meta = {**metadata, "name": name, "version": version}
    meta["sha256"] = sha256_file(tmp / "model.onnx")
    (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (tmp / "report.md").write_text(report_md)
    if report_html is not None:
        (tmp / "report.html").write_text(report_html)
    tmp.rename(d)  # a reader never sees a half-written version
    return d


def derived_metadata(base_meta: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The metadata of a version made from ``base_meta``'s network without retraining (a
    recalibration, operating points chosen again): the base's, without its identity,
    metrics and provenance, with a new creation time and code version, and ``changes``."""
    # what a derivation records about itself is set by that derivation, never inherited
    drop = {
        "name",
        "version",
        "sha256",
        "metrics",
        "created_at",
        "code_version",
        "recalibration",
        "operating_points_from",
    }
    meta: dict[str, Any] = {k: v for k, v in base_meta.items() if k not in drop}
    meta.update(created_at=datetime.now(UTC).isoformat(), code_version=code_version(), **changes)
    return meta


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reasons: list[str]
    candidate: dict[str, Any]
    current: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "candidate": self.candidate,
            "current": self.current,
        }


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    m = meta.get("metrics", {})
    fused = m.get("fused") or {}
    return {
        "version": meta.get("version"),
        "auroc": m.get("model", {}).get("auroc"),
        "fused_auroc": fused.get("auroc"),
        "news2_auroc": m.get("news2", {}).get("auroc"),
        "fused_vs_news2": m.get("fused_vs_news2"),
        "alerts_per_patient_day": m.get("model", {}).get("alerts_per_patient_day"),
        "operating_points": meta.get("operating_points"),
        "recalibration": _recalibration(meta),
        "operating_points_from": meta.get("operating_points_from"),
        "stacking": (meta.get("fusion") or {}).get("stacking"),
        "sha256": meta.get("sha256"),
        "fingerprint": (meta.get("training_data") or {}).get("fingerprint"),
    }


def _recalibration(meta: dict[str, Any]) -> dict[str, Any] | None:
    """What the gate reads of a recalibrated version: its base and, on the same held-out
    patients, the base's fused AUROC."""
    rc = meta.get("recalibration")
    if not isinstance(rc, dict):
        return None
    held = rc.get("held_out") or {}
    stacking = (meta.get("fusion") or {}).get("stacking") or {}
    base_vs_news2 = ((held.get("base") or {}).get("fused_minus_news2") or {}).get("ci")
    return {
        "base_version": rc.get("base_version"),
        "task": rc.get("task"),
        "held_out_ids_sha256": (rc.get("split") or {}).get("held_out_ids_sha256"),
        "base_fused_auroc": held.get("base_fused_auroc"),
        # the refit dropped the model term: the fused risk ranks exactly as NEWS2
        "news2_only": bool(stacking) and stacking.get("c") == 0,
        "base_minus_news2_ci": base_vs_news2,
    }


def _promoted_rules(
    cand: dict[str, Any], current: dict[str, Any], cur_v: str
) -> list[tuple[str, bool, str]]:
    """Against the promoted version: its test AUROC, or, for a recalibrated version, its
    base's on the same held-out patients (and the base must be the promoted version)."""
    mine = _primary(cand)
    rc = cand.get("recalibration")
    same = None if rc is not None else _same_network_as(cand, current, cur_v)
    if same is not None:
        return [same]
    if rc is None:
        vs = cand.get("vs_promoted")
        if isinstance(vs, dict) and vs.get("promoted_version") == cur_v:
            if vs.get("promoted_sha256") != current.get("sha256"):
                why = f"vs_promoted.json was computed against another {cur_v} file"
                return [("beats_promoted", False, why)]
            if not vs.get("comparable"):
                why = f"not comparable with promoted {cur_v}: {vs.get('reason')}"
                return [("beats_promoted", False, why)]
            a, b = vs.get("auroc"), vs.get("promoted_auroc")
            return [
                (
                    "beats_promoted",
                    a is not None and (b is None or a > b),
                    f"fused AUROC {a} does not beat promoted {cur_v}'s {b} on the same "
                    f"{vs.get('test_patients')} test patients (difference "
                    f"{vs.get('difference')}, 95 % CI {vs.get('difference_ci')})",
                )
            ]
        fp_mine, fp_theirs = cand.get("fingerprint"), current.get("fingerprint")
        if fp_mine and fp_theirs and fp_mine != fp_theirs:
            why = (
                f"trained on other data than promoted {cur_v} (another cohort): their stored "
                f"AUROCs ({mine} vs {_primary(current)}) do not rank them; compare both on "
                f"the same patients with `wardwatch evaluate --model {cand.get('version')} --against-promoted`"
            )
            return [("beats_promoted", False, why)]
        theirs = _primary(current)
        return [
            (
                "beats_promoted",
                theirs is None or (mine is not None and mine > theirs),
                f"AUROC {mine} does not beat promoted {cur_v}'s {theirs}",
            )
        ]
    base, theirs = rc.get("base_version"), rc.get("base_fused_auroc")
    ci = rc.get("base_minus_news2_ci")
    # falling back to NEWS2 loses nothing shown: the base's fused risk is not better than
    # NEWS2 on the same held-out patients (its paired interval reaches 0 or below)
    fallback = bool(rc.get("news2_only")) and ci is not None and ci[0] is not None and ci[0] <= 0
    return [
        (
            "base_is_promoted",
            base == cur_v,
            f"recalibrated from {base}, but the promoted version is {cur_v}",
        ),
        (
            "beats_promoted",
            fallback or (mine is not None and theirs is not None and mine > theirs),
            f"fused AUROC {mine} on the held-out patients does not beat base {base}'s "
            f"{theirs} on the same patients"
            + (
                f", and the base is better than NEWS2 there (fused − NEWS2 95 % CI {ci})"
                if rc.get("news2_only")
                else ""
            ),
        ),
    ]


def _same_network_as(
    cand: dict[str, Any], current: dict[str, Any], cur_v: str
) -> tuple[str, bool, str] | None:
    """For a version whose operating points were chosen again from the promoted one
    (``operating_points_from``): its risks are the promoted version's, so no AUROC can
    rank the two; it may replace it when it is that network and stacking exactly, and
    then only its operating points differ, which the budget and floor rules judge. None:
    not such a version."""
    src = cand.get("operating_points_from")
    if not isinstance(src, dict):
        return None
    same = (
        src.get("base_version") == cur_v
        and src.get("base_sha256") == current.get("sha256") == cand.get("sha256")
        and cand.get("stacking") == current.get("stacking")
    )
    return (
        "beats_promoted",
        same,
        f"operating points chosen again from {src.get('base_version')}, but the promoted "
        f"version is {cur_v}"
        if src.get("base_version") != cur_v
        else f"operating points chosen again from {cur_v}, but its network or stacking "
        f"differ from the promoted {cur_v}'s",
    )


def _primary(summary: dict[str, Any]) -> float | None:
    """The AUROC a version is ranked by: its fused risk's, else its model's (v1)."""
    fused = summary.get("fused_auroc")
    return summary["auroc"] if fused is None else fused


def _auroc_rules(cand: dict[str, Any]) -> list[tuple[str, bool, str]]:
    cmp_ = cand.get("fused_vs_news2")
    if cmp_ is None:  # no fused risk (v1): the model against NEWS2 as before
        auroc, news2 = cand["auroc"], cand["news2_auroc"]
        ok = news2 is None or auroc > news2
        return [("auroc_vs_news2", ok, f"AUROC {auroc} does not beat NEWS2's {news2}")]
    ci = cmp_.get("difference_ci")
    ok = ci is not None and ci[1] >= 0
    return [
        (
            "fused_vs_news2",
            ok,
            f"fused AUROC {cmp_.get('auroc')} is below NEWS2's {cmp_.get('news2_auroc')} "
            f"beyond its interval: difference {cmp_.get('difference')}, 95 % CI {ci}",
        )
    ]


def _budget_rules(
    cand: dict[str, Any],
    alert_budget: float,
    pages_budget: float,
    high_fraction: float,
    sensitivity_floor: float | None,
) -> list[tuple[str, bool, str]]:
    op = cand.get("operating_points")
    if op is None:  # no operating points (v1): alerts at its rate-matched threshold
        apd = cand["alerts_per_patient_day"]
        ok = apd is not None and apd <= alert_budget
        return [
            ("alert_budget", ok, f"alerts per patient-day {apd} over the budget {alert_budget}")
        ]
    # counted with NEWS2 >= 7's pages (``counting.news2_high``), the bounds the budget holds
    # are of the model's own pages, the trigger it answers for: NEWS2 >= 7 pages the same
    # with any model or none (the combined figures are the operating points' choice)
    own = op.get("model_trigger_alone")
    src = own if isinstance(own, dict) else op
    ub, high_ub = src.get("upper_bound"), src.get("high_upper_bound")
    days = op.get("patient_days")
    rate = (
        round(own["pages"] / days, 4)
        if isinstance(own, dict) and isinstance(days, int | float) and days > 0
        else op.get("pages_per_patient_day")
    )
    high_rate = (
        round(own["high_pages"] / days, 4)
        if isinstance(own, dict) and isinstance(days, int | float) and days > 0
        else op.get("high_pages_per_patient_day")
    )
    whose = "the model's own pages" if isinstance(own, dict) else "pages"
    high_budget = pages_budget * high_fraction
    floor = op.get("news2_ge5_sensitivity") if sensitivity_floor is None else sensitivity_floor
    source = "NEWS2 >= 5's" if sensitivity_floor is None else "the set floor"
    lb = op.get("sensitivity_lower_bound")
    n_out = op.get("patients_with_outcome")
    alpha = float(op.get("alpha", 0.05))
    known = isinstance(n_out, int) and not isinstance(n_out, bool)
    best = alpha ** (1.0 / n_out) if known and n_out > 0 else None
    if known and floor is not None and (best is None or best < floor):
        floor_rule = (
            "sensitivity_floor",
            False,
            f"sensitivity floor untestable: with {n_out or 0} patients with an outcome the "
            f"{1 - alpha:.0%} lower bound of the sensitivity is at most "
            f"{'n/a' if best is None else round(best, 4)} even if every one is detected, "
            f"under {source} {floor}",
        )
    else:
        floor_rule = (
            "sensitivity_floor",
            lb is not None and floor is not None and lb >= floor,
            f"sensitivity {op.get('sensitivity')}: lower bound {lb} under {source} {floor}",
        )
    return [
        (
            "pages_budget",
            ub is not None and ub <= pages_budget,
            f"{whose} per patient-day {rate}: upper bound {ub} over the budget {pages_budget}",
        ),
        (
            "high_pages_budget",
            high_ub is not None and high_ub <= high_budget + 1e-12,
            f"high {whose} per patient-day {high_rate}: upper bound "
            f"{high_ub} over {high_fraction:g} of the budget ({high_budget:g})",
        ),
        floor_rule,
    ]


VS_PROMOTED = "vs_promoted.json"


def write_vs_promoted(root: Path, name: str, version: str, record: dict[str, Any]) -> Path:
    """Store a version's comparison with the promoted version on the same test patients
    (beside ``shadow.json``; the version's own files are never rewritten)."""
    path = version_dir(root, name, version) / VS_PROMOTED
    tmp = path.with_name(f".{VS_PROMOTED}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_vs_promoted(root: Path, name: str, version: str) -> dict[str, Any] | None:
    """The stored same-patients comparison, or None when there is none (or unreadable)."""
    try:
        record = json.loads((version_dir(root, name, version) / VS_PROMOTED).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _shadow_rules(
    root: Path, name: str, version: str, min_shadow_h: float, pages_budget: float
) -> list[tuple[str, bool, str]]:
    """A shadow period, when one is required: the version's ``shadow.json`` covers at
    least ``min_shadow_h`` hours and its shadow pages per patient-day hold the budget."""
    if min_shadow_h <= 0:
        return []
    path = version_dir(root, name, version) / "shadow.json"
    try:
        record = json.loads(path.read_text())
        hours = float(record["window"]["hours"])
        ppd = record.get("shadow_pages_per_patient_day")
    except FileNotFoundError:
        why = (
            f"no shadow record: run {version} in shadow (WARDWATCH_SHADOW_MODEL_VERSION) for "
            f"at least {min_shadow_h:g} h, then `wardwatch validate --shadow`"
        )
        return [("shadow_period", False, why)]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [("shadow_period", False, f"shadow record {path} unreadable: {exc}")]
    return [
        (
            "shadow_period",
            hours >= min_shadow_h and record.get("version") == version,
            f"shadow record covers {hours:g} h of {record.get('version')}, under the "
            f"{min_shadow_h:g} h required",
        ),
        (
            "shadow_pages_budget",
            isinstance(ppd, int | float) and ppd <= pages_budget,
            f"shadow pages per patient-day {ppd} over the budget {pages_budget}",
        ),
    ]


IMAGING_KIND = "ct-nodule-cnn"
"""``metadata["kind"]`` of the lung-nodule CNN (:mod:`trainer.imaging.train`)."""


def _imaging_test_set(meta: dict[str, Any]) -> dict[str, Any]:
    """What defines an imaging version's synthetic test volumes."""
    cfg = (meta.get("training") or {}).get("config") or {}
    keys = ("seed", "n_train", "n_val", "n_test", "shape")
    return {k: cfg.get(k) for k in keys}


def _imaging_gate(root: Path, name: str, version: str, meta: dict[str, Any]) -> GateResult:
    """The gate of a lung-nodule CNN version: ONNX parity passed, its held-out AUROC's
    95 % interval is above 0.5 (better than chance), and that AUROC beats the promoted version's (or none is promoted), ranked by the paired comparison on
    the same test volumes stored at training (``vs_promoted``) when it names the promoted
    file, else by the stored AUROCs only when both were tested on the same synthetic
    volumes (same seed and split sizes)."""
    m = meta.get("metrics") or {}
    cand: dict[str, Any] = {
        "version": version,
        "kind": IMAGING_KIND,
        "auroc": m.get("auroc"),
        "auroc_ci95": m.get("auroc_ci95"),
        "sha256": meta.get("sha256"),
        "vs_promoted": meta.get("vs_promoted"),
    }
    if cand["auroc"] is None:
        return GateResult(False, ["candidate has no test AUROC"], cand, None)
    parity = meta.get("parity", {})
    ci = cand["auroc_ci95"]
    rules: list[tuple[str, bool, str]] = [
        ("onnx_parity", bool(parity.get("passed")), f"ONNX parity not passed: {parity}"),
        (
            "auroc_above_chance",
            isinstance(ci, list) and len(ci) == 2 and ci[0] is not None and ci[0] > 0.5,
            f"AUROC {cand['auroc']} is not shown better than chance: 95 % CI {ci}",
        ),
    ]
    current: dict[str, Any] | None = None
    cur_v = promoted_version(root, name)
    if cur_v is not None:
        cur_meta = load_metadata(root, name, cur_v)
        current = {
            "version": cur_v,
            "auroc": (cur_meta.get("metrics") or {}).get("auroc"),
            "sha256": cur_meta.get("sha256"),
        }
        vs = meta.get("vs_promoted")
        if cur_v == version:
            rules.append(("not_promoted", False, f"{version} is already promoted"))
        elif isinstance(vs, dict) and vs.get("promoted_version") == cur_v:
            if vs.get("promoted_sha256") != current["sha256"]:
                why = f"the comparison was computed against another {cur_v} file"
                rules.append(("beats_promoted", False, why))
            elif not vs.get("comparable"):
                why = f"not comparable with promoted {cur_v}: {vs.get('reason')}"
                rules.append(("beats_promoted", False, why))
            else:
                a, b = vs.get("auroc"), vs.get("promoted_auroc")
                rules.append(
                    (
                        "beats_promoted",
                        a is not None and (b is None or a > b),
                        f"AUROC {a} does not beat promoted {cur_v}'s {b} on the same "
                        f"{vs.get('test_volumes')} test volumes (difference "
                        f"{vs.get('difference')}, 95 % CI {vs.get('difference_ci95')})",
                    )
                )
        elif _imaging_test_set(meta) != _imaging_test_set(cur_meta):
            why = (
                f"tested on other synthetic volumes than promoted {cur_v} and not compared "
                f"with it on the same ones: train it again while {cur_v} is promoted"
            )
            rules.append(("beats_promoted", False, why))
        else:
            a, b = cand["auroc"], current["auroc"]
            rules.append(
                (
                    "beats_promoted",
                    b is None or a > b,
                    f"AUROC {a} does not beat promoted {cur_v}'s {b}",
                )
            )
    reasons = [why for _, ok, why in rules if not ok]
    cand["rules"] = {rule: ok for rule, ok, _ in rules}
    return GateResult(not reasons, reasons or ["all gates passed"], cand, current)


def gate(
    root: Path,
    name: str,
    version: str,
    *,
    alert_budget: float = DEFAULT_ALERT_BUDGET,
    pages_budget: float = DEFAULT_PAGES_BUDGET,
    high_fraction: float = DEFAULT_HIGH_FRACTION,
    sensitivity_floor: float | None = None,
    min_shadow_h: float = 0.0,
) -> GateResult:
    """Decide whether ``version`` may be promoted (see module docstring): one reason per
    rule that refuses, or "all gates passed"; ``rules`` has every rule's verdict."""
    meta = load_metadata(root, name, version)
    if meta.get("kind") == IMAGING_KIND:
        return _imaging_gate(root, name, version, meta)
    cand = _summary(meta)
    cand["vs_promoted"] = read_vs_promoted(root, name, version)
    if cand["auroc"] is None:
        return GateResult(False, ["candidate has no test AUROC"], cand, None)
    parity = meta.get("parity", {})
    rules: list[tuple[str, bool, str]] = [
        ("onnx_parity", bool(parity.get("passed")), f"ONNX parity not passed: {parity}"),
        *_auroc_rules(cand),
        *_budget_rules(cand, alert_budget, pages_budget, high_fraction, sensitivity_floor),
        *_shadow_rules(root, name, version, min_shadow_h, pages_budget),
    ]
    current: dict[str, Any] | None = None
    cur_v = promoted_version(root, name)
    if cur_v is not None:
        current = _summary(load_metadata(root, name, cur_v))
        if cur_v == version:
            rules.append(("not_promoted", False, f"{version} is already promoted"))
        else:
            rules += _promoted_rules(cand, current, cur_v)
    elif cand["recalibration"] is not None:
        base = cand["recalibration"].get("base_version")
        rules.append(
            ("base_is_promoted", False, f"recalibrated from {base}, but no version is promoted")
        )
    reasons = [why for _, ok, why in rules if not ok]
    passed = not reasons
    cand["rules"] = {rule: ok for rule, ok, _ in rules}
    return GateResult(passed, reasons or ["all gates passed"], cand, current)


def promote(
    root: Path,
    name: str,
    version: str,
    *,
    alert_budget: float = DEFAULT_ALERT_BUDGET,
    pages_budget: float = DEFAULT_PAGES_BUDGET,
    high_fraction: float = DEFAULT_HIGH_FRACTION,
    sensitivity_floor: float | None = None,
    force: bool = False,
    min_shadow_h: float = 0.0,
) -> dict[str, Any]:
    """Verify ``version``, apply the gate and, if it passes (or ``force``), point
    ``PROMOTED`` at it. Returns the gate decision plus ``promoted`` and ``sha256``."""
    digest = verify(root, name, version)
    result = gate(
        root,
        name,
        version,
        alert_budget=alert_budget,
        pages_budget=pages_budget,
        high_fraction=high_fraction,
        sensitivity_floor=sensitivity_floor,
        min_shadow_h=min_shadow_h,
    )
    out = result.to_dict()
    out.update({"name": name, "version": version, "sha256": digest, "promoted": False})
    if result.passed or force:
        pointer = root / name / "PROMOTED"
        tmp = pointer.with_name(f".PROMOTED.tmp-{os.getpid()}")
        tmp.write_text(version + "\n")
        tmp.replace(pointer)
        out["promoted"] = True
        out["forced"] = force and not result.passed
        out["promoted_at"] = datetime.now(UTC).isoformat()
    return out


def publish_promotion(settings: Any, name: str, version: str, sha256: str) -> dict[str, Any]:
    """Publish a :class:`~wardwatch.schemas.ModelPromotion` on the ``control`` topic
    (key = model name) and wait for the broker's acknowledgement."""
    from wardwatch.schemas import ModelPromotion
    from wardwatch.topics import producer

    msg = ModelPromotion(
        model_name=name, version=version, sha256=sha256, promoted_at=datetime.now(UTC)
    )
    topic = settings.topics.control
    prod = producer(settings)
    try:
        fut = prod.send(topic, key=name, value=msg.model_dump_json().encode())
        meta = fut.get(timeout=30)
        prod.flush()
    finally:
        prod.close()
    return {"topic": topic, "partition": meta.partition, "offset": meta.offset}
