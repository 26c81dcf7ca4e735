"""The care-team desk: the narrow interface the page and API are handed.

The web views (``agents.web``) read alerts and act on them only through an
:class:`AlertDesk`; they never see the worker, its store or its pipeline.

Reads come from Redis (every worker's transitions are committed there). An action is a
command: :class:`WorkerDesk` publishes an :class:`~wardwatch.schemas.AlertCommand` on
``alert-commands`` keyed by patient and returns its id once the broker has it; the worker
that owns the patient's partition applies it (one writer per patient), and the page sees
the transition when it arrives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from wardwatch.schemas import AlertCommand
from wardwatch.store import RedisStateStore

Action = Literal["ack", "resolve"]


class AlertDesk(Protocol):
    """Everything the care-team page and API may do."""

    async def open_alerts(self) -> list[dict[str, Any]]:
        """Open and acknowledged alerts of every patient."""
        ...

    async def act(self, patient_id: str, alert_id: str, action: Action, actor: str) -> str:
        """Ask for the patient's alert to be acknowledged or resolved on behalf of
        ``actor``; returns the command id once the request is durably accepted."""
        ...

    async def audit(self, count: int) -> list[dict[str, Any]]:
        """The latest ``count`` transitions, newest first."""
        ...

    async def history(self, patient_id: str, count: int) -> list[dict[str, Any]]:
        """The patient's latest ``count`` observations, oldest first."""
        ...

    async def wards(self, patient_ids: list[str]) -> dict[str, str | None]:
        """Each patient's ward from its stored context (``None``: no ward known)."""
        ...


class WorkerDesk:
    """An :class:`AlertDesk` over a worker's store and its command topic."""

    def __init__(
        self, store: RedisStateStore, submit: Callable[[AlertCommand], Awaitable[None]]
    ) -> None:
        self._store = store
        self._submit = submit  # publishes the command and waits for the broker

    async def open_alerts(self) -> list[dict[str, Any]]:
        return await self._store.open_alerts()

    async def act(self, patient_id: str, alert_id: str, action: Action, actor: str) -> str:
        command = AlertCommand(
            command_id=uuid.uuid4().hex,
            patient_id=patient_id,
            alert_id=alert_id,
            action=action,
            actor=actor,
            issued_at=datetime.now(UTC),
        )
        await self._submit(command)
        return command.command_id

    async def audit(self, count: int) -> list[dict[str, Any]]:
        return await self._store.audit(count)

    async def history(self, patient_id: str, count: int) -> list[dict[str, Any]]:
        """The patient's recent observations in time order (late ones where they belong)."""
        rows = await self._store.history(patient_id, count)
        return sorted(rows, key=lambda row: int(row["t"]))

    async def wards(self, patient_ids: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for pid in dict.fromkeys(patient_ids):  # one GET each: the keys are in many slots
            raw = await self._store.r.get(self._store.key("ctx", pid))
            try:
                ward = json.loads(raw).get("ward") if raw else None
            except (ValueError, AttributeError):
                ward = None
            out[pid] = str(ward) if ward else None
        return out
