"""Webhook delivery against a real local HTTP server."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from alerts.webhook import WebhookSender, should_page


async def _server(statuses: list[int]) -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(
            {
                "body": await request.json(),
                "key": request.headers.get("Idempotency-Key"),
                "auth": request.headers.get("Authorization"),
            }
        )
        return web.Response(status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook", received


async def test_retries_until_delivered_with_idempotency_key() -> None:
    runner, url, received = await _server([500, 503, 200])
    outcomes: list[str] = []
    sender = WebhookSender(url, secret="s3", backoff_s=0.01, on_result=outcomes.append)
    task = asyncio.create_task(sender.run())
    sender.submit({"transition_id": "t1", "transition": "OPEN", "priority": "high"})
    await asyncio.wait_for(sender.queue.join(), 5)
    task.cancel()
    await runner.cleanup()
    assert len(received) == 3
    assert all(r["key"] == "t1" and r["auth"] == "Bearer s3" for r in received)
    assert outcomes == ["retry", "retry", "delivered"]


async def test_client_error_is_not_retried_and_dead_receiver_fails() -> None:
    runner, url, received = await _server([400])
    outcomes: list[str] = []
    sender = WebhookSender(url, backoff_s=0.01, attempts=3, on_result=outcomes.append)
    task = asyncio.create_task(sender.run())
    sender.submit({"transition_id": "t2", "transition": "OPEN", "priority": "high"})
    await asyncio.wait_for(sender.queue.join(), 5)
    await runner.cleanup()
    sender.submit({"transition_id": "t3", "transition": "OPEN", "priority": "high"})
    await asyncio.wait_for(sender.queue.join(), 10)
    task.cancel()
    assert len(received) == 1
    assert outcomes == ["rejected", "retry", "retry", "failed"]


def test_only_medium_and_high_opens_and_escalations_page() -> None:
    assert should_page({"transition": "OPEN", "priority": "high"})
    assert should_page({"transition": "ESCALATED", "priority": "medium"})
    assert not should_page({"transition": "OPEN", "priority": "low"})
    assert not should_page({"transition": "RESOLVED", "priority": "high"})
    assert not should_page({"transition": "ACKNOWLEDGED", "priority": "high"})
