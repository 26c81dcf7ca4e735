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

from alerts.state import pages_by_default

log = logging.getLogger(__name__)

Outcome = Literal["delivered", "retry", "rejected"]


def should_page(msg: dict[str, Any], min_priority: str = "medium") -> bool:
    """Whether a transition on the ``alerts`` topic is a page at ``min_priority``: the
    policy's ``page`` flag (a medium alert waiting for a repeat observation is on the
    care-team page but does not page), else OPEN and ESCALATED."""
    order = {"low": 0, "medium": 1, "high": 2}
    flag = msg.get("page")
    priority = msg.get("priority", "")
    pages = bool(flag) if flag is not None else pages_by_default(msg.get("transition"), priority)
    return pages and order.get(priority, -1) >= order.get(min_priority, 1)


def withheld_because(msg: dict[str, Any], max_data_age_s: float) -> str | None:
    """Why a page is not sent, or None: ``stale_data`` when the observation behind it was
    older than ``max_data_age_s`` when the transition was emitted (``data_age_s``, see
    ``agents.pipeline.alert_message``): old or backfilled data is scored and shown, never
    paged."""
    age = msg.get("data_age_s")
    if isinstance(age, int | float) and not isinstance(age, bool) and age > max_data_age_s:
        return "stale_data"
    return None


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
