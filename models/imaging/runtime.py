"""The lung-nodule CNN in ONNX Runtime: a registry version checked against its contract.

The model (trained and exported by the trainer, stored in the same registry as the
deterioration model under the name ``lung-nodule``) reads ``volume`` float32
``[N, 1, D, H, W]``, a volume pre-processed by :func:`models.imaging.preprocess.preprocess`
with the parameters in its metadata, and returns ``probability`` float32 ``[N]`` (nodule
suspicion, sigmoid applied) and ``cam`` float32 ``[N, d, h, w]`` (a class activation map,
each in [0, 1]). :meth:`LungNoduleModel.from_registry` verifies the file's sha256, checks
the metadata and the graph's inputs and outputs against that contract, picks CUDA when
ONNX Runtime has it (else CPU) as the deterioration model does, and warms the session up;
:meth:`LungNoduleModel.score` scores N prepared volumes in one ONNX call.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.imaging.preprocess import PreparedVolume, PreprocessConfig
from models.registry import (
    RegistryError,
    list_versions,
    load_metadata,
    promoted_version,
    verify,
    version_dir,
)
from models.session import OnnxSession, choose_providers
from wardwatch.errors import ModelError
from wardwatch.ingest import json_kind

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

DEFAULT_NAME: Final = "lung-nodule"
KIND: Final = "ct-nodule-cnn"
INPUT: Final = "volume"
OUTPUTS: Final = ("probability", "cam")
REQUIRED_KEYS: Final = (
    "name",
    "version",
    "kind",
    "sha256",
    "inputs",
    "outputs",
    "input_shape",
    "cam_shape",
    "preprocess",
    "threshold",
    "metrics",
    "parity",
    "training",
    "code_version",
    "created_at",
)
"""The metadata keys the contract requires (the runtime reads the first ten)."""


def _shape3(meta: dict[str, Any], key: str, where: str) -> tuple[int, int, int]:
    value = meta[key]
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value)
    ):
        raise RegistryError(f"{where}: {key!r} must be three positive integers, got {value!r}")
    return (value[0], value[1], value[2])


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _names(value: object) -> set[str] | None:
    """The tensor names of an ``inputs``/``outputs`` entry: an object keyed by name, or an
    array of names (or of objects with a ``name``)."""
    if isinstance(value, dict):
        return {str(k) for k in value}
    if isinstance(value, list):
        out = set()
        for item in value:
            if isinstance(item, str):
                out.add(item)
            elif isinstance(item, dict) and isinstance(item.get("name"), str):
                out.add(item["name"])
            else:
                return None
        return out
    return None


def threshold_of(meta: dict[str, Any], where: str) -> float:
    """The operating point on ``probability``: a number in [0, 1], or an object whose
    ``value`` is one (beside how it was chosen)."""
    raw = meta["threshold"]
    value = _number(raw.get("value")) if isinstance(raw, dict) else _number(raw)
    if value is None or not 0.0 <= value <= 1.0:
        raise RegistryError(
            f"{where}: 'threshold' must be a number in [0, 1] or an object with one as "
            f"'value', got {json_kind(raw)}"
        )
    return value


def preprocess_config(meta: dict[str, Any], where: str) -> PreprocessConfig:
    """The :class:`PreprocessConfig` the model was trained with (``preprocess``); the window
    centre may be spelled ``window_center_hu`` or ``window_level_hu``."""
    pre = meta["preprocess"]
    if not isinstance(pre, dict):
        raise RegistryError(f"{where}: 'preprocess' must be an object, got {json_kind(pre)}")
    missing = [
        k for k in ("spacing_mm", "shape", "window_width_hu") if k not in pre or pre[k] is None
    ]
    centre = pre.get("window_center_hu", pre.get("window_level_hu"))
    if centre is None:
        missing.append("window_center_hu")
    if missing:
        raise RegistryError(f"{where}: 'preprocess' lacks {', '.join(missing)}")
    spacing = pre["spacing_mm"]
    shape = pre["shape"]
    level, width = _number(centre), _number(pre["window_width_hu"])
    extra: dict[str, float] = {}
    for key in ("body_threshold_hu", "pad_hu"):
        if pre.get(key) is not None:
            v = _number(pre[key])
            if v is None:
                raise RegistryError(f"{where}: 'preprocess.{key}' must be a number")
            extra[key] = v
    if (
        not isinstance(spacing, list)
        or len(spacing) != 3
        or any(_number(s) is None for s in spacing)
        or not isinstance(shape, list)
        or len(shape) != 3
        or any(not isinstance(n, int) or isinstance(n, bool) for n in shape)
        or level is None
        or width is None
    ):
        raise RegistryError(
            f"{where}: 'preprocess' needs spacing_mm (3 numbers), shape (3 integers) and "
            "numeric window_center_hu and window_width_hu"
        )
    try:
        return PreprocessConfig(
            spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
            shape=(shape[0], shape[1], shape[2]),
            window_level_hu=level,
            window_width_hu=width,
            **extra,
        )
    except ValueError as exc:
        raise RegistryError(f"{where}: unusable 'preprocess' ({exc})") from None


@dataclass(frozen=True)
class Contract:
    """What the runtime reads from a version's metadata, checked."""

    input_shape: tuple[int, int, int]
    cam_shape: tuple[int, int, int]
    preprocess: PreprocessConfig
    threshold: float


