"""How the Redis state store writes: its keys, its Lua scripts, the stages of a commit,
and how a stage's commands are sent.

Every key a script touches is passed in ``KEYS``: a patient's script only keys of that
patient (one hash tag, one cluster slot), an index script one index key. The key schema,
the stages and the invariants they keep are documented in :mod:`wardwatch.store`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError

from wardwatch.store_api import CommitResult, Emit, Update

SCHEMA = "v2"
_TAG_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})


def redis_key(prefix: str, kind: str, pid: str = "") -> str:
    """The key of ``kind`` (``p``, ``h``, ``ctx``, ``a``, ``ob``; ``open``, ``watch``, ...)
    in the current schema; a patient's keys carry its hash tag."""
    if not pid:
        return f"{prefix}:{SCHEMA}:{kind}"
    return f"{prefix}:{SCHEMA}:{kind}:{{{pid.translate(_TAG_ESCAPES)}}}"


def guard_key(prefix: str, pid: str, transition_id: str) -> str:
    """The ``SET NX`` guard of one of the patient's transitions (in the patient's slot)."""
    return f"{redis_key(prefix, 'aid', pid)}:{transition_id}"


# KEYS: p, h, a, ob, then the NX guard of each transition, in ARGV order.
# ARGV: 1 has an update ('1'/'0'), 2 expected version, 3 the state (its binary form,
# wardwatch.store_codec), 4 TTL, 5 history length kept, 6 guard TTL, 7 the number n of
# new history rows, 8 .. 7 + n the rows, oldest first (binary, or compact JSON), then per
# transition: transition id, event JSON, open after it ('1'/'0').
# Returns {0, stored version} on a version conflict (nothing written), else
# {1, version, open flag of the latest alert ('1', '0', or '' if none),
#  {index of each accepted transition, its outbox stream id, ...}}.
PATIENT_COMMIT_LUA = r"""
local ttl = tonumber(ARGV[4])
local n_rows = tonumber(ARGV[7])
local ver = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
if ARGV[1] == '1' then
  if ver ~= tonumber(ARGV[2]) then return {0, ver} end
  ver = ver + 1
  redis.call('HSET', KEYS[1], 'ver', ver, 's', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ttl)
  if n_rows > 0 then
    for i = 8, 7 + n_rows, 1000 do  -- one LPUSH per thousand rows (Lua's stack limit)
      redis.call('LPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, 7 + n_rows)))
    end
    redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end
local accepted = {}
local base = 8 + n_rows
local j = 0
while base + 3 * j <= #ARGV do
  local a = base + 3 * j
  if redis.call('SET', KEYS[5 + j], '1', 'NX', 'EX', ARGV[6]) then
    local sid = redis.call('XADD', KEYS[4], '*', 'tid', ARGV[a], 'event', ARGV[a + 1])
    redis.call('HSET', KEYS[3], 'e', ARGV[a + 1], 'o', ARGV[a + 2])
    redis.call('EXPIRE', KEYS[3], ttl)
    redis.call('EXPIRE', KEYS[4], ttl)
    table.insert(accepted, j)
    table.insert(accepted, sid)
  end
  j = j + 1
end
local open = redis.call('HGET', KEYS[3], 'o') or ''
return {1, ver, open, accepted}
"""

# KEYS: an index (sorted set). ARGV: member, highest score removed, member, ...
# Removes each member whose score is at most its bound (a fence: an entry a newer
# writer has since added or raised stays); returns how many were removed.
FENCED_ZREM_LUA = r"""
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= tonumber(ARGV[i + 1]) then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
"""

# KEYS: a patient's outbox stream. ARGV: stream ids. Deletes them, and the stream once
# it is empty (an empty stream would otherwise stay until its TTL).
OUTBOX_DONE_LUA = r"""
redis.call('XDEL', KEYS[1], unpack(ARGV))
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
"""


