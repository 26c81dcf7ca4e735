"""Webhook delivery of alert transitions to a paging system, with retries.

Transitions are queued by the worker after they are on the alerts topic and posted by a
background task, so a slow or failing pager never stalls scoring. Each POST carries the
transition JSON and an ``Idempotency-Key`` (the transition id), so a receiver can drop the
repeats that retries or a worker restart may produce.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

PAGED = {"OPEN", "ESCALATED"}


def should_page(msg: dict[str, Any], min_priority: str = "medium") -> bool:
    order = {"low": 0, "medium": 1, "high": 2}
    return msg.get("transition") in PAGED and order.get(msg.get("priority", ""), -1) >= order.get(
        min_priority, 1
    )


class WebhookSender:
    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        attempts: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        queue_max: int = 10_000,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(queue_max)
        self.on_result = on_result or (lambda _outcome: None)

    def submit(self, msg: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.on_result("dropped_queue_full")
            log.error("webhook queue full; transition %s not delivered", msg.get("transition_id"))

    async def send(self, session: aiohttp.ClientSession, msg: dict[str, Any]) -> bool:
        headers = {"Idempotency-Key": str(msg.get("transition_id", ""))}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        for attempt in range(1, self.attempts + 1):
            try:
                async with session.post(self.url, json=msg, headers=headers) as resp:
                    if resp.status < 300:
                        self.on_result("delivered")
                        return True
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        self.on_result("rejected")
                        log.error("webhook refused transition (HTTP %d)", resp.status)
                        return False
            except (aiohttp.ClientError, TimeoutError):
                pass
            if attempt < self.attempts:
                self.on_result("retry")
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        self.on_result("failed")
        log.error("webhook delivery failed after %d attempts", self.attempts)
        return False

    async def run(self) -> None:
        """Deliver queued transitions until cancelled."""
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            while True:
                msg = await self.queue.get()
                try:
                    await self.send(session, msg)
                finally:
                    self.queue.task_done()
