"""The scoring pipeline: one batch of validated vitals events in, alert transitions out.

Free of Kafka and Faust so that the worker, the ``wardwatch score`` replay and the tests
run exactly the same code. Per batch:

1. ``store.load``: one round trip for every patient in the batch (state + context);
2. per event, in order: apply to the patient's state (a duplicate changes nothing; a late
   one is merged and scored for the record, without the model or the alert policy; one
   older than the late window is left for the caller to dead-letter), NEWS2 and qSOFA
   on the patient's current vitals, the alert policy on event time;
3. ``store.commit``: atomic per patient (conditional on its version), it writes the
   states and puts new transitions, guarded by their ids, into the patient's outbox, and
   records each partition's event time (see ``wardwatch.store`` for its round trips).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.model_stage import Incoming, ModelHolder, ModelStage, Staged, version_policy
from agents.shadow import Shadow, ShadowState
from alerts import AlertEvent, AlertState, Observation, PolicyConfig, evaluate
from alerts import acknowledge as policy_acknowledge
from alerts import discharge as policy_discharge
from alerts import resolve as policy_resolve
from alerts import tick as policy_tick
from models.news2 import News2Result, news2_from_vitals
from models.qsofa import QsofaResult, qsofa_from_vitals
from wardwatch.ingest import ReadingFlag
from wardwatch.patient import PatientState, apply_event, history_row
from wardwatch.store import CommitResult, Emit, StateStore, Update
from wardwatch.topics import partition_for

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
    late: bool = False  # merged for the record: scored on its own values, never paged
    flags: tuple[ReadingFlag, ...] = ()  # readings set aside or to verify (from ingest)


_NO_CONTEXT: dict[str, Any] = {}  # shared, never changed


def _scale(ctx: dict[str, Any], state: PatientState) -> int:
    """SpO2 scale: the clinician's setting (context) wins over the device's."""
    return int(ctx.get("spo2_scale") or state.spo2_scale_device or 1)


@dataclass
class BatchResult:
    scored: list[Scored] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0  # of scored, merged for the record only
    too_late: int = 0  # not applied: the caller dead-letters them (see skipped)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (batch index, why)
    conflicts: list[str] = field(default_factory=list)  # patients whose events were not applied
    conflict_retries: int = 0  # times conflicting patients were reloaded and applied again
    suppressed_artifacts: int = 0
    emitted: list[dict[str, Any]] = field(default_factory=list)  # accepted transitions
    outbox_ids: list[str] = field(default_factory=list)
    stream_ms: dict[int, int] = field(default_factory=dict)  # partition -> newest event time
    # the shadow model's would-be transitions (alerts-shadow, never paged)
    shadow_emitted: list[dict[str, Any]] = field(default_factory=list)
    shadow_outbox_ids: list[str] = field(default_factory=list)

    def add(self, part: BatchResult, positions: Sequence[int]) -> None:
        """Fold in the result of the sub-batch made of this batch's events at
        ``positions`` (its skipped indices are mapped back); conflicts stay the caller's."""
        self.scored += part.scored
        self.duplicates += part.duplicates
        self.late += part.late
        self.too_late += part.too_late
        self.skipped += [(positions[i], why) for i, why in part.skipped]
        self.suppressed_artifacts += part.suppressed_artifacts
        self.emitted += part.emitted
        self.outbox_ids += part.outbox_ids
        self.conflict_retries += part.conflict_retries
        self.shadow_emitted += part.shadow_emitted
        self.shadow_outbox_ids += part.shadow_outbox_ids


def alert_message(
    ev: AlertEvent, source_ts_ms: int | None, now_ms: int, clock_ms: int | None = None
) -> dict[str, Any]:
    """The JSON published on the alerts topic: the transition plus delivery timing, and
    ``data_age_s``: how old the observation behind it is on the policy's clock
    (``clock_ms``; wall-clock time in production), so that paging can leave alone what
    only old or backfilled data raised (see ``Settings.page_max_data_age_s``)."""
    msg = ev.to_dict()
    msg["emitted_ms"] = now_ms
    if source_ts_ms is not None:
        msg["source_ts_ms"] = source_ts_ms
    observed = ev.explanation.get("observation_ts_ms")
    observed_ms = int(observed) if isinstance(observed, int | float) else ev.ts_ms
    msg["data_age_s"] = round(
        max(0, (now_ms if clock_ms is None else clock_ms) - observed_ms) / 1000, 3
    )
    return msg


