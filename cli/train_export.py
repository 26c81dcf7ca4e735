"""``wardwatch train --export DIR``: recalibrate a registered version on a hospital's
export and register the result (``docs/validation.md``, "Recalibrating on your export");
``wardwatch train --operating-points-only``: choose a registered version's operating
points again without retraining (``docs/trainer.md``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

from wardwatch import heap
from wardwatch.settings import Settings


def run_train_export(
    settings: Settings,
    export: str,
    *,
    base: str | None,
    task: str | None,
    seed: int,
    test_fraction: float,
    n_boot: int,
    horizon_h: float,
    promote: bool,
    stdout: IO[str] | None = None,
) -> int:
    """Recalibrate, register the new version and print the result as JSON; with
    ``promote``, run the gate on it and promote it only if it passes (exit 1 if not)."""
    from trainer.recalibrate import recalibrate_export

    heap.settle()
    try:
        result = recalibrate_export(
            Path(export),
            settings,
            base=base,
            task_name=task,
            seed=seed,
            test_fraction=test_fraction,
            n_boot=n_boot,
            horizon_h=horizon_h,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"wardwatch train --export: {exc}", file=sys.stderr)
        return 2
    return _finish(settings, result, promote, stdout)


def run_operating_points_only(
    settings: Settings, *, base: str | None, promote: bool, stdout: IO[str] | None = None
) -> int:
    """``wardwatch train --operating-points-only``: choose ``base``'s operating points
    again (no retraining, :func:`trainer.workflows.rechoose_operating_points`), register
    the new version and print the result as JSON; with ``promote`` as above."""
    from trainer.registry import RegistryError
    from trainer.workflows import rechoose_operating_points

    heap.settle()
    try:
        result = rechoose_operating_points(
            settings.resolved_model_registry(), base, settings.model_name, settings=settings
        )
    except (FileNotFoundError, RegistryError) as exc:
        print(f"wardwatch train --operating-points-only: {exc}", file=sys.stderr)
        return 2
    return _finish(settings, result, promote, stdout)


def _finish(
    settings: Settings, result: dict[str, Any], promote: bool, stdout: IO[str] | None
) -> int:
    """Print the result; with ``promote``, gate the new version and promote it only if
    it passes (exit 1 if not); on ``stdout``, else the process's standard output now."""
    code = 0
    if promote:
        from trainer.workflows import promote as promote_version

        gate = promote_version(
            settings.resolved_model_registry(),
            result["version"],
            name=settings.model_name,
            pages_budget=settings.alert_budget_pages_per_patient_day,
            high_fraction=settings.alert_budget_high_fraction,
            sensitivity_floor=settings.sensitivity_floor,
            settings=settings if settings.kafka_url else None,
            min_shadow_h=settings.promotion_min_shadow_h,
        )
        result["promotion"] = gate
        code = 0 if gate.get("promoted") else 1
    (stdout or sys.stdout).write(json.dumps(result, indent=2, default=str) + "\n")
    return code
