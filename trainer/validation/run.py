"""``wardwatch validate``: find the tasks of an export, replay each through the worker's
scoring path, and put the figures of all of them in one report."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from alerts import PolicyConfig
from models.runtime import DeteriorationModel
from models.session import choose_providers
from trainer.validation.evaluate import LOOKBACK_H, evaluate_task
from trainer.validation.generic import is_generic_export, load_generic
from trainer.validation.scoring import TICK_S, Replayed, score_messages
from trainer.validation.task import EPOCH, Task, epoch_ms
from trainer.validation.yaib import is_yaib_task, load_yaib_task
from wardwatch.errors import ModelError
from wardwatch.settings import Settings

__all__ = ["REPORT_VERSION", "find_tasks", "replay_task", "task_entry", "validate_export"]

REPORT_VERSION = 1
NOTES = [
    "NEWS2 is scored on the parameters the export has: with no level of consciousness "
    "(ACVPU), it is a partial NEWS2 (as if every patient were alert), marked incomplete "
    "(see news2.missing_share per task); the alert policy's NEWS2 trend trigger, which "
    "needs complete sets, cannot fire on such data.",
    "The replay never acknowledges an alert: pages include the re-pages of unacknowledged "
    "alerts (at most max_repages per priority).",
    "Alerts are counted within each patient's observed time (first to last scored "
    "observation); alerts.after_last_observation counts the timer transitions the replay "
    "emitted after it (the export ends the stay there).",
    "The fused risk is the promoted model's, trained to predict ward deterioration within "
    "its label horizon: its calibration against another task's label says how far its "
    "risks are from that task's rates, not that the model is miscalibrated for its own.",
]


def find_tasks(export: Path, *, horizon_h: float = 12.0) -> list[Task]:
    """The tasks of ``export``: a YAIB task folder, a generic export, or a folder of
    either (each subfolder a task, in name order)."""
    if is_yaib_task(export):
        return [load_yaib_task(export)]
    if is_generic_export(export):
        return [load_generic(export, horizon_h=horizon_h)]
    tasks = []
    if export.is_dir():
        for sub in sorted(p for p in export.iterdir() if p.is_dir()):
            if is_yaib_task(sub):
                tasks.append(load_yaib_task(sub))
            elif is_generic_export(sub):
                tasks.append(load_generic(sub, horizon_h=horizon_h))
    if not tasks:
        raise FileNotFoundError(
            f"{export}: no task found (a YAIB folder with dyn.parquet and outc.parquet, or "
            "vitals.csv|parquet with outcomes.csv|parquet, or a folder of them)"
        )
    return tasks


def _now(task: Task) -> datetime:
    """The clock the ingest checks times against: for times since admission, just after
    the last one (deterministic); for real times, the clock (a time ahead of it is
    dead-lettered as the worker would)."""
    if task.source == "yaib":
        last = max((m.sort_ms for m in task.messages), default=epoch_ms(EPOCH))
        return datetime.fromtimestamp(last / 1000, tz=UTC) + timedelta(hours=1)
    return datetime.now(UTC)


def _model(settings: Settings, version: str | None) -> tuple[DeteriorationModel | None, str | None]:
    try:
        model = DeteriorationModel.from_registry(
            settings.resolved_model_registry(),
            settings.model_name,
            version,
            providers=choose_providers(settings.onnx_provider),
        )
    except ModelError as exc:
        return None, str(exc)
    return model, None


def replay_task(task: Task, settings: Settings, model: DeteriorationModel | None) -> Replayed:
    """``task``'s messages through the worker's scoring path with ``model``."""
    return asyncio.run(
        score_messages(task.messages, settings, model, now=_now(task), contexts=task.contexts)
    )


def task_entry(task: Task, rep: Replayed, *, n_boot: int, seed: int) -> dict[str, Any]:
    """One task's block of the report: its figures and what the ingest made of it."""
    figures = evaluate_task(task, rep, n_boot=n_boot, seed=seed)
    ingest = {
        "rows": task.rows,
        "rows_without_vitals": task.rows_without_vitals,
        **rep.ingest,
        "model_unavailable": rep.model_reasons,
    }
    return {"source": task.source, **figures, "ingest": ingest}


def validate_export(
    export: Path,
    settings: Settings,
    *,
    version: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    horizon_h: float = 12.0,
    progress: IO[str] | None = sys.stderr,
) -> dict[str, Any]:
    """The report of ``export`` (see ``docs/validation.md``): deterministic for the same
    input, model, settings, ``n_boot`` and ``seed``."""
    tasks = find_tasks(export, horizon_h=horizon_h)
    model, reason = _model(settings, version)
    policy = PolicyConfig.from_settings(settings)
    report: dict[str, Any] = {
        "report": "wardwatch validate",
        "report_version": REPORT_VERSION,
        "export": {"path": str(export), "format": sorted({t.source for t in tasks})},
        "model": (
            {"name": model.name, "version": model.version, "sha256": model.meta.get("sha256")}
            if model is not None
            else {"name": settings.model_name, "version": None, "reason": reason}
        ),
        "method": {
            "bootstrap_resamples": n_boot,
            "seed": seed,
            "ci": 0.95,
            "lookback_h": LOOKBACK_H,
            "timer_tick_s": TICK_S,
            "partitions": settings.partitions,
            "policy": asdict(policy),
        },
        "notes": NOTES if model is not None else [*NOTES, f"no model: {reason}; NEWS2 only"],
        "tasks": {},
    }
    for task in tasks:
        t0 = time.monotonic()
        rep = replay_task(task, settings, model)
        report["tasks"][task.name] = task_entry(task, rep, n_boot=n_boot, seed=seed)
        if progress:
            print(
                f"wardwatch validate: {task.name}: {len(task.messages)} messages, "
                f"{rep.ingest['events_scored']} scored, {time.monotonic() - t0:.1f} s",
                file=progress,
            )
    return report
