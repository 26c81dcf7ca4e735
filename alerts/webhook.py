"""Webhook delivery of alert transitions to a paging system.

One POST per attempt: the transition JSON with an ``Idempotency-Key`` (the transition id),
so a receiver drops the repeats that retries or a worker restart produce. What is retried,
for how long, and where pages come from (the ``alerts`` topic, durably) is the pager's
business (``agents.pager``); this module only speaks to the receiver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import aiohttp

log = logging.getLogger(__name__)

PAGED = {"OPEN", "ESCALATED"}
Outcome = Literal["delivered", "retry", "rejected"]


def should_page(msg: dict[str, Any], min_priority: str = "medium") -> bool:
    order = {"low": 0, "medium": 1, "high": 2}
    return msg.get("transition") in PAGED and order.get(msg.get("priority", ""), -1) >= order.get(
        min_priority, 1
    )


class WebhookSender:
    """Posts one transition to the paging webhook and says what happened."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None = None,
        timeout_s: float = 5.0,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.on_result = on_result or (lambda _outcome: None)

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=self.timeout)

    async def deliver(self, session: aiohttp.ClientSession, msg: dict[str, Any]) -> Outcome:
        """One attempt: ``delivered`` (2xx), ``rejected`` (a 4xx other than 408/429: the
        receiver will never take it), or ``retry`` (anything else, unreachable included)."""
        headers = {"Idempotency-Key": str(msg.get("transition_id", ""))}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        outcome: Outcome = "retry"
        try:
            async with session.post(self.url, json=msg, headers=headers) as resp:
                if resp.status < 300:
                    outcome = "delivered"
                elif 400 <= resp.status < 500 and resp.status not in (408, 429):
                    log.error("webhook refused transition (HTTP %d)", resp.status)
                    outcome = "rejected"
        except (aiohttp.ClientError, TimeoutError):
            pass
        self.on_result(outcome)
        return outcome
