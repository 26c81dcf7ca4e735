"""Access control: roles and the audit chain (pure), and the user, token, session and
throttle store against the real Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from wardwatch.auth import AccessAudit, AuthError, AuthStore, Principal, verify_chain
from wardwatch.auth.audit import GENESIS, canonical, record_hash
from wardwatch.auth.directory import SessionPolicy, Throttle
from wardwatch.auth.roles import ROLES, parse_scopes, valid_name
from wardwatch.settings import Settings
from wardwatch.store import RedisStateStore

PW = "twelve chars or more"


def test_roles_are_nested_and_admin_reads_no_patients() -> None:
    assert ROLES["viewer"] < ROLES["nurse"] < ROLES["clinician"]
    assert "read" not in ROLES["admin"] and "audit" in ROLES["admin"]
    assert not any("admin" in ROLES[r] for r in ("viewer", "nurse", "clinician"))


@pytest.mark.parametrize(
    ("wards", "ward", "sees"),
    [
        ((), None, True),
        ((), "w1", True),
        (("w1",), "w1", True),
        (("w1",), "w2", False),
        (("w1",), None, False),
    ],
)
def test_ward_scope(wards: tuple[str, ...], ward: str | None, sees: bool) -> None:
    p = Principal("x", "user", ROLES["nurse"], wards)
    assert p.sees_ward(ward) is sees


def test_names_and_scopes() -> None:
    assert valid_name("ada") and valid_name("nurse.ada-2")
    assert not valid_name("service:x") and not valid_name("Ada") and not valid_name("")
    assert parse_scopes("ack, read") == {"ack", "read"}
    with pytest.raises(ValueError):
        parse_scopes("read,admin")
    with pytest.raises(ValueError):
        parse_scopes("")


def _chain(n: int) -> list[tuple[str, str, str]]:
    prev, rows = GENESIS, []
    for i in range(n):
        rec = {"actor": f"u{i}", "action": "view_history", "prev_hash": prev}
        digest = record_hash(prev, rec)
        rows.append((f"{i}-0", canonical(rec), digest))
        prev = digest
    return rows


def test_verify_chain_finds_the_first_broken_record() -> None:
    rows = _chain(5)
    assert verify_chain(rows, rows[-1][2]) is None
    assert verify_chain([], None) is None
    altered = list(rows)
    rec = json.loads(rows[2][1])
    rec["actor"] = "mallory"
    altered[2] = (rows[2][0], canonical(rec), rows[2][2])
    broken = verify_chain(altered, rows[-1][2])
    assert broken is not None and broken.entry_id == "2-0"
    removed = rows[:2] + rows[3:]
    broken = verify_chain(removed, rows[-1][2])
    assert broken is not None and broken.entry_id == "3-0"
    broken = verify_chain(rows[:-1], rows[-1][2])  # the newest record dropped
    assert broken is not None and "head" in broken.reason


def _run(settings: Settings, fn: Any, **kw: Any) -> Any:
    async def go() -> Any:
        store = RedisStateStore.from_settings(settings)
        try:
            auth = AuthStore(store.r, settings.redis_prefix, **kw)
            return await fn(auth, AccessAudit(store.r, settings.redis_prefix))
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.mark.integration
def test_users_sessions_and_their_end(redis_settings: Settings) -> None:
    async def go(auth: AuthStore, audit: AccessAudit) -> None:
        await auth.add_user("ada", "nurse", PW, ["w1"])
        with pytest.raises(AuthError):
            await auth.add_user("ada", "viewer", PW, [])
        with pytest.raises(AuthError):
            await auth.add_user("bob", "nurse", "short", [])
        with pytest.raises(ValueError):
            await auth.add_user("bob", "surgeon", PW, [])
        listed = await auth.users()
        assert listed[0]["name"] == "ada" and "pw" not in listed[0]
        stored = await auth.user("ada")
        assert stored is not None and stored["pw"].startswith("$argon2id$")
        assert PW not in json.dumps(stored)

        first = await auth.sign_in("Ada", PW, "10.0.0.1")
        second = await auth.sign_in("ada", PW, "10.0.0.2")
        assert first.ok and first.principal is not None and first.principal.wards == ("w1",)
        assert first.session_id != second.session_id
        who = await auth.session(first.session_id or "")
        assert who is not None and who.name == "ada" and who.can("ack")
        assert not who.can("resolve")
        await auth.end_session(first.session_id or "")
        assert await auth.session(first.session_id or "") is None
        assert await auth.session(second.session_id or "") is not None
        await auth.reset_password("ada", PW + "!")  # ends every session of the user
        assert await auth.session(second.session_id or "") is None
        third = await auth.sign_in("ada", PW + "!", "10.0.0.1")
        await auth.set_disabled("ada")
        assert await auth.session(third.session_id or "") is None
        assert (await auth.sign_in("ada", PW + "!", "10.0.0.1")).reason == "disabled"

    _run(redis_settings, go)


@pytest.mark.integration
def test_absolute_expiry(redis_settings: Settings) -> None:
    async def go(auth: AuthStore, audit: AccessAudit) -> None:
        await auth.add_user("ada", "viewer", PW, [])
        s = await auth.sign_in("ada", PW, "a")
        assert await auth.session(s.session_id or "") is not None
        await asyncio.sleep(1.1)
        assert await auth.session(s.session_id or "") is None  # older than max_s

    _run(redis_settings, go, sessions=SessionPolicy(idle_s=60, max_s=1))


@pytest.mark.integration
def test_lockout_per_name_and_per_address(redis_settings: Settings) -> None:
    async def go(auth: AuthStore, audit: AccessAudit) -> None:
        await auth.add_user("ada", "viewer", PW, [])
        await auth.add_user("bob", "viewer", PW, [])
        for _ in range(3):
            assert (await auth.sign_in("ada", "wrong wrong wrong", "a1")).reason == (
                "bad_credentials"
            )
        assert (await auth.sign_in("ada", PW, "a2")).reason == "locked"  # the name
        assert (await auth.sign_in("bob", PW, "a1")).ok  # a1 is under its own limit
        for name in ("x1", "x2", "x3", "x4", "x5"):  # unknown names count too
            await auth.sign_in(name, "nope nope nope", "a3")
        assert (await auth.sign_in("bob", PW, "a3")).reason == "locked"  # the address
        assert (await auth.sign_in("bob", PW, "a4")).ok

    throttle = Throttle(max_failures=3, max_failures_per_address=5, window_s=60, lockout_s=60)
    _run(redis_settings, go, throttle=throttle)


@pytest.mark.integration
def test_service_tokens(redis_settings: Settings) -> None:
    async def go(auth: AuthStore, audit: AccessAudit) -> None:
        token = await auth.add_token("pager", "read,ack", ["w2"])
        with pytest.raises(AuthError):
            await auth.add_token("pager", "read")
        who = await auth.token(token)
        assert who is not None and who.name == "service:pager" and who.wards == ("w2",)
        assert who.permissions == {"read", "ack"}
        assert await auth.token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        assert await auth.token("wwt_nothing") is None
        listed = await auth.tokens()
        assert listed[0]["last_used_ms"] is not None and token not in json.dumps(listed)
        await auth.revoke_token("pager")
        assert await auth.token(token) is None

    _run(redis_settings, go)


@pytest.mark.integration
def test_concurrent_appends_keep_one_chain(redis_settings: Settings) -> None:
    async def go(auth: AuthStore, audit: AccessAudit) -> tuple[int, Any]:
        t0 = int(time.time() * 1000)
        await asyncio.gather(
            *(audit.record(f"u{i}", "view_history", patient_id=f"p{i % 3}") for i in range(60))
        )
        assert len(await audit.query(patient_id="p1")) == 20
        assert len(await audit.query(actor="u7", since_ms=t0)) == 1
        return await audit.verify()

    n, broken = _run(redis_settings, go)
    assert n == 60 and broken is None
