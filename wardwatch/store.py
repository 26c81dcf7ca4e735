"""Per-patient state stores: Redis (one server or a Redis Cluster, the same code) for
workers, in-process memory for replay and tests.

Key schema (version ``v2``; the only module that knows it). ``{tag}`` is the patient id
in braces, with ``%``, ``{`` and ``}`` percent-encoded: the hash tag that puts all the keys
of a patient in one cluster slot, whatever characters the id holds::

    {prefix}:v2:p:{tag}          hash   ver -> commit counter, s -> PatientState (binary,
                                        see below; JSON before)
    {prefix}:v2:h:{tag}          list   recent observations, newest first (ring buffer of
                                        ``hist_max`` rows, binary; JSON before)
    {prefix}:v2:ctx:{tag}        string PatientContext JSON (ADT / clinician settings)
    {prefix}:v2:a:{tag}          hash   e -> latest alert transition of the current episode,
                                        o -> '1' while that alert is open or acknowledged
    {prefix}:v2:aid:{tag}:{tid}  string NX guard per alert transition id (idempotent emission)
    {prefix}:v2:ob:{tag}         stream the patient's outbox: transitions committed, not yet
                                        confirmed on Kafka
    {prefix}:v2:outbox           zset   pid -> time (ms) of the latest commit that may have
                                        written the patient's outbox
    {prefix}:v2:open             zset   pid -> version: patients whose alert is open
    {prefix}:v2:watch            zset   pid -> version: patients whose alert needs timers
                                        (open, or a held reading)
    {prefix}:v2:patients         zset   pid -> last event time (patients monitored)
    {prefix}:v2:audit            stream accepted transitions (capped at ``audit_max``)
    {prefix}:v2:stream           zset   Kafka partition -> newest event time seen (ms)

**Encoding.** The state and the history rows are MessagePack behind a two-byte header
(``0xC1``, format version), laid out by position (:mod:`wardwatch.store_codec`); a value
without the header is the JSON of earlier releases and is read as such (migration on
read: the patient's next commit writes the binary form, and old rows leave the ring as
new ones arrive). Everything else (context, alerts, outbox, audit) stays JSON.

Every per-patient key has a TTL (``state_ttl_s``) refreshed on each commit, so silent or
discharged patients disappear by themselves.

**A commit.** One Lua script per patient, over that patient's keys only (all passed in
``KEYS``): the version check (optimistic concurrency, so two workers that briefly both
hold a patient during a rebalance cannot both apply it), the state, the history ring,
the TTLs, the ``SET NX`` guard of each transition and, for each transition the guard lets
through, the latest alert and the entry in the patient's outbox. A patient's commit is
therefore atomic: a guarded transition never exists without its outbox entry. The
indexes (``outbox``, ``open``, ``watch``, ``patients``, ``audit``, ``stream``) are other keys,
in other slots on a cluster, so no script may write them; they are kept in three stages:

1. before the scripts, every write that can only make an index larger (the *intents*):
   the patient into ``patients``, into ``watch`` if it needs timers, into ``open`` if one
   of its transitions leaves the alert open, into ``outbox`` if it has transitions; and a
   read of which patients ``watch`` and ``open`` hold;
2. the patients' scripts, then the partitions' stream times (``ZADD GT``);
3. after the scripts, and only for patients whose script committed: the accepted
   transitions into ``audit`` (capped), and the removals (a patient no longer needing
   timers out of ``watch``, a closed alert out of ``open``), each *fenced*: an index entry
   is removed only if its score is not above the version this commit wrote, so an entry a
   later writer has since added (with its higher version) stays.

On one server stages 1 and 2 travel in one pipeline (one round trip; a connection's
commands run in order) and stage 3, when there is anything to remove or audit, in a
second. A cluster pipeline sends each node its commands concurrently, so on a cluster
each stage is its own pipeline, sent once the one before has answered.

**Invariants.** ``watch``, ``open`` and ``outbox`` are supersets of what they index: a
failure between stages (a crash, a timeout, a version conflict) leaves at most an extra
entry, never a missing one. Readers tolerate that: the timer loads each watched patient
and commits it unwatched if it has nothing to time (or forgets it if its state expired);
``open_alerts`` returns only patients whose latest alert is open; the outbox sweep
removes an ``outbox`` entry once the patient's stream is empty (fenced by the entry's
time, so a commit under way keeps it). A patient's next commit reconciles its ``watch``
and ``open`` entries with its state. The audit stream is written after the commit: a
transition whose audit line a crash prevented is still in the outbox, and whoever
publishes a leftover writes its line then (``outbox_done(audit=...)``); ``audit``
drops the repeats. One more case: a script that reaches a stalled node long after its
intents (a frozen node that answers later) may fill an outbox the sweep has just
dropped from the index; every ``load`` of a patient whose outbox holds entries puts the
patient back into the index, and a failed commit is always followed by a load of its
patients (the retry, or the restart that processes the batch again).

Stream ids in the outbox are opaque strings (``"<stream id> <pid>"``); the worker
publishes a batch's new entries right after the commit and deletes them
(``outbox_done``), and sweeps leftovers (``outbox_patients``, ``outbox``, ``outbox_trim``).

**Upgrading from v1** (the single-script commit, keys without hash tags): v1 state is
abandoned and expires by its TTL. Patients start again from their next event (personal
baselines and model state rebuild; an alert open under v1 is no longer on the page, and
a patient still deteriorating raises it again). A worker's start-up publishes what the
v1 outbox still holds on the same server (``legacy_outbox``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_exc

from wardwatch.errors import ConfigError
from wardwatch.patient import PatientState
from wardwatch.settings import Settings
from wardwatch.store_api import CommitResult, Emit, Loaded, MemoryStateStore, StateStore, Update
from wardwatch.store_codec import unpack_row
from wardwatch.store_commit import (
    FENCED_ZREM,
    OUTBOX_DONE,
    Call,
    CommitPlan,
    audit_line,
    guard_key,
    redis_key,
    run_stages,
)
from wardwatch.store_commit import as_str as _str

__all__ = [
    "CommitResult",
    "Emit",
    "Loaded",
    "MemoryStateStore",
    "RedisStateStore",
    "StateStore",
    "Update",
    "guard_key",
    "redis_key",
]


class RedisStateStore:
    """The worker's store. All methods are coroutines on ``redis.asyncio``, over one
    server (``redis.asyncio.Redis``) or a cluster (``redis.asyncio.RedisCluster``)."""

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        *,
        prefix: str = "ww",
        ttl_s: int = 7 * 24 * 3600,
        hist_max: int = 96,
        guard_ttl_s: int = 30 * 24 * 3600,
        audit_max: int = 100_000,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        if not prefix or any(c in prefix for c in "{}"):
            raise ConfigError(f"Redis key prefix {prefix!r}: must be non-empty, without braces")
        self.r: Any = client  # Redis and RedisCluster share the commands used here
        self.cluster = isinstance(client, aioredis.RedisCluster)
        self.observe = observe  # (operation, seconds) for the round-trip histogram
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hist_max = hist_max
        self.guard_ttl_s = guard_ttl_s
        self.audit_max = audit_max

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        client_options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> RedisStateStore:
        """A store on the server at ``url``, or on the cluster that node belongs to
        (``cluster``); ``ssl_ca_certs`` verifies a ``rediss://`` server whose certificate a
        private CA signed, and ``ssl_certfile``/``ssl_keyfile`` are the client certificate
        of mutual TLS (both for ``rediss://`` only); ``client_options`` go to redis-py
        (timeouts, health checks). User and password come in the URL
        (``redis://user:password@host:port/db``, an ACL user; ``redis://:password@...``,
        ``requirepass``)."""
        options: dict[str, Any] = {"ssl_ca_certs": ssl_ca_certs} if ssl_ca_certs else {}
        if ssl_certfile:
            options |= {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile or None}
        options |= client_options or {}
        if cluster:
            return cls(aioredis.RedisCluster.from_url(url, **options), **kw)
        return cls(aioredis.Redis.from_url(url, **options), **kw)

    @classmethod
    def from_settings(
        cls, settings: Settings, observe: Callable[[str, float], None] | None = None
    ) -> RedisStateStore:
        """The worker's store as the settings describe it (URL, cluster mode, TLS CA,
        timeouts, prefix, TTL)."""
        if not settings.redis_url:
            raise ConfigError("WARDWATCH_REDIS_URL is not set")
        ca = settings.redis_ssl_ca_certs
        cert, key = settings.redis_ssl_certfile, settings.redis_ssl_keyfile
        return cls.from_url(
            settings.redis_url,
            cluster=settings.redis_cluster,
            ssl_ca_certs=str(ca) if ca else None,
            ssl_certfile=str(cert) if cert else None,
            ssl_keyfile=str(key) if key else None,
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

    async def check_access(self) -> None:
        """Connect, authenticate, and write, read and delete one key of this store's
        namespace: a ConfigError saying which (wrong credentials, an ACL user denied a
        command or the key prefix) instead of a failure retried for minutes. Network
        failures pass through unchanged (they are transient). Never shows the password."""
        probe = self.key("access-check", "probe")
        try:
            await self.r.set(probe, b"1", ex=10)
            await self.r.get(probe)
            await self.r.delete(probe)
        except redis_exc.AuthenticationError as exc:
            raise ConfigError(
                f"Redis refused the credentials of WARDWATCH_REDIS_URL ({exc}); check the "
                "user name and password"
            ) from None
        except redis_exc.NoPermissionError as exc:
            raise ConfigError(
                f"the Redis user of WARDWATCH_REDIS_URL may not use the keys "
                f"{self.prefix}:* or a command wardwatch needs ({exc}); grant it "
                f"~{self.prefix}:* and the commands in docs/operations.md"
            ) from None
        except redis_exc.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise ConfigError(
                    f"Redis needs credentials in WARDWATCH_REDIS_URL ({exc})"
                ) from None
            raise

    async def close(self) -> None:
        await self.r.aclose()

    async def _run(self, *stages: Sequence[Call]) -> list[Any]:
        return await run_stages(self.r, stages, ordered=not self.cluster)

    async def load(self, pids: Sequence[str]) -> dict[str, Loaded]:
        unique = list(dict.fromkeys(pids))
        if not unique:
            return {}
        calls = []
        for pid in unique:
            calls.append(Call(("HMGET", self.key("p", pid), "ver", "s")))
            calls.append(Call(("GET", self.key("ctx", pid))))
            calls.append(Call(("EXISTS", self.key("ob", pid))))
        t0 = time.perf_counter()
        results = await self._run(calls)
        if self.observe:
            self.observe("load", time.perf_counter() - t0)
        out: dict[str, Loaded] = {}
        pending: dict[str, float] = {}
        for i, pid in enumerate(unique):
            (ver, raw), ctx, outbox = results[3 * i : 3 * i + 3]
            state = PatientState.from_json(raw)
            state.version = int(ver or 0)
            out[pid] = Loaded(state, json.loads(ctx) if ctx else None)
            if outbox:
                pending[pid] = time.time() * 1000
        if pending:  # its outbox holds entries: make sure the sweep sees them
            await self.r.zadd(self.key("outbox"), pending, gt=True)
        return out

    async def commit(
        self,
        updates: Sequence[Update],
        emits: Sequence[Emit],
        stream_ms: Mapping[int, int] | None = None,
    ) -> CommitResult:
        """Commit each patient atomically, in the stages the module docstring describes;
        ``stream_ms`` raises the stored newest event time of each Kafka partition."""
        if not updates and not emits and not stream_ms:
            return CommitResult([], [])
        t0 = time.perf_counter()
        plan = CommitPlan(
            self.prefix,
            updates,
            emits,
            stream_ms,
            ttl_s=self.ttl_s,
            hist_max=self.hist_max,
            guard_ttl_s=self.guard_ttl_s,
            audit_max=self.audit_max,
        )
        after = plan.after(await self._run(*plan.stages()))
        if after:
            await self._run(after)
        if self.observe:
            self.observe("commit", time.perf_counter() - t0)
        return plan.result

    async def stream_times(self) -> dict[int, int]:
        """The newest event time (ms) committed so far, per Kafka partition."""
        rows = await self.r.zrange(self.key("stream"), 0, -1, withscores=True)
        return {int(_str(m)): int(s) for m, s in rows}

    # ---- the outbox ----------------------------------------------------------------------
    async def outbox_patients(self) -> list[str]:
        """Patients whose outbox may hold transitions (a superset)."""
        return _strs(await self.r.zrange(self.key("outbox"), 0, -1))

    async def outbox(
        self,
        pids: Sequence[str] | None = None,
        *,
        committed_before_ms: int | None = None,
        count: int = 1000,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Committed transitions not yet confirmed as published, as (outbox id, event):
        of ``pids`` (default: every patient in the index), each patient's in commit order,
        at most ``count`` each; with ``committed_before_ms``, only those committed before."""
        if pids is None:
            pids = await self.outbox_patients()
        high = "+" if committed_before_ms is None else str(committed_before_ms - 1)
        calls = [Call(("XRANGE", self.key("ob", pid), "-", high, "COUNT", count)) for pid in pids]
        out: list[tuple[str, dict[str, Any]]] = []
        for pid, rows in zip(pids, await self._run(calls), strict=True):
            out += [(f"{_str(sid)} {pid}", json.loads(f[b"event"])) for sid, f in rows]
        return out

    async def outbox_done(
        self, outbox_ids: Iterable[str], audit: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Delete published entries from their patients' outboxes; ``audit``: events to
        write to the audit stream first (leftovers, whose line a crash may have lost)."""
        by_patient: dict[str, list[str]] = {}
        legacy: list[str] = []
        for oid in outbox_ids:
            sid, _, pid = oid.partition(" ")
            (by_patient.setdefault(pid, []) if pid else legacy).append(sid)
        lines = [
            audit_line(self.prefix, self.audit_max, str(e.get("transition_id", "")), e)
            for e in audit
        ]
        deletes = [
            Call(tuple(sids), OUTBOX_DONE, [self.key("ob", pid)])
            for pid, sids in by_patient.items()
        ]
        if legacy:
            deletes.append(Call(("XDEL", _legacy_outbox_key(self.prefix), *legacy)))
        await self._run(lines, deletes)

    async def outbox_trim(self, pids: Sequence[str], before_ms: int) -> int:
        """Drop from the outbox index the patients among ``pids`` whose outbox is empty and
        whose entry is older than ``before_ms`` (a commit since then keeps it); returns
        how many."""
        if not pids:
            return 0
        exists = await self._run([Call(("EXISTS", self.key("ob", pid))) for pid in pids])
        empty = [a for pid, n in zip(pids, exists, strict=True) if not n for a in (pid, before_ms)]
        if not empty:
            return 0
        [removed] = await self._run([Call(tuple(empty), FENCED_ZREM, [self.key("outbox")])])
        return int(removed)

    async def legacy_outbox(self) -> list[tuple[str, dict[str, Any]]]:
        """What the v1 schema's outbox on this server still holds (see the docstring)."""
        rows: Any = await self.r.xrange(_legacy_outbox_key(self.prefix), "-", "+")
        return [(_str(sid), json.loads(f[b"event"])) for sid, f in rows]

    # ---- reads ---------------------------------------------------------------------------
    async def set_context(self, pid: str, context: dict[str, Any]) -> None:
        await self.r.set(self.key("ctx", pid), json.dumps(context), ex=self.ttl_s)

    async def history(self, pid: str, n: int = 48) -> list[dict[str, Any]]:
        rows = await self.r.lrange(self.key("h", pid), 0, n - 1)
        return [unpack_row(r) for r in reversed(rows)]

    async def histories(self, pids: Sequence[str], n: int = 96) -> dict[str, list[dict[str, Any]]]:
        """Recent observations of several patients, oldest first, in one round trip."""
        rows = await self._run([Call(("LRANGE", self.key("h", pid), 0, n - 1)) for pid in pids])
        return {
            pid: [unpack_row(r) for r in reversed(rs)] for pid, rs in zip(pids, rows, strict=True)
        }

    async def open_alerts(self) -> list[dict[str, Any]]:
        """The latest transition of every patient whose alert is open or acknowledged."""
        pids = _strs(await self.r.zrange(self.key("open"), 0, -1))
        rows = await self._run([Call(("HMGET", self.key("a", pid), "e", "o")) for pid in pids])
        return [json.loads(e) for e, o in rows if e and o == b"1"]  # the index is a superset

    async def forget(self, pids: Sequence[str]) -> None:
        """Drop patients whose state has expired from the timer, open-alert and monitoring
        indexes, writing no state (a timer must not bring an expired patient back)."""
        if pids:
            await self._run(
                [Call(("ZREM", self.key(i), *pids)) for i in ("watch", "open", "patients")]
            )

    async def trim_patients(self, now_ms: int | None = None) -> int:
        """Drop from the monitoring index the patients silent longer than the state TTL
        (their state has expired); returns how many. Keeps the index bounded."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return int(
            await self.r.zremrangebyscore(self.key("patients"), "-inf", now - self.ttl_s * 1000 - 1)
        )

    async def watched(self) -> list[str]:
        """Patients whose alert state may have timers running (escalation, held
        readings); a superset: the timer checks each patient's state."""
        return _strs(await self.r.zrange(self.key("watch"), 0, -1))

    async def current_alert(self, pid: str) -> dict[str, Any] | None:
        raw = await self.r.hget(self.key("a", pid), "e")
        return json.loads(raw) if raw else None

    async def patients_monitored(self, since_ms: int | None = None) -> int:
        lo = since_ms if since_ms is not None else int(time.time() * 1000) - self.ttl_s * 1000
        return int(await self.r.zcount(self.key("patients"), lo, "+inf"))

    async def audit(self, count: int = 100) -> list[dict[str, Any]]:
        """The latest ``count`` audit lines, newest first, each transition once."""
        rows: Any = await self.r.xrevrange(self.key("audit"), count=count)
        seen: set[bytes] = set()
        out = []
        for _, fields in rows:
            tid = fields.get(b"tid", b"")
            if tid not in seen:  # a leftover's line written again after a crash
                seen.add(tid)
                out.append(json.loads(fields[b"event"]))
        return out


def _legacy_outbox_key(prefix: str) -> str:
    return f"{prefix}:v1:outbox"


def _strs(values: Iterable[Any]) -> list[str]:
    return [_str(v) for v in values]
