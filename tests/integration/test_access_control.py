"""Access control of a running worker: every route against every kind of caller, CSRF,
the body limit, Faust's own views, lockout, spoofed actors and the audit chain.

A real worker, broker and Redis; users and tokens created with the CLI's store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from alerts import AlertState
from cli.access import run_access
from cli.main import build_parser
from tests.integration.helpers import (
    deteriorating,
    hours_ago,
    publish,
    redis_client,
    start_worker,
    stored_state,
    wait_for,
)
from wardwatch.auth import AccessAudit, AuthStore
from wardwatch.schemas import PatientContext
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore
from wardwatch.topics import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORD = "correct horse battery"
WARD_A, WARD_B = "ward-a", "ward-b"
PID_A, PID_B = "acc-bed-1", "acc-bed-2"


def call(
    url: str,
    method: str = "GET",
    *,
    cookie: str | None = None,
    token: str | None = None,
    csrf: str | None = None,
    origin: str | None = "same",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, method=method, data=body)
    if method == "POST" and body is None:
        req.data = b"{}"
    req.add_header("Content-Type", "application/json")
    if cookie:
        req.add_header("Cookie", f"ww_session={cookie}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if csrf:
        req.add_header("X-CSRF-Token", csrf)
    if origin == "same":
        req.add_header("Origin", url.split("/", 3)[0] + "//" + url.split("/", 3)[2])
    elif origin:
        req.add_header("Origin", origin)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def sign_in(base: str, name: str, password: str = PASSWORD) -> tuple[int, str, str]:
    """(status, session id, csrf token)."""
    status, _, headers = call(
        base + "/login", "POST", body=json.dumps({"name": name, "password": password}).encode()
    )
    if status != 200:
        return status, "", ""
    jar: SimpleCookie = SimpleCookie()
    jar.load(headers.get("Set-Cookie", ""))
    sid = jar["ww_session"].value
    _, me, _ = call(base + "/api/me", cookie=sid)
    return status, sid, json.loads(me)["csrf_token"]


def with_store(settings: Settings, fn: Any) -> Any:
    async def go() -> Any:
        store = RedisStateStore.from_settings(settings)
        try:
            return await fn(
                AuthStore.from_settings(store.r, settings),
                AccessAudit(store.r, settings.redis_prefix),
            )
        finally:
            await store.close()

    return asyncio.run(go())


def cli(settings: Settings, *argv: str, stdin: str = "") -> tuple[int, str]:
    args = build_parser().parse_args(list(argv))
    out = io.StringIO()
    code = run_access(args, settings, stdin=io.StringIO(stdin), out=out)
    return code, out.getvalue()


def test_every_route_against_every_caller(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    for name, role, wards in [
        ("vera", "viewer", []),
        ("nina", "nurse", []),
        ("nadia", "nurse", [WARD_A]),  # scoped to the other ward
        ("carl", "clinician", []),
        ("alice", "admin", []),
        ("eve", "nurse", []),  # signed in, then her session expires
    ]:
        ward_args = [a for w in wards for a in ("--ward", w)]
        code, _ = cli(
            settings,
            "users",
            "add",
            name,
            "--role",
            role,
            *ward_args,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        assert code == 0
    code, token_out = cli(settings, "tokens", "add", "reader", "--scope", "read")
    reader_token = token_out.strip()
    assert code == 0 and reader_token.startswith("wwt_")
    code, listed = cli(settings, "users", "list")
    assert "argon2" not in listed and '"nadia"' in listed

    now = datetime.now(UTC)
    ctx = [
        (p, PatientContext(patient_id=p, ts=now, ward=w).model_dump_json().encode())
        for p, w in ((PID_A, WARD_A), (PID_B, WARD_B))
    ]
    publish(settings, settings.topics.patient_context, ctx)
    worker = start_worker(settings, tmp_path)
    base = worker.url
    try:
        wait_for(
            lambda: redis_client(settings).exists(f"{settings.redis_prefix}:v2:ctx:{{{PID_B}}}"),
            30,
            "context stored",
        )
        publish(
            settings,
            settings.topics.vitals,
            [(p, v) for p in (PID_A, PID_B) for v in deteriorating(p, hours_ago(3))],
        )
        sessions: dict[str, tuple[str, str]] = {}
        for name in ("vera", "nina", "nadia", "carl", "alice", "eve"):
            status, sid, csrf = sign_in(base, name)
            assert status == 200, name
            sessions[name] = (sid, csrf)
        eve_sid = sessions["eve"][0]
        r = redis_client(settings)
        r.delete(
            f"{settings.redis_prefix}:auth:sess:{hashlib.sha256(eve_sid.encode()).hexdigest()}"
        )

        def alert_of(pid: str) -> str:
            _, body, _ = call(base + "/api/alerts", cookie=sessions["carl"][0])
            ids = [a["alert_id"] for a in json.loads(body)["alerts"] if a["patient_id"] == pid]
            return ids[0] if ids else ""

        wait_for(lambda: alert_of(PID_A) and alert_of(PID_B), 60, "both patients alert")
        alert_b = alert_of(PID_B)

        routes = {
            "alerts": ("GET", "/api/alerts"),
            "alert": ("GET", f"/api/alerts/{alert_b}"),
            "fhir": ("GET", f"/api/alerts/{alert_b}/fhir"),
            "history": ("GET", f"/api/patients/{PID_B}/history"),
            "transitions": ("GET", "/api/audit"),
            "access": ("GET", f"/api/audit?patient={PID_B}"),
            "me": ("GET", "/api/me"),
            "stream": ("GET", "/api/stream"),
            "ack": ("POST", f"/api/alerts/{alert_b}/ack"),
            "resolve": ("POST", f"/api/alerts/{alert_b}/resolve"),
        }
        reads = {"alerts": 200, "alert": 200, "fhir": 200, "history": 200}
        deny_reads = dict.fromkeys(reads, 403)
        no_audit = {"transitions": 403, "access": 403}
        expected: dict[str, dict[str, int]] = {
            "nobody": dict.fromkeys(routes, 401),
            "expired": dict.fromkeys(routes, 401),
            "bad-token": dict.fromkeys(routes, 401),
            "vera": {**reads, **no_audit, "me": 200, "ack": 403, "resolve": 403},
            "reader": {**reads, **no_audit, "me": 200, "ack": 403, "resolve": 403},
            # another ward: the list answers (without that patient), the patient does not
            "nadia": {
                **deny_reads,
                "alerts": 200,
                **no_audit,
                "me": 200,
                "ack": 403,
                "resolve": 403,
            },
            "alice": {
                **deny_reads,
                "alerts": 403,
                "transitions": 200,
                "access": 200,
                "me": 200,
                "ack": 403,
                "resolve": 403,
            },
            # the right roles last: acknowledge, then resolve (the alert closes)
            "nina": {**reads, **no_audit, "me": 200, "ack": 202, "resolve": 403},
            "carl": {**reads, **no_audit, "me": 200, "resolve": 202},
        }
        for who, want in expected.items():
            for route, status in want.items():
                method, path = routes[route]
                kw: dict[str, Any] = {}
                if who in sessions:
                    kw = {"cookie": sessions[who][0], "csrf": sessions[who][1]}
                elif who == "expired":
                    kw = {"cookie": eve_sid}
                elif who == "reader":
                    kw = {"token": reader_token}
                elif who == "bad-token":
                    kw = {"token": reader_token[:-4] + "AAAA"}
                if route == "stream" and status == 200:
                    continue  # an open stream: answered 200 (the page tests read it)
                got, body, headers = call(base + path, method, **kw)
                assert got == status, (who, route, got, body[:200])
                if got >= 400:
                    text = body.decode()
                    assert PID_B not in text and PID_A not in text and "Traceback" not in text
                    assert set(json.loads(body)) == {"error"}, (who, route)
                assert headers.get("X-Frame-Options") == "DENY"
                assert headers.get("Cache-Control") == "no-store"
                assert "script-src 'self'" in headers.get("Content-Security-Policy", "")

        # the scoped nurse sees her ward's patient and not the other's
        _, body, _ = call(base + "/api/alerts", cookie=sessions["nadia"][0])
        pids = {a["patient_id"] for a in json.loads(body)["alerts"]}
        assert PID_A in pids and PID_B not in pids

        # the actor is the authenticated principal: header and body names are ignored
        alert_a = alert_of(PID_A)
        nina_sid, nina_csrf = sessions["nina"]
        got, _, _ = call(
            base + f"/api/alerts/{alert_a}/ack",
            "POST",
            cookie=nina_sid,
            csrf=nina_csrf,
            body=json.dumps({"actor": "mallory"}).encode(),
            headers={"X-Actor": "mallory"},
        )
        assert got == 202
        wait_for(
            lambda: AlertState.from_json(stored_state(settings, PID_A).alert).acked_by == "nina",
            30,
            "acknowledged by nina",
        )

        # CSRF: a cookie POST without the token, with a wrong one, from another origin
        carl_sid, carl_csrf = sessions["carl"]
        path = f"/api/alerts/{alert_a}/resolve"
        assert call(base + path, "POST", cookie=carl_sid)[0] == 403
        assert call(base + path, "POST", cookie=carl_sid, csrf="x" * 43)[0] == 403
        assert (
            call(
                base + path, "POST", cookie=carl_sid, csrf=carl_csrf, origin="http://evil.example"
            )[0]
            == 403
        )
        assert call(base + path, "POST", cookie=carl_sid, csrf=carl_csrf, origin=None)[0] == 403
        assert (
            call(
                base + "/login",
                "POST",
                origin="http://evil.example",
                body=json.dumps({"name": "carl", "password": PASSWORD}).encode(),
            )[0]
            == 403
        )

        # bodies over the limit; Faust's own views are not served
        assert (
            call(
                base + path,
                "POST",
                cookie=carl_sid,
                csrf=carl_csrf,
                body=b"{" + b" " * 70_000 + b"}",
            )[0]
            == 413
        )
        for faust_view in ("/router/", "/table/", "/graph/", "/stats/", "/performance/"):
            assert call(base + faust_view)[0] == 404, faust_view

        # lockout: five wrong passwords lock the name, even for the right one then
        for _ in range(5):
            assert sign_in(base, "vera", "wrong password!")[0] == 401
        assert sign_in(base, "vera")[0] == 429

        # sign-out ends the session
        vera_sid, vera_csrf = sessions["vera"]
        assert call(base + "/logout", "POST", cookie=vera_sid, csrf=vera_csrf)[0] == 200
        assert call(base + "/api/alerts", cookie=vera_sid)[0] == 401

        # the audit: sign-ins, failures, views, acknowledgements, resolve, with who and where
        records = with_store(settings, lambda auth, audit: audit.query(patient_id=PID_B))
        actions = {(r["actor"], r["action"], r["outcome"]) for r in records}
        assert ("nina", "acknowledge", "ok") in actions
        assert ("carl", "resolve", "ok") in actions
        assert ("service:reader", "view_history", "ok") in actions
        assert ("nadia", "ward_denied", "denied") in actions
        denied = with_store(settings, lambda auth, audit: audit.query(actor="alice"))
        assert any(r["action"] == "permission_denied" for r in denied)
        assert all(r["addr"] == "127.0.0.1" for r in records)
        by_vera = with_store(settings, lambda auth, audit: audit.query(actor="vera"))
        assert {"sign_in", "sign_out"} <= {r["action"] for r in by_vera}
        reasons = [r["detail"].get("reason") for r in by_vera if r["outcome"] == "failed"]
        assert reasons == ["bad_credentials"] * 5 + ["locked"]
        access = json.loads(call(base + "/api/audit?user=nina", cookie=sessions["alice"][0])[1])[
            "access"
        ]
        assert any(r["action"] == "acknowledge" for r in access)
        # an audit token scoped to a ward reads only that ward's patients
        _, auditor = cli(settings, "tokens", "add", "auditor", "--scope", "audit", "--ward", WARD_A)
        _, body, _ = call(base + "/api/audit", token=auditor.strip())
        assert {t["patient_id"] for t in json.loads(body)["transitions"]} == {PID_A}
        _, body, _ = call(base + f"/api/audit?patient={PID_B}", token=auditor.strip())
        assert json.loads(body)["access"] == []
        _, body, _ = call(base + f"/api/audit?patient={PID_A}", token=auditor.strip())
        assert json.loads(body)["access"]
        code, tokens = cli(settings, "tokens", "list")
        assert '"service": "reader"' in tokens and '"last_used_ms": null' not in tokens
        assert reader_token not in tokens
    finally:
        worker.stop()

    # the chain holds, and breaks where one record is altered
    code, out = cli(settings, "audit", "verify")
    assert code == 0 and json.loads(out)["ok"], out
    log_key = f"{settings.redis_prefix}:access:{{audit}}:log"
    entries = r.xrange(log_key)
    victim = entries[len(entries) // 2][0]
    r.delete(log_key)
    for entry_id, fields in entries:
        if entry_id == victim:
            rec = json.loads(fields[b"r"])
            rec["actor"] = "someone-else"
            fields = {**fields, b"r": json.dumps(rec, sort_keys=True, separators=(",", ":"))}
        r.xadd(log_key, fields, id=entry_id)
    code, out = cli(settings, "audit", "verify")
    assert code == 1 and json.loads(out)["first_broken"] == victim.decode(), out


def test_session_cookie_is_secure_over_https(settings: Settings, tmp_path: Path) -> None:
    import ssl

    from tests.tls import CertAuthority

    ca = CertAuthority.create(tmp_path / "pki")
    leaf = ca.issue("wardwatch-web")
    s = settings.model_copy(
        update={"web_tls_cert": leaf.cert, "web_tls_key": leaf.key, "require_model": False}
    )
    code, _ = cli(
        s, "users", "add", "ada", "--role", "viewer", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert code == 0
    ensure_topics(s)
    worker = start_worker(s, tmp_path)
    try:
        base = f"https://127.0.0.1:{worker.web_port}"
        req = urllib.request.Request(
            base + "/login",
            data=json.dumps({"name": "ada", "password": PASSWORD}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Origin": base},
        )
        trusted = ssl.create_default_context(cafile=str(ca.ca.cert))
        with urllib.request.urlopen(req, context=trusted, timeout=10) as resp:
            cookie = resp.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        worker.stop()
