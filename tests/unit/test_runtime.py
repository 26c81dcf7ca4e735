"""ONNX Runtime scoring with the shipped model: incremental equals whole-sequence,
state round trips, hot-swap safety, model outage falls back to the rules."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from agents.model_stage import Incoming, ModelHolder, model_event
from agents.pipeline import ScoringPipeline
from agents.replay import batches
from models.fusion import FusionParams, fuse
from models.registry import promoted_version
from models.runtime import DeteriorationModel
from simulator import SimConfig, simulate_cohort
from wardwatch.errors import ModelError
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore

REGISTRY = Settings().resolved_model_registry()
pytestmark = pytest.mark.skipif(
    promoted_version(REGISTRY, "deterioration") is None, reason="no shipped model"
)


@pytest.fixture(scope="module")
def model() -> DeteriorationModel:
    return DeteriorationModel.from_registry(REGISTRY)


@pytest.fixture(scope="module")
def cohort_events() -> list[VitalsEvent]:
    c = simulate_cohort(
        12, seed=3, start=datetime(2026, 2, 1, tzinfo=UTC), config=SimConfig(hours=24)
    )
    return [VitalsEvent.model_validate(e) for e in c.events]


def test_incremental_scoring_equals_whole_sequence(
    model: DeteriorationModel, cohort_events: list[VitalsEvent]
) -> None:
    """Event by event through the stored (JSON) state == all steps chained in memory."""
    whole = model.score(
        [(e.patient_id, None, model_event(e, e.spo2_scale or 1)) for e in cohort_events]
    )
    states: dict[str, dict | None] = {}
    incremental = []
    for e in cohort_events:
        (sc,) = model.score(
            [(e.patient_id, states.get(e.patient_id), model_event(e, e.spo2_scale or 1))]
        )
        states[e.patient_id] = json.loads(json.dumps(sc.state))  # as stored in Redis
        incremental.append(sc.risk)
    diff = np.abs(np.array([s.risk for s in whole]) - np.array(incremental)).max()
    assert diff < 1e-4, diff
    assert len({round(r, 3) for r in incremental}) > 20  # the model really varies


async def test_pipeline_batches_of_any_size_give_the_same_risks(
    model: DeteriorationModel, cohort_events: list[VitalsEvent]
) -> None:
    async def run(size: int) -> list[float | None]:
        pipe = ScoringPipeline(MemoryStateStore(), models=ModelHolder(model), alerts=False)
        out: list[float | None] = []
        items = [Incoming(e, str(i)) for i, e in enumerate(cohort_events)]
        for chunk in batches(items, size):
            out += [s.model_risk for s in (await pipe.process(chunk)).scored]
        return out

    one, many = await run(1), await run(256)
    assert None not in one
    assert np.abs(np.array(one, float) - np.array(many, float)).max() < 1e-4


async def test_lost_state_is_rewarmed_from_history(
    model: DeteriorationModel, cohort_events: list[VitalsEvent]
) -> None:
    """A patient whose model state is lost is rebuilt from the ring buffer: with the whole
    stay in the buffer, the next risk equals the uninterrupted one."""
    pid = cohort_events[0].patient_id
    mine = [e for e in cohort_events if e.patient_id == pid][:41]

    async def run(forget: bool) -> tuple[float | None, int]:
        store = MemoryStateStore()
        pipe = ScoringPipeline(store, models=ModelHolder(model), alerts=False)
        for e in mine[:-1]:
            await pipe.process([Incoming(e)])
        if forget:  # e.g. Redis lost the key's model field, or a new version was promoted
            state = (await store.load([pid]))[pid].state
            state.model = None
            store.states[pid] = state.to_json()
        last = await pipe.process([Incoming(mine[-1])])
        return last.scored[0].model_risk, pipe.rewarmed

    (kept, n0), (rewarmed, n1) = await run(False), await run(True)
    assert (n0, n1) == (0, 1)
    assert kept is not None and rewarmed is not None
    assert abs(kept - rewarmed) < 1e-4


async def test_model_outage_never_silences_the_rules(cohort_events: list[VitalsEvent]) -> None:
    class Broken:
        version = "v-broken"
        name = "deterioration"
        meta: dict = {}
        fusion = FusionParams()
        thresholds = None

        def owns(self, _state: object) -> bool:
            return True

        def score(self, *_a: object, **_k: object) -> list:
            raise RuntimeError("onnxruntime exploded")

    reasons: list[str] = []
    pipe = ScoringPipeline(
        MemoryStateStore(),
        models=ModelHolder(Broken()),  # type: ignore[arg-type]
        on_model_unavailable=lambda r, n: reasons.append(r),
    )
    res = await pipe.process([Incoming(e) for e in cohort_events[:50]])
    assert res.scored and all(s.model_risk is None for s in res.scored)
    assert all(s.model_reason == "model_error" for s in res.scored)
    assert all(s.news2.total is not None for s in res.scored)
    assert reasons == ["model_error"]


async def test_a_model_failing_part_way_drops_the_live_states_it_stepped(
    cohort_events: list[VitalsEvent],
) -> None:
    """In-process (live) model states are stepped in place; when the model fails during a
    batch, every patient of the batch loses its model state (rebuilt later), so no patient
    keeps features advanced by only part of the batch."""
    model = DeteriorationModel.from_registry(REGISTRY)  # its own: step_batch is replaced
    store = MemoryStateStore(serialize=False)
    pipe = ScoringPipeline(store, models=ModelHolder(model), alerts=False, keep_history=False)
    first, second = cohort_events[:60], cohort_events[60:200]
    await pipe.process([Incoming(e) for e in first])
    pids = sorted({e.patient_id for e in second})
    before = await store.load(pids)
    assert all(before[p].state.model for p in pids if p in {e.patient_id for e in first})

    real, calls = model.step_batch, []

    def fails_on_the_second_wave(feats: np.ndarray, h: np.ndarray) -> tuple:
        calls.append(len(feats))
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real(feats, h)

    model.step_batch = fails_on_the_second_wave  # type: ignore[method-assign]
    res = await pipe.process([Incoming(e) for e in second])
    assert len(calls) == 2 and all(s.model_reason == "model_error" for s in res.scored)
    after = await store.load(pids)
    assert all(after[p].state.model is None for p in pids)

    model.step_batch = real  # type: ignore[method-assign]
    res = await pipe.process([Incoming(e) for e in cohort_events[200:260]])
    assert all(s.model_risk is not None for s in res.scored)


def test_tampered_or_missing_model_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "reg"
    shutil.copytree(REGISTRY, root)
    version = promoted_version(root, "deterioration")
    assert version is not None
    onnx = root / "deterioration" / version / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="sha256"):
        DeteriorationModel.from_registry(root)
    with pytest.raises(ModelError, match="no promoted version"):
        DeteriorationModel.from_registry(root, "nope")


def test_fusion_is_identity_without_imaging_and_monotone_in_the_finding() -> None:
    assert fuse(0.2) == 0.2 and fuse(None, 0.9) is None
    assert fuse(0.2, 0.1, imaging_prior=0.1) == pytest.approx(0.2)
    assert fuse(0.2, 0.9) > fuse(0.2, 0.5) > 0.2 > fuse(0.2, 0.01)


def test_ownership_of_stored_and_live_states(
    model: DeteriorationModel, cohort_events: list[VitalsEvent]
) -> None:
    """A state is this model's when version, sha256 and hidden size match, stored (JSON
    strings) or live (objects); anything else is rebuilt (rewarmed) by the pipeline."""
    evs = [model_event(e, 1) for e in cohort_events if e.patient_id == cohort_events[0].patient_id]
    (live,) = [
        s.state for s in model.score([("p", None, e) for e in evs[:3]], live=True) if s.state
    ]
    (stored,) = [s.state for s in model.score([("p", None, e) for e in evs[:3]]) if s.state]
    assert model.owns(live) and model.owns(stored)
    assert not model.owns(None) and not model.owns({})
    assert not model.owns({**stored, "version": "v-other"})
    assert not model.owns({**stored, "sha256": "0" * 64})
    assert not model.owns({**stored, "h": "not base64!"})
    assert not model.owns({**stored, "h": stored["h"][: len(stored["h"]) // 2]})
    assert not model.owns({**live, "h": live["h"][:8]})
    assert not model.owns({**stored, "features": None})


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
    reason="this host has CUDA (tests/gpu covers it)",
)
def test_cuda_requested_without_a_gpu_falls_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    from models.session import choose_providers

    assert choose_providers("auto") == ["CPUExecutionProvider"]
    with caplog.at_level("WARNING", logger="models.session"):
        assert choose_providers("cuda") == ["CPUExecutionProvider"]
    assert "CUDA execution provider requested but not available" in caplog.text
    model = DeteriorationModel.from_registry(REGISTRY, providers=choose_providers("cuda"))
    assert model.session.provider == "CPUExecutionProvider" and not model.session._gpu
