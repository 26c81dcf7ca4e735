"""``wardwatch validate --shadow``'s comparison (a pure function over messages), its
record in the registry, and the promotion gate's shadow-period rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from tests.unit.test_trainer import _stacked_version
from trainer import registry as reg
from trainer.validation.shadow import compare, record_shadow, shadow_html

H = 3600 * 1000
T0 = 1_780_000_000_000  # epoch ms


def _tr(pid: str, h: float, transition: str = "OPEN", priority: str = "medium", **kw: Any) -> dict:
    tid = kw.pop("tid", f"{pid}-{transition}-{h}")
    return {
        "transition_id": tid,
        "alert_id": f"a-{pid}",
        "patient_id": pid,
        "episode": 1,
        "transition": transition,
        "priority": priority,
        "ts_ms": T0 + int(h * H),
        "reason": kw.pop("reason", ["news2_threshold"]),
        "news2_total": 6,
        "explanation": {},
        "actor": None,
        "page": kw.pop("page", True),
        **kw,
    }


def _events() -> list[dict]:
    """Four patients observed for 24 h each: 4 patient-days."""
    return [
        {"patient_id": p, "ts": T0 + h * H} for p in ("a", "b", "c", "d") for h in range(0, 25, 4)
    ]


def test_side_by_side_figures() -> None:
    live = [
        _tr("a", 2, priority="high"),
        _tr("a", 2, priority="high"),  # delivered twice: counted once
        _tr("b", 5),
        _tr("b", 5.25, "ESCALATED", "medium", reason=["unacknowledged"]),  # a re-page
        _tr("c", 6, page=False),  # on the care-team page, not paged
        _tr("c", 30),  # outside the window
    ]
    shadow = [
        _tr("a", 1, priority="high", model_version="v3"),
        _tr("d", 3, model_version="v3"),
        _tr("d", 4, "ESCALATED", "high", model_version="v3"),
    ]
    outcomes = [
        {"patient_id": "a", "ts": T0 + 8 * H, "kind": "icu_transfer"},
        {"patient_id": "b", "ts": T0 + 20 * H, "kind": "death"},  # 15 h after b's page
        {"patient_id": "c", "ts": T0 + 10 * H, "kind": "none"},  # not an outcome
    ]
    r = compare(live, shadow, _events(), outcomes, horizon_h=12, until_ms=T0 + 24 * H)
    # by default the window runs to what came last (here c's transition at 30 h)
    assert compare(live, shadow, _events(), outcomes)["window"]["hours"] == 30
    w = r["window"]
    assert w["hours"] == 24 and w["patients"] == 4 and w["patient_days"] == 4
    live_s, sh = r["live"], r["shadow"]
    assert live_s["pages"] == 2 and live_s["pages_by_priority"] == {"medium": 1, "high": 1}
    assert live_s["pages_per_patient_day"] == 0.5
    assert live_s["alerts_opened"] == 3  # a, b and c's unpaged one
    assert live_s["patients_paged"] == 2
    assert sh["pages"] == 3 and sh["pages_per_patient_day"] == 0.75
    assert sh["pages_per_patient_day_by_priority"] == {"medium": 0.25, "high": 0.5}
    assert sh["alerts_opened"] == 2 and sh["patients_paged"] == 2
    assert sh["model_versions"] == ["v3"] and live_s["model_versions"] == []
    assert r["agreement"] == {"paged_by_both": 1, "only_live": 1, "only_shadow": 1}
    assert r["outcomes"] == 2
    # a caught by both (live 6 h ahead, shadow 7 h); b's page too early to count
    assert live_s["outcomes_caught"] == 1 and live_s["sensitivity"] == 0.5
    assert live_s["median_lead_time_h"] == 6.0
    assert sh["outcomes_caught"] == 1 and sh["median_lead_time_h"] == 7.0
    json.dumps(r)
    page = shadow_html(r)
    assert "<svg" in page and "only shadow" in page and "v3" in page


def test_the_window_bounds_everything() -> None:
    live = [_tr("a", 2), _tr("b", 14)]
    shadow = [_tr("a", 13, model_version="v3")]
    r = compare(live, shadow, _events(), [], since_ms=T0 + 12 * H, until_ms=T0 + 24 * H)
    assert r["window"]["hours"] == 12 and r["window"]["patient_days"] == 2
    assert r["live"]["pages"] == 1 and r["shadow"]["pages"] == 1
    assert r["agreement"] == {"paged_by_both": 0, "only_live": 1, "only_shadow": 1}
    assert r["live"]["sensitivity"] is None  # no outcomes: nothing to be sensitive to
    empty = compare([], [], [], [])
    assert empty["window"]["patient_days"] == 0 and empty["live"]["pages_per_patient_day"] is None


def _report(hours: float, shadow_ppd: float | None) -> dict:
    return {
        "window": {"hours": hours, "patient_days": 10.0},
        "live": {"pages_per_patient_day": 0.2},
        "shadow": {"pages_per_patient_day": shadow_ppd},
    }


def test_gate_requires_a_shadow_period_when_set(tmp_path: Path) -> None:
    for v in ("v1", "v2", "v3", "v4"):
        _stacked_version(tmp_path, v)
    assert reg.gate(tmp_path, "m", "v1").passed  # not required by default
    (why,) = reg.gate(tmp_path, "m", "v1", min_shadow_h=72).reasons
    assert why.startswith("no shadow record") and "validate --shadow" in why

    record_shadow(tmp_path, "m", "v2", _report(96, 0.25))
    ok = reg.gate(tmp_path, "m", "v2", min_shadow_h=72)
    assert ok.passed and ok.candidate["rules"]["shadow_period"]
    record_shadow(tmp_path, "m", "v3", _report(48, 0.25))
    (why,) = reg.gate(tmp_path, "m", "v3", min_shadow_h=72).reasons
    assert why == "shadow record covers 48 h of v3, under the 72 h required"
    record_shadow(tmp_path, "m", "v4", _report(96, 0.45))
    (why,) = reg.gate(tmp_path, "m", "v4", min_shadow_h=72).reasons
    assert why == "shadow pages per patient-day 0.45 over the budget 0.3"
    assert reg.gate(tmp_path, "m", "v4", min_shadow_h=72, pages_budget=0.5).passed
    out = reg.promote(tmp_path, "m", "v3", min_shadow_h=72)
    assert not out["promoted"]
    # a record copied from another version does not count
    shutil_src = (tmp_path / "m" / "v2" / "shadow.json").read_text()
    (tmp_path / "m" / "v1" / "shadow.json").write_text(shutil_src)
    (why,) = reg.gate(tmp_path, "m", "v1", min_shadow_h=72).reasons
    assert "of v2" in why
    (tmp_path / "m" / "v1" / "shadow.json").write_text("{not json")
    (why,) = reg.gate(tmp_path, "m", "v1", min_shadow_h=72).reasons
    assert "unreadable" in why


def test_record_needs_the_version(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        record_shadow(tmp_path, "m", "v9", _report(1, 0.1))


def test_validate_needs_export_or_shadow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert "--export (or --shadow)" in capsys.readouterr().err
