"""Operations views of every worker: ``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Readiness = Callable[[], Awaitable[tuple[dict[str, bool], dict[str, Any]]]]


def register(app: faust.App, registry: CollectorRegistry, readiness: Readiness) -> None:
    """Add the operations routes; ``readiness`` returns the named checks and extra fields
    of the ``/readyz`` answer (ready when every check passes)."""

    @app.page("/metrics")
    async def metrics(self: View, request: Request) -> Response:
        return self.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        return self.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        checks, extra = await readiness()
        ok = all(checks.values())
        return self.json({"ready": ok, "checks": checks, **extra}, status=200 if ok else 503)
