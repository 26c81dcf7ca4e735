"""Shadow mode: a candidate model run beside the live one, its would-be alerts published
on ``alerts-shadow`` and never paged.

Per batch, with ``shadow_model_version`` set, the scoring pipeline also:

1. loads the patients' shadow state (concurrently with their live state): the candidate's
   recurrent state, its own alert state and the newest event time the shadow applied;
2. scores the batch's applied events with the candidate (one batched ONNX call per wave,
   like the live model; a patient without shadow state is rewarmed from their history)
   and runs the alert policy on the shadow alert state with the candidate's fused risk
   and the same NEWS2, giving the would-be transitions;
3. commits every patient's shadow state with its new transitions, atomically per patient
   (guarded by transition id, into the patient's shadow outbox), *before* the live commit,
   so that a crash in between never leaves the live commit without the shadow's;
4. after the live alerts are published, publishes the shadow transitions on
   ``alerts-shadow`` and deletes them from the shadow outbox; what a failure leaves is
   published again at start-up and by the outbox sweep (at least once, keyed by
   transition id).

The worker's escalation timer also ticks the shadow alert states of the patients it owns
(:meth:`Shadow.tick`, after the live tick): on the same event-time clock as the live
timer, a held reading whose hold is over is raised and a medium alert whose repeat
observation is overdue is paged, committed through the same guarded commit into the
shadow outbox and published on ``alerts-shadow`` like the batch's. Nobody acknowledges
shadow alerts, so they are never re-paged (``unacknowledged``); the comparison leaves
those out on both sides. A discharge closes the shadow alert as it closes the live one
(:meth:`Shadow.discharge`), so no shadow timer runs on a patient who has left. Which
patients have shadow timers is kept in the shadow's own ``watch`` index (a superset,
like the live one: the tick drops those with nothing to time).

The shadow never changes what the live path reads or writes: its keys are its own
namespace, its failures (load, model, Redis, Kafka) are logged and counted in
``wardwatch_shadow_errors_total`` and the live batch goes on.

Redis keys, ``{ns}`` = ``{prefix}:shadow:{version}`` (a version has its own state)::

    {ns}:v2:p:{tag}          hash   w -> newest event time applied, m -> model state JSON,
                                    a -> AlertState JSON
    {ns}:v2:ob:{tag}         stream shadow transitions committed, not yet on Kafka
    {ns}:v2:aid:{tag}:{tid}  string NX guard per shadow transition id
    {ns}:v2:outbox           zset   pid -> time of the latest commit with transitions
    {ns}:v2:watch            zset   pid -> time of the latest commit leaving timers to run
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.model_stage import ModelStage, Staged, version_policy
from alerts import AlertEvent, AlertState, Observation, PolicyConfig, evaluate
from alerts import discharge as policy_discharge
from alerts import tick as policy_tick
from alerts.webhook import should_page
from models.news2 import News2Result
from models.runtime import DeteriorationModel
from wardwatch.errors import ModelError
from wardwatch.patient import PatientState
from wardwatch.settings import Settings
from wardwatch.store_api import StateStore
from wardwatch.store_commit import FENCED_ZREM, OUTBOX_DONE, Call, Lua, redis_key, run_stages
from wardwatch.store_commit import as_str as _str
from wardwatch.store_commit import dumps as _dumps

log = logging.getLogger("wardwatch.shadow")

# KEYS: p, ob, then the NX guard of each transition. ARGV: 1 expected watermark, 2 new
# watermark, 3 model state JSON, 4 alert state JSON, 5 TTL, 6 guard TTL, 7 expected alert
# state JSON, then per transition: its id, its event JSON. Returns {0} when the stored
# watermark or alert state is not the one loaded (another writer: nothing written; a
# timer's commit leaves the watermark as it is), else {1, {index, stream id, ...}}.
SHADOW_COMMIT_LUA = r"""
local stored = redis.call('HMGET', KEYS[1], 'w', 'a')
if tonumber(stored[1] or '-1') ~= tonumber(ARGV[1]) then return {0} end
if (stored[2] or '') ~= ARGV[7] then return {0} end
local ttl = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'w', ARGV[2], 'm', ARGV[3], 'a', ARGV[4])
redis.call('EXPIRE', KEYS[1], ttl)
local accepted = {}
local j = 0
while 8 + 2 * j <= #ARGV do
  local a = 8 + 2 * j
  if redis.call('SET', KEYS[3 + j], '1', 'NX', 'EX', ARGV[6]) then
    local sid = redis.call('XADD', KEYS[2], '*', 'tid', ARGV[a], 'event', ARGV[a + 1])
    redis.call('EXPIRE', KEYS[2], ttl)
    table.insert(accepted, j)
    table.insert(accepted, sid)
  end
  j = j + 1
