"""``wardwatch train --export DIR``: recalibrate a registered version on a hospital's
export and register the result (``docs/validation.md``, "Recalibrating on your export")."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

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
    stdout: IO[str] = sys.stdout,
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
    stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    return code
