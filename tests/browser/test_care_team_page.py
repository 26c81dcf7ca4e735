"""The care-team page in a real headless Chromium against a real worker, broker and Redis."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

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
from wardwatch.settings import Settings
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
    worker = start_worker(settings, tmp_path)
    try:
        # no patient data without the token
        assert _get(worker.url + "/api/alerts") == 401
        assert _get(worker.url + "/api/alerts", "wrong") == 401
        assert _get(worker.url + "/api/alerts", TOKEN) == 200

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(worker.url + "/")
            assert page.url.endswith("/login")
            page.fill("input[name=name]", "Nurse Ada")
            page.fill("input[name=token]", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_selector("#conn:text('live')", timeout=10_000)

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
            assert "by Nurse Ada" in page.inner_text("article.card[data-state=ACKNOWLEDGED]")
            page.screenshot(path=str(ARTIFACTS / "care-team-page-acknowledged.png"), full_page=True)
            browser.close()

        state = AlertState.from_json(stored_state(settings, "bed-7").alert)
        assert state.status == "acknowledged" and state.acked_by == "Nurse Ada"
        acks = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: any(a["transition"] == "ACKNOWLEDGED" for a in m),
        )
        ack = [a for a in acks if a["transition"] == "ACKNOWLEDGED"]
        assert len(ack) == 1 and ack[0]["actor"] == "Nurse Ada"
        metrics = worker.metrics()
        assert metrics.get("wardwatch_time_to_acknowledge_seconds_count") == 1.0
        assert json.dumps(metrics).count("bed-7") == 0
    finally:
        worker.stop()
