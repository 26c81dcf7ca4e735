"""Per-patient state stores: Redis for workers, in-process memory for replay and tests.

Key schema (version ``v1``; the only module that knows it)::

    {prefix}:v1:p:{pid}      hash  ver -> commit counter, s -> PatientState JSON
    {prefix}:v1:h:{pid}      list  recent observations, newest first (ring buffer)
    {prefix}:v1:ctx:{pid}    string PatientContext JSON (ADT / clinician settings)
    {prefix}:v1:a:{pid}      string latest alert transition of the patient's current episode
    {prefix}:v1:open         zset  pid -> time the open alert was raised (page, escalation)
    {prefix}:v1:aid:{tid}    string NX guard per alert transition id (idempotent emission)
    {prefix}:v1:outbox       stream transitions committed but not yet confirmed on Kafka
    {prefix}:v1:audit        stream every accepted transition (capped)
    {prefix}:v1:patients     zset  pid -> last event time (patients monitored)
    {prefix}:v1:watch        zset  patients whose alert needs timers (open, or a held reading)

Every per-patient key has a TTL (``state_ttl_s``) refreshed on each commit, so silent or
discharged patients disappear by themselves.

One batch costs two round trips: ``load`` (one pipeline) and ``commit`` (one Lua script,
atomic). The commit is conditional on each patient's ``ver`` (optimistic concurrency), so
two workers that briefly both hold a patient during a rebalance cannot both apply it.
Transitions are written to the outbox inside the same atomic commit, guarded by
``SET NX`` on their deterministic id; the worker publishes the outbox to Kafka and then
deletes the entries, and re-publishes leftovers at start-up. A crash can therefore at
worst publish a transition twice (same ``transition_id``; consumers dedupe), never lose one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

from wardwatch.errors import ConfigError
from wardwatch.patient import PatientState
from wardwatch.settings import Settings

COMMIT_LUA = r"""
local p = cjson.decode(ARGV[1])
local pre = p.prefix .. ':v1:'
local conflicts = {}
local conflicted = {}
for _, u in ipairs(p.updates) do
  local key = pre .. 'p:' .. u.pid
  local ver = tonumber(redis.call('HGET', key, 'ver') or '0')
  if ver ~= u.ver then
    conflicted[u.pid] = true
    table.insert(conflicts, u.pid)
  else
    redis.call('HSET', key, 'ver', ver + 1, 's', u.state)
    redis.call('EXPIRE', key, p.ttl)
    if #u.hist > 0 then
      local hkey = pre .. 'h:' .. u.pid
      for _, h in ipairs(u.hist) do redis.call('LPUSH', hkey, h) end
      redis.call('LTRIM', hkey, 0, p.hist_max - 1)
      redis.call('EXPIRE', hkey, p.ttl)
    end
    if u.seen_ms > 0 then redis.call('ZADD', pre .. 'patients', u.seen_ms, u.pid) end
    if u.watch == 1 then redis.call('ZADD', pre .. 'watch', 0, u.pid)
    elseif u.watch == 0 then redis.call('ZREM', pre .. 'watch', u.pid) end
  end
end
local accepted = {}
local sids = {}
for _, t in ipairs(p.transitions) do
  if not conflicted[t.pid] then
    if redis.call('SET', pre .. 'aid:' .. t.tid, '1', 'NX', 'EX', p.guard_ttl) then
      local sid = redis.call('XADD', pre .. 'outbox', '*', 'tid', t.tid, 'pid', t.pid, 'event', t.event)
      redis.call('XADD', pre .. 'audit', 'MAXLEN', '~', p.audit_max, '*',
                 'tid', t.tid, 'event', t.event)
      local akey = pre .. 'a:' .. t.pid
      redis.call('SET', akey, t.event, 'EX', p.ttl)
      if t.open then
        redis.call('ZADD', pre .. 'open', t.opened_ms, t.pid)
      else
        redis.call('ZREM', pre .. 'open', t.pid)
      end
      table.insert(accepted, t.tid)
      table.insert(sids, sid)
    end
  end
