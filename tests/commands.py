"""Run the ``wardwatch`` command in a child process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_command(
    argv: Sequence[str],
    stdin: bytes,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` with none of this process's ``WARDWATCH_*`` settings (plus ``env``),
    the source tree importable, and the output captured."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("WARDWATCH_")}
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), child.get("PYTHONPATH")]))
    child |= dict(env or {})
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, cwd=cwd, env=child, timeout=timeout_s
    )  # not check=True: the tests read the exit status


def wardwatch_command() -> list[str]:
    """The installed console script, or the module that backs it."""
    script = Path(sys.executable).with_name("wardwatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
