"""The scoring pipeline: one batch of validated vitals events in, alert transitions out.

Free of Kafka and Faust so that the worker, the ``wardwatch score`` replay and the tests
run exactly the same code. Per batch:

1. ``store.load``: one round trip for every patient in the batch (state + context);
2. per event, in order: apply to the patient's state (stale/duplicate events change
   nothing), NEWS2 and qSOFA on the patient's current vitals, the alert policy;
3. ``store.commit``: one atomic round trip (conditional on each patient's version) that
   writes the states and puts new transitions, guarded by their ids, into the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.model_stage import Incoming, ModelHolder, ModelStage, Staged
from alerts import AlertEvent, AlertState, Observation, PolicyConfig, evaluate
from alerts import acknowledge as policy_acknowledge
from alerts import resolve as policy_resolve
from alerts import tick as policy_tick
from models.fusion import fuse
from models.news2 import News2Result, news2_from_vitals
from models.qsofa import QsofaResult, qsofa_from_vitals
from wardwatch.patient import PatientState, apply_event, history_entry
from wardwatch.store import CommitResult, Emit, StateStore, Update

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Scored:
    patient_id: str
    ts_ms: int
    news2: News2Result
    qsofa: QsofaResult
    model_risk: float | None = None
    model_version: str | None = None
    fused_risk: float | None = None
    model_reason: str | None = None  # why model_risk is None
    event_id: str = ""


_NO_CONTEXT: dict[str, Any] = {}  # shared, never changed


def _scale(ctx: dict[str, Any], state: PatientState) -> int:
    """SpO2 scale: the clinician's setting (context) wins over the device's."""
    return int(ctx.get("spo2_scale") or state.spo2_scale_device or 1)


@dataclass
class BatchResult:
    scored: list[Scored] = field(default_factory=list)
    duplicates: int = 0
    stale: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (batch index, why)
    conflicts: list[str] = field(default_factory=list)  # patients whose events were not applied
    conflict_retries: int = 0  # times conflicting patients were reloaded and applied again
    suppressed_artifacts: int = 0
    emitted: list[dict[str, Any]] = field(default_factory=list)  # accepted transitions
    outbox_ids: list[str] = field(default_factory=list)

    def add(self, part: BatchResult, positions: Sequence[int]) -> None:
        """Fold in the result of the sub-batch made of this batch's events at
        ``positions`` (its skipped indices are mapped back); conflicts stay the caller's."""
        self.scored += part.scored
        self.duplicates += part.duplicates
        self.stale += part.stale
        self.skipped += [(positions[i], why) for i, why in part.skipped]
        self.suppressed_artifacts += part.suppressed_artifacts
        self.emitted += part.emitted
        self.outbox_ids += part.outbox_ids
        self.conflict_retries += part.conflict_retries


def alert_message(ev: AlertEvent, source_ts_ms: int | None, now_ms: int) -> dict[str, Any]:
    """The JSON published on the alerts topic: the transition plus delivery timing."""
    msg = ev.to_dict()
    msg["emitted_ms"] = now_ms
    if source_ts_ms is not None:
        msg["source_ts_ms"] = source_ts_ms
    return msg


def _emit(pid: str, state: AlertState, ev: AlertEvent, source_ts_ms: int | None, now: int) -> Emit:
    return Emit(
        pid=pid,
        transition_id=ev.transition_id,
        event=alert_message(ev, source_ts_ms, now),
        open=state.status in ("open", "acknowledged"),
        opened_ms=state.opened_ts_ms or ev.ts_ms,
    )


def _watch(state: PatientState) -> bool:
    """Whether the patient's alert state has timers to run (see ``ScoringPipeline.tick``)."""
    return _watching(AlertState.from_json(state.alert))


def _watching(alert: AlertState) -> bool:
    return alert.status in ("open", "acknowledged") or alert.pending_candidate is not None


