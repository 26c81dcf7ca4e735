"""``python -m wardwatch`` runs the ``wardwatch`` console script's entry point."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import cli.main
from tests.commands import run_command

ROOT = Path(__file__).resolve().parents[2]
LINE = b'{"patient_id":"p1","ts":"2025-06-01T00:00:00+00:00","respiratory_rate_per_min":25}\n'


def _run(args: list[str], stdin: bytes, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return run_command([sys.executable, "-m", "wardwatch", *args], stdin, cwd)


def test_python_m_wardwatch_news2(tmp_path: Path) -> None:
    proc = _run(["news2"], LINE, tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    (row,) = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert (row["patient_id"], row["ts"]) == ("p1", "2025-06-01T00:00:00+00:00")
    assert row["news2"] == 3 and row["components"] == {"respiration_rate": 3}
    assert row["complete"] is False


def test_python_m_wardwatch_exit_code_is_the_commands(tmp_path: Path) -> None:
    proc = _run([], b"", tmp_path)  # no command: argparse's usage error
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("usage: wardwatch ")


def test_main_module_exits_with_cli_main_return_code(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def fake_main(argv: object = None) -> int:
        seen.append(argv)
        return 7

    monkeypatch.setattr(cli.main, "main", fake_main)
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("wardwatch", run_name="__main__")
    assert exc.value.code == 7
    assert seen == [None]  # the console script's call: arguments from sys.argv
