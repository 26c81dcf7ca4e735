"""The worker scores with the ONNX model, switches versions on promotion without losing or
duplicating events, refuses a broken file, and agrees with ``wardwatch score``."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.score_lines import score_stream
from models.registry import list_versions, load_metadata, promoted_version
from simulator import SimConfig, simulate_cohort
from tests.integration.helpers import (
    consume,
    publish_events,
    start_worker,
    stored_history,
    stored_state,
)
from wardwatch.patient import PatientState
from wardwatch.schemas import ModelPromotion
from wardwatch.settings import Settings
from wardwatch.topics import ensure_topics, producer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SHIPPED = Settings().resolved_model_registry()


def _events(n: int, hours: float) -> list[dict]:
    start = datetime.now(UTC).replace(microsecond=0)
    start = start.fromtimestamp(start.timestamp() - (hours + 1) * 3600, UTC)
    cohort = simulate_cohort(n, seed=21, start=start, config=SimConfig(hours=hours))
    out = []
    for e in cohort.events:
        e = dict(e)
        e["ts"] = e["ts"].isoformat()
        out.append(e)
    return out


def _model_version(metrics: dict[str, float]) -> str | None:
    for name in metrics:
        if name.startswith("wardwatch_model_info{"):
            return name.split('version="')[1].split('"')[0]
    return None


def _registry(tmp_path: Path) -> tuple[Path, str, str, str]:
    """A copy of the shipped registry with two copies of the promoted version: the
    promoted one, a good copy and a copy damaged in transit."""
    root = tmp_path / "registry"
    shutil.copytree(SHIPPED, root)
    current = promoted_version(root, "deterioration")
    assert current is not None
    n = max(int(v[1:]) for v in list_versions(root, "deterioration"))
    good, broken = f"v{n + 1}", f"v{n + 2}"
    for version in (good, broken):
        d = root / "deterioration" / version
        shutil.copytree(root / "deterioration" / current, d)
        meta = json.loads((d / "metadata.json").read_text())
        meta["version"] = version
        (d / "metadata.json").write_text(json.dumps(meta))
    onnx = root / "deterioration" / broken / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-64])
    return root, current, good, broken


def _promote(settings: Settings, root: Path, version: str) -> None:
    meta = load_metadata(root, "deterioration", version)
    promo = ModelPromotion(
        model_name="deterioration",
        version=version,
        sha256=meta["sha256"],
        promoted_at=datetime.now(UTC),
    )
    prod = producer(settings)
    prod.send(settings.topics.control, key="deterioration", value=promo.model_dump_json().encode())
    prod.flush(10)
    prod.close(5)


def test_promotion_switches_versions_without_losing_or_duplicating_events(
    settings: Settings, tmp_path: Path
) -> None:
    root, current, good, broken = _registry(tmp_path)
    settings = settings.model_copy(update={"model_registry": root})
    ensure_topics(settings)
    events = _events(16, 6.0)
    worker = start_worker(settings, tmp_path)
    try:
        assert _model_version(worker.metrics()) == current
        half = len(events) // 2
        first, second = events[:half], events[half:]
        sender = threading.Thread(target=publish_events, args=(settings, first))
        sender.start()
        _promote(settings, root, good)  # while events are flowing
        sender.join()
        deadline = time.monotonic() + 30
        while _model_version(worker.metrics()) != good:
            assert time.monotonic() < deadline, f"worker never switched to {good}"
            time.sleep(0.2)
        _promote(settings, root, broken)  # a broken file: refused, the good copy stays
        deadline = time.monotonic() + 30
        while (
            worker.metrics().get('wardwatch_model_load_failures_total{model="deterioration"}', 0)
            < 1
        ):
            assert time.monotonic() < deadline, "broken model was not refused"
            time.sleep(0.2)
        publish_events(settings, second)
        pids = sorted({e["patient_id"] for e in events})

        def states() -> dict[str, PatientState]:
            return {p: stored_state(settings, p) for p in pids}

        deadline = time.monotonic() + 60
        while sum(s.n_events for s in states().values()) < len(events):
            assert time.monotonic() < deadline, "not every event was applied"
            time.sleep(0.3)
        final = states()
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert sum(s.n_events for s in final.values()) == len(events)  # none lost, none twice
    assert _model_version(metrics) == good
    assert {s.model["version"] for s in final.values() if s.model} == {good}
    unavailable = sum(
        v for k, v in metrics.items() if k.startswith("wardwatch_model_unavailable_total")
    )
    assert unavailable == 0  # every event had a model score across the switch
    alerts = consume(settings, settings.topics.alerts, until=lambda m: False, timeout_s=3)
    assert len({a["transition_id"] for a in alerts}) == len(alerts)


def test_worker_and_replay_give_identical_risks(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    events = _events(6, 4.0)
    worker = start_worker(settings, tmp_path)
    try:
        publish_events(settings, events)
        pids = sorted({e["patient_id"] for e in events})
        deadline = time.monotonic() + 60
        while sum(len(stored_history(settings, p)) for p in pids) < len(events):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        worker_risk = {
            (p, row["t"]): row.get("risk") for p in pids for row in stored_history(settings, p)
        }
    finally:
        worker.stop()
    out = io.StringIO()
    lines = io.BytesIO("".join(json.dumps(e) + "\n" for e in events).encode())
    asyncio.run(score_stream(lines, out, settings))
    replay = [json.loads(x) for x in out.getvalue().splitlines()]
    assert len(replay) == len(events)
    compared = 0
    for row in replay:
        t = int(datetime.fromisoformat(row["ts"]).timestamp() * 1000)
        mine = worker_risk[(row["patient_id"], t)]
        assert mine is not None and row["fused_risk"] is not None
        assert abs(mine - row["fused_risk"]) < 1e-4
        compared += 1
    assert compared == len(events)
