"""The scenario with no fault: the reference every fault run is held to, checked on its own
terms (it raises, holds and refutes alerts; counts add up; each page once)."""

from __future__ import annotations

import pytest

from tests.fault.scenario import Outcome, Scenario, row

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_reference_run_alerts_pages_and_accounts_for_every_event(
    scenario: Scenario, reference: Outcome
) -> None:
    out = reference
    row("none", "-", out)
    assert out.events_in == len(scenario.messages) and out.lost == 0
    assert out.dead_lettered == 0
    kinds = {a["transition"] for a in out.alerts.values()}
    assert {"OPEN", "RESOLVED"} <= kinds, kinds
    assert out.opened_twice() == 0
    assert out.alert_copies_distinct()
    held = sum(int((s["alert"] or {}).get("suppressed_artifacts", 0)) for s in out.states.values())
    assert held > 0  # readings were held as possible artifacts and refuted
    assert set(out.pages) == out.expected_pages() and len(out.pages) >= 5
    assert max(out.pages.values()) == 1  # undisturbed: each page delivered once
