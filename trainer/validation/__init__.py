"""Silent mode on a hospital's own data: an export replayed through the worker's scoring
path, its NEWS2 and fused risk against the outcomes, and the alert burden of the policy
(``wardwatch validate``, ``docs/validation.md``).

Torch-free: the model runs in ONNX Runtime through the worker's own code.

* :mod:`~trainer.validation.yaib` and :mod:`~trainer.validation.generic`: the loaders,
  one per export format, each giving :class:`~trainer.validation.task.Task` objects;
* :mod:`~trainer.validation.scoring`: ingest and replay;
* :mod:`~trainer.validation.metrics`: AUROC, AUPRC, bootstrap, calibration;
* :mod:`~trainer.validation.evaluate`: one task's figures;
* :mod:`~trainer.validation.run`: the report; :mod:`~trainer.validation.html`: its page.
"""

from trainer.validation.html import report_html
from trainer.validation.run import find_tasks, validate_export

__all__ = ["find_tasks", "report_html", "validate_export"]