end
return {1, accepted}
"""
_COMMIT = Lua(SHADOW_COMMIT_LUA)


@dataclass
class ShadowState:
    """One patient's shadow: as loaded (``loaded_ms`` and ``loaded_alert`` are the
    commit's condition)."""

    watermark_ms: int = -1
    model: dict[str, Any] | None = None
    alert: str | None = None
    loaded_ms: int = -1
    loaded_alert: str | None = None


@dataclass
class ShadowWrite:
    pid: str
    state: ShadowState
    events: list[dict[str, Any]] = field(default_factory=list)
    watch: bool | None = None  # its alert state has timers to run (None: not known)


class ShadowStore(Protocol):
    version: str

    async def load(self, pids: Sequence[str]) -> dict[str, ShadowState]: ...
    async def commit(
        self, writes: Sequence[ShadowWrite]
    ) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]: ...
    async def outbox(
        self, pids: Sequence[str] | None = None, committed_before_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]: ...
    async def outbox_patients(self) -> list[str]: ...
    async def done(self, outbox_ids: Sequence[str]) -> None: ...
    async def watched(self) -> list[str]: ...
    async def unwatch(self, pids: Sequence[str], before_ms: int) -> None: ...


def _watching(alert: AlertState) -> bool:
    """Whether a shadow alert state has timers to run (see :meth:`Shadow.tick`)."""
    return alert.status in ("open", "acknowledged") or alert.pending_candidate is not None


def _state_json(model: dict[str, Any] | None) -> str:
    """A model state as stored (a live one holds bytes and a feature-state object)."""

    def default(value: object) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        return value.to_json()  # type: ignore[attr-defined]

    return json.dumps(model, separators=(",", ":"), default=default) if model else ""


