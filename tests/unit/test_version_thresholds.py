"""The worker pages on each model version's own operating points and fuses its risk with
NEWS2 as its metadata says; a version without them keeps the policy's thresholds and
its risk. Real ONNX models (the shipped v1 file under other versions' metadata)."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.model_stage import Incoming, ModelHolder, explain_floor, version_policy
from agents.pipeline import ScoringPipeline
from agents.score_lines import score_stream
from alerts import PolicyConfig
from models.fusion import STACKING_TAG, Stacking
from models.registry import list_versions
from models.runtime import DeteriorationModel
from simulator import SimConfig, simulate_cohort
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore

SHIPPED = Settings().resolved_model_registry()
pytestmark = pytest.mark.skipif(
    "v1" not in list_versions(SHIPPED, "deterioration"), reason="no shipped v1 model"
)
STACKING = {"a": -3.5, "b": 0.35, "c": 0.6, "tag": STACKING_TAG}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 as shipped (no operating points, no stacking); v2: v1's file with operating
    points far below its risks; v3: v1's file stacked on NEWS2 with operating points."""
    root = tmp_path_factory.mktemp("registry")
    src = SHIPPED / "deterioration" / "v1"
    extra: dict[str, dict[str, Any]] = {
        "v2": {"operating_points": {"medium": 0.001, "high": 0.002}},
        "v3": {
            "fusion": {"imaging_weight": 0.5, "imaging_prior": 0.1, "stacking": STACKING},
            "operating_points": {"medium": 0.2, "high": 0.5},
        },
    }
    shutil.copytree(src, root / "deterioration" / "v1")
    for version, blocks in extra.items():
        d = root / "deterioration" / version
        shutil.copytree(src, d)
        meta = json.loads((d / "metadata.json").read_text())
        meta.pop("operating_points", None)
        meta.pop("fusion", None)
        meta.update(blocks, version=version)
        (d / "metadata.json").write_text(json.dumps(meta))
    (root / "deterioration" / "PROMOTED").write_text("v1\n")
    return root


def load(root: Path, version: str) -> DeteriorationModel:
    return DeteriorationModel.from_registry(
        root, "deterioration", version, providers=["CPUExecutionProvider"]
    )


@pytest.fixture(scope="module")
def events() -> list[VitalsEvent]:
    c = simulate_cohort(
        6, seed=5, start=datetime(2026, 2, 1, tzinfo=UTC), config=SimConfig(hours=6)
    )
    return [VitalsEvent.model_validate(e) for e in c.events]


def test_the_policy_takes_a_versions_operating_points(registry: Path) -> None:
    base = PolicyConfig(cooldown_s=600.0)
    v1, v2 = load(registry, "v1"), load(registry, "v2")
    assert v1.thresholds is None and version_policy(base, v1) is base
    assert version_policy(base, None) is base
    p2 = version_policy(base, v2)
    assert (p2.model_risk_medium, p2.model_risk_high) == (0.001, 0.002)
    assert p2.cooldown_s == 600.0  # the rest of the policy is the settings'
    assert version_policy(base, v2) is p2  # built once per version
    # contributions: from the version's medium threshold; stacked, where the model is needed
    assert explain_floor(v1, 0.3) == 0.3 and explain_floor(v2, 0.3) == 0.001
    v3 = load(registry, "v3")
    floor = explain_floor(v3, 0.3)
    assert floor is not None and Stacking.from_dict(STACKING).risk(floor, 4) == pytest.approx(0.2)


async def _run(holder: ModelHolder, batches: list[list[VitalsEvent]]) -> list[dict[str, Any]]:
    pipe = ScoringPipeline(MemoryStateStore(), PolicyConfig(), models=holder)
    out: list[dict[str, Any]] = []
    for k, batch in enumerate(batches):
        res = await pipe.process([Incoming(e, f"{k}:{i}") for i, e in enumerate(batch)])
        out += res.emitted
    return out


