"""The demo's care team: acknowledges the pages it receives, and resolves some, through
the workers' API, as nurses on the page would (seeded, on simulated time).

It makes the demo exercise what a ward does to the system: acknowledge/resolve commands
travel through the command topic to the partition owning each patient while its vitals
stream, so the summary can show that nothing conflicts
(``wardwatch_processing_retries_total{stage="conflict"}`` stays at zero).
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CareTeam"]


@dataclass
class CareTeam:
    """Acknowledges each page 2–15 simulated minutes after it arrives; resolves one in
    three acknowledged alerts 20–60 simulated minutes later (the rest resolve when the
    patient recovers, or stay on the page)."""

    urls: Callable[[], list[str]]  # the workers' web servers (any one takes a command)
    token: str
    speed: float  # simulated seconds per wall second
    seed: int = 7
    sent: Counter[str] = field(default_factory=Counter)  # "ack accepted", "resolve not_open", ...
    stop: threading.Event = field(default_factory=threading.Event)
    _due: list[tuple[float, int, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _n: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def on_page(self, msg: dict[str, Any]) -> None:
        """A paging transition arrived: schedule its acknowledgement."""
        self._schedule(self._rng.uniform(120, 900), "ack", str(msg["alert_id"]))

    def _schedule(self, sim_delay_s: float, action: str, alert_id: str) -> None:
        with self._lock:
            self._n += 1
            heapq.heappush(
                self._due, (time.monotonic() + sim_delay_s / self.speed, self._n, action, alert_id)
            )

    def run(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                ready = []
                while self._due and self._due[0][0] <= time.monotonic():
                    ready.append(heapq.heappop(self._due))
            for _, _, action, alert_id in ready:
                outcome = self._post(action, alert_id)
                self.sent[f"{action} {outcome}"] += 1
                if action == "ack" and outcome == "accepted" and self._rng.random() < 1 / 3:
                    self._schedule(self._rng.uniform(1200, 3600), "resolve", alert_id)
            self.stop.wait(0.05)

    def _post(self, action: str, alert_id: str) -> str:
        urls = self.urls()
        if not urls:
            return "no_worker"
        url = f"{self._rng.choice(urls)}/api/alerts/{alert_id}/{action}"
        body = json.dumps({"actor": "demo-nurse"}).encode()
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return "accepted" if resp.status == 202 else f"http_{resp.status}"
        except urllib.error.HTTPError as exc:
            # 404/409: resolved or replaced meanwhile (the patient recovered first)
            return "not_open" if exc.code in (404, 409) else f"http_{exc.code}"
        except OSError:
            return "unreachable"

    def summary(self) -> dict[str, int]:
        return dict(sorted(self.sent.items()))