def _emit(
    pid: str,
    state: AlertState,
    ev: AlertEvent,
    source_ts_ms: int | None,
    now: int,
    clock_ms: int | None = None,
) -> Emit:
    return Emit(
        pid=pid,
        transition_id=ev.transition_id,
        event=alert_message(ev, source_ts_ms, now, clock_ms),
        open=state.status in ("open", "acknowledged"),
        opened_ms=state.opened_ts_ms or ev.ts_ms,
    )


def _first(pair: tuple[int, Scored]) -> int:
    return pair[0]


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
        late_window_s: float = 3600.0,
        stream_lateness_s: float = 60.0,
        stream_idle_s: float = 120.0,
        partitions: int = 1,
        baseline_alpha: float = 0.02,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        models: ModelHolder | None = None,
        alerts: bool = True,
        keep_history: bool = True,
        on_model_unavailable: Callable[[str, int], None] | None = None,
        on_inference: Callable[[str, str, float], None] | None = None,
        conflict_retries: int = 5,
        shadow: Shadow | None = None,
    ) -> None:
        self.store = store
        self.shadow = shadow  # a candidate model beside the live one (agents.shadow)
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
        self.late_window_ms = int(late_window_s * 1000)
        self.lateness_ms = int(stream_lateness_s * 1000)
        self.idle_s = stream_idle_s
        self.partitions = partitions
        self.baseline_alpha = baseline_alpha
        self.clock = clock
        self.time_scale = time_scale
        self._stream_ms: int | None = None  # newest event time processed
        self._stream_wall = 0.0
        # event time per vitals partition: its newest event time, in log order, and when
        # (wall clock) it last moved; see event_now
        self.stream: dict[int, int] = {}
        self.stream_wall: dict[int, float] = {}
        self._started = clock()

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

    def partition_of(self, item: Incoming) -> int:
        """The vitals partition of an event: where it came from, else the one that owns
        its patient (a replay), so that a replay and the workers keep the same clocks."""
        if item.partition is not None:
            return item.partition
        return partition_for(item.event.patient_id, self.partitions)

    def event_now(self, partition: int) -> int:
        """Event time on ``partition`` for the timers the data decide (held readings):
        its newest event time less ``stream_lateness_s``. A partition with no new event for
        ``stream_idle_s`` (wall clock) advances with the clock from then on (nothing
        arrives to decide otherwise); one with no event seen yet since start-up, after
        ``stream_idle_s``, is at the clock's time (``policy_now_ms``)."""
        newest = self.stream.get(partition)
        idle_s = self.clock() - self.stream_wall.get(partition, self._started) - self.idle_s
        if newest is None:
            return self.policy_now_ms() - self.lateness_ms if idle_s > 0 else -(2**62)
        now = newest - self.lateness_ms
        if idle_s > 0:
            now += int(idle_s * 1000 * self.time_scale)
        return now

    def restore_stream(self, times: dict[int, int]) -> None:
        """Event time per partition as stored by an earlier commit (a restart, a
        rebalance): a partition's clock resumes where the log had got, not where this
        worker's first batch puts it."""
        for partition, ms_ in times.items():
            if ms_ > self.stream.get(partition, -(2**62)):
                self.stream[partition] = ms_
                self.stream_wall.setdefault(partition, self.clock())

    async def process(self, batch: Sequence[Incoming]) -> BatchResult:
        """Apply and score ``batch``. Patients whose stored state changed between load and
        commit (another writer) are reloaded and their events applied again, up to
        ``conflict_retries`` times; the patients still in conflict after that are in
        ``conflicts``, their events not applied (the caller must not acknowledge them)."""
        async with self._writing:
            return await self._process_locked(batch)

    def _stream_times(self, batch: Sequence[Incoming]) -> tuple[list[int], dict[int, int]]:
        """Event time of each event's partition as of that event (its newest event time
        so far, in log order), and each partition's newest after the batch."""
        running: dict[int, int] = {}
        times: list[int] = []
        stream = self.stream
        for item in batch:
            p = self.partition_of(item)
            ts = item.event.ts_ms()
            now = running.get(p)
            if now is None:
                now = stream.get(p, ts)
            if ts > now:
                now = ts
            running[p] = now
            times.append(now)
        return times, running

    async def _process_locked(self, batch: Sequence[Incoming]) -> BatchResult:
        times, newest = self._stream_times(batch)
        result = await self._process_once(batch, times, newest)
        for _ in range(self.conflict_retries):
            if not result.conflicts:
                break
            pending = set(result.conflicts)
            positions = [i for i, it in enumerate(batch) if it.event.patient_id in pending]
            again = await self._process_once(
                [batch[i] for i in positions], [times[i] for i in positions], newest
            )
            result.add(again, positions)
            result.conflicts = again.conflicts
            result.conflict_retries += 1
        wall = self.clock()
        for p, ms_ in newest.items():
            if ms_ > self.stream.get(p, -(2**62)):
                self.stream[p] = ms_
                self.stream_wall[p] = wall
        result.stream_ms = newest
        return result

    async def _process_once(
        self, batch: Sequence[Incoming], times: Sequence[int], partition_ms: dict[int, int]
    ) -> BatchResult:
        result = BatchResult()
        if not batch:
            return result
        pids = [i.event.patient_id for i in batch]
        shadow = self.shadow if self.alerts else None
        shadow_loaded: dict[str, ShadowState] | None = None
        if shadow is None:
            loaded = await self.store.load(pids)
        else:  # concurrently: no extra round trip on the live path
            loaded, shadow_loaded = await asyncio.gather(self.store.load(pids), shadow.load(pids))
        touched: dict[str, PatientState] = {}
        history: dict[str, list[str | bytes]] = {}
        alert_states: dict[str, AlertState] = {}
        emits: list[Emit] = []
        suppressed: dict[str, int] = {}  # artifacts held per patient
        now = self.now_ms()
        clock = self.policy_now_ms()  # for the data's age

        # 1. apply each event to its patient's state (duplicates change nothing, late ones
        # are merged for the record, too late ones are left to the caller)
        applied_items: list[Staged] = []
        stream_at: list[int] = []  # event time of its partition, per applied event
        applied_at: list[int] = []  # batch index, per applied event
        late_scored: list[tuple[int, Scored]] = []
        baseline_alpha, max_age_ms, late_ms = (
            self.baseline_alpha,
            self.max_age_ms,
            self.late_window_ms,
        )
        lateness_ms = self.lateness_ms
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
            applied = apply_event(state, ev, baseline_alpha, max_age_ms, ts, vitals, late_ms)
            status = applied.status
            if status == "late":
                touched[ev.patient_id] = state
                result.late += 1
                ctx = entry.context or _NO_CONTEXT
                late = self._score_late(history, item, applied.current, _scale(ctx, state))
                late_scored.append((index, late))
                continue
            if status != "applied":
                result.skipped.append((index, status))
                if status == "duplicate":
                    result.duplicates += 1
                else:
                    result.too_late += 1
            else:
                stream_at.append(times[index] - lateness_ms)
                applied_at.append(index)
                touched[ev.patient_id] = state
                ctx = entry.context or _NO_CONTEXT
                # the SpO2 scale as of this event (batch boundaries must not matter)
                applied_items.append(
                    Staged(item, state, ctx, applied, ts, vitals, _scale(ctx, state))
                )

        # 2. the deep model: one version for the whole batch, one ONNX call per wave
        model = self.models.current if self.models is not None else None
        risks = await self.model_stage.scores(model, applied_items)
        # the version's operating points as the model-risk thresholds (if it has them)
        policy = version_policy(self.policy, model)

        # 3. rules (always) and the alert policy, in event order
        scored = result.scored
        rules: list[News2Result] = []  # NEWS2 per applied event, for the shadow
        for (item, state, ctx, applied, ts, vals, scale), (risk, reason, contrib), stream_ms in zip(
            applied_items, risks, stream_at, strict=True
        ):
            ev = item.event
            pid = ev.patient_id
            current = applied.current
            n2 = news2_from_vitals(current, spo2_scale=scale)
            if shadow_loaded is not None:
                rules.append(n2)
            q = qsofa_from_vitals(current)
            parts = None
            if risk is None or model is None:
                fused = version = None
            else:
                imaging = ctx.get("imaging")
                finding = imaging.get("probability") if imaging else None
                fused = model.fusion.fuse(risk, n2.total, finding)
                parts = model.fusion.parts(risk, n2.total, finding)
                version = model.version
            scored.append(
                Scored(
                    pid, ts, n2, q, risk, version, fused, reason, item.event_id, flags=item.flags
                )
            )
            if self.keep_history:
                history.setdefault(pid, []).append(
                    history_row(ev, n2.total, fused, False, ts, vals)
                )
            if not self.alerts or ctx.get("discharged"):
                continue  # scores only: a replay of history, or a patient who has left
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
                model_own_risk=risk if fused is not None else None,
                risk_parts=parts,
                event_id=item.event_id,
                flags=item.flags,
                context=ctx,
            )
            # parsed once per patient and batch, written back once after the loop
            before = alert_states.get(pid) or AlertState.from_json(state.alert)
            alert_state, events = evaluate(pid, before, obs, policy, stream_ms)
            held = alert_state.suppressed_artifacts - before.suppressed_artifacts
            if held:
                result.suppressed_artifacts += held
                suppressed[pid] = suppressed.get(pid, 0) + held
            alert_states[pid] = alert_state
            emits.extend(_emit(pid, alert_state, e, item.source_ts_ms, now, clock) for e in events)
        for pid, alert_state in alert_states.items():
            touched[pid].alert = alert_state.to_json()
        if late_scored:  # scores in event order, the late ones where they came
            merged = sorted([*zip(applied_at, scored, strict=True), *late_scored], key=_first)
            result.scored = [s for _, s in merged]

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
        if shadow is not None and shadow_loaded is not None:
            # committed before the live commit: a crash in between never leaves the live
            # state ahead of the shadow's (a replay is a duplicate for both)
            done = await shadow.run(
                applied_items,
                rules,
                stream_at,
                shadow_loaded,
                self.policy,
                lambda ev, source: alert_message(ev, source, now, clock),
                model.version if model is not None else None,
            )
            result.shadow_emitted, result.shadow_outbox_ids = done.emitted, done.outbox_ids
        # with the partitions' event time, so that a restart resumes their clocks
        commit = await self.store.commit(updates, emits, partition_ms)
        self._collect(result, commit, emits)
        if commit.conflicts:  # nothing of these patients was applied: no effect to report
            self._drop_patients(result, batch, set(commit.conflicts), suppressed)
        assert newest is not None  # the batch is not empty
        if self._stream_ms is None or newest > self._stream_ms:
            self._stream_ms, self._stream_wall = newest, self.clock()
        return result

    def _score_late(
        self,
        history: dict[str, list[str | bytes]],
        item: Incoming,
        own: dict[str, Any],
        scale: int,
    ) -> Scored:
        """A late event's score of record: NEWS2 and qSOFA on its own values, no model
        (its state runs in event order), no alert policy (no paging on old news)."""
        ev = item.event
        n2 = news2_from_vitals(own, spo2_scale=scale)
        score = Scored(ev.patient_id, ev.ts_ms(), n2, qsofa_from_vitals(own))
        score.model_reason, score.event_id, score.late = "late", item.event_id, True
        score.flags = item.flags
        if self.keep_history:
            history.setdefault(ev.patient_id, []).append(
                history_row(ev, n2.total, None, True, vitals=own)
            )
        return score

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
                    result.too_late -= 1
        result.late = sum(1 for s in result.scored if s.late)
        result.skipped = kept
        result.suppressed_artifacts -= sum(suppressed.get(pid, 0) for pid in pids)

    @staticmethod
    def _collect(result: BatchResult, commit: CommitResult, emits: Sequence[Emit]) -> None:
        result.conflicts = commit.conflicts
        accepted = set(commit.accepted)
        result.emitted = [e.event for e in emits if e.transition_id in accepted]
        result.outbox_ids = commit.outbox_ids

    async def tick(self, pids: Sequence[str], now_ms: int | None = None) -> BatchResult:
        """Time-driven transitions: re-pages at ``now_ms`` (default: the policy clock),
        held readings on the event time of each patient's partition (``event_now``)."""
        n = self.partitions

        def timers(pid: str, st: AlertState, now: int) -> tuple[AlertState, list[AlertEvent]]:
            stream_ms = self.event_now(partition_for(pid, n))
            return policy_tick(pid, st, now, self.policy, stream_ms)

        return await self._act(pids, timers, now_ms=now_ms)

    async def shadow_tick(self, pids: Sequence[str], now_ms: int | None = None) -> BatchResult:
        """The same timers on the shadow alert states of ``pids`` (see ``Shadow.tick``):
        the same clocks as :meth:`tick`, one load and one commit for all of them; the
        would-be transitions in ``shadow_emitted``. Never raises, never writes the live
        state; without a shadow, nothing."""
        result = BatchResult()
        shadow = self.shadow if self.alerts else None
        if shadow is None or not pids:
            return result
        n = self.partitions
        async with self._writing:
            now = self.policy_now_ms() if now_ms is None else now_ms
            model = self.models.current if self.models is not None else None
            done = await shadow.tick(
                list(dict.fromkeys(pids)),
                now,
                lambda pid: self.event_now(partition_for(pid, n)),
                self.policy,
                lambda ev: alert_message(ev, None, now),
                model.version if model is not None else None,
            )
        result.shadow_emitted, result.shadow_outbox_ids = done.emitted, done.outbox_ids
        return result

    async def acknowledge(self, pid: str, actor: str, now_ms: int | None = None) -> BatchResult:
        return await self._act(
            [pid], lambda p, st, now: policy_acknowledge(p, st, actor, now), 3, now_ms
        )

    async def resolve(self, pid: str, actor: str) -> BatchResult:
        return await self._act(
            [pid], lambda p, st, now: policy_resolve(p, st, actor, now), retries=3
        )

    async def discharge(self, pid: str) -> BatchResult:
        """The patient was discharged or transferred out: close the alert (RESOLVED,
        ``discharged``); until a new admission's context, their vitals are scored for the
        record without the alert policy. The shadow's alert, if any, is closed alike
        (``shadow_emitted``), after the live one."""
        result = await self._act(
            [pid], lambda p, st, now: policy_discharge(p, st, now), retries=3, keep_silent=True
        )
        shadow = self.shadow if self.alerts else None
        if shadow is not None:
            async with self._writing:
                now = self.policy_now_ms()
                model = self.models.current if self.models is not None else None
                done = await shadow.discharge(
                    pid,
                    now,
                    lambda ev: alert_message(ev, None, now),
                    model.version if model is not None else None,
                )
            result.shadow_emitted, result.shadow_outbox_ids = done.emitted, done.outbox_ids
        return result

    async def _act(
        self,
        pids: Sequence[str],
        fn: Callable[[str, AlertState, int], tuple[AlertState, list[AlertEvent]]],
        retries: int = 1,
        now_ms: int | None = None,
        keep_silent: bool = False,
    ) -> BatchResult:
        async with self._writing:
            return await self._act_locked(pids, fn, retries, now_ms, keep_silent)

    async def _act_locked(
        self,
        pids: Sequence[str],
        fn: Callable[[str, AlertState, int], tuple[AlertState, list[AlertEvent]]],
        retries: int,
        now_ms: int | None,
        keep_silent: bool = False,
    ) -> BatchResult:
        """``keep_silent``: a change ``fn`` makes without a transition is written back too
        (a discharge dropping a held reading); otherwise only transitions are."""
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
                before = AlertState.from_json(state.alert)
                alert_state, events = fn(pid, before, now)
                if not events:
                    if state.version == 0:
                        gone.append(pid)
                    elif keep_silent and alert_state is not before and alert_state != before:
                        # changed without a transition (a discharge dropping a held
                        # reading): written back, or the timer would still raise it
                        state.alert = alert_state.to_json()
                        updates.append(Update(pid, state.version, state, watch=_watch(state)))
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
