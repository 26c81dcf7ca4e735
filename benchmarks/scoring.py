"""Scoring stage throughput with the shipped ONNX model, batch 1 vs batch 256.

Three layers, each measured at batch size 1 and 256 on the same simulated events:

* ``onnx_step``: one ``session.run`` of the single-step graph (features ready);
* ``model_stage``: pre-process (feature step per event, state in/out) + one ONNX call per
  wave + post-process: what the worker's model stage costs per event;
* ``pipeline``: the whole scoring pipeline of the worker (state, NEWS2, model, alert
  policy) on the in-process store (Redis round trips are measured by ``state``);
* ``replay``: ``wardwatch score`` end to end (JSON lines in, validation, patient state,
  features, model, NEWS2, JSON lines out) in a fresh process as the command runs it, on
  one core, against its target of 20,000 events/s; compare across machines with care
  (the figure is absolute, and these machines are noisy).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agents.model_stage import Incoming, ModelHolder, model_event
from agents.pipeline import ScoringPipeline
from agents.replay import batches
from models.features import N_FEATURES
from models.runtime import DeteriorationModel
from simulator import SimConfig, simulate_cohort
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings
from wardwatch.store import MemoryStateStore

START = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


def _onnx(model: DeteriorationModel, batch: int, seconds: float) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (batch, N_FEATURES)).astype(np.float32)
    h = np.zeros((batch, model.hidden), np.float32)
    calls = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.step_batch(x, h)
        calls += 1
    dt = time.perf_counter() - t0
    return {
        "calls": calls,
        "events_per_s": _rate(calls * batch, dt),
        "ms_per_call": round(1000 * dt / calls, 4),
    }


def _model_stage(
    model: DeteriorationModel, events: list[VitalsEvent], batch: int
) -> dict[str, Any]:
    states: dict[str, dict[str, Any] | None] = {}
    items = [(e.patient_id, model_event(e, e.spo2_scale or 1)) for e in events]
    t0 = time.perf_counter()
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        scored = model.score([(pid, states.get(pid), ev) for pid, ev in chunk])
        for (pid, _), sc in zip(chunk, scored, strict=True):
            if sc.state:
                states[pid] = sc.state
    dt = time.perf_counter() - t0
    return {"events": len(items), "events_per_s": _rate(len(items), dt)}


async def _pipeline(
    model: DeteriorationModel, events: list[VitalsEvent], batch: int
) -> dict[str, Any]:
    pipe = ScoringPipeline(MemoryStateStore(), models=ModelHolder(model))
    items = [Incoming(e, str(i)) for i, e in enumerate(events)]
    t0 = time.perf_counter()
    for chunk in batches(items, batch):
        await pipe.process(chunk)
    dt = time.perf_counter() - t0
    return {"events": len(items), "events_per_s": _rate(len(items), dt)}


REPLAY_TARGET = 20_000  # events/s on one core

_REPLAY = """
import asyncio, json, sys
from wardwatch import heap
from agents.score_lines import score_stream
from wardwatch.settings import Settings
heap.settle()  # as run_score does
with open(sys.argv[1], "rb") as f, open(sys.argv[2], "w") as out:
    counts = asyncio.run(score_stream(f, out, Settings(), batch_size=int(sys.argv[3])))
print(json.dumps(counts))
"""


def _replay(events: list[VitalsEvent], batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_text("".join(e.model_dump_json(exclude_none=True) + "\n" for e in events))
        proc = subprocess.run(
            [sys.executable, "-c", _REPLAY, str(src), str(dst), str(batch)],
            capture_output=True,
            text=True,
            check=True,
        )
        counts = json.loads(proc.stdout.strip().splitlines()[-1])
        lines = sum(1 for _ in dst.open())
    if lines != counts["lines"] or counts["scored"] != len(events):
        raise RuntimeError(f"replay wrote {lines} lines for {counts}")
    return {"events": counts["scored"], "events_per_s": _rate(counts["lines"], counts["seconds"])}


def run(quick: bool = False) -> dict[str, Any]:
    model = DeteriorationModel.from_registry(Settings().resolved_model_registry())
    n, hours = (60, 12.0) if quick else (200, 24.0)
    cohort = simulate_cohort(n, seed=4, start=START, config=SimConfig(hours=hours))
    events = [VitalsEvent.model_validate(e) for e in cohort.events]
    seconds = 0.5 if quick else 2.0
    out: dict[str, Any] = {
        "model": f"{model.name} {model.version}",
        "provider": model.session.provider,
        "events": len(events),
    }
    for layer in ("onnx_step", "model_stage", "pipeline", "replay"):
        res = {}
        for b in (1, 256):
            if layer == "onnx_step":
                res[f"batch_{b}"] = _onnx(model, b, seconds)
            elif layer == "model_stage":
                res[f"batch_{b}"] = _model_stage(model, events, b)
            elif layer == "pipeline":
                res[f"batch_{b}"] = asyncio.run(_pipeline(model, events, b))
            else:  # the command's own batch size is 512
                res[f"batch_{b}"] = _replay(events, 512 if b == 256 else b)
        res["speedup_256_vs_1"] = round(
            res["batch_256"]["events_per_s"] / res["batch_1"]["events_per_s"], 2
        )
        out[layer] = res
    rate = out["replay"]["batch_256"]["events_per_s"]
    out["replay"]["note"] = "batch_256 is the command itself (batch 512)"
    out["replay"]["target_events_per_s"] = REPLAY_TARGET
    out["replay"]["meets_target"] = rate >= REPLAY_TARGET
    return out
