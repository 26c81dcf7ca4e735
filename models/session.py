"""ONNX Runtime sessions for the workers: execution providers and one tuned session.

:func:`choose_providers` picks CUDA (with CPU fallback) or CPU; :class:`OnnxSession`
wraps one ``InferenceSession`` per worker (sequential execution, full graph
optimization) and runs a batch in one call, through IO binding on CUDA. It knows no
model: the deterioration model (:mod:`models.runtime`) builds on it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)


def choose_providers(preference: str = "auto") -> list[str]:
    """CUDA (with CPU fallback) when asked for or available, else CPU."""
    available = ort.get_available_providers()
    if preference in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if preference == "cuda":
        log.warning("CUDA execution provider requested but not available; using CPU")
    return ["CPUExecutionProvider"]


class OnnxSession:
    """One InferenceSession, created once per worker, tuned and warmed up."""

    def __init__(
        self, model: bytes | Path, *, providers: Sequence[str] | None = None, threads: int = 1
    ) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        src = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(
            src, opts, providers=list(providers or ["CPUExecutionProvider"])
        )
        self.provider = self.session.get_providers()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._gpu = self.provider == "CUDAExecutionProvider"

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """One call; on CUDA through IO binding (inputs copied once, outputs back to CPU)."""
        if not self._gpu:
            return list(self.session.run(self.output_names, dict(feeds)))
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self.output_names:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())
