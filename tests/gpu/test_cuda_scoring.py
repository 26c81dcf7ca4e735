"""The CUDA path (execution provider with IO binding) scores like the CPU path.

Runs only where ONNX Runtime has the CUDA execution provider (``pip install .[gpu]`` on a
machine with an NVIDIA GPU): ``python -m pytest -m gpu``. Elsewhere every test here is
skipped and the CPU fallback is covered by ``tests/unit/test_runtime.py``.
"""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

import numpy as np
import onnxruntime as ort
import pytest

from agents.model_stage import model_event
from agents.score_lines import score_stream
from models.registry import promoted_version
from models.runtime import DeteriorationModel
from models.session import choose_providers
from simulator import SimConfig, simulate_cohort
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings

REGISTRY = Settings().resolved_model_registry()
CUDA = "CUDAExecutionProvider" in ort.get_available_providers()

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA, reason="ONNX Runtime has no CUDA execution provider here"),
    pytest.mark.skipif(
        promoted_version(REGISTRY, "deterioration") is None, reason="no shipped model"
    ),
]


@pytest.fixture(scope="module")
def events() -> list[VitalsEvent]:
    cohort = simulate_cohort(
        40, seed=9, start=datetime(2026, 2, 1, tzinfo=UTC), config=SimConfig(hours=24)
    )
    return [VitalsEvent.model_validate(e) for e in cohort.events]


def _risks(model: DeteriorationModel, events: list[VitalsEvent], batch: int) -> np.ndarray:
    states: dict[str, object] = {}
    out: list[float] = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        items = [(e.patient_id, states.get(e.patient_id), model_event(e, 1)) for e in chunk]
        for (pid, _, _), sc in zip(items, model.score(items), strict=True):  # type: ignore[arg-type]
            out.append(sc.risk)
            if sc.state:
                states[pid] = sc.state
    return np.asarray(out)


def test_cuda_is_chosen_and_used_with_io_binding() -> None:
    assert choose_providers("auto")[0] == "CUDAExecutionProvider"
    model = DeteriorationModel.from_registry(REGISTRY, providers=choose_providers("cuda"))
    assert model.session.provider == "CUDAExecutionProvider"
    assert model.session._gpu  # runs through IO binding


@pytest.mark.parametrize("batch", [1, 256])
def test_cuda_risks_equal_cpu_risks(events: list[VitalsEvent], batch: int) -> None:
    cpu = DeteriorationModel.from_registry(REGISTRY, providers=["CPUExecutionProvider"])
    gpu = DeteriorationModel.from_registry(REGISTRY, providers=choose_providers("cuda"))
    subset = events[: 300 if batch == 1 else len(events)]
    assert np.abs(_risks(cpu, subset, batch) - _risks(gpu, subset, batch)).max() < 1e-4


def test_replay_on_cuda_equals_replay_on_cpu(events: list[VitalsEvent]) -> None:
    lines = "".join(e.model_dump_json(exclude_none=True) + "\n" for e in events).encode()
    rows = {}
    for provider in ("cpu", "cuda"):
        out = io.StringIO()
        settings = Settings(onnx_provider=provider)
        asyncio.run(score_stream(io.BytesIO(lines), out, settings))
        rows[provider] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows["cpu"]) == len(rows["cuda"]) == len(events)
    for a, b in zip(rows["cpu"], rows["cuda"], strict=True):
        assert a["news2"] == b["news2"]
        assert abs(a["model_risk"] - b["model_risk"]) < 1e-4
