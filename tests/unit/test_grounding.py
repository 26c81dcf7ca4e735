"""trainer.grounding: the hourly-grid comparison with a real export, and the fit of the
simulator's targets (pure functions on known distributions; the committed files)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from simulator import Cohort, PatientProfile, SimConfig
from simulator.grounded import REFERENCE_PATH, Reference, load_reference
from trainer.grounding import (
    SUMMARY_PATH,
    VITALS,
    cohort_grid,
    compare,
    drop_impossible,
    fit_reference,
    histogram,
    intervals,
    ks_statistic,
    load_summary,
    main,
    missingness,
    spearman_matrix,
    summarize,
    wasserstein,
)

EXPORT = Path("/work/shared/data/mimic-iv-demo")
HR, RR, SPO2, SBP, DBP, TEMP = range(6)


def _grid_from(values: np.ndarray, per: int) -> list[np.ndarray]:
    """Rows of ``values`` (n, 6) cut into patients of ``per`` hours."""
    return [values[i : i + per] for i in range(0, values.shape[0], per)]


def test_ks_and_wasserstein_of_shifted_normals() -> None:
    rng = np.random.default_rng(0)
    a = np.rint(100.0 + 10.0 * rng.standard_normal(200_000))
    b = np.rint(105.0 + 10.0 * rng.standard_normal(200_000))
    ha, hb = histogram(a, "heart_rate_bpm"), histogram(b, "heart_rate_bpm")
    # KS of N(0,1) vs N(0.5,1): 2 Phi(0.25) - 1
    assert ks_statistic(ha, hb) == pytest.approx(2 * norm.cdf(0.25) - 1, abs=0.01)
    assert wasserstein(ha, hb) == pytest.approx(5.0, abs=0.15)
    assert ks_statistic(ha, ha) == 0.0 and wasserstein(ha, ha) == 0.0
    # symmetric
    assert ks_statistic(hb, ha) == pytest.approx(ks_statistic(ha, hb))


def test_histogram_at_charting_resolution() -> None:
    h = histogram(np.array([36.5, 36.5, 36.7, np.nan]), "temperature_c")
    assert h["width"] == 0.1 and h["counts"] == [2, 0, 1]
    assert h["first"] == 365
    # W1 in °C: one third of the mass moved by 0.2 °C
    h2 = histogram(np.array([36.5, 36.5, 36.5]), "temperature_c")
    assert wasserstein(h, h2) == pytest.approx(0.2 / 3)


def test_spearman_matrix_is_pairwise_complete_and_rank_based() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5000)
    rows = np.full((5000, 6), np.nan)
    rows[:, 0] = x
    rows[:, 1] = np.exp(3 * x)  # monotone: Spearman 1
    rows[:, 2] = -x
    rows[:, 3] = rng.standard_normal(5000)  # independent
    rows[::2, 4] = x[::2]  # half missing
    rows[:, 5] = 0.5 * x + rng.standard_normal(5000)
    rows[:100, 5] = np.nan
    c = spearman_matrix(rows)
    assert c[0, 1] == pytest.approx(1.0) and c[0, 2] == pytest.approx(-1.0)
    assert abs(c[0, 3]) < 0.05
    assert c[0, 4] == pytest.approx(1.0)
    # Spearman of a bivariate normal with r = 0.5/sqrt(1.25): (6/pi) asin(r/2)
    r = 0.5 / math.sqrt(1.25)
    assert c[0, 5] == pytest.approx(6 / math.pi * math.asin(r / 2), abs=0.03)
    assert np.allclose(c, c.T, equal_nan=True) and np.all(np.diag(c) == 1.0)


def test_missingness_and_intervals_on_a_known_grid() -> None:
    a = np.full((8, 6), 1.0)
    a[1::2, TEMP] = np.nan  # temperature every 2 h
    a[[2, 3, 4], HR] = np.nan  # one 4-h gap in the heart rate
    b = np.full((4, 6), 1.0)
    miss = missingness([a, b])
    assert miss[TEMP] == pytest.approx(4 / 12)
    assert miss[HR] == pytest.approx(3 / 12)
    assert miss[RR] == 0.0
    assert sorted(intervals([a, b], TEMP).tolist()) == [1, 1, 1, 2, 2, 2]
    assert sorted(intervals([a, b], HR).tolist()) == [1, 1, 1, 1, 1, 1, 4]


def test_impossible_values_are_dropped_with_ingest_limits() -> None:
    a = np.array(
        [
            [0.0, 0.0, 97.0, 120.0, 70.0, 36.8],  # HR 0, RR 0: no signal
            [15.0, 1.0, 100.0, 300.0, 250.0, 46.5],  # at the limits: kept
            [301.0, 121.0, 19.0, 19.0, 9.0, 13.6],  # beyond them: dropped
        ]
    )
    grid, dropped = drop_impossible([a])
    assert dropped == {
        v: (2 if v in ("heart_rate_bpm", "respiratory_rate_per_min") else 1) for v in VITALS
    }
    assert np.isnan(grid[0][0, HR]) and np.isnan(grid[0][0, RR])
    assert not np.isnan(grid[0][1]).any()
    assert np.isnan(grid[0][2]).all()
    assert a[0, HR] == 0.0  # the input is not changed


def test_cohort_grid_keeps_the_last_value_of_each_hour() -> None:
    start = datetime(2024, 1, 1, 6, 0, tzinfo=UTC)
    base = dict.fromkeys(VITALS, 1.0)
    profile = PatientProfile("p", "40-64", False, False, base, "stable", None, None, False)
    ev = [
        {"patient_id": "p", "ts": start + timedelta(minutes=10), "heart_rate_bpm": 80.0},
        {"patient_id": "p", "ts": start + timedelta(minutes=50), "heart_rate_bpm": 90.0},
        {"patient_id": "p", "ts": start + timedelta(minutes=130), "temperature_c": 37.1},
    ]
    cohort = Cohort(profiles=[profile], events=ev)
    (g,) = cohort_grid(cohort, SimConfig(hours=3.5), start)
    assert g.shape == (4, 6)  # hours 0-3 of a 3.5-h stay
    assert g[0, HR] == 90.0 and np.isnan(g[1]).all() and g[2, TEMP] == 37.1


def test_compare_of_a_summary_with_itself_is_zero_and_counts_differences() -> None:
    rng = np.random.default_rng(2)
    rows = np.column_stack(
        [
            np.rint(80 + 10 * rng.standard_normal(2400)),
            np.rint(16 + 2 * rng.standard_normal(2400)),
            np.rint(97 + rng.standard_normal(2400)),
            np.rint(125 + 15 * rng.standard_normal(2400)),
            np.rint(70 + 10 * rng.standard_normal(2400)),
            np.round(36.8 + 0.3 * rng.standard_normal(2400), 1),
        ]
    )
    s = summarize(_grid_from(rows, 24))
    same = compare(s, s)
    assert same["ks_mean"] == 0 and same["spearman_max_abs_diff"] == 0
    assert same["missing_mean_abs_diff"] == 0
    sparse = rows.copy()
    sparse[::2, TEMP] = np.nan
    other = compare(summarize(_grid_from(sparse, 24)), s)
    assert other["vitals"]["temperature_c"]["missing_abs_diff"] == pytest.approx(0.5)
    assert other["vitals"]["temperature_c"]["interval_h"]["median"] == 2
    assert s["vitals"]["heart_rate_bpm"]["quantiles"]["50"] == pytest.approx(80, abs=1)
    assert s["patients"] == 100 and s["patient_hours"] == 2400


def test_fit_recovers_known_charting_and_correlation() -> None:
    """A synthetic export: baselines with HR-RR correlation 0.6, temperature every 4 h,
    HR omitted in 10 % of charted hours, every third hour (from hour 2) empty."""
    rng = np.random.default_rng(3)
    grid = []
    cov = np.eye(6)
    cov[0, 1] = cov[1, 0] = 0.6
    chol = np.linalg.cholesky(cov)
    centre = np.array([80.0, 18.0, 96.0, 120.0, 60.0, 36.9])
    spread = np.array([12.0, 4.0, 2.0, 15.0, 10.0, 0.5])
    for _ in range(400):
        z = chol @ rng.standard_normal(6)
        a = centre + spread * z + rng.standard_normal((30, 6)) * spread * 0.5
        a[2::3] = np.nan
        a[np.arange(30) % 4 != 0, TEMP] = np.nan
        a[(rng.random(30) < 0.1) & ~np.isnan(a[:, RR]), HR] = np.nan
        grid.append(a)
    fitted = fit_reference(grid, dict.fromkeys(VITALS, 0))
    fit, sim = fitted["fit"], fitted["simulator"]
    assert fit["baseline_spearman"][0][1] == pytest.approx(6 / math.pi * math.asin(0.3), abs=0.1)
    assert fit["between_stay_sd"][0] == pytest.approx(12.0, rel=0.15)
    # any-vital gaps alternate 1 h and 2 h (10 and 9 of them per stay)
    assert sim["set_gap_pmf"] == pytest.approx([10 / 19, 9 / 19], abs=1e-4)
    assert sim["omit_prob"][0] == pytest.approx(0.1, abs=0.02)
    assert sim["omit_prob"][1] == pytest.approx(0.0, abs=1e-9)
    # temperature at hours 0, 4, 12, 16, 24, 28 (8 and 20 are empty hours): 4, 8, 4, 8, 4
    assert sim["temp_gap_pmf"] == pytest.approx([0, 0, 0, 0.6, 0, 0, 0, 0.4])
    # the simulator reads what the fit writes
    ref = Reference.from_dict(fitted)
    assert ref.baseline_chol.shape == (6, 6)
    assert np.allclose(ref.baseline_chol @ ref.baseline_chol.T, sim["baseline_corr"], atol=1e-3)


def test_reference_file_is_checked() -> None:
    d = json.loads(REFERENCE_PATH.read_text())
    Reference.from_dict(d)
    bad = json.loads(REFERENCE_PATH.read_text())
    bad["vitals"] = list(reversed(bad["vitals"]))
    with pytest.raises(ValueError):
        Reference.from_dict(bad)
    bad = json.loads(REFERENCE_PATH.read_text())
    bad["simulator"]["omit_prob"] = [0.1, 0.1, 1.0, 0.1]
    with pytest.raises(ValueError):
        Reference.from_dict(bad)


def test_committed_files_hold_aggregates_and_provenance() -> None:
    summary = load_summary()
    text = SUMMARY_PATH.read_text()
    assert "stay_id" not in text
    assert summary["patients"] == 130 and summary["vitals_order"] == list(VITALS)
    assert "MIMIC-IV" in summary["provenance"]["source"]
    for v in VITALS:
        s = summary["vitals"][v]
        assert sum(s["histogram"]["counts"]) == s["n"]
    ref = json.loads(REFERENCE_PATH.read_text())
    assert {"source", "fitted_by", "date", "fitted", "hand_chosen"} <= set(ref["provenance"])
    load_reference()


@pytest.mark.skipif(not EXPORT.is_dir(), reason="the MIMIC-IV demo export is not here")
def test_committed_files_are_reproduced_from_the_export(tmp_path: Path) -> None:
    from trainer.grounding import write_references

    write_references(EXPORT, summary_path=tmp_path / "s.json", reference_path=tmp_path / "r.json")
    new_s, old_s = json.loads((tmp_path / "s.json").read_text()), load_summary()
    new_r, old_r = (
        json.loads((tmp_path / "r.json").read_text()),
        json.loads(REFERENCE_PATH.read_text()),
    )
    for d in (new_s, old_s, new_r, old_r):
        d["provenance"].pop("date")
    assert new_s == old_s
    assert new_r == old_r


def test_cli_prints_the_comparison(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--patients", "20", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"before", "after", "export_charting", "cohort"} <= set(out)
    assert out["before"]["grounding"] == "hand" and out["after"]["grounding"] == "mimic-iv-demo"
    assert set(out["after"]["vitals"]) == set(VITALS)


def test_training_grounding_in_the_report() -> None:
    from trainer.dataset import from_simulation
    from trainer.grounding import training_grounding
    from trainer.report import _md_html, grounding_lines

    src = from_simulation(12, seed=2).source
    g = training_grounding(src)
    assert g["available"] and g["cohort"] == {"patients": 12, "seed": 2, "hours": 48.0}
    assert g["after"]["grounding"] == "mimic-iv-demo" and g["before"]["grounding"] == "hand"
    assert "histogram" not in g["reference"]["vitals"]["heart_rate_bpm"]
    json.dumps(g)  # JSON-able: it goes into the version's metadata
    lines = grounding_lines(g)
    text = "\n".join(lines)
    assert "## Simulated vitals vs a real hospital's (MIMIC-IV demo)" in text
    for title in ("Heart rate", "Respiratory rate", "SpO2", "Systolic", "Diastolic", "Temperature"):
        assert f"### {title}" in text
    header = "| figure | real | simulator, hand-chosen (before) | simulator, trained on (after) |"
    assert header in text
    page = _md_html(lines)
    assert "<h3>Heart rate (/min)" in page and page.count("<table>") == 7
    assert not training_grounding({"kind": "kafka"})["available"]
    assert "Not computed" in "\n".join(grounding_lines(training_grounding({"kind": "kafka"})))


def test_versions_rebuild_with_their_recorded_simulator() -> None:
    from trainer.workflows import _sim_config

    old = {"config": {"hours": 48.0, "missing_prob": 0.1, "obs_interval_min": 15.0}}
    assert _sim_config(old) == SimConfig(grounding="hand", missing_prob=0.1, obs_interval_min=15.0)
    assert _sim_config({}) == SimConfig(grounding="hand")
    new = {"config": {"grounding": "mimic-iv-demo", "charting": "bedside"}}
    assert _sim_config(new) == SimConfig()
