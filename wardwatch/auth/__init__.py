"""Access control of the care-team page and API: users and roles, service tokens,
sessions, sign-in throttling (``directory``) and the hash-chained access audit
(``audit``). Core: the workers' web views and the CLI both use it."""

from wardwatch.auth.audit import AccessAudit, Broken, verify_chain
from wardwatch.auth.directory import AuthError, AuthStore, SessionPolicy, SignIn, Throttle
from wardwatch.auth.roles import ROLES, Principal

__all__ = [
    "ROLES",
    "AccessAudit",
    "AuthError",
    "AuthStore",
    "Broken",
    "Principal",
    "SessionPolicy",
    "SignIn",
    "Throttle",
    "verify_chain",
]