end
return {conflicts, accepted, sids}
"""


def redis_key(prefix: str, kind: str, pid: str = "") -> str:
    """The key of ``kind`` (``p``, ``h``, ``ctx``, ``a``, ``open``, ...) in the v1 schema."""
    return f"{prefix}:v1:{kind}:{pid}" if pid else f"{prefix}:v1:{kind}"


@dataclass
class Update:
    """A patient's new state, committed only if its version is still ``expected_version``."""

    pid: str
    expected_version: int
    state: PatientState
    history: list[str] = field(default_factory=list)
    seen_ms: int | None = None
    watch: bool | None = None  # needs time-driven checks (None: unchanged)


@dataclass
class Emit:
    """An alert transition to emit once (guarded by its id)."""

    pid: str
    transition_id: str
    event: dict[str, Any]
    open: bool  # whether the patient's alert is still open after this transition
    opened_ms: int = 0


@dataclass
class CommitResult:
    conflicts: list[str]
    accepted: list[str]  # transition ids newly emitted into the outbox
    outbox_ids: list[str] = field(default_factory=list)  # their outbox stream ids


@dataclass
class Loaded:
    state: PatientState
    context: dict[str, Any] | None


class StateStore(Protocol):
    async def load(self, pids: Sequence[str]) -> dict[str, Loaded]: ...
    async def commit(self, updates: Sequence[Update], emits: Sequence[Emit]) -> CommitResult: ...
    async def set_context(self, pid: str, context: dict[str, Any]) -> None: ...
    async def history(self, pid: str, n: int = 48) -> list[dict[str, Any]]: ...
    async def histories(
        self, pids: Sequence[str], n: int = 96
    ) -> dict[str, list[dict[str, Any]]]: ...
    async def forget(self, pids: Sequence[str]) -> None: ...


