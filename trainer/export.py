"""Export the single-step module to ONNX and check ONNX Runtime against PyTorch.

The graph is ``(features [B, F], h_in [B, H]) -> (risk [B, 1], h_out [B, H])`` with a
dynamic batch axis, opset 17, exported with the TorchScript-based exporter (the
dynamo exporter needs ``onnxscript``, which the trainer does not depend on).

Parity (:func:`parity`): both runtimes are run step by step over ``n`` random sequences
and ``n`` real sequences (the hidden state fed back each step), and the largest
absolute differences of ``risk`` and ``h_out`` are reported; the trainer refuses to
register a model whose risk difference is not below ``1e-4``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from trainer.dataset import PatientSeq
from trainer.model import DeteriorationGRU, StepModule

__all__ = ["INPUT_NAMES", "OPSET", "OUTPUT_NAMES", "PARITY_TOLERANCE", "export_onnx", "parity"]

OPSET = 17
INPUT_NAMES = ("features", "h_in")
OUTPUT_NAMES = ("risk", "h_out")
PARITY_TOLERANCE = 1e-4


def export_onnx(model: DeteriorationGRU, path: Path | None = None) -> bytes:
    """Serialized ONNX of the step module (also written to ``path`` when given)."""
    step = StepModule(model).eval()
    f = torch.zeros(1, model.n_features)
    h = torch.zeros(1, model.hidden)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            step,
            (f, h),
            buf,  # type: ignore[arg-type]
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "features": {0: "batch"},
                "h_in": {0: "batch"},
                "risk": {0: "batch"},
                "h_out": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )
    data = buf.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    if path is not None:
        path.write_bytes(data)
    return data


def _session(data: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _run_steps(
    step: StepModule, sess: ort.InferenceSession, x: npt.NDArray[np.float32], hidden: int
) -> tuple[float, float]:
    """Max |risk| and |h| differences over a padded batch ``[B, T, F]`` run step by step."""
    b, t, _ = x.shape
    h_t = torch.zeros(b, hidden)
    h_o = np.zeros((b, hidden), dtype=np.float32)
    d_risk = 0.0
    d_h = 0.0
    with torch.no_grad():
        for i in range(t):
            r_t, h_t = step(torch.from_numpy(x[:, i]), h_t)
            r_o, h_o = sess.run(list(OUTPUT_NAMES), {"features": x[:, i], "h_in": h_o})
            d_risk = max(d_risk, float(np.abs(r_t.numpy() - r_o).max()))
            d_h = max(d_h, float(np.abs(h_t.numpy() - h_o).max()))
    return d_risk, d_h


def parity(
    model: DeteriorationGRU,
    onnx_bytes: bytes,
    real: Sequence[PatientSeq],
    *,
    n: int = 1000,
    random_len: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """ONNX Runtime vs PyTorch on ``n`` random and up to ``n`` real sequences."""
    step = StepModule(model).eval()
    sess = _session(onnx_bytes)
    rng = np.random.default_rng(seed)
    x_rand = rng.normal(0.0, 1.5, size=(n, random_len, model.n_features)).astype(np.float32)
    rand_risk, rand_h = _run_steps(step, sess, x_rand, model.hidden)

    chosen = list(real[:n])
    t_max = max((len(p.y) for p in chosen), default=0)
    x_real = np.zeros((len(chosen), t_max, model.n_features), dtype=np.float32)
    for i, p in enumerate(chosen):
        x_real[i, : len(p.y)] = p.x
        # pad by repeating the last observation: still realistic inputs
        if len(p.y) < t_max:
            x_real[i, len(p.y) :] = p.x[-1]
    real_risk, real_h = _run_steps(step, sess, x_real, model.hidden) if chosen else (0.0, 0.0)
    max_risk = max(rand_risk, real_risk)
    return {
        "random_sequences": n,
        "random_steps": random_len,
        "real_sequences": len(chosen),
        "real_steps_max": t_max,
        "max_abs_diff_risk_random": rand_risk,
        "max_abs_diff_risk_real": real_risk,
        "max_abs_diff_h_random": rand_h,
        "max_abs_diff_h_real": real_h,
        "tolerance": PARITY_TOLERANCE,
        "passed": max_risk < PARITY_TOLERANCE,
        "onnxruntime": ort.__version__,
    }
