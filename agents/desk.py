"""The care-team desk: the narrow interface the page and API are handed.

The web views (``agents.web``) read alerts and act on them only through an
:class:`AlertDesk`; they never see the worker, its store or its pipeline. The worker
hands them a :class:`WorkerDesk`, which applies an action through the scoring pipeline,
publishes the resulting transitions and records the time to acknowledge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agents.pipeline import BatchResult, ScoringPipeline
from alerts import AlertState
from wardwatch.store import RedisStateStore

Action = Literal["ack", "resolve"]


@dataclass(frozen=True)
class ActionOutcome:
    """What an acknowledge or resolve did: its transitions and the alert as it is now."""

    transitions: list[dict[str, Any]] = field(default_factory=list)
    alert: dict[str, Any] | None = None


class AlertDesk(Protocol):
    """Everything the care-team page and API may do."""

    async def open_alerts(self) -> list[dict[str, Any]]:
        """Open and acknowledged alerts of every patient."""
        ...

    async def act(self, patient_id: str, action: Action, actor: str) -> ActionOutcome:
        """Acknowledge or resolve the patient's alert on behalf of ``actor``."""
        ...

    async def audit(self, count: int) -> list[dict[str, Any]]:
        """The latest ``count`` transitions, newest first."""
        ...

    async def history(self, patient_id: str, count: int) -> list[dict[str, Any]]:
        """The patient's latest ``count`` observations, oldest first."""
        ...


class WorkerDesk:
    """An :class:`AlertDesk` over a worker's store and pipeline."""

    def __init__(
        self,
        store: RedisStateStore,
        pipeline: ScoringPipeline,
        publish: Callable[[list[dict[str, Any]], list[str]], Awaitable[None]],
        on_acknowledged: Callable[[float], None],
    ) -> None:
        self._store = store
        self._pipeline = pipeline
        self._publish = publish
        self._on_acknowledged = on_acknowledged  # seconds from opening to acknowledgement

    async def open_alerts(self) -> list[dict[str, Any]]:
        return await self._store.open_alerts()

    async def act(self, patient_id: str, action: Action, actor: str) -> ActionOutcome:
        result: BatchResult
        if action == "ack":
            result = await self._pipeline.acknowledge(patient_id, actor)
        else:
            result = await self._pipeline.resolve(patient_id, actor)
        await self._publish(result.emitted, result.outbox_ids)
        if any(m["transition"] == "ACKNOWLEDGED" for m in result.emitted):
            loaded = (await self._store.load([patient_id]))[patient_id]
            state = AlertState.from_json(loaded.state.alert)
            if state.acked_ts_ms and state.opened_ts_ms:
                self._on_acknowledged(max(0.0, (state.acked_ts_ms - state.opened_ts_ms) / 1000))
        return ActionOutcome(result.emitted, await self._store.current_alert(patient_id))

    async def audit(self, count: int) -> list[dict[str, Any]]:
        return await self._store.audit(count)

    async def history(self, patient_id: str, count: int) -> list[dict[str, Any]]:
        return await self._store.history(patient_id, count)
