"""Care-team commands (acknowledge, resolve) applied by the worker that owns the patient."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agents.batch import Retrying
from agents.metrics import Metrics
from agents.pipeline import BatchResult, ScoringPipeline
from alerts import AlertState
from wardwatch.schemas import AlertCommand
from wardwatch.store import RedisStateStore


class CommandApplier:
    def __init__(
        self,
        store: RedisStateStore,
        pipeline: ScoringPipeline,
        retrying: Retrying,
        publish: Callable[[list[dict[str, Any]], list[str]], Awaitable[None]],
        check_conflicts: Callable[[BatchResult], None],
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.retrying = retrying
        self.publish_alerts = publish
        self.check_conflicts = check_conflicts
        self.metrics = metrics

    async def apply(self, cmd: AlertCommand) -> None:
        """Apply an acknowledge or resolve to the patient it names, if it still names the
        patient's current alert (a command for an alert since resolved changes nothing)."""
        pid = cmd.patient_id
        current = await self.retrying("command", lambda: self.store.current_alert(pid))
        if current is None or current.get("alert_id") != cmd.alert_id:
            self.metrics.commands.labels(cmd.action, "stale").inc()
            return
        act = self.pipeline.acknowledge if cmd.action == "ack" else self.pipeline.resolve
        result = await self.retrying("command", lambda: act(pid, cmd.actor))
        self.check_conflicts(result)
        await self.retrying(
            "publish", lambda: self.publish_alerts(result.emitted, result.outbox_ids)
        )
        self.metrics.commands.labels(cmd.action, "applied" if result.emitted else "no_effect").inc()
        if any(m["transition"] == "ACKNOWLEDGED" for m in result.emitted):
            loaded = await self.retrying("command", lambda: self.store.load([pid]))
            state = AlertState.from_json(loaded[pid].state.alert)
            if state.acked_ts_ms and state.opened_ts_ms:
                seconds = (state.acked_ts_ms - state.opened_ts_ms) / 1000
                self.metrics.time_to_ack.observe(max(0.0, seconds))
