"""Users, service tokens, sessions and sign-in throttling, in Redis.

Keys (``{prefix}`` is the Redis key prefix)::

    {prefix}:auth:users            set     user names
    {prefix}:auth:user:{name}      hash    role, wards (JSON list), pw (Argon2id hash),
                                           disabled ('0'/'1'), created_ms, updated_ms
    {prefix}:auth:usess:{name}     set     the user's session keys (to end them all)
    {prefix}:auth:tokens           hash    service name -> token id
    {prefix}:auth:tok:{id}         hash    service, sha256 (of the whole token), scopes,
                                           wards, created_ms, last_used_ms
    {prefix}:auth:sess:{sha256}    hash    user, csrf, created_ms, addr; TTL = idle expiry
                                           (the key is a hash of the cookie's session id)
    {prefix}:auth:fail:{u|a}:{x}   string  failed sign-ins of a user name / client address
                                           in the window (TTL = window)
    {prefix}:auth:lock:{u|a}:{x}   string  a locked user name / client address (TTL)

Passwords are stored only as Argon2id hashes (argon2-cffi's defaults), tokens only as
SHA-256 of a 256-bit random token, sessions only under a hash of their id: a copy of
Redis holds nothing a browser or a service could sign in with.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from wardwatch.auth.roles import (
    SERVICE_PREFIX,
    Principal,
    parse_scopes,
    role_permissions,
    valid_name,
    valid_ward,
)
from wardwatch.settings import Settings

_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that a wrong name costs as long
    as a wrong password (no user enumeration by timing)."""
    return _HASHER.hash(secrets.token_urlsafe(16))


TOKEN_PREFIX = "wwt_"
MIN_PASSWORD = 12


class AuthError(ValueError):
    """A user or token operation that cannot be done (bad name, exists, not found)."""


@dataclass(frozen=True)
class Throttle:
    """Sign-in limits: ``max_failures`` per user name and ``max_failures_per_address``
    per client address within ``window_s`` lock that name / address for ``lockout_s``."""

    max_failures: int = 5
    max_failures_per_address: int = 20
    window_s: int = 900
    lockout_s: int = 900


@dataclass(frozen=True)
class SessionPolicy:
    idle_s: int = 900
    max_s: int = 43200


@dataclass
class SignIn:
    """The outcome of a sign-in attempt."""

    ok: bool
    reason: str  # "ok", "bad_credentials", "locked", "disabled"
    principal: Principal | None = None
    session_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _wards(wards: Sequence[str]) -> list[str]:
    out = sorted({w.strip() for w in wards if w.strip()})
    for w in out:
        if not valid_ward(w):
            raise AuthError(f"invalid ward name {w!r}")
    return out


