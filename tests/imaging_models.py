"""Tiny ONNX graphs that keep the lung-nodule model's contract (``docs/imaging.md``), built
with the ``onnx`` helper API, and a registry writer for them: the model side of the imaging
tests, beside the synthetic DICOM series of :mod:`tests.imaging_series`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trainer.registry import write_version

INPUT = (32, 64, 64)  # small: the tests' volumes
CAM = (8, 16, 16)  # a cell per 4 x 4 x 4 voxels
SPACING = (1.5, 1.5, 1.5)
BLOB = (3, 10, 5)  # the fixed map's peak cell
NAME = "lung-nodule"


def _blob(shape: tuple[int, int, int], at: tuple[int, int, int], sigma: float) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    d2 = (k - at[0]) ** 2 + (j - at[1]) ** 2 + (i - at[2]) ** 2
    g = np.exp(-d2 / (2 * sigma**2)).astype(np.float32)
    return g / g.max()


def fixed_blob_model(
    input_shape: tuple[int, int, int] = INPUT,
    cam_shape: tuple[int, int, int] = CAM,
    *,
    outputs: tuple[str, str] = ("probability", "cam"),
) -> bytes:
    """probability = sigmoid(8 * (mean of the central box - 0.5)); cam = a fixed Gaussian
    blob at ``BLOB`` (the same for every volume of the batch)."""
    d, h, w = input_shape
    box = [(n // 4, 3 * n // 4) for n in input_shape]
    inits = [
        numpy_helper.from_array(
            np.array([0, 0, box[0][0], box[1][0], box[2][0]], np.int64), "starts"
        ),
        numpy_helper.from_array(
            np.array([1 << 30, 1, box[0][1], box[1][1], box[2][1]], np.int64), "ends"
        ),
        numpy_helper.from_array(np.float32(8.0), "gain"),
        numpy_helper.from_array(np.float32(0.5), "half"),
        numpy_helper.from_array(np.float32(0.0), "zero"),
        numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "bshape"),
        numpy_helper.from_array(_blob(cam_shape, BLOB, 1.0)[None], "blob"),
    ]
    nodes = [
        helper.make_node("Slice", ["volume", "starts", "ends"], ["region"]),
        helper.make_node("ReduceMean", ["region"], ["mean"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("Sub", ["mean", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [outputs[0]]),
        helper.make_node("Mul", ["mean", "zero"], ["nil"]),
        helper.make_node("Reshape", ["nil", "bshape"], ["nil4"]),
        helper.make_node("Add", ["nil4", "blob"], [outputs[1]]),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed-blob",
        [helper.make_tensor_value_info("volume", TensorProto.FLOAT, ["N", 1, d, h, w])],
        [
            helper.make_tensor_value_info(outputs[0], TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info(outputs[1], TensorProto.FLOAT, ["N", *cam_shape]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def dense_cam_model(input_shape: tuple[int, int, int] = INPUT) -> bytes:
    """A map that follows the data: cam = the share of each 4-voxel block denser than the
    window's 0.96 (denser than soft tissue: the phantom's sphere), scaled by its max;
    probability = sigmoid(20 * (max block share - 0.1))."""
    d, h, w = input_shape
    cam_shape = [d // 4, h // 4, w // 4]
    inits = [
        numpy_helper.from_array(np.float32(0.96), "level"),
        numpy_helper.from_array(np.float32(1e-6), "eps"),
        numpy_helper.from_array(np.float32(0.1), "tenth"),
        numpy_helper.from_array(np.float32(20.0), "gain"),
        numpy_helper.from_array(np.array([1], np.int64), "chan"),
    ]
    nodes = [
        helper.make_node("Sub", ["volume", "level"], ["over"]),
        helper.make_node("Sign", ["over"], ["sgn"]),
        helper.make_node("Relu", ["sgn"], ["dense"]),
        helper.make_node(
            "AveragePool", ["dense"], ["pooled5"], kernel_shape=[4, 4, 4], strides=[4, 4, 4]
        ),
        helper.make_node("Squeeze", ["pooled5", "chan"], ["pooled"]),
        helper.make_node("ReduceMax", ["pooled"], ["top"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Max", ["top", "eps"], ["denom"]),
        helper.make_node("Div", ["pooled", "denom"], ["cam"]),
        helper.make_node("ReduceMax", ["pooled"], ["top1"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Sub", ["top1", "tenth"], ["c"]),
        helper.make_node("Mul", ["c", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dense-cam",
        [helper.make_tensor_value_info("volume", TensorProto.FLOAT, ["N", 1, d, h, w])],
        [
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("cam", TensorProto.FLOAT, ["N", *cam_shape]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def contract_meta(
    input_shape: tuple[int, int, int] = INPUT, cam_shape: tuple[int, int, int] = CAM
) -> dict[str, Any]:
    return {
        "kind": "ct-nodule-cnn",
        "inputs": {"volume": {"dtype": "float32", "shape": ["N", 1, *input_shape]}},
        "outputs": {
            "probability": {"dtype": "float32", "shape": ["N"]},
            "cam": {"dtype": "float32", "shape": ["N", *cam_shape]},
        },
        "input_shape": list(input_shape),
        "cam_shape": list(cam_shape),
        "preprocess": {
            "spacing_mm": list(SPACING),
            "shape": list(input_shape),
            "window_center_hu": -600.0,
            "window_width_hu": 1500.0,
        },
        "threshold": {"value": 0.5, "chosen": "test fixture"},
        "metrics": {"auroc": None},
        "parity": {"passed": True},
        "training": {"data": "none: a fixed graph"},
        "code_version": {"wardwatch": "test"},
        "created_at": "2026-01-01T00:00:00+00:00",
    }


def register(
    root: Path, onnx_bytes: bytes, meta: dict[str, Any], version: str = "v1", promote: bool = True
) -> Path:
    d = write_version(root, NAME, version, onnx_bytes, meta, "# test model\n")
    if promote:
        (root / NAME / "PROMOTED").write_text(version + "\n")
    return d