def check_contract(meta: dict[str, Any], name: str, version: str) -> Contract:
    """The metadata's contract, or a :class:`RegistryError` naming what is missing or wrong."""
    where = f"{name} {version} is not a {KIND} model"
    missing = [k for k in REQUIRED_KEYS if meta.get(k) is None]
    if missing:
        raise RegistryError(f"{where}: metadata lacks {', '.join(missing)}")
    if meta["kind"] != KIND:
        raise RegistryError(f"{where}: 'kind' is {meta['kind']!r}")
    inputs, outputs = _names(meta["inputs"]), _names(meta["outputs"])
    if inputs is None or INPUT not in inputs:
        raise RegistryError(f"{where}: metadata 'inputs' must name {INPUT!r}")
    if outputs is None or not set(OUTPUTS) <= outputs:
        raise RegistryError(f"{where}: metadata 'outputs' must name {', '.join(OUTPUTS)}")
    input_shape = _shape3(meta, "input_shape", where)
    cam_shape = _shape3(meta, "cam_shape", where)
    pre = preprocess_config(meta, where)
    if pre.shape != input_shape:
        raise RegistryError(
            f"{where}: 'preprocess.shape' {list(pre.shape)} is not 'input_shape' "
            f"{list(input_shape)}"
        )
    return Contract(input_shape, cam_shape, pre, threshold_of(meta, where))


def resolve_version(root: Path, name: str, version: str | None) -> str:
    """``version``, or the promoted one; a :class:`RegistryError` saying which is missing."""
    if version is not None:
        return version
    promoted = promoted_version(root, name)
    if promoted is not None:
        return promoted
    versions = list_versions(root, name)
    if not versions:
        raise RegistryError(f"no {name} model is registered in {root}")
    raise RegistryError(
        f"no promoted version of {name} in {root} (registered: {', '.join(versions)}); name one"
    )


