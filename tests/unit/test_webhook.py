"""Paging: one webhook attempt against a real local HTTP server, and the pager's policy
(retry until delivered, a refusal or an expiry dead-lettered) over it."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from agents.metrics import Metrics
from agents.pager import Pager
from alerts.webhook import WebhookSender, should_page
from wardwatch.settings import Settings


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


def _page(tid: str, **extra: Any) -> bytes:
    msg = {"transition_id": tid, "transition": "OPEN", "priority": "high"}
    msg["emitted_ms"] = int(time.time() * 1000)
    return json.dumps({**msg, **extra}).encode()


def _pager(url: str, settings: Settings | None = None) -> tuple[Pager, list[str], list[tuple]]:
    outcomes: list[str] = []
    letters: list[tuple] = []

    async def dead_letter(*args: Any) -> None:
        letters.append(args)

    async def no_wait(_s: float) -> None:
        return None

    sender = WebhookSender(url, secret="s3", on_result=outcomes.append)
    pager = Pager(
        settings or Settings(),
        sender,
        Metrics(CollectorRegistry()),
        dead_letter,
        sleep=no_wait,
    )
    return pager, outcomes, letters


async def test_retried_until_delivered_with_idempotency_key_and_bearer() -> None:
    runner, url, received = await _server([500, 503, 429, 200])
    pager, outcomes, letters = _pager(url)
    async with pager.sender.session() as session:
        await pager.page(session, _page("t1"), 0, 7)
    await runner.cleanup()
    assert len(received) == 4 and letters == []
    assert all(r["key"] == "t1" and r["auth"] == "Bearer s3" for r in received)
    assert outcomes == ["retry", "retry", "retry", "delivered"]


async def test_an_unreachable_receiver_is_retried_as_well() -> None:
    runner, url, received = await _server([])
    await runner.cleanup()  # nobody listens
    pager, outcomes, letters = _pager(url, Settings(page_max_age_s=0.5))
    async with pager.sender.session() as session:
        await pager.page(session, _page("t9"), 2, 3)
    assert outcomes and set(outcomes) == {"retry"} and received == []
    ((raw, topic, partition, offset, reason, detail),) = letters  # expired at last
    assert (topic, partition, offset, reason.value) == ("alerts", 2, 3, "page_expired")
    assert json.loads(raw)["transition_id"] == "t9" and "0.5 s" in detail


async def test_a_refusal_is_final_and_dead_lettered() -> None:
    runner, url, received = await _server([400])
    pager, outcomes, letters = _pager(url)
    async with pager.sender.session() as session:
        await pager.page(session, _page("t2"), 1, 5)
    await runner.cleanup()
    assert len(received) == 1 and outcomes == ["rejected"]
    assert [(a[2], a[3], a[4].value) for a in letters] == [(1, 5, "page_rejected")]


async def test_transitions_that_do_not_page_are_not_sent_and_bad_bytes_are_dead_lettered() -> None:
    runner, url, received = await _server([])
    pager, _, letters = _pager(url)
    async with pager.sender.session() as session:
        await pager.page(session, _page("t3", transition="RESOLVED"), 0, 1)
        await pager.page(session, _page("t4", priority="low"), 0, 2)
        await pager.page(session, b"{not json", 0, 3)
    await runner.cleanup()
    assert received == []
    assert [(a[3], a[4].value) for a in letters] == [(3, "malformed_json")]


def test_only_medium_and_high_opens_and_escalations_page() -> None:
    assert should_page({"transition": "OPEN", "priority": "high"})
    assert should_page({"transition": "ESCALATED", "priority": "medium"})
    assert not should_page({"transition": "OPEN", "priority": "low"})
    assert not should_page({"transition": "RESOLVED", "priority": "high"})
    assert not should_page({"transition": "ACKNOWLEDGED", "priority": "high"})
    assert not should_page({"transition": "OPEN", "priority": "medium"}, "high")


async def test_a_page_waiting_for_confirmation_or_about_old_data_is_not_sent() -> None:
    """``page: false`` (a medium alert waiting for a repeat set) is on the care-team page
    only; a page about data older than ``page_max_data_age_s`` is withheld and counted;
    a fresh one goes out."""
    runner, url, received = await _server([])
    pager, outcomes, letters = _pager(url, Settings(page_max_data_age_s=3600))
    async with pager.sender.session() as session:
        await pager.page(session, _page("w1", priority="medium", page=False), 0, 1)
        await pager.page(session, _page("w2", page=True, data_age_s=5400.0), 0, 2)
        await pager.page(session, _page("w3", page=True, data_age_s=12.5), 0, 3)
    await runner.cleanup()
    assert [r["key"] for r in received] == ["w3"] and letters == []
    withheld = pager.metrics.registry.get_sample_value(
        "wardwatch_pages_withheld_total", {"reason": "stale_data"}
    )
    assert withheld == 1.0
