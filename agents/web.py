"""The care-team page and alerts API, served by every worker's web server.

Routes (all but ``/login`` need the bearer token from settings, as an
``Authorization: Bearer`` header or the session cookie the login form sets):

    GET  /                               the live page (redirects to /login without a session)
    GET|POST /login                      token + name form; sets an HttpOnly session cookie
    GET  /api/alerts                     open and acknowledged alerts, by priority
    GET  /api/alerts/{alert_id}          one of them
    POST /api/alerts/{alert_id}/ack      acknowledge (body: {"actor": "..."}; default: login name):
                                         202 with the command id (applied by the worker that
                                         owns the patient; the transition follows)
    POST /api/alerts/{alert_id}/resolve  resolve by hand (202, likewise)
    GET  /api/alerts/{alert_id}/fhir     the alert as a FHIR R4 DetectedIssue
    GET  /api/audit?count=N              latest transitions (who, when), newest first
    GET  /api/patients/{pid}/history     recent observations (for the trend sparklines)
    GET  /api/stream                     server-sent events: the alert list whenever it changes

The list comes from Redis (every worker's transitions are committed there before they
reach Kafka), so any worker's page shows every patient's alerts within ``poll_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import urllib.parse
from importlib import resources
from typing import Any

import faust
from aiohttp import web
from faust.web import Request, Response, View

from agents.desk import Action, AlertDesk
from alerts import AlertEvent
from alerts.fhir import detected_issue

log = logging.getLogger(__name__)
PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}
COOKIE = "ww_session"


def session_value(token: str, actor: str) -> str:
    """Cookie value: the actor's name signed with the API token."""
    sig = hmac.new(token.encode(), actor.encode(), hashlib.sha256).hexdigest()
    return f"{urllib.parse.quote(actor)}.{sig}"