class RedisStateStore:
    """The worker's store. All methods are coroutines on ``redis.asyncio``."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "ww",
        ttl_s: int = 7 * 24 * 3600,
        hist_max: int = 96,
        guard_ttl_s: int = 30 * 24 * 3600,
        audit_max: int = 100_000,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.r = client
        self.observe = observe  # (operation, seconds) for the round-trip histogram
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hist_max = hist_max
        self.guard_ttl_s = guard_ttl_s
        self.audit_max = audit_max
        self._commit = client.register_script(COMMIT_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        ssl_ca_certs: str | None = None,
        client_options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> RedisStateStore:
        """A store on the server at ``url``; ``ssl_ca_certs`` verifies a ``rediss://``
        server whose certificate a private CA signed; ``client_options`` go to redis-py
        (timeouts, health checks)."""
        options: dict[str, Any] = {"ssl_ca_certs": ssl_ca_certs} if ssl_ca_certs else {}
        options |= client_options or {}
        return cls(aioredis.Redis.from_url(url, **options), **kw)

    @classmethod
    def from_settings(
        cls, settings: Settings, observe: Callable[[str, float], None] | None = None
    ) -> RedisStateStore:
        """The worker's store as the settings describe it (URL, TLS CA, timeouts, prefix,
        TTL)."""
        if not settings.redis_url:
            raise ConfigError("WARDWATCH_REDIS_URL is not set")
        ca = settings.redis_ssl_ca_certs
        return cls.from_url(
            settings.redis_url,
            ssl_ca_certs=str(ca) if ca else None,
            client_options={
                "socket_timeout": settings.redis_socket_timeout_s,
                "socket_connect_timeout": settings.redis_connect_timeout_s,
                "health_check_interval": settings.redis_health_check_interval_s,
            },
            prefix=settings.redis_prefix,
            ttl_s=settings.state_ttl_s,
            observe=observe,
        )

    def key(self, kind: str, pid: str = "") -> str:
        return redis_key(self.prefix, kind, pid)

    async def ping(self) -> bool:
        return bool(await self.r.ping())

    async def close(self) -> None:
        await self.r.aclose()

    async def load(self, pids: Sequence[str]) -> dict[str, Loaded]:
        unique = list(dict.fromkeys(pids))
        if not unique:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for pid in unique:
            pipe.hmget(self.key("p", pid), "ver", "s")
        pipe.mget([self.key("ctx", pid) for pid in unique])
        t0 = time.perf_counter()
        results = await pipe.execute()
        if self.observe:
            self.observe("load", time.perf_counter() - t0)
        contexts = results[-1]
        out: dict[str, Loaded] = {}
        for pid, (ver, raw), ctx in zip(unique, results[:-1], contexts, strict=True):
            state = PatientState.from_json(raw)
            state.version = int(ver or 0)
            out[pid] = Loaded(state, json.loads(ctx) if ctx else None)
        return out

    async def commit(self, updates: Sequence[Update], emits: Sequence[Emit]) -> CommitResult:
        if not updates and not emits:
            return CommitResult([], [])
        payload = {
            "prefix": self.prefix,
            "ttl": self.ttl_s,
            "guard_ttl": self.guard_ttl_s,
            "hist_max": self.hist_max,
            "audit_max": self.audit_max,
            "updates": [
                {
                    "pid": u.pid,
                    "ver": u.expected_version,
                    "state": u.state.to_json(),
                    "hist": u.history,
                    "seen_ms": u.seen_ms or 0,
                    "watch": -1 if u.watch is None else int(u.watch),
                }
                for u in updates
            ],
            "transitions": [
                {
                    "pid": e.pid,
                    "tid": e.transition_id,
                    "event": json.dumps(e.event, separators=(",", ":")),
                    "open": e.open,
                    "opened_ms": e.opened_ms,
                }
                for e in emits
            ],
        }
        t0 = time.perf_counter()
        conflicts, accepted, sids = await self._commit(
            args=[json.dumps(payload, separators=(",", ":"))]
        )
        if self.observe:
            self.observe("commit", time.perf_counter() - t0)
        return CommitResult(_strs(conflicts), _strs(accepted), _strs(sids))

    async def outbox(
        self, count: int = 1000, *, after: str = "-", committed_before_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Committed transitions not yet confirmed as published, oldest first: (stream id,
        event); from ``after`` (exclusive) and, with ``committed_before_ms``, only those
        committed before then."""
        low = "-" if after == "-" else f"({after}"
        high = "+" if committed_before_ms is None else str(committed_before_ms - 1)
        rows: Any = await self.r.xrange(self.key("outbox"), low, high, count=count)
        return [(sid.decode(), json.loads(fields[b"event"])) for sid, fields in rows]

    async def outbox_done(self, stream_ids: Iterable[str]) -> None:
        ids = list(stream_ids)
        if ids:
            await self.r.xdel(self.key("outbox"), *ids)

    async def set_context(self, pid: str, context: dict[str, Any]) -> None:
        await self.r.set(self.key("ctx", pid), json.dumps(context), ex=self.ttl_s)

    async def history(self, pid: str, n: int = 48) -> list[dict[str, Any]]:
        rows = await self.r.lrange(self.key("h", pid), 0, n - 1)
        return [json.loads(r) for r in reversed(rows)]

    async def histories(self, pids: Sequence[str], n: int = 96) -> dict[str, list[dict[str, Any]]]:
        """Recent observations of several patients, oldest first, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for pid in pids:
            pipe.lrange(self.key("h", pid), 0, n - 1)
        rows = await pipe.execute()
        return {
            pid: [json.loads(r) for r in reversed(rs)] for pid, rs in zip(pids, rows, strict=True)
        }

    async def open_alerts(self) -> list[dict[str, Any]]:
        pids = _strs(await self.r.zrange(self.key("open"), 0, -1))
        if not pids:
            return []
        raws = await self.r.mget([self.key("a", pid) for pid in pids])
        return [json.loads(r) for r in raws if r]

    async def forget(self, pids: Sequence[str]) -> None:
        """Drop patients whose state has expired from the timer, open-alert and monitoring
        indexes, writing no state (a timer must not bring an expired patient back)."""
        if not pids:
            return
        pipe = self.r.pipeline(transaction=False)
        for index in ("watch", "open", "patients"):
            pipe.zrem(self.key(index), *pids)
        await pipe.execute()

    async def trim_patients(self, now_ms: int | None = None) -> int:
        """Drop from the monitoring index the patients silent longer than the state TTL
        (their state has expired); returns how many. Keeps the index bounded."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return int(
            await self.r.zremrangebyscore(self.key("patients"), "-inf", now - self.ttl_s * 1000 - 1)
        )

    async def watched(self) -> list[str]:
        """Patients whose alert state has timers running (escalation, held readings)."""
        return _strs(await self.r.zrange(self.key("watch"), 0, -1))

    async def current_alert(self, pid: str) -> dict[str, Any] | None:
        raw = await self.r.get(self.key("a", pid))
        return json.loads(raw) if raw else None

    async def patients_monitored(self, since_ms: int | None = None) -> int:
        lo = since_ms if since_ms is not None else int(time.time() * 1000) - self.ttl_s * 1000
        return int(await self.r.zcount(self.key("patients"), lo, "+inf"))

    async def audit(self, count: int = 100) -> list[dict[str, Any]]:
        rows: Any = await self.r.xrevrange(self.key("audit"), count=count)
        return [json.loads(fields[b"event"]) for _, fields in rows]


