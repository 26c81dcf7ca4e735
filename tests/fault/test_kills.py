"""SIGKILL of the worker at random points, ten times, with restarts, while the paging
receiver is down for the first 60 s: pages are pending across the restarts, and when the
receiver is back every page arrives. The run gives exactly what the no-fault run gives."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.fault.scenario import (
    Harness,
    Outcome,
    Receiver,
    Scenario,
    assert_as_expected,
    row,
    run_scenario,
)
from wardwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KILLS = 10
RECEIVER_DOWN_S = 60.0


def test_ten_sigkills_and_a_paging_outage_change_nothing(
    settings: Settings, tmp_path: Path, scenario: Scenario, reference: Outcome
) -> None:
    rng = random.Random(14)
    receiver = Receiver()  # down at first
    back = threading.Timer(RECEIVER_DOWN_S, receiver.up)

    def fault(h: Harness) -> None:
        back.start()
        chunks = scenario.chunks(KILLS)
        w = h.start_worker()
        for chunk in chunks:
            h.publish(chunk)
            time.sleep(rng.uniform(0.3, 3.0))  # mid-batch, mid-commit, mid-publish, idle
            h.kill(w)  # while the receiver is down, with pages pending
            w = h.start_worker()

    # a killed worker's partitions go to the next one when its session times out
    settings = settings.model_copy(
        update={"kafka_session_timeout_s": 4.0, "kafka_rebalance_timeout_s": 4.0}
    )
    try:
        out = run_scenario(settings, tmp_path, scenario, fault, receiver=receiver, timeout_s=300)
    finally:
        back.cancel()
    row("SIGKILL + receiver down 60 s", f"{KILLS} kills, 1 outage", out)
    assert_as_expected(out, reference)
