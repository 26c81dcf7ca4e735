"""A version's metadata.json that parses but is not what the trainer writes (not an
object, keys of the wrong type, unreadable bytes) is a ModelError when the model loads,
never a crash later: ``wardwatch score`` then scores NEWS2 only, as without a model."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agents.score_lines import score_stream
from models.registry import RegistryError, load_metadata, promoted_version
from models.runtime import DeteriorationModel
from wardwatch.errors import ModelError
from wardwatch.settings import Settings

SHIPPED = Settings().resolved_model_registry()
NAME = "deterioration"
PROMOTED = promoted_version(SHIPPED, NAME)
pytestmark = pytest.mark.skipif(PROMOTED is None, reason="no shipped model")

LINE = b'{"patient_id":"p1","ts":"2025-06-01T00:00:00+00:00","respiratory_rate_per_min":25}\n'


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    shutil.copytree(SHIPPED, root)
    return root


def meta_path(root: Path) -> Path:
    assert PROMOTED is not None
    return root / NAME / PROMOTED / "metadata.json"


def shipped_meta() -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(meta_path(SHIPPED).read_text())
    return meta


def with_(**changes: Any) -> str:
    """The shipped metadata with keys replaced (``None``: the key set to null)."""
    return json.dumps({**shipped_meta(), **changes})


def without(*keys: str) -> str:
    meta = shipped_meta()
    for key in keys:
        del meta[key]
    return json.dumps(meta)


def smoke_with(**changes: Any) -> str:
    meta = shipped_meta()
    return json.dumps({**meta, "smoke": {**meta["smoke"], **changes}})


def norm_with(key: str, **changes: Any) -> str:
    meta = shipped_meta()
    return json.dumps({**meta, key: {**meta[key], **changes}})


NOT_AN_OBJECT = {
    "array": "[]",
    "string": '"x"',
    "number": "3",
    "null": "null",
    "boolean": "true",
}

WRONG_TYPES = {
    "feature_names number": lambda: with_(feature_names=3),
    "hidden_size string": lambda: with_(hidden_size="abc"),
    "hidden_size array": lambda: with_(hidden_size=[32]),
    "hidden_size object": lambda: with_(hidden_size={}),
    "hidden number as fallback": lambda: with_(hidden_size=None, hidden=[32]),
    "normalization array": lambda: with_(normalization=[1]),
    "normalization string": lambda: with_(normalization="ab"),
    "norm number": lambda: with_(normalization=None, norm=3),
    "normalization missing a key": lambda: json.dumps(
        {**shipped_meta(), "normalization": {"hours_clip": 12.0}}
    ),
    "normalization sd_floor array": lambda: norm_with("normalization", sd_floor=[1, 2]),
    "norm value_mean not numbers": lambda: norm_with(
        "norm", value_mean=dict.fromkeys(shipped_meta()["norm"]["value_mean"], "x")
    ),
    "smoke array": lambda: with_(smoke=[1]),
    "smoke string": lambda: with_(smoke="x"),
    "smoke without risk": lambda: json.dumps(
        {
            **shipped_meta(),
            "smoke": {k: v for k, v in shipped_meta()["smoke"].items() if k != "risk"},
        }
    ),
    "smoke features ragged": lambda: smoke_with(features=[[0.0] * 28, [0.0] * 27]),
    "smoke features not numbers": lambda: smoke_with(features=[["x"] * 28]),
    "smoke features too narrow": lambda: smoke_with(features=[[0.0] * 3] * 4),
    "smoke h_in too narrow": lambda: smoke_with(h_in=[[0.0] * 3] * 4),
    "smoke risk too short": lambda: smoke_with(risk=[0.5]),
    "smoke features empty": lambda: smoke_with(features=[], h_in=[], risk=[]),
}


@pytest.mark.parametrize("text", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_metadata_not_an_object_is_a_model_error(registry: Path, text: str) -> None:
    meta_path(registry).write_text(text)
    assert PROMOTED is not None
    with pytest.raises(RegistryError, match="expected a JSON object"):
        load_metadata(registry, NAME, PROMOTED)
    with pytest.raises(ModelError, match=f"malformed metadata for {NAME} {PROMOTED}"):
        DeteriorationModel.from_registry(registry, NAME, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("make", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_metadata_key_of_the_wrong_type_is_a_model_error(registry: Path, make: Any) -> None:
    meta_path(registry).write_text(make())
    with pytest.raises(ModelError, match=f"malformed metadata for {NAME} {PROMOTED}"):
        DeteriorationModel.from_registry(registry, NAME, providers=["CPUExecutionProvider"])


def test_metadata_not_utf8_is_a_model_error(registry: Path) -> None:
    meta_path(registry).write_bytes(b'{"name": "\xff\xfe"}')
    with pytest.raises(ModelError, match="not UTF-8"):
        DeteriorationModel.from_registry(registry, NAME, providers=["CPUExecutionProvider"])


def test_metadata_that_is_a_directory_is_a_model_error(registry: Path) -> None:
    path = meta_path(registry)
    path.unlink()
    path.mkdir()
    assert PROMOTED is not None
    with pytest.raises(ModelError, match="cannot read metadata"):
        DeteriorationModel.from_registry(registry, NAME, PROMOTED)


def test_promoted_pointer_not_utf8_is_a_model_error(registry: Path) -> None:
    (registry / NAME / "PROMOTED").write_bytes(b"v\xff\n")
    with pytest.raises(ModelError, match="PROMOTED"):
        promoted_version(registry, NAME)
    with pytest.raises(ModelError, match="PROMOTED"):
        DeteriorationModel.from_registry(registry, NAME, providers=["CPUExecutionProvider"])


def test_absent_or_null_optional_keys_still_load(registry: Path) -> None:
    """Guards the checks above: only wrong types are refused; a null or empty optional
    key means what it meant before (no smoke check, the default normalization)."""
    meta = {**shipped_meta(), "smoke": None, "hidden": None, "norm": {}, "normalization": {}}
    meta_path(registry).write_text(json.dumps(meta))
    model = DeteriorationModel.from_registry(registry, NAME, providers=["CPUExecutionProvider"])
    assert model.version == PROMOTED and model.hidden == shipped_meta()["hidden_size"]
    meta_path(registry).write_text(without("smoke", "normalization", "norm"))
    assert DeteriorationModel.from_registry(registry, NAME).version == PROMOTED


@pytest.mark.parametrize(
    "make",
    [lambda: "[]", lambda: '"x"', WRONG_TYPES["hidden_size string"], WRONG_TYPES["smoke array"]],
    ids=["array", "string", "hidden_size string", "smoke array"],
)
async def test_score_falls_back_to_news2_only(registry: Path, make: Any) -> None:
    meta_path(registry).write_text(make())
    settings = Settings(model_registry=registry, onnx_provider="cpu")
    out, progress = io.StringIO(), io.StringIO()
    counts = await score_stream(io.BytesIO(LINE), out, settings, progress=progress)
    (row,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert row["patient_id"] == "p1" and row["news2"] == 3  # RR 25 -> 3
    assert row["model_risk"] is None and row["fused_risk"] is None
    assert row["model_version"] is None and row["model_reason"] == "no_model"
    assert counts["scored"] == 1
    assert "malformed metadata" in progress.getvalue()
    assert progress.getvalue().endswith("; NEWS2 only\n")


@pytest.mark.parametrize("hidden", [16, 64])
def test_hidden_size_that_disagrees_with_the_graph_is_a_model_error(
    registry: Path, hidden: int
) -> None:
    """Well typed but wrong: the ONNX graph refuses the state, reported as a ModelError."""
    meta_path(registry).write_text(with_(hidden_size=hidden, smoke=None))
    with pytest.raises(ModelError):
        DeteriorationModel.from_registry(registry, NAME, providers=["CPUExecutionProvider"])
