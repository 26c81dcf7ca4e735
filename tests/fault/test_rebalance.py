"""Workers joining and leaving while the scenario streams: five times a second worker
joins (the partitions are split between the two, both process), then the first leaves
(its partitions move). Each partition's events, commands and timers follow its owner, so
the run gives exactly what the no-fault run gives."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.fault.scenario import (
    Harness,
    Outcome,
    Scenario,
    assert_as_expected,
    row,
    run_scenario,
)
from wardwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CYCLES = 5


def test_workers_joining_and_leaving_change_nothing(
    settings: Settings, tmp_path: Path, scenario: Scenario, reference: Outcome
) -> None:
    rng = random.Random(18)

    def fault(h: Harness) -> None:
        chunks = scenario.chunks(2 * CYCLES + 1)
        first = h.start_worker()
        h.publish(chunks[0])
        for i in range(CYCLES):
            second = h.start_worker()  # joins: the group rebalances, both process
            h.publish(chunks[2 * i + 1])
            time.sleep(rng.uniform(0.5, 2.0))
            h.stop(first)  # leaves: its partitions move to the other
            h.publish(chunks[2 * i + 2])
            first = second

    out = run_scenario(settings, tmp_path, scenario, fault, timeout_s=300)
    row("workers join and leave", f"{CYCLES} joins, {CYCLES} leaves", out)
    assert_as_expected(out, reference)
