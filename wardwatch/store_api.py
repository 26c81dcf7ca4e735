"""The state store's interface and data types, and its in-process implementation.

:class:`StateStore` is what the scoring pipeline needs; :class:`wardwatch.store.RedisStateStore`
implements it for workers (one Redis server or a cluster), :class:`MemoryStateStore` for
the replay and the tests, with the same behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from wardwatch.patient import PatientState
from wardwatch.store_codec import unpack_row


@dataclass
class Update:
    """A patient's new state, committed only if its version is still ``expected_version``."""

    pid: str
    expected_version: int
    state: PatientState
    history: list[str | bytes] = field(default_factory=list)  # rows: binary or compact JSON
    seen_ms: int | None = None
    watch: bool | None = None  # needs time-driven checks (None: unchanged)


@dataclass
class Emit:
    """An alert transition to emit once (guarded by its id)."""

    pid: str
    transition_id: str
    event: dict[str, Any]
    open: bool  # whether the patient's alert is still open after this transition
    opened_ms: int = 0  # when the alert opened (informational: the open index holds versions)


@dataclass
class CommitResult:
    conflicts: list[str]
    accepted: list[str]  # transition ids newly emitted into the outbox
    outbox_ids: list[str] = field(default_factory=list)  # their outbox entries


@dataclass
class Loaded:
    state: PatientState
    context: dict[str, Any] | None


class StateStore(Protocol):
    async def load(self, pids: Sequence[str]) -> dict[str, Loaded]: ...
    async def commit(
        self,
        updates: Sequence[Update],
        emits: Sequence[Emit],
        stream_ms: Mapping[int, int] | None = None,
    ) -> CommitResult: ...
    async def stream_times(self) -> dict[int, int]: ...
    async def set_context(self, pid: str, context: dict[str, Any]) -> None: ...
    async def history(self, pid: str, n: int = 48) -> list[dict[str, Any]]: ...
    async def histories(
        self, pids: Sequence[str], n: int = 96
    ) -> dict[str, list[dict[str, Any]]]: ...
    async def forget(self, pids: Sequence[str]) -> None: ...


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
        self.hist: dict[str, list[str | bytes]] = {}
        self.guards: set[str] = set()
        self.watch: set[str] = set()
        self.emitted: list[dict[str, Any]] = []
        self.stream: dict[int, int] = {}
        self.hist_max = hist_max

    async def load(self, pids: Sequence[str]) -> dict[str, Loaded]:
        out = {}
        for pid in dict.fromkeys(pids):
            stored = self.states.get(pid)
            state = stored if isinstance(stored, PatientState) else PatientState.from_json(stored)
            state.version = self.versions.get(pid, 0)
            out[pid] = Loaded(state, self.contexts.get(pid))
        return out

    async def commit(
        self,
        updates: Sequence[Update],
        emits: Sequence[Emit],
        stream_ms: Mapping[int, int] | None = None,
    ) -> CommitResult:
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
        for partition, ms in (stream_ms or {}).items():
            self.stream[partition] = max(ms, self.stream.get(partition, ms))
        return CommitResult(conflicts, accepted)

    async def stream_times(self) -> dict[int, int]:
        return dict(self.stream)

    async def forget(self, pids: Sequence[str]) -> None:
        for pid in pids:
            self.watch.discard(pid)

    async def set_context(self, pid: str, context: dict[str, Any]) -> None:
        self.contexts[pid] = context

    async def history(self, pid: str, n: int = 48) -> list[dict[str, Any]]:
        return [unpack_row(r) for r in reversed(self.hist.get(pid, [])[:n])]

    async def histories(self, pids: Sequence[str], n: int = 96) -> dict[str, list[dict[str, Any]]]:
        return {pid: await self.history(pid, n) for pid in pids}