def authenticate(request: Any, token: str) -> str | None:
    """The actor name if the request carries the token (header) or a valid session."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return request.headers.get("X-Actor", "api")
    cookie = request.cookies.get(COOKIE, "")
    actor_q, _, _sig = cookie.rpartition(".")
    if actor_q:
        actor = urllib.parse.unquote(actor_q)
        if hmac.compare_digest(cookie, session_value(token, actor)):
            return actor
    return None


def sort_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        alerts,
        key=lambda a: (
            a.get("transition") == "ACKNOWLEDGED",
            PRIORITY_ORDER.get(a.get("priority", "low"), 3),
            -int(a.get("ts_ms", 0)),
        ),
    )


def page_html() -> str:
    return resources.files("agents").joinpath("page.html").read_text()


def register(app: faust.App, desk: AlertDesk, token: str, poll_s: float = 0.5) -> None:
    """Add the page and API routes to the worker's Faust web server; every read and
    action goes through ``desk``."""
    if token == "change-me":
        log.warning("WARDWATCH_API_TOKEN is the default: set a secret before real patient data")

    def unauthorized(view: View) -> Response:
        return view.json({"error": "unauthorized"}, status=401)

    async def find(alert_id: str) -> dict[str, Any] | None:
        for alert in await desk.open_alerts():
            if alert.get("alert_id") == alert_id:
                return alert
        return None

    @app.page("/")
    class Page(View):
        async def get(self, request: Request) -> Response:
            if authenticate(request, token) is None:
                raise web.HTTPFound("/login")
            return self.html(page_html())

    @app.page("/login")
    class Login(View):
        async def get(self, request: Request) -> Response:
            return self.html(LOGIN_HTML.replace("{error}", ""))

        async def post(self, request: Request) -> Response:
            form = await request.post()
            given = str(form.get("token", ""))
            actor = str(form.get("name", "")).strip()[:64] or "care team"
            if not hmac.compare_digest(given, token):
                return self.html(
                    LOGIN_HTML.replace("{error}", "<p class=err>Wrong token.</p>"), status=401
                )
            resp = web.HTTPFound("/")
            resp.set_cookie(COOKIE, session_value(token, actor), httponly=True, samesite="Strict")
            raise resp

    @app.page("/api/alerts")
    class Alerts(View):
        async def get(self, request: Request) -> Response:
            if authenticate(request, token) is None:
                return unauthorized(self)
            return self.json({"alerts": sort_alerts(await desk.open_alerts())})

    async def lookup(view: View, request: Request, alert_id: str) -> dict[str, Any] | Response:
        """The open alert, or the error response (unauthorized, not found)."""
        if authenticate(request, token) is None:
            return unauthorized(view)
        alert = await find(alert_id)
        if alert is None:
            return view.json({"error": "no open alert with this id"}, status=404)
        return alert

    @app.page("/api/alerts/{alert_id}")
    class OneAlert(View):
        async def get(self, request: Request, alert_id: str) -> Response:
            alert = await lookup(self, request, alert_id)
            return self.json(alert) if isinstance(alert, dict) else alert

    async def act(view: View, request: Request, alert_id: str, action: Action) -> Response:
        alert = await lookup(view, request, alert_id)
        if not isinstance(alert, dict):
            return alert
        actor = authenticate(request, token) or "api"
        try:
            body = await request.json()
        except (ValueError, TypeError):
            body = {}
        actor = str((body or {}).get("actor") or actor)[:64]
        command_id = await desk.act(alert["patient_id"], alert_id, action, actor)
        # accepted: the worker owning the patient applies it; the transition follows on
        # the alerts topic and the stream
        return view.json({"command_id": command_id, "status": "accepted"}, status=202)

    @app.page("/api/alerts/{alert_id}/ack")
    class Ack(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, "ack")

    @app.page("/api/alerts/{alert_id}/resolve")
    class Resolve(View):
        async def post(self, request: Request, alert_id: str) -> Response:
            return await act(self, request, alert_id, "resolve")

    @app.page("/api/alerts/{alert_id}/fhir")
    class AlertFhir(View):
        async def get(self, request: Request, alert_id: str) -> Response:
            alert = await lookup(self, request, alert_id)
            if not isinstance(alert, dict):
                return alert
            return self.json(detected_issue(AlertEvent.from_dict(alert)))

    @app.page("/api/audit")
    class Audit(View):
        async def get(self, request: Request) -> Response:
            if authenticate(request, token) is None:
                return unauthorized(self)
            count = min(int(request.query.get("count", "100")), 1000)
            return self.json({"transitions": await desk.audit(count)})

    @app.page("/api/patients/{pid}/history")
    class History(View):
        async def get(self, request: Request, pid: str) -> Response:
            if authenticate(request, token) is None:
                return unauthorized(self)
            return self.json({"history": await desk.history(pid, 48)})

    @app.page("/api/stream")
    class Stream(View):
        async def get(self, request: Request) -> Any:
            if authenticate(request, token) is None:
                return unauthorized(self)
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await resp.prepare(request)  # type: ignore[arg-type]
            last = ""
            try:
                while True:
                    alerts = sort_alerts(await desk.open_alerts())
                    payload = json.dumps({"alerts": alerts}, separators=(",", ":"))
                    if payload != last:
                        await resp.write(f"event: alerts\ndata: {payload}\n\n".encode())
                        last = payload
                    else:
                        await resp.write(b": keep-alive\n\n")
                    await asyncio.sleep(poll_s)
            except (ConnectionResetError, asyncio.CancelledError):
                pass
            return resp


LOGIN_HTML = """<!doctype html><html lang=en><head><meta charset=utf-8>
<title>wardwatch: sign in</title><meta name=viewport content="width=device-width">
<style>body{font:16px system-ui,sans-serif;background:#0f172a;color:#e2e8f0;display:grid;
place-items:center;height:100vh;margin:0}form{background:#1e293b;padding:2rem;border-radius:12px;
width:20rem}input{width:100%;box-sizing:border-box;margin:.3rem 0 1rem;padding:.5rem;
border-radius:6px;border:1px solid #475569;background:#0f172a;color:inherit}
button{width:100%;padding:.6rem;border:0;border-radius:6px;background:#2563eb;color:#fff;
font-weight:600}.err{color:#f87171}</style></head><body>
<form method=post action=/login><h1>wardwatch</h1>{error}
<label>Your name<input name=name autocomplete=name required></label>
<label>Access token<input name=token type=password required></label>
<button type=submit>Sign in</button></form></body></html>"""