async def test_the_worker_pages_on_the_versions_thresholds_and_on_hot_swap(
    registry: Path, events: list[VitalsEvent]
) -> None:
    v1, v2 = load(registry, "v1"), load(registry, "v2")
    pids = sorted({e.patient_id for e in events})
    opened_v2 = [a for a in await _run(ModelHolder(v2), [events]) if a["transition"] == "OPEN"]
    # every risk is above v2's high threshold: each patient opens high on the model at once
    assert sorted(a["patient_id"] for a in opened_v2) == pids
    assert all(a["priority"] == "high" and "model_risk" in a["reason"] for a in opened_v2)
    first = {e.patient_id: e for e in reversed(events)}
    assert all(a["ts_ms"] == first[a["patient_id"]].ts_ms() for a in opened_v2)

    # v1 (no operating points): the policy's 0.3 / 0.6, which these stable patients' first
    # readings are under; after a hot swap to v2, its thresholds apply to the next batch
    pid = pids[0]
    mine = [e for e in events if e.patient_id == pid]
    risks = [s.risk for s in v1.score([(pid, None, _model_event(e)) for e in mine[:3]])]
    assert max(risks) < 0.3
    holder = ModelHolder(v1)
    pipe = ScoringPipeline(MemoryStateStore(), PolicyConfig(), models=holder)
    before = await pipe.process([Incoming(e, str(i)) for i, e in enumerate(mine[:3])])
    assert not any("model_risk" in a["reason"] for a in before.emitted)
    holder.current = v2  # a promotion between batches
    after = await pipe.process([Incoming(e, f"b{i}") for i, e in enumerate(mine[3:5])])
    (page,) = [a for a in after.emitted if a["transition"] in ("OPEN", "ESCALATED")][:1]
    assert page["priority"] == "high" and "model_risk" in page["reason"]
    assert page["ts_ms"] == mine[3].ts_ms()


def _model_event(e: VitalsEvent) -> dict[str, Any]:
    return {"ts": e.ts_ms(), **e.vitals(), "spo2_scale": e.spo2_scale or 1}


async def test_a_stacked_version_fuses_with_news2_in_the_worker_and_in_score(
    registry: Path, events: list[VitalsEvent]
) -> None:
    v3 = load(registry, "v3")
    st = Stacking.from_dict(STACKING)
    pipe = ScoringPipeline(MemoryStateStore(), models=ModelHolder(v3), alerts=False)
    res = await pipe.process([Incoming(e, str(i)) for i, e in enumerate(events)])
    assert len(res.scored) == len(events)
    for s in res.scored:
        assert s.model_risk is not None and s.fused_risk is not None
        assert s.fused_risk == pytest.approx(st.risk(s.model_risk, s.news2.total), abs=1e-12)
    assert len({round(s.fused_risk or 0, 4) for s in res.scored}) > 10
    # `wardwatch score` prints the same fused risk (same path, rounded to 6 places)
    settings = Settings(model_registry=registry, onnx_provider="cpu")
    lines = "".join(
        json.dumps({**e.model_dump(mode="json", exclude_none=True)}) + "\n" for e in events
    )
    out = io.StringIO()
    await score_stream(io.BytesIO(lines.encode()), out, settings, version="v3")
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["fused_risk"] for r in rows] == [round(s.fused_risk or 0, 6) for s in res.scored]
    assert all(r["model_version"] == "v3" for r in rows)


async def test_a_stacked_versions_alert_explains_the_fused_risk_and_the_models_own(
    registry: Path, events: list[VitalsEvent]
) -> None:
    """The worker hands the explanation both risks and what each part adds: the parts add
    up to the fused risk the thresholds were applied to (real ONNX model, v3's stacking)."""
    import math

    alerts = [a for a in await _run(ModelHolder(load(registry, "v3")), [events])]
    modelled = [a for a in alerts if (a["explanation"] or {}).get("model")]
    assert modelled
    for a in modelled:
        m = a["explanation"]["model"]
        assert set(m["parts"]) == {"base", "news2", "model", "imaging"}
        assert m["parts"]["base"] == STACKING["a"]
        assert 0.0 < m["own_risk"] < 1.0 and m["carries_weight"] is True
        fused = 1.0 / (1.0 + math.exp(-sum(m["parts"].values())))
        assert fused == pytest.approx(m["risk"], abs=1e-3)
        if a["transition"] in ("OPEN", "ESCALATED"):
            assert "combined risk" in a["explanation"]["summary"]