class MemoryStateStore:
    """In-process store with the same behaviour as Redis (replay, unit tests).

    ``serialize=True`` round-trips every state through JSON like Redis does;
    ``serialize=False`` (single-process replay) keeps the objects, which is faster.
    """

    def __init__(self, hist_max: int = 96, *, serialize: bool = True) -> None:
        self.serialize = serialize
        self.states: dict[str, str | PatientState] = {}
        self.versions: dict[str, int] = {}
        self.contexts: dict[str, dict[str, Any]] = {}
        self.hist: dict[str, list[str]] = {}
        self.guards: set[str] = set()
        self.watch: set[str] = set()
        self.emitted: list[dict[str, Any]] = []
        self.hist_max = hist_max

    async def load(self, pids: Sequence[str]) -> dict[str, Loaded]:
        out = {}
        for pid in dict.fromkeys(pids):
            stored = self.states.get(pid)
            state = stored if isinstance(stored, PatientState) else PatientState.from_json(stored)
            state.version = self.versions.get(pid, 0)
            out[pid] = Loaded(state, self.contexts.get(pid))
        return out

    async def commit(self, updates: Sequence[Update], emits: Sequence[Emit]) -> CommitResult:
        conflicts: list[str] = []
        for u in updates:
            if self.versions.get(u.pid, 0) != u.expected_version:
                conflicts.append(u.pid)
                continue
            self.versions[u.pid] = u.expected_version + 1
            self.states[u.pid] = u.state.to_json() if self.serialize else u.state
            if u.watch is not None:
                (self.watch.add if u.watch else self.watch.discard)(u.pid)
            if u.history:
                h = self.hist.setdefault(u.pid, [])
                h[:0] = list(reversed(u.history))
                del h[self.hist_max :]
        accepted = []
        for e in emits:
            if e.pid in conflicts or e.transition_id in self.guards:
                continue
            self.guards.add(e.transition_id)
            self.emitted.append(e.event)
            accepted.append(e.transition_id)
        return CommitResult(conflicts, accepted)

    async def forget(self, pids: Sequence[str]) -> None:
        for pid in pids:
            self.watch.discard(pid)

    async def set_context(self, pid: str, context: dict[str, Any]) -> None:
        self.contexts[pid] = context

    async def history(self, pid: str, n: int = 48) -> list[dict[str, Any]]:
        return [json.loads(r) for r in reversed(self.hist.get(pid, [])[:n])]

    async def histories(self, pids: Sequence[str], n: int = 96) -> dict[str, list[dict[str, Any]]]:
        return {pid: await self.history(pid, n) for pid in pids}


def _strs(values: Iterable[Any]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]
