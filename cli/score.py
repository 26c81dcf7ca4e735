"""``wardwatch score``: replay vitals JSON lines through the worker's scoring path."""

from __future__ import annotations

import asyncio
import sys
from typing import IO

from agents.score_lines import score_stream
from wardwatch import heap
from wardwatch.settings import Settings


def run_score(stdin: IO[bytes], stdout: IO[str], settings: Settings, version: str | None) -> int:
    heap.settle()  # this process only scores from here on
    asyncio.run(score_stream(stdin, stdout, settings, version=version, progress=sys.stderr))
    return 0