class AuthStore:
    """Users, tokens, sessions and throttling over a ``redis.asyncio`` client."""

    @classmethod
    def from_settings(cls, client: Any, settings: Settings) -> AuthStore:
        s = settings
        return cls(
            client,
            s.redis_prefix,
            sessions=SessionPolicy(s.session_idle_s, s.session_max_s),
            throttle=Throttle(
                s.login_max_failures,
                s.login_max_failures_per_address,
                s.login_window_s,
                s.login_lockout_s,
            ),
        )

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        sessions: SessionPolicy | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.r = client
        self.prefix = prefix
        self.sessions = sessions or SessionPolicy()
        self.throttle = throttle or Throttle()

    def key(self, *parts: str) -> str:
        return ":".join([self.prefix, "auth", *parts])

    # ---- users --------------------------------------------------------------------
    async def add_user(self, name: str, role: str, password: str, wards: Sequence[str]) -> None:
        name = name.lower()
        if not valid_name(name):
            raise AuthError("user names: 1-64 of a-z 0-9 . _ - (starting with a letter or digit)")
        role_permissions(role)
        check_password(password)
        pw = await asyncio.to_thread(_HASHER.hash, password)
        now = str(_now_ms())
        fields = {
            "role": role,
            "wards": json.dumps(_wards(wards)),
            "pw": pw,
            "disabled": "0",
            "created_ms": now,
            "updated_ms": now,
        }
        if not await self.r.hsetnx(self.key("user", name), "role", role):
            raise AuthError(f"user {name} exists")
        await self.r.hset(self.key("user", name), mapping=fields)
        await self.r.sadd(self.key("users"), name)

    async def user(self, name: str) -> dict[str, str] | None:
        raw = await self.r.hgetall(self.key("user", name.lower()))
        if not raw:
            return None
        return {_s(k): _s(v) for k, v in raw.items()}

    async def users(self) -> list[dict[str, Any]]:
        """Every user without the password hash."""
        names = sorted(_s(n) for n in await self.r.smembers(self.key("users")))
        out = []
        for name in names:
            u = await self.user(name)
            if u is None:
                continue
            out.append(
                {
                    "name": name,
                    "role": u.get("role", ""),
                    "wards": json.loads(u.get("wards") or "[]"),
                    "disabled": u.get("disabled") == "1",
                    "created_ms": int(u.get("created_ms", "0")),
                    "updated_ms": int(u.get("updated_ms", "0")),
                }
            )
        return out

    async def set_disabled(self, name: str, disabled: bool = True) -> None:
        name = name.lower()
        if await self.user(name) is None:
            raise AuthError(f"no user {name}")
        await self.r.hset(
            self.key("user", name),
            mapping={"disabled": "1" if disabled else "0", "updated_ms": str(_now_ms())},
        )
        if disabled:
            await self.end_sessions(name)

    async def reset_password(self, name: str, password: str) -> None:
        name = name.lower()
        if await self.user(name) is None:
            raise AuthError(f"no user {name}")
        check_password(password)
        pw = await asyncio.to_thread(_HASHER.hash, password)
        await self.r.hset(self.key("user", name), mapping={"pw": pw, "updated_ms": str(_now_ms())})
        await self.end_sessions(name)
        await self.r.delete(self.key("lock", "u", name), self.key("fail", "u", name))

    def _user_principal(
        self, name: str, u: dict[str, str], sid: str | None = None, csrf: str | None = None
    ) -> Principal:
        role = u.get("role", "")
        return Principal(
            name=name,
            kind="user",
            permissions=role_permissions(role),
            wards=tuple(json.loads(u.get("wards") or "[]")),
            role=role,
            session_id=sid,
            csrf=csrf,
        )

    # ---- sign-in and sessions -----------------------------------------------------
    async def locked(self, name: str, addr: str) -> bool:
        n = await self.r.exists(self.key("lock", "u", name.lower()), self.key("lock", "a", addr))
        return int(n) > 0

    async def _failed(self, name: str, addr: str) -> bool:
        """Count a failure; True when it locked the name or the address."""
        t = self.throttle
        locked = False
        for kind, who, limit in (
            ("u", name.lower(), t.max_failures),
            ("a", addr, t.max_failures_per_address),
        ):
            k = self.key("fail", kind, who)
            n = int(await self.r.incr(k))
            if n == 1:
                await self.r.expire(k, t.window_s)
            if n >= limit:
                await self.r.set(self.key("lock", kind, who), "1", ex=t.lockout_s)
                await self.r.delete(k)
                locked = True
        return locked

    async def sign_in(self, name: str, password: str, addr: str) -> SignIn:
        """Check the password (Argon2id), honouring lockouts; on success a new session."""
        name = name.strip().lower()[:64]
        if await self.locked(name, addr):
            return SignIn(False, "locked")
        u = await self.user(name) if valid_name(name) else None
        stored = (u or {}).get("pw") or _dummy_hash()
        try:
            ok: bool = await asyncio.to_thread(_HASHER.verify, stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or u is None:
            locked = await self._failed(name, addr)
            return SignIn(False, "bad_credentials", extra={"locked_now": locked})
        if u.get("disabled") == "1":
            return SignIn(False, "disabled")
        await self.r.delete(self.key("fail", "u", name))
        if _HASHER.check_needs_rehash(stored):
            pw = await asyncio.to_thread(_HASHER.hash, password)
            await self.r.hset(self.key("user", name), "pw", pw)
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        skey = self.key("sess", _sha(sid))
        await self.r.hset(
            skey, mapping={"user": name, "csrf": csrf, "created_ms": str(_now_ms()), "addr": addr}
        )
        await self.r.expire(skey, self.sessions.idle_s)
        await self.r.sadd(self.key("usess", name), skey)
        await self.r.expire(self.key("usess", name), self.sessions.max_s)
        return SignIn(True, "ok", self._user_principal(name, u, sid, csrf), sid)

    async def session(self, sid: str, *, touch: bool = True) -> Principal | None:
        """The session's user (still enabled) if the session is within its idle and
        absolute expiry; ``touch``: a request of the user's, which restarts the idle
        expiry (the page's live stream checks without touching)."""
        if not sid or len(sid) > 128:
            return None
        skey = self.key("sess", _sha(sid))
        raw = await self.r.hgetall(skey)
        if not raw:
            return None
        s = {_s(k): _s(v) for k, v in raw.items()}
        age_ms = _now_ms() - int(s.get("created_ms", "0"))
        if age_ms >= self.sessions.max_s * 1000:
            await self.r.delete(skey)
            return None
        u = await self.user(s.get("user", ""))
        if u is None or u.get("disabled") == "1":
            await self.r.delete(skey)
            return None
        if touch:
            remaining = self.sessions.max_s - age_ms // 1000
            await self.r.expire(skey, max(1, min(self.sessions.idle_s, remaining)))
        return self._user_principal(s["user"], u, sid, s.get("csrf"))

    async def end_session(self, sid: str) -> None:
        skey = self.key("sess", _sha(sid))
        user = await self.r.hget(skey, "user")
        await self.r.delete(skey)
        if user is not None:
            await self.r.srem(self.key("usess", _s(user)), skey)

    async def end_sessions(self, name: str) -> int:
        keys = [_s(k) for k in await self.r.smembers(self.key("usess", name))]
        for k in keys:
            await self.r.delete(k)
        await self.r.delete(self.key("usess", name))
        return len(keys)

    # ---- service tokens -----------------------------------------------------------
    async def add_token(
        self, service: str, scopes: str | Sequence[str], wards: Sequence[str] = ()
    ) -> str:
        """A new token for ``service``; returns it (the only time it is seen)."""
        service = service.lower()
        if not valid_name(service):
            raise AuthError("service names: 1-64 of a-z 0-9 . _ - ")
        scope_set = parse_scopes(scopes)
        tid = secrets.token_hex(8)
        token = f"{TOKEN_PREFIX}{tid}_{secrets.token_urlsafe(32)}"
        if not await self.r.hsetnx(self.key("tokens"), service, tid):
            raise AuthError(f"service {service} has a token: revoke it first")
        await self.r.hset(
            self.key("tok", tid),
            mapping={
                "service": service,
                "sha256": _sha(token),
                "scopes": ",".join(sorted(scope_set)),
                "wards": json.dumps(_wards(wards)),
                "created_ms": str(_now_ms()),
                "last_used_ms": "0",
            },
        )
        return token

    async def revoke_token(self, service: str) -> None:
        service = service.lower()
        tid = await self.r.hget(self.key("tokens"), service)
        if tid is None:
            raise AuthError(f"no token for service {service}")
        await self.r.delete(self.key("tok", _s(tid)))
        await self.r.hdel(self.key("tokens"), service)

    async def tokens(self) -> list[dict[str, Any]]:
        out = []
        for service, tid in sorted((await self.r.hgetall(self.key("tokens"))).items()):
            raw = await self.r.hgetall(self.key("tok", _s(tid)))
            t = {_s(k): _s(v) for k, v in raw.items()}
            out.append(
                {
                    "service": _s(service),
                    "scopes": t.get("scopes", "").split(","),
                    "wards": json.loads(t.get("wards") or "[]"),
                    "created_ms": int(t.get("created_ms", "0")),
                    "last_used_ms": int(t.get("last_used_ms", "0")) or None,
                }
            )
        return out

    async def token(self, token: str) -> Principal | None:
        """The service a bearer token belongs to (constant-time hash comparison)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        tid = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
        raw = await self.r.hgetall(self.key("tok", tid))
        if not raw:
            return None
        t = {_s(k): _s(v) for k, v in raw.items()}
        if not hmac.compare_digest(t.get("sha256", ""), _sha(token)):
            return None
        now = _now_ms()
        if now - int(t.get("last_used_ms", "0")) > 60_000:  # at most one write a minute
            await self.r.hset(self.key("tok", tid), "last_used_ms", str(now))
        return Principal(
            name=SERVICE_PREFIX + t["service"],
            kind="service",
            permissions=frozenset(s for s in t.get("scopes", "").split(",") if s),
            wards=tuple(json.loads(t.get("wards") or "[]")),
            role="service",
        )


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AuthError("passwords are at most 1024 characters")
