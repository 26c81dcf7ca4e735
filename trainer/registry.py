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

Promotion is gated (:func:`promote`): the candidate's held-out AUROC must beat the
currently promoted model's and NEWS2's, and its alerts per patient-day must be within a
budget. :func:`publish_promotion` announces a promotion on the Kafka ``control`` topic.
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
    version_key,
)

__all__ = [
    "DEFAULT_ALERT_BUDGET",
    "GateResult",
    "RegistryError",
    "code_version",
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
"""Alerts per patient-day a promoted model may produce at its operating point."""


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
    return {
        "version": meta.get("version"),
        "auroc": m.get("model", {}).get("auroc"),
        "news2_auroc": m.get("news2", {}).get("auroc"),
        "alerts_per_patient_day": m.get("model", {}).get("alerts_per_patient_day"),
    }


def gate(
    root: Path, name: str, version: str, *, alert_budget: float = DEFAULT_ALERT_BUDGET
) -> GateResult:
    """Decide whether ``version`` may be promoted (see module docstring)."""
    cand = _summary(load_metadata(root, name, version))
    reasons: list[str] = []
    ok = True
    auroc = cand["auroc"]
    if auroc is None:
        return GateResult(False, ["candidate has no test AUROC"], cand, None)
    if not (meta_parity := load_metadata(root, name, version).get("parity", {})).get("passed"):
        ok = False
        reasons.append(f"ONNX parity not passed: {meta_parity}")
    news2 = cand["news2_auroc"]
    if news2 is not None and not auroc > news2:
        ok = False
        reasons.append(f"AUROC {auroc} does not beat NEWS2's {news2}")
    apd = cand["alerts_per_patient_day"]
    if apd is None or apd > alert_budget:
        ok = False
        reasons.append(f"alerts per patient-day {apd} over the budget {alert_budget}")
    current: dict[str, Any] | None = None
    cur_v = promoted_version(root, name)
    if cur_v is not None:
        current = _summary(load_metadata(root, name, cur_v))
        if cur_v == version:
            ok = False
            reasons.append(f"{version} is already promoted")
        elif current["auroc"] is not None and not auroc > current["auroc"]:
            ok = False
            reasons.append(f"AUROC {auroc} does not beat promoted {cur_v}'s {current['auroc']}")
    if ok:
        reasons.append("all gates passed")
    return GateResult(ok, reasons, cand, current)


def promote(
    root: Path,
    name: str,
    version: str,
    *,
    alert_budget: float = DEFAULT_ALERT_BUDGET,
    force: bool = False,
) -> dict[str, Any]:
    """Verify ``version``, apply the gate and, if it passes (or ``force``), point
    ``PROMOTED`` at it. Returns the gate decision plus ``promoted`` and ``sha256``."""
    digest = verify(root, name, version)
    result = gate(root, name, version, alert_budget=alert_budget)
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
