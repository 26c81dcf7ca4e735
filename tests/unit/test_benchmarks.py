"""The benchmarks run (quick mode) and report what they promise; no timing asserts."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import BENCHMARKS, main, run_benchmarks

pytestmark = pytest.mark.slow


def test_every_benchmark_runs_quick_and_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_benchmarks(BENCHMARKS, quick=True)
    res = result["results"]
    assert set(res) == set(BENCHMARKS)
    assert not any("error" in r for r in res.values())
    assert res["scoring"]["onnx_step"]["batch_256"]["events_per_s"] > 0
    replay = res["scoring"]["replay"]  # `wardwatch score` in its own process, every line out
    assert replay["batch_256"]["events"] == res["scoring"]["events"]
    assert replay["target_events_per_s"] == 20_000 and isinstance(replay["meets_target"], bool)
    assert res["state"]["redis_used_memory_per_patient_bytes"] > 0
    burden = res["alert_burden"]["ward_prevalence_5pct"]["variants"]
    assert set(burden) == {
        "default",
        "with_model",
        "unacknowledged",
        "medium_pages_at_once",
        "no_personal_triggers",
        "without_fatigue_controls",
    }
    json.dumps(result)  # JSON-able
    assert main(["ingest", "--quick"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["ingest"]


def test_unknown_benchmark_is_an_error() -> None:
    with pytest.raises(SystemExit):
        main(["nope"])


def test_the_pipeline_benchmark_reports_rates_stages_and_bytes() -> None:
    result = run_benchmarks(["pipeline"], quick=True, events=1_500)["results"]["pipeline"]
    scoring = result["scoring"]
    assert result["events"] == 1_500 and scoring["scored"] == 1_500
    assert scoring["events_per_s"] > 0 and scoring["events_per_cpu_s"] > 0
    assert set(scoring["stage_seconds"]) >= {
        "redis_load",
        "model_stage",
        "redis_commit",
        "apply_rules_policy",
    }
    assert scoring["stage_calls"]["redis_load"] == scoring["batches"]  # one load per batch
    assert 2 <= scoring["redis_round_trips_per_batch"] <= 3
    # the server's side: every patient in a batch costs at least a load and a commit
    server = scoring["redis_server"]
    assert server["patient_batches"] >= scoring["batches"]
    assert server["commands_per_patient_batch"] >= 2
    assert server["cpu_us_per_event"] > 0 and server["command_us_per_event"] > 0
    kinds = result["redis"]["bytes_per_patient_by_kind"]
    assert kinds["p"] > 0 and kinds["h"] > 0


def test_the_pipeline_benchmark_in_process_reports_both_rates() -> None:
    from benchmarks.pipeline import in_process

    result = in_process(events=1_500, rounds=2)
    rates = result["events_per_cpu_s"]
    assert result["events"] > 0
    assert len(rates["with_policy"]) == len(rates["without_policy"]) == 2
    assert all(r > 0 for r in rates["with_policy"] + rates["without_policy"])
