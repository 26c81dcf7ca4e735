"""Tests that need a system tool (Chromium, promtool, amtool) from Debian's packages.

On a developer's machine without the tool such a test is skipped with the package to
install. In CI (``CI=true``) it is never skipped: ``.ci/run`` installs the tools, so a
missing one fails the test instead of letting it pass unseen.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])
IN_CI = os.environ.get("CI", "").lower() == "true"


def needs_tool(available: bool, reason: str) -> Callable[[F], F]:
    """Skip the test without the tool, except in CI, where it fails."""

    def mark(test: F) -> F:
        if available:
            return test
        if IN_CI:

            @functools.wraps(test)
            def fail(*args: Any, **kwargs: Any) -> None:
                pytest.fail(f"{reason}; CI must have it")

            return fail  # type: ignore[return-value]
        return pytest.mark.skip(reason=reason)(test)  # type: ignore[no-any-return]

    return mark