class RedisShadowStore:
    """Shadow state on the worker's Redis (same server or cluster, same hash tags)."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        version: str,
        cluster: bool = False,
        ttl_s: int = 7 * 24 * 3600,
        guard_ttl_s: int = 30 * 24 * 3600,
    ) -> None:
        self.r = client
        self.ns = f"{prefix}:shadow:{version}"
        self.version = version
        self.cluster = cluster
        self.ttl_s = ttl_s
        self.guard_ttl_s = guard_ttl_s

    def key(self, kind: str, pid: str = "") -> str:
        return redis_key(self.ns, kind, pid)

    async def _run(self, *stages: Sequence[Call]) -> list[Any]:
        return await run_stages(self.r, stages, ordered=not self.cluster)

    async def load(self, pids: Sequence[str]) -> dict[str, ShadowState]:
        unique = list(dict.fromkeys(pids))
        if not unique:
            return {}
        rows = await self._run([Call(("HMGET", self.key("p", p), "w", "m", "a")) for p in unique])
        out: dict[str, ShadowState] = {}
        for pid, (w, m, a) in zip(unique, rows, strict=True):
            wm = int(w) if w is not None else -1
            model = json.loads(m) if m else None
            alert = _str(a) if a else None
            out[pid] = ShadowState(wm, model, alert, wm, alert)
        return out

    async def commit(
        self, writes: Sequence[ShadowWrite]
    ) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
        """Each patient's shadow state and transitions, atomically per patient; returns
        the patients whose state another writer changed (nothing written) and the
        transitions accepted, as (outbox id, event), in commit order."""
        if not writes:
            return [], []
        now = int(time.time() * 1000)
        intents = [a for w in writes if w.events for a in (now, w.pid)]
        first = [Call(("ZADD", self.key("outbox"), "GT", *intents))] if intents else []
        # into the timer index before the commit (a superset: the tick drops the rest)
        timed = [a for w in writes if w.watch for a in (now, w.pid)]
        if timed:
            first.append(Call(("ZADD", self.key("watch"), "GT", *timed)))
        scripts = []
        for w in writes:
            keys = [self.key("p", w.pid), self.key("ob", w.pid)]
            keys += [f"{self.key('aid', w.pid)}:{e['transition_id']}" for e in w.events]
            s = w.state
            args: list[Any] = [
                s.loaded_ms,
                s.watermark_ms,
                _state_json(s.model),
                s.alert or "",
                self.ttl_s,
                self.guard_ttl_s,
                s.loaded_alert or "",
            ]
            for e in w.events:
                args += [e["transition_id"], _dumps(e)]
            scripts.append(Call(tuple(args), _COMMIT, keys))
        results = (await self._run(first, scripts))[len(first) :]
        conflicts: list[str] = []
        accepted: list[tuple[str, dict[str, Any]]] = []
        for w, res in zip(writes, results, strict=True):
            if int(res[0]) == 0:
                conflicts.append(w.pid)
                continue
            ids = res[1]
            for j in range(0, len(ids), 2):
                accepted.append((f"{_str(ids[j + 1])} {w.pid}", w.events[int(ids[j])]))
        return conflicts, accepted

    async def outbox_patients(self) -> list[str]:
        return [_str(v) for v in await self.r.zrange(self.key("outbox"), 0, -1)]

    async def outbox(
        self, pids: Sequence[str] | None = None, committed_before_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        if pids is None:
            pids = await self.outbox_patients()
        if not pids:
            return []
        high = "+" if committed_before_ms is None else str(committed_before_ms - 1)
        rows = await self._run([Call(("XRANGE", self.key("ob", p), "-", high)) for p in pids])
        out: list[tuple[str, dict[str, Any]]] = []
        for pid, entries in zip(pids, rows, strict=True):
            out += [(f"{_str(sid)} {pid}", json.loads(f[b"event"])) for sid, f in entries]
        return out

    async def done(self, outbox_ids: Sequence[str]) -> None:
        by_patient: dict[str, list[str]] = {}
        for oid in outbox_ids:
            sid, _, pid = oid.partition(" ")
            by_patient.setdefault(pid, []).append(sid)
        if by_patient:
            await self._run(
                [
                    Call(tuple(sids), OUTBOX_DONE, [self.key("ob", pid)])
                    for pid, sids in by_patient.items()
                ]
            )

    async def watched(self) -> list[str]:
        """Patients whose shadow alert state may have timers to run (a superset)."""
        return [_str(v) for v in await self.r.zrange(self.key("watch"), 0, -1)]

    async def unwatch(self, pids: Sequence[str], before_ms: int) -> None:
        """Drop ``pids`` from the timer index, fenced by ``before_ms``: a commit since
        that left timers to run keeps its entry."""
        if pids:
            args = [a for p in pids for a in (p, before_ms)]
            await self._run([Call(tuple(args), FENCED_ZREM, [self.key("watch")])])

    async def trim(self, pids: Sequence[str], before_ms: int) -> None:
        """Drop from the outbox index the patients among ``pids`` whose shadow outbox is
        empty (fenced by ``before_ms``: a commit since keeps its entry)."""
        if not pids:
            return
        exists = await self._run([Call(("EXISTS", self.key("ob", p))) for p in pids])
        empty = [a for p, n in zip(pids, exists, strict=True) if not n for a in (p, before_ms)]
        if empty:
            await self._run([Call(tuple(empty), FENCED_ZREM, [self.key("outbox")])])


class MemoryShadowStore:
    """In-process shadow store with the same behaviour (tests, replay)."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.states: dict[str, str] = {}
        self.guards: set[tuple[str, str]] = set()
        self.pending: dict[str, dict[str, Any]] = {}  # outbox id -> event, commit order
        self.watch: dict[str, int] = {}  # pid -> time of the latest commit watching it
        self._n = 0

    async def load(self, pids: Sequence[str]) -> dict[str, ShadowState]:
        out = {}
        for pid in dict.fromkeys(pids):
            raw = self.states.get(pid)
            d = json.loads(raw) if raw else {}
            wm = int(d.get("w", -1))
            m = d.get("m")
            a = d.get("a") or None
            out[pid] = ShadowState(wm, json.loads(m) if m else None, a, wm, a)
        return out

    async def commit(
        self, writes: Sequence[ShadowWrite]
    ) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
        conflicts: list[str] = []
        accepted: list[tuple[str, dict[str, Any]]] = []
        now = int(time.time() * 1000)
        for w in writes:
            if w.watch:
                self.watch[w.pid] = max(now, self.watch.get(w.pid, now))
        for w in writes:
            raw = self.states.get(w.pid)
            stored = json.loads(raw) if raw else {}
            if int(stored.get("w", -1)) != w.state.loaded_ms or (stored.get("a") or "") != (
                w.state.loaded_alert or ""
            ):
                conflicts.append(w.pid)
                continue
            s = w.state
            self.states[w.pid] = json.dumps(
                {"w": s.watermark_ms, "m": _state_json(s.model), "a": s.alert or ""}
            )
            for e in w.events:
                guard = (w.pid, e["transition_id"])
                if guard in self.guards:
                    continue
                self.guards.add(guard)
                self._n += 1
                oid = f"{self._n} {w.pid}"
                event = json.loads(_dumps(e))
                self.pending[oid] = event
                accepted.append((oid, event))
        return conflicts, accepted

    async def outbox_patients(self) -> list[str]:
        return list(dict.fromkeys(oid.partition(" ")[2] for oid in self.pending))

    async def outbox(
        self, pids: Sequence[str] | None = None, committed_before_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        wanted = None if pids is None else set(pids)
        return [
            (oid, e)
            for oid, e in self.pending.items()
            if wanted is None or oid.partition(" ")[2] in wanted
        ]

    async def done(self, outbox_ids: Sequence[str]) -> None:
        for oid in outbox_ids:
            self.pending.pop(oid, None)

    async def watched(self) -> list[str]:
        return list(self.watch)

    async def unwatch(self, pids: Sequence[str], before_ms: int) -> None:
        for pid in pids:
            if self.watch.get(pid, before_ms + 1) <= before_ms:
                del self.watch[pid]


def _timer_kind(msg: dict[str, Any]) -> str:
    """What a shadow timer transition was: a held reading raised, or an overdue repeat."""
    return "no_repeat_observation" if "no_repeat_observation" in msg["reason"] else "held_reading"


@dataclass
class ShadowHolder:
    """The candidate the shadow scores with (None: not loaded, the shadow idles)."""

    version: str
    current: DeteriorationModel | None = None


@dataclass
class ShadowResult:
    emitted: list[dict[str, Any]] = field(default_factory=list)
    outbox_ids: list[str] = field(default_factory=list)


ErrorCount = Callable[[str, int], None]


class Shadow:
    """The shadow stage of the scoring pipeline (see the module docstring)."""

    def __init__(
        self,
        store: ShadowStore,
        holder: ShadowHolder,
        states: StateStore,
        *,
        baseline_alpha: float = 0.02,
        min_priority: str = "medium",
        on_error: ErrorCount | None = None,
        on_scored: Callable[[int], None] | None = None,
        on_would_page: Callable[[str], None] | None = None,
        on_timer: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.holder = holder
        self.min_priority = min_priority
        self.on_error = on_error
        self.on_scored = on_scored
        self.on_would_page = on_would_page
        self.on_timer = on_timer  # a shadow timer transition committed, by kind
        # its own model stage: contributions are not computed (one ONNX call per wave)
        self.stage = ModelStage(
            states,
            baseline_alpha=baseline_alpha,
            explain_above=None,
            on_model_unavailable=self._error,
        )

    def _error(self, reason: str, n: int = 1) -> None:
        if self.on_error is not None:
            self.on_error(reason, n)

    async def load(self, pids: Sequence[str]) -> dict[str, ShadowState] | None:
        """The patients' shadow states, or None (counted) when they cannot be read: the
        shadow skips the batch, the live path goes on."""
        if self.holder.current is None:
            return None
        try:
            return await self.store.load(pids)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shadow never stops the live path
            log.exception("shadow state could not be loaded; shadow skips this batch")
            self._error("store")
            return None

    async def run(
        self,
        items: Sequence[Staged],
        news2: Sequence[News2Result],
        stream_at: Sequence[int],
        loaded: dict[str, ShadowState],
        policy: PolicyConfig,
        message: Callable[[Any, int | None], dict[str, Any]],
        live_version: str | None,
    ) -> ShadowResult:
        """Score, evaluate and commit the shadow of a batch's applied events; never raises
        (a failure is logged and counted, the batch's shadow is skipped)."""
        try:
            return await self._run(items, news2, stream_at, loaded, policy, message, live_version)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shadow never stops the live path
            log.exception("shadow evaluation failed; shadow skips this batch")
            self._error("store")
            return ShadowResult()

    async def _run(
        self,
        items: Sequence[Staged],
        news2: Sequence[News2Result],
        stream_at: Sequence[int],
        loaded: dict[str, ShadowState],
        policy: PolicyConfig,
        message: Callable[[Any, int | None], dict[str, Any]],
        live_version: str | None,
    ) -> ShadowResult:
        model = self.holder.current
        if model is None or not items:
            return ShadowResult()
        # what the shadow has not applied yet (a replay after its commit changes nothing)
        todo = [
            (it, n2, sms)
            for it, n2, sms in zip(items, news2, stream_at, strict=True)
            if it.ts > loaded[it.item.event.patient_id].watermark_ms
        ]
        if not todo:
            return ShadowResult()
        proxies: dict[str, PatientState] = {}  # the shadow's model state, never the live one
        staged = []
        for it, _, _ in todo:
            pid = it.item.event.patient_id
            proxy = proxies.get(pid)
            if proxy is None:
                proxy = proxies[pid] = PatientState(
                    n_events=it.state.n_events,
                    spo2_scale_device=it.state.spo2_scale_device,
                    model=loaded[pid].model,
                )
            staged.append(it._replace(state=proxy))
        risks = await self.stage.scores(model, staged)
        shadow_policy = version_policy(policy, model)
        alerts: dict[str, AlertState] = {}
        events: dict[str, list[dict[str, Any]]] = {}
        for (it, n2, sms), (risk, _, _) in zip(todo, risks, strict=True):
            pid = it.item.event.patient_id
            st = loaded[pid]
            st.watermark_ms = max(st.watermark_ms, it.ts)
            fused = None
            if risk is not None:
                imaging = it.ctx.get("imaging")
                fused = model.fusion.fuse(
                    risk, n2.total, imaging.get("probability") if imaging else None
                )
            if it.ctx.get("discharged"):
                continue
            obs = Observation(
                ts_ms=it.ts,
                news2=n2,
                vitals=it.applied.current,
                baseline_z=it.applied.baseline_z,
                baseline_n=it.applied.baseline_n,
                baseline_mean=it.applied.baseline_mean,
                model_risk=fused,
                model_version=model.version if fused is not None else None,
                event_id=it.item.event_id,
                flags=it.item.flags,
                context=it.ctx,
            )
            before = alerts.get(pid) or AlertState.from_json(st.alert)
            after, evs = evaluate(pid, before, obs, shadow_policy, sms)
            alerts[pid] = after
            for ev in evs:
                msg = self._message(message(ev, it.item.source_ts_ms), model, live_version, fused)
                events.setdefault(pid, []).append(msg)
        if self.on_scored is not None:
            self.on_scored(len(todo))
        writes = []
        for pid, proxy in proxies.items():
            st = loaded[pid]
            st.model = proxy.model
            watch = None
            if pid in alerts:
                st.alert = alerts[pid].to_json()
                watch = _watching(alerts[pid])
            writes.append(ShadowWrite(pid, st, events.get(pid, []), watch))
        return await self._commit(writes)

    async def _commit(self, writes: Sequence[ShadowWrite]) -> ShadowResult:
        conflicts, accepted = await self.store.commit(writes)
        if conflicts:
            self._error("conflict", len(conflicts))
        for _, e in accepted:
            if e["would_page"] and self.on_would_page is not None:
                self.on_would_page(str(e["priority"]))
        return ShadowResult([e for _, e in accepted], [oid for oid, _ in accepted])

    def _message(
        self,
        msg: dict[str, Any],
        model: DeteriorationModel,
        live_version: str | None,
        fused: float | None,
    ) -> dict[str, Any]:
        msg["shadow"] = True
        msg["model_version"] = model.version
        msg["live_model_version"] = live_version
        msg["fused_risk"] = None if fused is None else round(float(fused), 6)
        msg["would_page"] = should_page(msg, self.min_priority)
        return msg

    async def watched(self) -> list[str]:
        """The patients whose shadow alert state may have timers to run (a superset), or
        none (counted) when the shadow idles or the index cannot be read."""
        if self.holder.current is None:
            return []
        try:
            return await self.store.watched()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shadow never stops the live path
            log.exception("shadow timer index not readable; shadow timers skip this tick")
            self._error("store")
            return []

    async def tick(
        self,
        pids: Sequence[str],
        now_ms: int,
        event_now: Callable[[str], int],
        policy: PolicyConfig,
        message: Callable[[AlertEvent], dict[str, Any]],
        live_version: str | None,
    ) -> ShadowResult:
        """The timers of the patients' shadow alert states (one load, one commit for all
        of them): held readings and overdue repeats on each patient's event time
        (``event_now``), as the live timer runs them; no re-pages. Never raises (a
        failure is logged and counted, the shadow's tick is skipped)."""
        model = self.holder.current
        if model is None:
            return ShadowResult()
        shadow_policy = version_policy(policy, model)

        def timers(pid: str, st: AlertState) -> tuple[AlertState, list[AlertEvent]]:
            return policy_tick(pid, st, now_ms, shadow_policy, event_now(pid), repages=False)

        result = await self._act(pids, timers, message, live_version, "shadow timers")
        if self.on_timer is not None:
            for e in result.emitted:
                self.on_timer(_timer_kind(e))
        return result

    async def discharge(
        self,
        pid: str,
        now_ms: int,
        message: Callable[[AlertEvent], dict[str, Any]],
        live_version: str | None,
    ) -> ShadowResult:
        """The patient left the ward: their shadow alert is closed as the live one is
        (RESOLVED, ``discharged``; nothing held any more), so that no shadow timer runs on
        it. Never raises."""

        def close(p: str, st: AlertState) -> tuple[AlertState, list[AlertEvent]]:
            return policy_discharge(p, st, now_ms)

        return await self._act([pid], close, message, live_version, "shadow discharge")

    async def _act(
        self,
        pids: Sequence[str],
        fn: Callable[[str, AlertState], tuple[AlertState, list[AlertEvent]]],
        message: Callable[[AlertEvent], dict[str, Any]],
        live_version: str | None,
        what: str,
    ) -> ShadowResult:
        try:
            return await self._act_once(pids, fn, message, live_version)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shadow never stops the live path
            log.exception("%s failed; the shadow skips them this time", what)
            self._error("store")
            return ShadowResult()

    async def _act_once(
        self,
        pids: Sequence[str],
        fn: Callable[[str, AlertState], tuple[AlertState, list[AlertEvent]]],
        message: Callable[[AlertEvent], dict[str, Any]],
        live_version: str | None,
    ) -> ShadowResult:
        """``fn`` on the patients' shadow alert states: one load, one guarded commit of
        those it changed (conditional on the state loaded), and the patients left with
        nothing to time out of the timer index."""
        model = self.holder.current
        if model is None or not pids:
            return ShadowResult()
        fence = int(time.time() * 1000) - 1  # a commit after this load keeps its entry
        loaded = await self.store.load(pids)
        writes: list[ShadowWrite] = []
        idle: list[str] = []  # nothing to time (or no shadow state left): out of the index
        for pid, st in loaded.items():
            if st.alert is None:
                idle.append(pid)
                continue
            before = AlertState.from_json(st.alert)
            after, evs = fn(pid, before)
            if after is before:  # unchanged
                if not _watching(before):
                    idle.append(pid)
                continue
            st.alert = after.to_json()
            msgs = [self._message(message(ev), model, live_version, None) for ev in evs]
            writes.append(ShadowWrite(pid, st, msgs, _watching(after)))
        result = await self._commit(writes) if writes else ShadowResult()
        if idle:
            await self.store.unwatch(idle, fence)
        return result


class ShadowPublisher:
    """Shadow transitions from the shadow outbox to ``alerts-shadow`` (at least once,
    keyed by patient; the transition id is the idempotency key)."""

    def __init__(
        self,
        topic: Any,
        store: ShadowStore,
        owned: Callable[[Sequence[str]], list[str]],
        sweep_after_s: float,
        on_error: ErrorCount | None = None,
    ) -> None:
        self.topic = topic
        self.store = store
        self.owned = owned
        self.sweep_after_s = sweep_after_s
        self.on_error = on_error

    async def publish(self, emitted: Sequence[dict[str, Any]], outbox_ids: Sequence[str]) -> bool:
        """Publish, wait for the broker, then clear the outbox entries; False (counted,
        left in the outbox for the sweep) on a failure. Never raises."""
        if not emitted:
            return True
        try:
            futures = []
            for msg in emitted:
                msg["published_ms"] = int(time.time() * 1000)
                futures.append(
                    await self.topic.send(
                        key=str(msg["patient_id"]).encode(), value=json.dumps(msg).encode()
                    )
                )
            await asyncio.gather(*futures)
            await self.store.done(list(outbox_ids))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shadow never stops the live path
            log.exception("shadow transitions not published; the outbox sweep retries")
            if self.on_error is not None:
                self.on_error("publish", 1)
            return False
        return True

    async def flush(self, *, owned_only: bool = False) -> None:
        """Publish what the shadow outbox holds: all of it (start-up), or the owned
        patients' entries older than the sweep interval (the periodic sweep)."""
        try:
            pids = await self.store.outbox_patients()
            cutoff: int | None = None
            if owned_only:
                pids = self.owned(pids)
                cutoff = int((time.time() - self.sweep_after_s) * 1000)
            if not pids:
                return
            pending = await self.store.outbox(pids, cutoff)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shadow never stops the live path
            log.exception("shadow outbox not readable")
            if self.on_error is not None:
                self.on_error("store", 1)
            return
        if pending:
            log.info("publishing %d shadow transitions left in the outbox", len(pending))
            await self.publish([e for _, e in pending], [oid for oid, _ in pending])
        trim = getattr(self.store, "trim", None)
        if trim is not None and cutoff is not None:
            try:
                await trim(pids, cutoff)
            except Exception:  # noqa: BLE001 - the index is a superset: trimmed next time
                log.debug("shadow outbox index not trimmed", exc_info=True)


class ShadowControl:
    """Loads the candidate named by ``shadow_model_version`` from the model registry,
    verified like the live model; a failure is logged and counted (``load``), the shadow
    idles, and the load is tried again every ``retry_s``."""

    def __init__(
        self,
        settings: Settings,
        holder: ShadowHolder,
        on_error: ErrorCount | None = None,
        *,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.holder = holder
        self.on_error = on_error
        self.retry_s = retry_s
        self.clock = clock
        self._tried: float | None = None

    def load(self) -> bool:
        from models.session import choose_providers

        s = self.settings
        self._tried = self.clock()
        try:
            model = DeteriorationModel.from_registry(
                s.resolved_model_registry(),
                s.model_name,
                self.holder.version,
                providers=choose_providers(s.onnx_provider),
            )
        except ModelError as exc:
            log.error("shadow model %s %s refused: %s", s.model_name, self.holder.version, exc)
            if self.on_error is not None:
                self.on_error("load", 1)
            return False
        self.holder.current = model
        log.info("shadow model %s %s loaded", model.name, model.version)
        return True

    def due(self) -> bool:
        """Whether a failed load should be tried again now."""
        return self.holder.current is None and (
            self._tried is None or self.clock() - self._tried >= self.retry_s
        )
