"""``wardwatch users``, ``wardwatch tokens`` and ``wardwatch audit``: access control and
the access audit, against the configured Redis (WARDWATCH_REDIS_URL)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from wardwatch.settings import Settings

if TYPE_CHECKING:  # imported when a subcommand runs (the parser stays light)
    from wardwatch.auth import AccessAudit, AuthStore

CLI_ACTOR = "cli"


def _password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        return stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise ValueError("the passwords differ")
    return first


def _since_ms(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def run_access(
    args: argparse.Namespace,
    settings: Settings,
    stdin: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
) -> int:
    from wardwatch.auth import AccessAudit, AuthError, AuthStore
    from wardwatch.store import RedisStateStore

    if not settings.redis_url:
        print("this command needs WARDWATCH_REDIS_URL", file=sys.stderr)
        return 2
    handler: Callable[..., Awaitable[int]] = {
        "users": _users,
        "tokens": _tokens,
        "audit": _audit,
    }[args.command]

    async def go() -> int:
        store = RedisStateStore.from_settings(settings)
        try:
            auth = AuthStore.from_settings(store.r, settings)
            audit = AccessAudit(store.r, settings.redis_prefix)
            return await handler(args, auth, audit, stdin, out)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except (AuthError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


async def _users(
    args: argparse.Namespace, auth: AuthStore, audit: AccessAudit, stdin: TextIO, out: TextIO
) -> int:
    op = args.users_op
    if op == "list":
        for u in await auth.users():  # never the hashes
            print(json.dumps(u), file=out)
        return 0
    name = args.name.lower()
    if op == "add":
        await auth.add_user(name, args.role, _password(args, stdin), args.ward or [])
        await audit.record(
            CLI_ACTOR,
            "user_add",
            detail={"user": name, "role": args.role, "wards": args.ward or []},
        )
        print(f"user {name} added ({args.role})", file=out)
    elif op == "disable":
        await auth.set_disabled(name, True)
        await audit.record(CLI_ACTOR, "user_disable", detail={"user": name})
        print(f"user {name} disabled; sessions ended", file=out)
    elif op == "enable":
        await auth.set_disabled(name, False)
        await audit.record(CLI_ACTOR, "user_enable", detail={"user": name})
        print(f"user {name} enabled", file=out)
    elif op == "reset-password":
        await auth.reset_password(name, _password(args, stdin))
        await audit.record(CLI_ACTOR, "user_reset_password", detail={"user": name})
        print(f"password of {name} reset; sessions ended", file=out)
    return 0


async def _tokens(
    args: argparse.Namespace, auth: AuthStore, audit: AccessAudit, stdin: TextIO, out: TextIO
) -> int:
    op = args.tokens_op
    if op == "list":
        for t in await auth.tokens():
            print(json.dumps(t), file=out)
        return 0
    service = args.service.lower()
    if op == "add":
        token = await auth.add_token(service, args.scope, args.ward or [])
        await audit.record(
            CLI_ACTOR,
            "token_add",
            detail={"service": service, "scopes": args.scope, "wards": args.ward or []},
        )
        print(token, file=out)  # shown once; only its hash is stored
    elif op == "revoke":
        await auth.revoke_token(service)
        await audit.record(CLI_ACTOR, "token_revoke", detail={"service": service})
        print(f"token of service:{service} revoked", file=out)
    return 0


async def _audit(
    args: argparse.Namespace, auth: AuthStore, audit: AccessAudit, stdin: TextIO, out: TextIO
) -> int:
    if args.audit_op == "verify":
        n, broken = await audit.verify()
        if broken is not None:
            print(
                json.dumps(
                    {
                        "ok": False,
                        "records": n,
                        "first_broken": broken.entry_id,
                        "reason": broken.reason,
                    }
                ),
                file=out,
            )
            return 1
        head = await audit.r.get(audit.head_key)
        head_text = head.decode() if isinstance(head, bytes) else head
        print(json.dumps({"ok": True, "records": n, "head": head_text}), file=out)
        return 0
    if args.patient is None and args.user is None and not args.all:
        raise ValueError("give --patient, --user or --all")
    rows: list[dict[str, Any]] = await audit.query(
        patient_id=args.patient,
        actor=args.user,
        since_ms=_since_ms(args.since),
        limit=args.limit,
    )
    for row in rows:
        print(json.dumps(row, sort_keys=True), file=out)
    return 0


def add_parsers(sub: Any, fn: Callable[[argparse.Namespace, Settings], int]) -> None:
    """The ``users``, ``tokens`` and ``audit`` subcommands."""
    u = sub.add_parser("users", help="care-team users and roles (in Redis)")
    uo = u.add_subparsers(dest="users_op", required=True)
    ua = uo.add_parser("add", help="add a user (password from a prompt or --password-stdin)")
    ua.add_argument("name")
    ua.add_argument("--role", required=True, choices=["viewer", "nurse", "clinician", "admin"])
    ua.add_argument("--ward", action="append", help="repeatable; none: every ward")
    ua.add_argument("--password-stdin", action="store_true")
    for op in ("disable", "enable"):
        uo.add_parser(op).add_argument("name")
    ur = uo.add_parser("reset-password")
    ur.add_argument("name")
    ur.add_argument("--password-stdin", action="store_true")
    uo.add_parser("list", help="users, roles and wards (never the password hashes)")
    u.set_defaults(fn=fn)

    t = sub.add_parser("tokens", help="service tokens for the API (in Redis)")
    to = t.add_subparsers(dest="tokens_op", required=True)
    ta = to.add_parser("add", help="create a token: printed once, only its hash is kept")
    ta.add_argument("service")
    ta.add_argument("--scope", required=True, help="comma-separated: read,ack,resolve,audit")
    ta.add_argument("--ward", action="append", help="repeatable; none: every ward")
    to.add_parser("revoke").add_argument("service")
    to.add_parser("list", help="services, scopes, wards, last use")
    t.set_defaults(fn=fn)

    a = sub.add_parser("audit", help="the hash-chained access audit")
    ao = a.add_subparsers(dest="audit_op", required=True)
    ao.add_parser("verify", help="walk the chain; exit 1 at the first broken record")
    aq = ao.add_parser("query", help="records (JSON lines) about a patient or by a user")
    aq.add_argument("--patient", default=None)
    aq.add_argument("--user", default=None, help="a user name or service:NAME")
    aq.add_argument("--all", action="store_true", help="every record (an export)")
    aq.add_argument("--since", default=None, help="ISO time or epoch ms")
    aq.add_argument("--limit", type=int, default=1_000_000)
    a.set_defaults(fn=fn)
