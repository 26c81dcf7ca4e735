"""The deep-model stage of the scoring pipeline: one model version for a batch, one ONNX
call per wave of events, each patient's recurrent state kept between batches and rebuilt
from recent history when it is missing or from another version.

A model outage (no model, or a failing one) never stops the rules: every event still gets
its NEWS2 and qSOFA, and the stage answers ``None`` with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, NamedTuple

from alerts import PolicyConfig
from models.fusion import Thresholds
from models.runtime import DeteriorationModel
from wardwatch.ingest import ReadingFlag
from wardwatch.patient import Applied, PatientState
from wardwatch.schemas import VitalsEvent
from wardwatch.store import StateStore

log = logging.getLogger(__name__)

# model risk, why it is None, and the feature contributions that explain it
ModelScore = tuple[float | None, str | None, dict[str, float] | None]


@dataclass(slots=True)
class Incoming:
    """A validated event with where it came from."""

    event: VitalsEvent
    event_id: str = ""  # "topic:partition:offset" or a replay line number
    source_ts_ms: int | None = None  # when the source message was produced (latency)
    partition: int | None = None  # the vitals partition it came from (None: the pipeline's)
    # readings set aside from the event or to verify (ingest), kept with its score
    flags: tuple[ReadingFlag, ...] = ()


@dataclass
class ModelHolder:
    """The model the pipeline uses; replaced atomically between batches on promotion."""

    current: DeteriorationModel | None = None


@lru_cache(maxsize=16)
def _with_thresholds(base: PolicyConfig, thresholds: Thresholds) -> PolicyConfig:
    return replace(base, model_risk_medium=thresholds.medium, model_risk_high=thresholds.high)


def version_policy(base: PolicyConfig, model: DeteriorationModel | None) -> PolicyConfig:
    """The alert policy for the scores of ``model``: ``base`` with the version's operating
    points (``metadata.json`` ``operating_points``) as its model-risk thresholds; ``base``
    itself for a version without them, or with no model."""
    if model is None or model.thresholds is None:
        return base
    return _with_thresholds(base, model.thresholds)


def explain_floor(model: DeteriorationModel, medium: float) -> float | None:
    """The model risk from which its contributions are computed: the medium threshold
    (the version's own, else ``medium``) for a version whose fused risk is its risk; for
    one stacked on NEWS2, the lowest model risk with which the fused risk reaches it at a
    NEWS2 total that would not alert by itself (None: the model's risk does not enter the
    fused risk)."""
    if model.thresholds is not None:
        medium = model.thresholds.medium
    stacking = model.fusion.stacking
    return medium if stacking is None else stacking.model_risk_floor(medium)


def model_event(event: VitalsEvent, spo2_scale: int) -> dict[str, Any]:
    """What the feature builder sees of an event (the trainer's event dicts)."""
    return {"ts": event.ts_ms(), **event.vitals(), "spo2_scale": spo2_scale}


class Staged(NamedTuple):
    """An applied event on its way through the batch."""

    item: Incoming
    state: PatientState
    ctx: dict[str, Any]
    applied: Applied
    ts: int  # event time, epoch ms
    vitals: dict[str, Any]
    scale: int  # the SpO2 scale as of this event


class ModelStage:
    """Model risks for the applied events of a batch."""

    def __init__(
        self,
        store: StateStore,
        *,
        baseline_alpha: float,
        explain_above: float | None,
        on_model_unavailable: Callable[[str, int], None] | None = None,
        on_inference: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.store = store  # for the histories a rewarm reads
        self.baseline_alpha = baseline_alpha
        self.explain_above = explain_above  # contributions only where an alert may need them
        self.on_model_unavailable = on_model_unavailable
        self.on_inference = on_inference  # (model, version, seconds) per batch
        self.rewarmed = 0

    async def scores(
        self, model: DeteriorationModel | None, items: Sequence[Staged]
    ) -> list[ModelScore]:
        """Model risk per applied event, or None with the reason (rules still score)."""
        if not items:
            return []
        if model is None:
            self.model_unavailable("no_model", len(items))
            return [(None, "no_model", None)] * len(items)
        try:
            await self._rewarm(model, items)
            t0 = time.perf_counter()
            scored = model.score(
                [
                    # the trainer's event dict, as model_event() builds it
                    (
                        it.item.event.patient_id,
                        it.state.model,
                        {"ts": it.ts, **it.vitals, "spo2_scale": it.scale},
                    )
                    for it in items
                ],
                # contributions explain alerts: none to explain when replaying scores only
                explain_above=(
                    None if self.explain_above is None else explain_floor(model, self.explain_above)
                ),
                live=True,  # serialized only when the store writes the patient's state
                baseline_steps=[it.applied.baseline_steps for it in items],
                baseline_alpha=self.baseline_alpha,
            )
            if self.on_inference is not None:
                self.on_inference(model.name, model.version, time.perf_counter() - t0)
        except Exception:  # noqa: BLE001 - a model outage must never stop the rules
            log.exception(
                "model %s %s failed; scoring with the rules only", model.name, model.version
            )
            self.model_unavailable("model_error", len(items))
            for it in items:  # possibly stepped part way: rebuilt from history next time
                it.state.model = None
            return [(None, "model_error", None)] * len(items)
        out: list[ModelScore] = []
        for it, sc in zip(items, scored, strict=True):
            if sc.state:  # the last event of each patient in the batch leaves its state
                it.state.model = sc.state
            out.append((sc.risk, None, sc.contributions))
        return out

    async def _rewarm(
        self,
        model: DeteriorationModel,
        items: Sequence[Staged],
    ) -> None:
        """Patients whose stored model state is missing or from another version, but who
        had events before: rebuild the state from their recent history (one read)."""
        need: dict[str, PatientState] = {}
        checked: set[str] = set()  # a patient's state is the same object for all its events
        for it in items:
            pid, state = it.item.event.patient_id, it.state
            if pid in checked:
                continue
            checked.add(pid)
            if state.n_events > 1 and not model.owns(state.model):
                need[pid] = state
        if not need:
            return
        histories = await self.store.histories(list(need))
        replay_items = []
        for pid, state in need.items():
            state.model = None
            scale = state.spo2_scale_device or 1
            for row in histories.get(pid, []):
                if row.get("late"):  # the model runs in event order: it never saw these
                    continue
                event = {k: v for k, v in row.items() if k not in ("t", "news2", "risk")}
                event["ts"] = int(row["t"])
                event["spo2_scale"] = scale
                replay_items.append((pid, None, event))
        if replay_items:
            for (pid, _, _), sc in zip(replay_items, model.score(replay_items), strict=True):
                if sc.state:
                    need[pid].model = sc.state
        self.rewarmed += len(need)

    def model_unavailable(self, reason: str, n: int) -> None:
        if self.on_model_unavailable is not None:
            self.on_model_unavailable(reason, n)
