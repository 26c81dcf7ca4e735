"""The care-team page in a real headless Chromium against a real worker, broker and Redis."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerts import AlertState
from tests.integration.helpers import (
    consume,
    deteriorating,
    hours_ago,
    publish,
    start_worker,
    stored_state,
)
from tests.system_tools import needs_tool
from wardwatch.auth import AuthStore
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TOKEN = "test-token-1234"
PASSWORD = "a long test password"


def add_user(settings: Settings, name: str, role: str, *wards: str) -> None:
    async def go() -> None:
        store = RedisStateStore.from_settings(settings)
        try:
            await AuthStore.from_settings(store.r, settings).add_user(name, role, PASSWORD, wards)
        finally:
            await store.close()

    asyncio.run(go())


def sign_in(page: Any, name: str, password: str = PASSWORD) -> None:
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@needs_tool(Path(CHROMIUM).exists(), "Debian chromium not installed (apt-get install chromium)")
def test_alert_appears_live_and_acknowledge_updates_redis_and_kafka(
    settings: Settings, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    ensure_topics(settings)
    add_user(settings, "ada", "nurse")
    worker = start_worker(settings, tmp_path)
    try:
        # no patient data without the token
        assert _get(worker.url + "/api/alerts") == 401
        assert _get(worker.url + "/api/alerts", "wrong") == 401
        assert _get(worker.url + "/api/alerts", TOKEN) == 200

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            blocked: list[str] = []  # anything the Content-Security-Policy refused
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security" in m.text else None,
            )
            page.goto(worker.url + "/")
            assert page.url.endswith("/login")
            sign_in(page, "ada")
            page.wait_for_selector("#conn:text('live')", timeout=10_000)
            assert page.inner_text("#who") == "ada (nurse)"

            publish(
                settings,
                settings.topics.vitals,
                [("bed-7", v) for v in deteriorating("bed-7", hours_ago(3))],
            )
            card = page.wait_for_selector("article.card[data-alert]", timeout=30_000)
            seen_ms = time.time() * 1000
            assert card is not None
            alerts = consume(settings, settings.topics.alerts, until=lambda m: len(m) > 0)
            first = alerts[0]
            # on the page within a second of being published to the alerts topic
            assert seen_ms - first["published_ms"] < 1000, seen_ms - first["published_ms"]
            page.wait_for_selector("article.card.high", timeout=30_000)
            page.wait_for_selector("article.card.high .spark svg", timeout=10_000)
            text = page.inner_text("article.card.high")
            assert "bed-7" in text and "Guideline response" in text and "NEWS2" in text
            # the age of the data behind the alert (this history is hours old)
            assert "Data from" in text and "min old when raised" in text
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "care-team-page.png"), full_page=True)

            page.click("article.card.high button.ack")
            page.wait_for_selector("article.card[data-state=ACKNOWLEDGED]", timeout=10_000)
            assert "by ada" in page.inner_text("article.card[data-state=ACKNOWLEDGED]")
            page.screenshot(path=str(ARTIFACTS / "care-team-page-acknowledged.png"), full_page=True)
            assert blocked == []
            browser.close()

        state = AlertState.from_json(stored_state(settings, "bed-7").alert)
        assert state.status == "acknowledged" and state.acked_by == "ada"
        acks = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition"] == "ACKNOWLEDGED" for a in m),
        )
        ack = [a for a in acks if a["transition"] == "ACKNOWLEDGED"]
        assert len(ack) == 1 and ack[0]["actor"] == "ada"
        metrics = worker.metrics()
        assert metrics.get("wardwatch_time_to_acknowledge_seconds_count") == 1.0
        assert json.dumps(metrics).count("bed-7") == 0
    finally:
        worker.stop()


@needs_tool(Path(CHROMIUM).exists(), "Debian chromium not installed (apt-get install chromium)")
def test_sign_in_sign_out_expiry_csrf_and_lockout_in_the_browser(
    settings: Settings, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    settings = settings.model_copy(update={"session_idle_s": 3, "login_max_failures": 3})
    ensure_topics(settings)
    add_user(settings, "bob", "clinician")
    add_user(settings, "lee", "viewer")
    worker = start_worker(settings, tmp_path)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context()
            page = context.new_page()
            page.goto(worker.url + "/login")
            sign_in(page, "bob", "not the password")
            page.wait_for_selector("#err:text('Wrong user name or password.')", timeout=5_000)
            assert page.url.endswith("/login")
            sign_in(page, "bob")
            page.wait_for_selector("#conn:text('live')", timeout=10_000)
            cookie = next(c for c in context.cookies() if c["name"] == "ww_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
            assert page.evaluate("document.cookie") == ""  # not readable by script

            # CSRF: the session alone does not make a POST (no token, a wrong token)
            post = """async ([token]) => (await fetch('/api/alerts/none/ack', {method: 'POST',
                headers: token === null ? {} : {'X-CSRF-Token': token}})).status"""
            assert page.evaluate(post, [None]) == 403
            assert page.evaluate(post, ["wrong"]) == 403
            csrf = page.evaluate("async () => (await (await fetch('/api/me')).json()).csrf_token")
            assert page.evaluate(post, [csrf]) == 404  # past the CSRF check: no such alert

            # another origin's page cannot post with the user's cookie
            status = _post_from_other_origin(worker.url, cookie["value"], csrf)
            assert status == 403

            # sign-out ends the session server-side
            page.click("#signout")
            page.wait_for_url("**/login", timeout=5_000)
            assert _get_with_cookie(worker.url + "/api/alerts", cookie["value"]) == 401

            # idle expiry: the live page alone does not keep a session, it goes to sign-in
            sign_in(page, "lee")
            page.wait_for_selector("#conn:text('live')", timeout=10_000)
            page.wait_for_url("**/login", timeout=15_000)
            assert page.evaluate("async () => (await fetch('/api/alerts')).status") == 401

            # lockout: three wrong passwords lock the name; then even the right one fails
            for _ in range(3):
                sign_in(page, "lee", "wrong password")
                page.wait_for_selector("#err:not([hidden])", timeout=5_000)
            sign_in(page, "lee")
            page.wait_for_selector(
                "#err:text('Too many attempts: try again later.')", timeout=5_000
            )
            assert page.url.endswith("/login")
            browser.close()
    finally:
        worker.stop()


def _get_with_cookie(url: str, sid: str) -> int:
    req = urllib.request.Request(url, headers={"Cookie": f"ww_session={sid}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _post_from_other_origin(base: str, sid: str, csrf: str) -> int:
    req = urllib.request.Request(
        base + "/api/alerts/none/ack",
        data=b"{}",
        method="POST",
        headers={
            "Cookie": f"ww_session={sid}",
            "X-CSRF-Token": csrf,
            "Origin": "http://evil.example",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