@dataclass
class LungNoduleModel:
    """A verified registry version of the lung-nodule CNN, warmed up, ready to score."""

    name: str
    version: str
    sha256: str
    meta: dict[str, Any]
    contract: Contract
    session: OnnxSession
    loaded_at: float = field(default_factory=time.time)

    @property
    def threshold(self) -> float:
        return self.contract.threshold

    @property
    def preprocess(self) -> PreprocessConfig:
        """The parameters the model's input must be prepared with."""
        return self.contract.preprocess

    @classmethod
    def from_registry(
        cls,
        root: Path,
        name: str = DEFAULT_NAME,
        version: str | None = None,
        *,
        expected_sha256: str | None = None,
        providers: Sequence[str] | None = None,
        threads: int = 1,
    ) -> LungNoduleModel:
        """Load the promoted (or given) version: sha256, contract, graph, warm-up.

        ``providers`` default to :func:`~models.session.choose_providers` (CUDA when ONNX
        Runtime has it, else CPU). Every refusal is a :class:`RegistryError`."""
        version = resolve_version(root, name, version)
        sha = verify(root, name, version, expected_sha256)
        meta = load_metadata(root, name, version)
        contract = check_contract(meta, name, version)
        try:
            session = OnnxSession(
                version_dir(root, name, version) / "model.onnx",
                providers=list(providers) if providers is not None else choose_providers(),
                threads=threads,
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise RegistryError(f"{name} {version}: ONNX Runtime refused the file: {exc}") from exc
        model = cls(name, version, sha, meta, contract, session)
        model._check_graph()
        model._warm_up()
        log.info(
            "model %s %s loaded on %s (input %s, cam %s, sha256 %s…)",
            name,
            version,
            session.provider,
            "x".join(map(str, contract.input_shape)),
            "x".join(map(str, contract.cam_shape)),
            sha[:12],
        )
        return model

    def _check_graph(self) -> None:
        where = f"{self.name} {self.version}"
        s = self.session.session
        inputs = {i.name: i for i in s.get_inputs()}
        outputs = {o.name: o for o in s.get_outputs()}
        if list(inputs) != [INPUT] or not set(OUTPUTS) <= set(outputs):
            raise RegistryError(
                f"{where}: the graph reads {list(inputs)} and returns {list(outputs)}, "
                f"not {INPUT!r} -> {', '.join(OUTPUTS)}"
            )
        shape = list(inputs[INPUT].shape)
        want: list[int | None] = [None, 1, *self.contract.input_shape]
        if len(shape) != 5 or any(
            isinstance(got, int) and w is not None and got != w
            for got, w in zip(shape, want, strict=True)
        ):
            raise RegistryError(
                f"{where}: the graph's {INPUT!r} is {shape}, not [N, 1, "
                f"{', '.join(map(str, self.contract.input_shape))}]"
            )
        if isinstance(shape[0], int) and shape[0] > 0 and shape[0] != 1:
            raise RegistryError(f"{where}: the graph's batch axis is fixed at {shape[0]}")
        if inputs[INPUT].type != "tensor(float)":
            raise RegistryError(f"{where}: {INPUT!r} is {inputs[INPUT].type}, not float32")

    def _warm_up(self) -> None:
        """One call on an all-air volume: output shapes and ranges as the contract says."""
        try:
            self.infer(np.zeros((1, 1, *self.contract.input_shape), np.float32))
        except ModelError as exc:
            raise RegistryError(str(exc)) from None

    # ---- infer --------------------------------------------------------------------------
    def infer(self, batch: F32) -> tuple[F32, F32]:
        """One ONNX call on ``batch`` ``[N, 1, D, H, W]``: ``probability`` ``[N]`` and
        ``cam`` ``[N, d, h, w]``, checked (a :class:`ModelError` otherwise)."""
        n = batch.shape[0]
        where = f"{self.name} {self.version}"
        try:
            outs = dict(
                zip(
                    self.session.output_names,
                    self.session.run({INPUT: np.ascontiguousarray(batch, dtype=np.float32)}),
                    strict=True,
                )
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"{where}: inference failed ({type(exc).__name__}: {exc})") from exc
        prob = np.asarray(outs["probability"], dtype=np.float32)
        cam = np.asarray(outs["cam"], dtype=np.float32)
        if prob.shape == (n, 1):
            prob = prob.reshape(n)
        if prob.shape != (n,) or cam.shape != (n, *self.contract.cam_shape):
            raise ModelError(
                f"{where}: outputs {list(prob.shape)} and {list(cam.shape)}, not [{n}] and "
                f"[{n}, {', '.join(map(str, self.contract.cam_shape))}] (metadata 'cam_shape')"
            )
        if not (np.all(np.isfinite(prob)) and np.all(np.isfinite(cam))):
            raise ModelError(f"{where}: non-finite outputs")
        if prob.min() < 0 or prob.max() > 1 or cam.min() < 0 or cam.max() > 1 + 1e-5:
            raise ModelError(f"{where}: probability or cam outside [0, 1]")
        return prob, cam

    def score(self, volumes: Sequence[PreparedVolume]) -> tuple[F32, F32]:
        """``probability`` ``[N]`` and ``cam`` ``[N, d, h, w]`` of N prepared volumes, in
        one ONNX call. Each must have been prepared with :attr:`preprocess`."""
        if not volumes:
            d, h, w = self.contract.cam_shape
            return np.zeros(0, np.float32), np.zeros((0, d, h, w), np.float32)
        for v in volumes:
            if v.config != self.preprocess:
                raise ModelError(
                    f"{self.name} {self.version}: a volume prepared with {v.config}, not the "
                    f"model's {self.preprocess}"
                )
        batch = np.stack([v.voxels for v in volumes])[:, None]
        return self.infer(batch)