class Lua:
    """A script sent by its SHA-1 (``EVALSHA``); a node that does not know it yet gets
    the text once (``EVAL``, which also caches it there)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Redis's script id


@dataclass
class Call:
    """One command of a stage: a Redis command, or a script with its keys and args."""

    args: tuple[Any, ...]
    script: Lua | None = None
    keys: Sequence[str] = ()

    def queue(self, pipe: Any, *, text: bool = False) -> None:
        if self.script is None:
            pipe.execute_command(*self.args)
        else:  # as plain commands: a cluster pipeline refuses its eval methods
            name, body = ("EVAL", self.script.text) if text else ("EVALSHA", self.script.sha)
            pipe.execute_command(name, body, len(self.keys), *self.keys, *self.args)


async def run_stages(client: Any, stages: Sequence[Sequence[Call]], *, ordered: bool) -> list[Any]:
    """Send ``stages`` in order and return every command's result, stage after stage.

    On a single server (``ordered``) one pipeline carries them all: the server runs a
    connection's commands in the order sent, so every command of a stage runs before any
    of the next. A cluster pipeline sends each node its share concurrently, in no order
    between nodes, so there each stage is a pipeline of its own, sent once the previous
    one has answered. Scripts a node does not know are sent again as text. A command's
    error is raised once every command has been answered.
    """
    groups = [list(stages)] if ordered else [[s] for s in stages]
    results: list[Any] = []
    for group in groups:
        calls = [c for stage in group for c in stage]
        if not calls:
            continue
        out = await _pipeline(client, calls, text=False)
        missing = [i for i, r in enumerate(out) if isinstance(r, NoScriptError)]
        if missing:  # a restarted or new node: the same scripts again, as text
            again = await _pipeline(client, [calls[i] for i in missing], text=True)
            for i, r in zip(missing, again, strict=True):
                out[i] = r
        for r in out:
            if isinstance(r, Exception):
                raise r
        results += out
    return results


async def _pipeline(client: Any, calls: Sequence[Call], *, text: bool) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        call.queue(pipe, text=text)
    return list(await pipe.execute(raise_on_error=False))


_COMMIT = Lua(PATIENT_COMMIT_LUA)
FENCED_ZREM = Lua(FENCED_ZREM_LUA)
OUTBOX_DONE = Lua(OUTBOX_DONE_LUA)


@dataclass
class _Patient:
    """What one commit writes for one patient."""

    pid: str
    update: Update | None = None
    emits: list[tuple[int, Emit]] = field(default_factory=list)  # (position in the commit, …)


class CommitPlan:
    """The commands of one commit: :meth:`stages` (intents and reads, then the patients'
    scripts and the stream times), then :meth:`after` from their results (the audit lines
    and the fenced removals); :attr:`result` once ``after`` has run."""

    def __init__(
        self,
        prefix: str,
        updates: Sequence[Update],
        emits: Sequence[Emit],
        stream_ms: Mapping[int, int] | None,
        *,
        ttl_s: int,
        hist_max: int,
        guard_ttl_s: int,
        audit_max: int,
    ) -> None:
        self.prefix = prefix
        self.emits = emits
        self.stream_ms = stream_ms or {}
        self.ttl_s, self.hist_max, self.guard_ttl_s = ttl_s, hist_max, guard_ttl_s
        self.audit_max = audit_max
        patients: dict[str, _Patient] = {}
        for u in updates:
            p = patients.setdefault(u.pid, _Patient(u.pid))
            if p.update is not None:
                raise ValueError("one update per patient and commit")
            p.update = u
        for i, e in enumerate(emits):
            patients.setdefault(e.pid, _Patient(e.pid)).emits.append((i, e))
        self.patients = list(patients.values())
        self.result = CommitResult([], [])
        self._n_intents = 0

    def key(self, kind: str, pid: str = "") -> str:
        return redis_key(self.prefix, kind, pid)

    def stages(self) -> tuple[list[Call], list[Call]]:
        """Stage 1, the writes that only make an index larger and then the reads of which
        patients ``watch`` and ``open`` hold; stage 2, every patient's script, then the
        stream times."""
        seen: list[Any] = []
        watch: list[Any] = []
        opened: list[Any] = []
        outbox: list[Any] = []
        now = int(time.time() * 1000)
        for p in self.patients:
            u = p.update
            ver = u.expected_version + 1 if u is not None else 0  # the version it writes
            if u is not None and u.seen_ms:
                seen += [u.seen_ms, p.pid]
            if u is not None and u.watch:
                watch += [ver, p.pid]
            if any(e.open for _, e in p.emits):
                opened += [ver, p.pid]
            if p.emits:
                outbox += [now, p.pid]
        first = [
            Call(("ZADD", self.key(kind), *flags, *scores))
            for kind, flags, scores in (
                ("patients", (), seen),
                ("watch", ("GT",), watch),
                ("open", ("GT",), opened),
                ("outbox", ("GT",), outbox),
            )
            if scores
        ]
        self._n_intents = len(first)
        pids = [p.pid for p in self.patients]
        if pids:
            first += [Call(("ZMSCORE", self.key(kind), *pids)) for kind in ("watch", "open")]
        second = [self._script(p) for p in self.patients]
        if self.stream_ms:
            times = [a for part, ms in self.stream_ms.items() for a in (ms, str(part))]
            second.append(Call(("ZADD", self.key("stream"), "GT", *times)))
        return first, second

    def _script(self, p: _Patient) -> Call:
        u = p.update
        keys = [self.key(k, p.pid) for k in ("p", "h", "a", "ob")]
        keys += [guard_key(self.prefix, p.pid, e.transition_id) for _, e in p.emits]
        hist = u.history if u is not None else []
        if any(isinstance(row, str) and "\n" in row for row in hist):
            raise ValueError("a history row must be compact JSON, on one line")
        args: list[Any] = [
            "1" if u is not None else "0",
            u.expected_version if u is not None else 0,
            u.state.encode() if u is not None else "",
            self.ttl_s,
            self.hist_max,
            self.guard_ttl_s,
            len(hist),
            *hist,
        ]
        for _, e in p.emits:
            args += [e.transition_id, dumps(e.event), "1" if e.open else "0"]
        return Call(tuple(args), _COMMIT, keys)

    def after(self, results: Sequence[Any]) -> list[Call]:
        """Stage 3 from the results of :meth:`stages`: the accepted transitions' audit
        lines, and for each committed patient the fenced removal from ``watch`` (no longer
        watched) and ``open`` (its latest alert not open), or its return to ``open``."""
        n = self._n_intents
        in_watch, in_open = results[n : n + 2] if self.patients else ([], [])
        done = results[n + 2 :][: len(self.patients)]
        accepted: dict[int, str] = {}  # position in emits -> outbox stream id
        unwatch: list[Any] = []
        close: list[Any] = []
        reopen: list[Any] = []
        for p, res, watched, opened in zip(self.patients, done, in_watch, in_open, strict=True):
            if int(res[0]) == 0:
                self.result.conflicts.append(p.pid)
                continue
            ver, open_flag, ids = int(res[1]), as_str(res[2]), res[3]
            for j in range(0, len(ids), 2):
                accepted[p.emits[int(ids[j])][0]] = as_str(ids[j + 1])
            if watched is not None and p.update is not None and p.update.watch is False:
                unwatch += [p.pid, ver]
            if opened is not None and open_flag != "1":
                close += [p.pid, ver]
            elif opened is None and open_flag == "1":  # missing after an earlier failure
                reopen += [ver, p.pid]
        order = sorted(accepted)
        emits = self.emits
        self.result.accepted = [emits[i].transition_id for i in order]
        self.result.outbox_ids = [f"{accepted[i]} {emits[i].pid}" for i in order]
        calls = [
            audit_line(self.prefix, self.audit_max, emits[i].transition_id, emits[i].event)
            for i in order
        ]
        if unwatch:
            calls.append(Call(tuple(unwatch), FENCED_ZREM, [self.key("watch")]))
        if close:
            calls.append(Call(tuple(close), FENCED_ZREM, [self.key("open")]))
        if reopen:
            calls.append(Call(("ZADD", self.key("open"), "GT", *reopen)))
        return calls


def audit_line(prefix: str, audit_max: int, transition_id: str, event: dict[str, Any]) -> Call:
    """One transition appended to the (capped) audit stream."""
    key = redis_key(prefix, "audit")
    return Call(
        ("XADD", key, "MAXLEN", "~", audit_max, "*", "tid", transition_id, "event", dumps(event))
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
