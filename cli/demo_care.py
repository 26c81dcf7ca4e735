"""The demo's care team: acknowledges the pages it receives, and resolves some, through
the workers' API, as nurses and doctors on the page would (seeded, on simulated time).

A clinician resolves an alert after reviewing the patient and seeing them improve: before
resolving, they read the patient's latest observations (``/api/patients/{id}/history``,
as on the page) and resolve only when the latest NEWS2 total is below the urgent-response
threshold of 5; otherwise they look again later, a few times, and leave the alert to the system (it
resolves itself once the patient has recovered for the hold).

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
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CareTeam"]


REVIEW_BELOW_NEWS2 = 5
"""A clinician resolves only once the patient's latest NEWS2 is below this."""
REVIEW_LOOKS = 3
"""Times a clinician looks again at a patient not yet improved before leaving it."""


@dataclass
class CareTeam:
    """Acknowledges each page 2–15 simulated minutes after it arrives; for one in three
    acknowledged alerts a clinician reviews the patient 20–60 simulated minutes later and
    resolves it if the latest NEWS2 is below 5, else looks again (up to 3 times; the rest
    resolve when the patient recovers, or stay on the page)."""

    urls: Callable[[], list[str]]  # the workers' web servers (any one takes a command)
    token: str
    speed: float  # simulated seconds per wall second
    seed: int = 7
    sent: Counter[str] = field(default_factory=Counter)  # "ack accepted", "resolve not_open", ...
    stop: threading.Event = field(default_factory=threading.Event)
    _due: list[tuple[float, int, str, str]] = field(default_factory=list)
    _patient: dict[str, str] = field(default_factory=dict)  # alert id -> patient id
    _looks: Counter[str] = field(default_factory=Counter)  # reviews per alert id
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _n: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def on_page(self, msg: dict[str, Any]) -> None:
        """A paging transition arrived: schedule its acknowledgement."""
        with self._lock:
            self._patient[str(msg["alert_id"])] = str(msg.get("patient_id", ""))
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
                if action == "resolve" and not self._improved(alert_id):
                    self._looks[alert_id] += 1
                    if self._looks[alert_id] < REVIEW_LOOKS:
                        self._schedule(self._rng.uniform(1800, 3600), "resolve", alert_id)
                        self.sent["review not_improved"] += 1
                    else:
                        self.sent["review left_open"] += 1
                    continue
                outcome = self._post(action, alert_id)
                self.sent[f"{action} {outcome}"] += 1
                if action == "ack" and outcome == "accepted" and self._rng.random() < 1 / 3:
                    self._schedule(self._rng.uniform(1200, 3600), "resolve", alert_id)
            self.stop.wait(0.05)

    def _improved(self, alert_id: str) -> bool:
        """The patient's latest NEWS2 on the page is below the review threshold (the
        patient's chart unreadable: not improved, as far as the clinician can tell)."""
        with self._lock:
            pid = self._patient.get(alert_id)
        urls = self.urls()
        if not pid or not urls:
            return False
        request = urllib.request.Request(
            f"{self._rng.choice(urls)}/api/patients/{urllib.parse.quote(pid)}/history",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                rows = json.loads(resp.read()).get("history") or []
        except (OSError, ValueError):
            return False
        latest = next((r.get("news2") for r in reversed(rows) if r.get("news2") is not None), None)
        return isinstance(latest, int) and latest < REVIEW_BELOW_NEWS2

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
