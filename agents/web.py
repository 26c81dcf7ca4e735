"""The care-team page and alerts API, served by every worker's web server.

Who may call what (docs/security.md has the roles and the rest):

    GET  /                               the live page (any signed-in user; else /login)
    GET  /login  POST /login             sign in (name + password) -> session cookie
    POST /logout                         end the session (CSRF token)
    GET  /static/{page.js,...}           the page's script and styles (public)
    GET  /api/me                         who is signed in, permissions, the CSRF token
    GET  /api/alerts                     read: open and acknowledged alerts of the
                                         caller's wards, by priority
    GET  /api/alerts/{alert_id}          read + ward: one of them (audited)
    POST /api/alerts/{alert_id}/ack      ack + ward: acknowledge (202 with the command id;
                                         the actor is always the authenticated principal)
    POST /api/alerts/{alert_id}/resolve  resolve + ward: resolve by hand (202, likewise)
    GET  /api/alerts/{alert_id}/fhir     read + ward: the alert as a FHIR R4 DetectedIssue
    GET  /api/audit?count=N              audit: latest alert transitions, newest first
    GET  /api/audit?patient=P|user=U     audit: the access audit of a patient / a principal
    GET  /api/patients/{pid}/history     read + ward: recent observations (audited)
    GET  /api/stream                     read: server-sent events, the caller's alert list

401 without valid credentials, 403 for a permission or ward the caller lacks (and for a
cookie request without its CSRF token or from another origin), 404 for an alert that is
not open. Error bodies carry only a generic word. Every response carries the security
headers; bodies over ``max_request_bytes`` get 413.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import faust
from aiohttp import web
from faust.web import Request, Response, View

from agents.desk import Action, AlertDesk
from alerts import AlertEvent
from alerts.fhir import detected_issue
from wardwatch.auth import AccessAudit, AuthStore, Principal
from wardwatch.settings import Settings
from wardwatch.transport import static_token

log = logging.getLogger(__name__)
PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}
COOKIE = "ww_session"
CSRF_HEADER = "X-CSRF-Token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
STATIC = {
    "page.js": "application/javascript",
    "page.css": "text/css",
    "login.js": "application/javascript",
    "login.css": "text/css",
}
LEGACY_PRINCIPAL = Principal(
    name="service:api",
    kind="service",
    permissions=frozenset({"read", "ack", "resolve", "audit"}),
    role="service",
)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def sort_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        alerts,
        key=lambda a: (
            a.get("transition") == "ACKNOWLEDGED",
            PRIORITY_ORDER.get(a.get("priority", "low"), 3),
            -int(a.get("ts_ms", 0)),
        ),
    )


def asset(name: str) -> str:
    return resources.files("agents").joinpath(name).read_text()


def page_html() -> str:
    return asset("page.html")


def error(status: int, word: str) -> web.Response:
    return web.json_response({"error": word}, status=status)


def same_origin(request: Any) -> bool:
    """The request's Origin (or, without one, its Referer) is this server's own: the
    same host and port as the request's ``Host``, over this scheme or HTTPS (a TLS proxy
    in front of a plain-HTTP worker)."""
    given = request.headers.get("Origin")
    if given is None:
        given = request.headers.get("Referer", "")
    parts = urllib.parse.urlsplit(given)
    if parts.scheme not in {request.scheme, "https"} or not parts.netloc:
        return False
    return hmac.compare_digest(parts.netloc.lower(), str(request.host).lower())


def client_address(request: Any) -> str:
    return str(request.remote or "")


class Gate:
    """Authentication, CSRF and the access audit of the care-team routes."""

    def __init__(self, auth: AuthStore, audit: AccessAudit, legacy_token: str) -> None:
        self.auth = auth
        self.audit = audit
        self.legacy = legacy_token  # "" when off (transport.static_token)

    async def principal(self, request: Any, *, touch: bool = True) -> Principal | None:
        """Bearer token (a service) or session cookie (a user); ``None`` for neither."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:].strip()
            if self.legacy and hmac.compare_digest(given.encode(), self.legacy.encode()):
                return LEGACY_PRINCIPAL
            return await self.auth.token(given)
        sid = request.cookies.get(COOKIE, "")
        return await self.auth.session(sid, touch=touch) if sid else None

    @staticmethod
    def csrf_ok(request: Any, who: Principal) -> bool:
        """A state-changing request of a cookie session carries the session's CSRF
        token and comes from this origin; bearer requests (no cookie) are exempt."""
        if who.session_id is None or request.method not in UNSAFE:
            return True
        given = request.headers.get(CSRF_HEADER, "")
        return (
            bool(who.csrf) and hmac.compare_digest(given, who.csrf or "") and same_origin(request)
        )

    async def check(self, request: Any, permission: str | None) -> Principal | web.Response:
        """The principal allowed ``permission`` (``None``: any), or the error response."""
        who = await self.principal(request)
        if who is None:
            return error(401, "unauthorized")
        if not self.csrf_ok(request, who):
            await self.record(request, who, "csrf_rejected", outcome="denied")
            return error(403, "forbidden")
        if permission is not None and not who.can(permission):
            await self.record(
                request,
                who,
                "permission_denied",
                outcome="denied",
                detail={"permission": permission, "path": request.path},
            )
            return error(403, "forbidden")
        return who

    async def record(
        self,
        request: Any,
        who: Principal | str,
        action: str,
        *,
        outcome: str = "ok",
        patient_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.audit.record(
            who if isinstance(who, str) else who.name,
            action,
            outcome=outcome,
            addr=client_address(request),
            patient_id=patient_id,
            detail=detail,
        )


def security_middleware(max_bytes: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_bytes:
            return error(413, "request too large")
        try:
            return await handler(request.clone(client_max_size=max_bytes))
        except web.HTTPRequestEntityTooLarge:
            return error(413, "request too large")
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - the detail goes to the log, never the client
            log.exception("care-team request failed")
            return error(500, "internal error")

    return middleware


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "no-referrer"
    h["X-Content-Type-Options"] = "nosniff"
    if not request.path.startswith("/static/"):
        h["Cache-Control"] = "no-store"


def register(
    app: faust.App,
    desk: AlertDesk,
    settings: Settings,
    redis_client: Any,
    poll_s: float = 0.5,
) -> None:
    """Add the page and API routes (and the security middleware and headers) to the
    worker's Faust web server; every read and action goes through ``desk``, every
    credential check through the Redis ``redis_client``."""
    legacy = static_token(settings)
    if not legacy:
        log.info("WARDWATCH_API_TOKEN is not set: the static API token is off")
    gate = Gate(
        AuthStore.from_settings(redis_client, settings),
        AccessAudit(redis_client, settings.redis_prefix),
        legacy,
    )
    web_app = app.web.web_app  # type: ignore[attr-defined]
    web_app.middlewares.append(security_middleware(settings.max_request_bytes))
    web_app.on_response_prepare.append(security_headers)
    secure_cookie = settings.session_cookie_secure or settings.web_tls_enabled

    async def visible(who: Principal, pids: list[str]) -> set[str]:
        """The patients of ``pids`` whose ward the principal may see."""
        if not who.wards:
            return set(pids)
        wards = await desk.wards(pids)
        return {pid for pid in pids if who.sees_ward(wards.get(pid))}

    async def alerts_for(who: Principal) -> list[dict[str, Any]]:
        alerts = await desk.open_alerts()
        shown = await visible(who, [str(a.get("patient_id", "")) for a in alerts])
        return sort_alerts([a for a in alerts if str(a.get("patient_id", "")) in shown])

    async def find(alert_id: str) -> dict[str, Any] | None:
        for alert in await desk.open_alerts():
            if alert.get("alert_id") == alert_id:
                return alert
        return None

    async def lookup(
        request: Request, alert_id: str, permission: str
    ) -> tuple[Principal, dict[str, Any]] | web.Response:
        """The caller and the open alert, or the error response (401, 403, 404)."""
        who = await gate.check(request, permission)
        if not isinstance(who, Principal):
            return who
        alert = await find(alert_id)
        if alert is None:
            return error(404, "not found")
        pid = str(alert.get("patient_id", ""))
        if pid not in await visible(who, [pid]):
            await gate.record(request, who, "ward_denied", outcome="denied", patient_id=pid)
            return error(403, "forbidden")
        return who, alert

    @app.page("/")
    class Page(View):
        async def get(self, request: Request) -> Any:
            if await gate.principal(request) is None:
                raise web.HTTPFound("/login")
            return web.Response(text=page_html(), content_type="text/html")

    @app.page("/static/{name}")
    class Static(View):
        async def get(self, request: Request, name: str) -> Any:
            if name not in STATIC:
                return error(404, "not found")
            return web.Response(text=asset(name), content_type=STATIC[name])

    @app.page("/login")
    class Login(View):
        async def get(self, request: Request) -> Any:
            return web.Response(text=asset("login.html"), content_type="text/html")

        async def post(self, faust_request: Request) -> Any:
            request: Any = faust_request  # aiohttp's request under Faust's driver
            if not same_origin(request):
                return error(403, "forbidden")
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body = {}
            else:
                body = dict(await request.post())
            body = body if isinstance(body, dict) else {}
            name = str(body.get("name", "")).strip().lower()[:64]
            password = str(body.get("password", ""))
            addr = client_address(request)
            result = await gate.auth.sign_in(name, password, addr)
            if not result.ok or result.session_id is None:
                await gate.record(
                    request,
                    name or "-",
                    "sign_in",
                    outcome="failed",
                    detail={"reason": result.reason},
                )
                if result.reason == "locked":
                    return error(429, "too many attempts")
                return error(401, "unauthorized")
            old = request.cookies.get(COOKIE)
            if old:  # no session fixation: a sign-in always starts a new session
                await gate.auth.end_session(old)
            await gate.record(request, name, "sign_in")
            resp = web.json_response({"ok": True, "name": name})
            resp.set_cookie(
                COOKIE,
                result.session_id,
                httponly=True,
                samesite="Strict",
                secure=secure_cookie or request.secure,
                path="/",
            )
            return resp

    @app.page("/logout")
    class Logout(View):
        async def post(self, request: Request) -> Any:
            who = await gate.check(request, None)
            if not isinstance(who, Principal):
                return who
            if who.session_id:
                await gate.auth.end_session(who.session_id)
            await gate.record(request, who, "sign_out")
            resp = web.json_response({"ok": True})
            resp.del_cookie(COOKIE, path="/")
            return resp

    @app.page("/api/me")
    class Me(View):
        async def get(self, request: Request) -> Any:
            who = await gate.check(request, None)
            if not isinstance(who, Principal):
                return who
            return web.json_response(
                {
                    "name": who.name,
                    "role": who.role,
                    "permissions": sorted(who.permissions),
                    "wards": list(who.wards),
                    "csrf_token": who.csrf,
                }
            )

    @app.page("/api/alerts")
    class Alerts(View):
        async def get(self, request: Request) -> Any:
            who = await gate.check(request, "read")
            if not isinstance(who, Principal):
                return who
            return web.json_response({"alerts": await alerts_for(who)})

    @app.page("/api/alerts/{alert_id}")
    class OneAlert(View):
        async def get(self, request: Request, alert_id: str) -> Any:
            found = await lookup(request, alert_id, "read")
            if not isinstance(found, tuple):
                return found
            who, alert = found
            await gate.record(
                request,
                who,
                "view_alert",
                patient_id=str(alert["patient_id"]),
                detail={"alert_id": alert_id},
            )
            return web.json_response(alert)

    async def act(request: Request, alert_id: str, action: Action) -> Any:
        found = await lookup(request, alert_id, action)
        if not isinstance(found, tuple):
            return found
        who, alert = found
        # the actor is the authenticated principal, never a name the request carries
        command_id = await desk.act(alert["patient_id"], alert_id, action, who.name)
        await gate.record(
            request,
            who,
            "acknowledge" if action == "ack" else "resolve",
            patient_id=str(alert["patient_id"]),
            detail={"alert_id": alert_id, "command_id": command_id},
        )
        # accepted: the worker owning the patient applies it; the transition follows on
        # the alerts topic and the stream
        return web.json_response({"command_id": command_id, "status": "accepted"}, status=202)

    @app.page("/api/alerts/{alert_id}/ack")
    class Ack(View):
        async def post(self, request: Request, alert_id: str) -> Any:
            return await act(request, alert_id, "ack")

    @app.page("/api/alerts/{alert_id}/resolve")
    class Resolve(View):
        async def post(self, request: Request, alert_id: str) -> Any:
            return await act(request, alert_id, "resolve")

    @app.page("/api/alerts/{alert_id}/fhir")
    class AlertFhir(View):
        async def get(self, request: Request, alert_id: str) -> Any:
            found = await lookup(request, alert_id, "read")
            if not isinstance(found, tuple):
                return found
            who, alert = found
            await gate.record(
                request,
                who,
                "view_alert",
                patient_id=str(alert["patient_id"]),
                detail={"alert_id": alert_id, "format": "fhir"},
            )
            return web.json_response(detected_issue(AlertEvent.from_dict(alert)))

    @app.page("/api/audit")
    class Audit(View):
        async def get(self, request: Request) -> Any:
            who = await gate.check(request, "audit")
            if not isinstance(who, Principal):
                return who
            q = request.query
            try:
                count = max(1, min(int(q.get("count", "100")), 1000))
                since = int(q["since"]) if "since" in q else None
            except ValueError:
                return error(400, "bad request")
            patient, user = q.get("patient"), q.get("user")
            if patient is None and user is None:
                rows = await desk.audit(count)
                shown = await visible(who, [str(r.get("patient_id", "")) for r in rows])
                rows = [r for r in rows if str(r.get("patient_id", "")) in shown]
                return web.json_response({"transitions": rows})
            records = await gate.audit.query(
                patient_id=patient, actor=user, since_ms=since, limit=count
            )
            if who.wards:  # a ward-scoped audit token: its wards' patients only
                shown = await visible(who, [str(r.get("patient_id", "")) for r in records])
                records = [r for r in records if r.get("patient_id") and r["patient_id"] in shown]
            await gate.record(
                request,
                who,
                "audit_query",
                patient_id=patient,
                detail={"user": user} if user else {},
            )
            return web.json_response({"access": records})

    @app.page("/api/patients/{pid}/history")
    class History(View):
        async def get(self, request: Request, pid: str) -> Any:
            who = await gate.check(request, "read")
            if not isinstance(who, Principal):
                return who
            if pid not in await visible(who, [pid]):
                await gate.record(request, who, "ward_denied", outcome="denied", patient_id=pid)
                return error(403, "forbidden")
            await gate.record(request, who, "view_history", patient_id=pid)
            return web.json_response({"history": await desk.history(pid, 48)})

    @app.page("/api/stream")
    class Stream(View):
        async def get(self, request: Request) -> Any:
            who = await gate.check(request, "read")
            if not isinstance(who, Principal):
                return who
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
            )
            await resp.prepare(request)  # type: ignore[arg-type]
            last = ""
            try:
                while True:
                    # the stream ends with the session (it does not keep it alive)
                    if await gate.principal(request, touch=False) is None:
                        break
                    alerts = await alerts_for(who)
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


__all__ = ["COOKIE", "CSRF_HEADER", "Gate", "Response", "page_html", "register", "sort_alerts"]
