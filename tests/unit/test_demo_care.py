"""The demo's clinicians resolve an alert only once the patient's latest NEWS2 on the
page has improved; otherwise they look again, a few times, then leave it to the system."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cli.demo_care import REVIEW_LOOKS, CareTeam


class _Ward(BaseHTTPRequestHandler):
    latest: dict[str, int] = {}
    posts: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        pid = self.path.split("/")[3]
        body = json.dumps({"history": [{"t": 1, "news2": 7}, {"t": 2, "news2": self.latest[pid]}]})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:  # noqa: N802
        self.posts.append(self.path)
        self.send_response(202)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


def test_a_clinician_resolves_only_an_improved_patient() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ward)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _Ward.latest = {"better": 2, "sick": 6}
    care = CareTeam(urls=lambda: [url], token="t", speed=1e6, seed=1)
    try:
        # the pages' patients, as on_page records them (without scheduling their acks)
        care._patient.update({"a-better": "better", "a-sick": "sick"})
        assert care._improved("a-better") and not care._improved("a-sick")
        care._schedule(0, "resolve", "a-better")
        care._schedule(0, "resolve", "a-sick")
        worker = threading.Thread(target=care.run, daemon=True)
        worker.start()
        deadline = time.monotonic() + 10
        while care.sent["review left_open"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        care.stop.set()
        worker.join(5)
    finally:
        server.shutdown()
    resolves = [p for p in _Ward.posts if p.endswith("/resolve")]
    assert resolves == ["/api/alerts/a-better/resolve"]
    assert care.sent["resolve accepted"] == 1
    assert care.sent["review not_improved"] == REVIEW_LOOKS - 1
    assert care.sent["review left_open"] == 1
