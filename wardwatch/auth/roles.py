"""Roles, permissions and ward scope: pure functions, no I/O.

A principal is who a request is made by: a signed-in user (``ada``) or a service holding
a token (``service:demo-care-team``). What it may do is a set of permissions; which
patients it may see is its ward scope (empty: every ward).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Permission = Literal["read", "ack", "resolve", "audit", "admin"]
Role = Literal["viewer", "nurse", "clinician", "admin"]

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "nurse": frozenset({"read", "ack"}),
    "clinician": frozenset({"read", "ack", "resolve"}),
    # user and token administration and the access audit; no patient reads of its own
    "admin": frozenset({"admin", "audit"}),
}
TOKEN_SCOPES = frozenset({"read", "ack", "resolve", "audit"})
SERVICE_PREFIX = "service:"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
WARD_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``name`` is what the audit and the alert record as the
    actor; ``session_id`` and ``csrf`` are set for a browser session only."""

    name: str
    kind: Literal["user", "service"]
    permissions: frozenset[str]
    wards: tuple[str, ...] = ()
    role: str = ""
    session_id: str | None = None
    csrf: str | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def sees_ward(self, ward: str | None) -> bool:
        """Whether a patient in ``ward`` is visible: unscoped principals see every
        patient, scoped ones only their wards' (never a patient without a ward)."""
        if not self.wards:
            return True
        return ward is not None and ward in self.wards


def valid_name(name: str) -> bool:
    """User and service names: lower case letters, digits, ``.``, ``_``, ``-``."""
    return bool(NAME_RE.match(name))


def valid_ward(ward: str) -> bool:
    return bool(WARD_RE.match(ward))


def parse_scopes(text: str | Iterable[str]) -> frozenset[str]:
    """``"ack,resolve,read"`` as a set; raises ``ValueError`` for an unknown scope."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    scopes = frozenset(p.strip() for p in parts if p.strip())
    unknown = scopes - TOKEN_SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(TOKEN_SCOPES)}")
    return scopes


def role_permissions(role: str) -> frozenset[str]:
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}")
    return ROLES[role]
