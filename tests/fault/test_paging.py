"""Durable paging: the paging receiver is down for 60 s, and the worker is restarted while
pages are pending; when the receiver is back, every page arrives (once each, deduplicated
by its Idempotency-Key), and nothing else does."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alerts.webhook import should_page
from tests.integration.helpers import consume, deteriorating, hours_ago, publish, start_worker
from wardwatch.settings import Settings
from wardwatch.stack import free_port
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Receiver:
    """A paging system on loopback that can go away and come back on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.keys: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        keys = self.keys

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                keys.append(self.headers.get("Idempotency-Key", ""))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def test_pages_survive_a_receiver_outage_and_a_worker_restart(
    settings: Settings, tmp_path: Path
) -> None:
    receiver = Receiver()
    settings = settings.model_copy(update={"webhook_url": f"http://127.0.0.1:{receiver.port}/page"})
    ensure_topics(settings)
    down_since = time.monotonic()  # the receiver starts down
    worker = start_worker(settings, tmp_path, "w1")
    patients = [f"bed-{i}" for i in range(3)]
    try:
        publish(
            settings,
            settings.topics.vitals,
            [(pid, v) for pid in patients for v in deteriorating(pid, hours_ago(4))],
        )
        alerts = consume(
            settings,
            settings.topics.alerts,
            until=lambda m: sum(1 for a in m if should_page(a)) >= 3,
            timeout_s=45,
        )
        worker.stop()  # pages pending, none delivered
        worker = start_worker(settings, tmp_path, "w2")
        time.sleep(max(0.0, 60 - (time.monotonic() - down_since)))
        receiver.up()
        expected = {
            a["transition_id"]
            for a in consume(settings, settings.topics.alerts, until=lambda m: False, timeout_s=5)
            if should_page(a)
        }
        assert (
            len(expected) >= 3
            and {a["transition_id"] for a in alerts if should_page(a)} <= expected
        )
        deadline = time.monotonic() + 60
        while not expected <= set(receiver.keys) and time.monotonic() < deadline:
            time.sleep(0.5)
        metrics = worker.metrics()
    finally:
        worker.stop()
        receiver.down()
    assert set(receiver.keys) == expected  # every page, nothing else
    delivered = sum(v for k, v in metrics.items() if "webhook" in k and "delivered" in k)
    assert delivered >= 1
