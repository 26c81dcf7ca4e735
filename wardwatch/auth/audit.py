"""The access audit: who did what to which patient, when and from where, in a
hash-chained Redis stream.

Keys (``{prefix}`` is the Redis key prefix; the ``{audit}`` hash tag keeps both keys in
one cluster slot, so one script updates them together)::

    {prefix}:access:{audit}:log    stream  one entry per record: r -> canonical JSON of the
                                           record (with its prev_hash), h -> its hash
    {prefix}:access:{audit}:head   string  hash of the newest record (the chain head)

The stream has no length cap: records are kept until exported and trimmed by an operator.
Each record's ``hash`` is ``sha256(prev_hash + canonical JSON of the record)``, the first
record's ``prev_hash`` is 64 zeros. An append is a compare-and-set in one Lua script:
the record is added and the head moved only if the head is still the ``prev_hash`` the
record was built on (another writer won: read the head again and retry), so the chain is
one line however many workers write to it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
APPEND_LUA = r"""
local head = redis.call('GET', KEYS[2]) or ARGV[1]
if head ~= ARGV[2] then return {0, head} end
local id = redis.call('XADD', KEYS[1], '*', 'r', ARGV[3], 'h', ARGV[4])
redis.call('SET', KEYS[2], ARGV[4])
return {1, id}
"""


def canonical(record: dict[str, Any]) -> str:
    """The record's canonical JSON: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(record)).encode()).hexdigest()


@dataclass(frozen=True)
class Broken:
    """Where the chain breaks: the stream id of the first bad record and why."""

    entry_id: str
    reason: str


def verify_chain(entries: Iterable[tuple[str, str, str]], head: str | None) -> Broken | None:
    """Walk ``(entry id, record JSON, stored hash)`` in stream order; the first record
    whose link or hash does not hold, or a head that is not the last hash (records
    removed from the end), or ``None`` when the whole chain holds."""
    prev = GENESIS
    last_id = ""
    for entry_id, text, stored in entries:
        last_id = entry_id
        try:
            record = json.loads(text)
        except ValueError:
            return Broken(entry_id, "record is not JSON")
        if not isinstance(record, dict) or record.get("prev_hash") != prev:
            return Broken(entry_id, "prev_hash does not match the previous record")
        if record_hash(prev, record) != stored:
            return Broken(entry_id, "hash does not match the record")
        if canonical(record) != text:
            return Broken(entry_id, "record is not in canonical form")
        prev = stored
    if (head or GENESIS) != prev:
        return Broken(last_id or "-", "chain head does not match the last record")
    return None


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AccessAudit:
    """Append to, read and verify the access audit on a ``redis.asyncio`` client (one
    server or a cluster)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.r = client
        self.log_key = f"{prefix}:access:{{audit}}:log"
        self.head_key = f"{prefix}:access:{{audit}}:head"
        self._append = client.register_script(APPEND_LUA)

    async def record(
        self,
        actor: str,
        action: str,
        *,
        outcome: str = "ok",
        addr: str | None = None,
        patient_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one record and return it (with ``hash`` and its stream ``id``)."""
        base: dict[str, Any] = {
            "ts_ms": int(time.time() * 1000),
            "actor": actor,
            "action": action,
            "outcome": outcome,
            "addr": addr or "",
            "patient_id": patient_id or "",
            "detail": detail or {},
        }
        head = _s(await self.r.get(self.head_key) or GENESIS)
        for _ in range(100):
            record = {**base, "prev_hash": head}
            digest = record_hash(head, record)
            ok, value = await self._append(
                keys=[self.log_key, self.head_key],
                args=[GENESIS, head, canonical(record), digest],
            )
            if int(ok) == 1:
                return {**record, "hash": digest, "id": _s(value)}
            head = _s(value)  # another writer appended first: chain onto its record
        raise RuntimeError("access audit: could not append (head keeps moving)")

    async def entries(
        self, start: str = "-", batch: int = 1000
    ) -> AsyncIterator[tuple[str, str, str]]:
        """Every ``(entry id, record JSON, hash)`` from ``start``, in order."""
        cursor = start
        while True:
            rows = await self.r.xrange(self.log_key, min=cursor, count=batch)
            if not rows:
                return
            for entry_id, fields in rows:
                f = {_s(k): _s(v) for k, v in fields.items()}
                yield _s(entry_id), f.get("r", ""), f.get("h", "")
            cursor = "(" + _s(rows[-1][0])  # exclusive range (Redis 6.2)

    async def verify(self) -> tuple[int, Broken | None]:
        """(records checked, the first break or ``None``)."""
        rows = [row async for row in self.entries()]
        head = await self.r.get(self.head_key)
        return len(rows), verify_chain(rows, _s(head) if head is not None else None)

    async def query(
        self,
        *,
        patient_id: str | None = None,
        actor: str | None = None,
        since_ms: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Records about ``patient_id`` and/or by ``actor`` since ``since_ms``, oldest
        first, at most ``limit`` (the newest ones)."""
        start = f"{since_ms}-0" if since_ms is not None else "-"
        out: list[dict[str, Any]] = []
        async for entry_id, text, digest in self.entries(start):
            try:
                record = json.loads(text)
            except ValueError:
                continue
            if patient_id is not None and record.get("patient_id") != patient_id:
                continue
            if actor is not None and record.get("actor") != actor:
                continue
            out.append({**record, "hash": digest, "id": entry_id})
        return out[-limit:]