class ScoringPipeline:
    def __init__(
        self,
        store: StateStore,
        policy: PolicyConfig | None = None,
        *,
        vitals_max_age_s: float = 4 * 3600,
        baseline_alpha: float = 0.02,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        models: ModelHolder | None = None,
        alerts: bool = True,
        keep_history: bool = True,
        on_model_unavailable: Callable[[str, int], None] | None = None,
        on_inference: Callable[[str, str, float], None] | None = None,
        conflict_retries: int = 5,
    ) -> None:
        self.store = store
        self.conflict_retries = conflict_retries
        # one load-to-commit at a time: the worker's vitals, commands and timers run as
        # separate tasks and would otherwise race each other on the same patients
        self._writing = asyncio.Lock()
        self.models = models
        self.alerts = alerts  # False: score only (replay of historical data)
        self.keep_history = keep_history  # ring buffer for trends, sparklines and rewarming
        self.policy = policy or PolicyConfig()
        self.model_stage = ModelStage(
            store,
            baseline_alpha=baseline_alpha,
            # contributions explain alerts: none to explain when replaying scores only
            explain_above=self.policy.model_risk_medium if alerts else None,
            on_model_unavailable=on_model_unavailable,
            on_inference=on_inference,
        )
        self.max_age_ms = int(vitals_max_age_s * 1000)
        self.baseline_alpha = baseline_alpha
        self.clock = clock
        self.time_scale = time_scale
        self._stream_ms: int | None = None  # newest event time processed
        self._stream_wall = 0.0

    @property
    def rewarmed(self) -> int:
        """Patients whose model state was rebuilt from their history."""
        return self.model_stage.rewarmed

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def policy_now_ms(self) -> int:
        """The clock timers (escalation, artifact hold) run on.

        Wall-clock time in production. When time is compressed (``time_scale`` > 1, the
        demo), event time advanced ``time_scale`` times faster than the wall clock since the
        newest event, so timers keep their clinical meaning in simulated hours.
        """
        if self.time_scale == 1.0 or self._stream_ms is None:
            return self.now_ms()
        return self._stream_ms + int((self.clock() - self._stream_wall) * 1000 * self.time_scale)

    async def process(self, batch: Sequence[Incoming]) -> BatchResult:
        """Apply and score ``batch``. Patients whose stored state changed between load and
        commit (another writer) are reloaded and their events applied again, up to
        ``conflict_retries`` times; the patients still in conflict after that are in
        ``conflicts``, their events not applied (the caller must not acknowledge them)."""
        async with self._writing:
            return await self._process_locked(batch)

    async def _process_locked(self, batch: Sequence[Incoming]) -> BatchResult:
        result = await self._process_once(batch)
        for _ in range(self.conflict_retries):
            if not result.conflicts:
                break
            pending = set(result.conflicts)
            positions = [i for i, it in enumerate(batch) if it.event.patient_id in pending]
            again = await self._process_once([batch[i] for i in positions])
            result.add(again, positions)
            result.conflicts = again.conflicts
            result.conflict_retries += 1
        return result

    async def _process_once(self, batch: Sequence[Incoming]) -> BatchResult:
        result = BatchResult()
        if not batch:
            return result
        loaded = await self.store.load([i.event.patient_id for i in batch])
        touched: dict[str, PatientState] = {}
        history: dict[str, list[str]] = {}
        alert_states: dict[str, AlertState] = {}
        emits: list[Emit] = []
        suppressed: dict[str, int] = {}  # artifacts held per patient
        now = self.now_ms()

        # 1. apply each event to its patient's state (stale and duplicate ones change nothing)
        applied_items: list[Staged] = []
        baseline_alpha, max_age_ms = self.baseline_alpha, self.max_age_ms
        newest: int | None = None
        for index, item in enumerate(batch):
            ev = item.event
            ts = ev.ts_ms()
            if newest is None or ts > newest:
                newest = ts
            entry = loaded[ev.patient_id]
            state = entry.state
            vitals = ev.vitals()
            # positional: this runs once per event
            applied = apply_event(state, ev, baseline_alpha, max_age_ms, ts, vitals)
            status = applied.status
            if status != "applied":
                result.skipped.append((index, status))
                if status == "duplicate":
                    result.duplicates += 1
                else:
                    result.stale += 1
            else:
                touched[ev.patient_id] = state
                ctx = entry.context or _NO_CONTEXT
                # the SpO2 scale as of this event (batch boundaries must not matter)
                applied_items.append(
                    Staged(item, state, ctx, applied, ts, vitals, _scale(ctx, state))
                )

        # 2. the deep model: one version for the whole batch, one ONNX call per wave
        model = self.models.current if self.models is not None else None
        risks = await self.model_stage.scores(model, applied_items)
        fusion = (model.meta.get("fusion") or {}) if model is not None else {}
        imaging_weight = float(fusion.get("imaging_weight", 0.5))
        imaging_prior = float(fusion.get("imaging_prior", 0.1))

        # 3. rules (always) and the alert policy, in event order
        scored = result.scored
        for (item, state, ctx, applied, ts, _, scale), (risk, reason, contrib) in zip(
            applied_items, risks, strict=True
        ):
            ev = item.event
            pid = ev.patient_id
            current = applied.current
            n2 = news2_from_vitals(current, spo2_scale=scale)
            q = qsofa_from_vitals(current)
            if risk is None or model is None:
                fused = version = None
            else:
                imaging = ctx.get("imaging")
                fused = fuse(
                    risk,
                    imaging.get("probability") if imaging else None,
                    imaging_weight=imaging_weight,
                    imaging_prior=imaging_prior,
                )
                version = model.version
            scored.append(Scored(pid, ts, n2, q, risk, version, fused, reason, item.event_id))
            if self.keep_history:
                history.setdefault(pid, []).append(history_entry(ev, n2.total, fused))
            if not self.alerts:
                continue
            obs = Observation(
                ts_ms=ts,
                news2=n2,
                vitals=current,
                baseline_z=applied.baseline_z,
                baseline_n=applied.baseline_n,
                baseline_mean=applied.baseline_mean,
                model_risk=fused,
                model_version=version,
                model_contributions=contrib,
                event_id=item.event_id,
            )
            # parsed once per patient and batch, written back once after the loop
            before = alert_states.get(pid) or AlertState.from_json(state.alert)
            alert_state, events = evaluate(pid, before, obs, self.policy)
            held = alert_state.suppressed_artifacts - before.suppressed_artifacts
            if held:
                result.suppressed_artifacts += held
                suppressed[pid] = suppressed.get(pid, 0) + held
            alert_states[pid] = alert_state
            emits.extend(_emit(pid, alert_state, e, item.source_ts_ms, now) for e in events)
        for pid, alert_state in alert_states.items():
            touched[pid].alert = alert_state.to_json()

        updates = [
            Update(
                pid,
                s.version,
                s,
                history.get(pid, []),
                seen_ms=s.watermark_ms,
                # alert timers change only when the policy runs (never when replaying)
                watch=_watching(alert_states[pid]) if pid in alert_states else None,
            )
            for pid, s in touched.items()
        ]
        commit = await self.store.commit(updates, emits)
        self._collect(result, commit, emits)
        if commit.conflicts:  # nothing of these patients was applied: no effect to report
            self._drop_patients(result, batch, set(commit.conflicts), suppressed)
        assert newest is not None  # the batch is not empty
        if self._stream_ms is None or newest > self._stream_ms:
            self._stream_ms, self._stream_wall = newest, self.clock()
        return result

    @staticmethod
    def _drop_patients(
        result: BatchResult,
        batch: Sequence[Incoming],
        pids: set[str],
        suppressed: dict[str, int],
    ) -> None:
        """Forget the scores and counts of ``pids``: their commit did not happen."""
        result.scored = [s for s in result.scored if s.patient_id not in pids]
        kept = [(i, why) for i, why in result.skipped if batch[i].event.patient_id not in pids]
        for i, why in result.skipped:
            if batch[i].event.patient_id in pids:
                if why == "duplicate":
                    result.duplicates -= 1
                else:
                    result.stale -= 1
        result.skipped = kept
        result.suppressed_artifacts -= sum(suppressed.get(pid, 0) for pid in pids)

    @staticmethod
    def _collect(result: BatchResult, commit: CommitResult, emits: Sequence[Emit]) -> None:
        result.conflicts = commit.conflicts
        accepted = set(commit.accepted)
        result.emitted = [e.event for e in emits if e.transition_id in accepted]
        result.outbox_ids = commit.outbox_ids

    async def tick(self, pids: Sequence[str], now_ms: int | None = None) -> BatchResult:
        """Time-driven transitions (escalation, held readings) at ``now_ms`` (default: the
        policy clock)."""
        return await self._act(
            pids, lambda pid, st, now: policy_tick(pid, st, now, self.policy), now_ms=now_ms
        )

    async def acknowledge(self, pid: str, actor: str) -> BatchResult:
        return await self._act(
            [pid], lambda p, st, now: policy_acknowledge(p, st, actor, now), retries=3
        )

    async def resolve(self, pid: str, actor: str) -> BatchResult:
        return await self._act(
            [pid], lambda p, st, now: policy_resolve(p, st, actor, now), retries=3
        )

    async def _act(
        self,
        pids: Sequence[str],
        fn: Callable[[str, AlertState, int], tuple[AlertState, list[AlertEvent]]],
        retries: int = 1,
        now_ms: int | None = None,
    ) -> BatchResult:
        async with self._writing:
            return await self._act_locked(pids, fn, retries, now_ms)

    async def _act_locked(
        self,
        pids: Sequence[str],
        fn: Callable[[str, AlertState, int], tuple[AlertState, list[AlertEvent]]],
        retries: int,
        now_ms: int | None,
    ) -> BatchResult:
        result = BatchResult()
        todo = list(dict.fromkeys(pids))
        for _ in range(retries):
            if not todo:
                break
            loaded = await self.store.load(todo)
            now = self.policy_now_ms() if now_ms is None else now_ms
            updates: list[Update] = []
            emits: list[Emit] = []
            gone: list[str] = []  # no stored state (expired): nothing to write back
            for pid in todo:
                state = loaded[pid].state
                alert_state, events = fn(pid, AlertState.from_json(state.alert), now)
                if not events:
                    if state.version == 0:
                        gone.append(pid)
                    elif not _watch(state):  # nothing left to time: stop watching
                        updates.append(Update(pid, state.version, state, watch=False))
                    continue
                state.alert = alert_state.to_json()
                updates.append(Update(pid, state.version, state, watch=_watch(state)))
                emits.extend(_emit(pid, alert_state, e, None, now) for e in events)
            if gone:
                await self.store.forget(gone)
            commit = await self.store.commit(updates, emits)
            step = BatchResult()
            self._collect(step, commit, emits)
            result.emitted += step.emitted
            result.outbox_ids += step.outbox_ids
            todo = commit.conflicts
        result.conflicts = todo
        return result
