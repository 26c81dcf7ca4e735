"""The imaging agent's handling of one message (agents.imaging), on a tiny contract model
in a temporary registry and synthetic DICOM series: the finding published keyed by patient,
every failure a dead letter with its reason and no patient id, the event loop free while a
study is scored, and the setting that turns imaging on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.batch import Origin
from agents.imaging import ImagingScorer, load_imaging_model
from agents.metrics import Metrics
from models.imaging.runtime import LungNoduleModel
from tests.imaging_models import contract_meta, fixed_blob_model, register
from tests.imaging_series import Phantom, write_series
from wardwatch.errors import ConfigError
from wardwatch.schemas import ImagingFinding
from wardwatch.settings import Settings

PID = "p-4711"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    register(root, fixed_blob_model(), contract_meta())
    return root


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phantom, Path]:
    ph = Phantom(n_slices=30, rows=80, cols=80, slice_mm=2.5)
    d = tmp_path_factory.mktemp("ct")
    write_series(ph, d, shuffle_seed=1)
    return ph, d


def event(ph: Phantom, uri: str, **over: Any) -> bytes:
    body = {
        "patient_id": PID,
        "study_instance_uid": ph.study_uid,
        "series_instance_uid": ph.series_uid,
        "modality": "CT",
        "body_part": "CHEST",
        "acquired_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        "uri": uri,
        **over,
    }
    return json.dumps(body).encode()


class Recorder:
    """The agent's outputs: the dead letters and the published findings."""

    def __init__(self) -> None:
        self.letters: list[tuple[Origin, str, str]] = []
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def dead_letter(self, origin: Origin, reason: Any, detail: str) -> None:
        self.letters.append((origin, reason.value, detail))

    async def publish(self, key: str, value: bytes) -> None:
        self.published.append((key, json.loads(value)))


async def once(stage: str, attempt: Callable[[], Awaitable[Any]]) -> Any:
    return await attempt()


def scorer(registry: Path, tmp_path: Path, rec: Recorder) -> tuple[ImagingScorer, Metrics]:
    settings = Settings(model_registry=registry, imaging_output_dir=tmp_path / "out")
    metrics = Metrics(CollectorRegistry())
    model = load_imaging_model(settings, metrics)
    assert model is not None
    agent = ImagingScorer(
        model,
        settings,
        metrics,
        dead_letter=rec.dead_letter,
        retrying=once,
        publish=rec.publish,
    )
    return agent, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_a_study_is_published_as_a_finding_keyed_by_patient(
    registry: Path, series: tuple[Phantom, Path], tmp_path: Path
) -> None:
    ph, d = series
    rec = Recorder()
    agent, metrics = scorer(registry, tmp_path, rec)
    try:
        asyncio.run(agent.handle(event(ph, d.as_uri()), Origin(b"", "imaging-studies", 0, 7)))
    finally:
        agent.close()
    assert rec.letters == []
    ((key, finding),) = rec.published
    assert key == PID
    parsed = ImagingFinding.model_validate(finding)
    assert parsed.patient_id == PID and parsed.series_instance_uid == ph.series_uid
    assert parsed.model.version == "v1" and parsed.slice_index is not None
    assert parsed.heatmap_png and Path(parsed.heatmap_png).parent == tmp_path / "out"
    suspicious = str(parsed.suspicious).lower()
    assert sample(metrics, "wardwatch_imaging_studies_scored_total", suspicious=suspicious) == 1
    for stage in ("load", "infer", "post"):
        assert sample(metrics, "wardwatch_imaging_scoring_seconds_count", stage=stage) == 1
    assert sample(metrics, "wardwatch_imaging_studies_in_flight") == 0


def test_every_failure_is_a_dead_letter_without_the_patient_id(
    registry: Path, series: tuple[Phantom, Path], tmp_path: Path
) -> None:
    ph, d = series
    mr = Phantom(n_slices=4)
    write_series(mr, tmp_path / "mr", modality="MR")
    missing = tmp_path / PID / "gone"  # the patient id in the path: never in the detail
    cases = [
        (b"{not json", "malformed_json"),
        (event(ph, d.as_uri(), body_part="HEAD"), "unsupported_body_part"),
        (event(mr, (tmp_path / "mr").as_uri()), "study_not_ct"),
        (event(ph, missing.as_uri()), "study_unreadable"),
        (event(ph, "https://pacs.example/wado/studies/1"), "study_unreadable"),
        (event(ph, d.as_uri(), series_instance_uid="1.2.3.4"), "series_not_found"),
    ]
    rec = Recorder()
    agent, metrics = scorer(registry, tmp_path, rec)

    async def run() -> None:
        for n, (raw, _) in enumerate(cases):
            await agent.handle(raw, Origin(raw, "imaging-studies", 1, n))

    try:
        asyncio.run(run())
    finally:
        agent.close()
    assert rec.published == []
    assert [(o.offset, r) for o, r, _ in rec.letters] == [
        (n, reason) for n, (_, reason) in enumerate(cases)
    ]
    for _, _, detail in rec.letters:
        assert detail and PID not in detail
    assert sample(metrics, "wardwatch_imaging_studies_consumed_total") == len(cases)
    for _, reason in cases:
        want = sum(1 for _, r in cases if r == reason)
        got = sample(metrics, "wardwatch_imaging_studies_dead_lettered_total", reason=reason)
        assert got == want


def test_a_failure_past_loading_is_a_processing_error(
    registry: Path, series: tuple[Phantom, Path], tmp_path: Path
) -> None:
    ph, d = series
    (tmp_path / "out").write_text("a file where the heatmap directory should be\n")
    rec = Recorder()
    agent, metrics = scorer(registry, tmp_path, rec)
    try:
        asyncio.run(agent.handle(event(ph, d.as_uri()), Origin(b"", "imaging-studies", 2, 5)))
    finally:
        agent.close()
    assert rec.published == []
    ((origin, reason, detail),) = rec.letters
    assert (origin.offset, reason) == (5, "processing_error")
    assert detail.startswith("scoring failed (") and PID not in detail
    labels = {"reason": "processing_error"}
    assert sample(metrics, "wardwatch_imaging_studies_dead_lettered_total", **labels) == 1
    assert sample(metrics, "wardwatch_imaging_studies_in_flight") == 0


def test_the_event_loop_runs_while_a_study_is_scored(registry: Path, tmp_path: Path) -> None:
    ph = Phantom(n_slices=120, rows=256, cols=256, pixel_mm=(0.7, 0.7), slice_mm=2.5)
    write_series(ph, tmp_path / "big")
    rec = Recorder()
    agent, _ = scorer(registry, tmp_path, rec)

    async def run() -> tuple[int, float]:
        ticks, worst = 0, 0.0
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(
            agent.handle(event(ph, (tmp_path / "big").as_uri()), Origin(b"", "t", 0, 0))
        )
        last = loop.time()
        while not task.done():
            await asyncio.sleep(0.005)
            now = loop.time()
            worst, last, ticks = max(worst, now - last), now, ticks + 1
        await task
        return ticks, worst

    try:
        ticks, worst = asyncio.run(run())
    finally:
        agent.close()
    assert len(rec.published) == 1
    # the study takes a few hundred ms; the loop went on ticking all along
    assert ticks >= 10, ticks
    assert worst < 0.25, worst


def test_imaging_is_on_when_a_model_is_promoted(
    registry: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(CollectorRegistry())
    on = load_imaging_model(Settings(model_registry=registry), metrics)
    assert isinstance(on, LungNoduleModel) and on.version == "v1"
    assert (
        load_imaging_model(Settings(model_registry=registry, imaging_enabled=False), metrics)
        is None
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    caplog.clear()  # only this call's lines (an earlier test may have set INFO already)
    with caplog.at_level(logging.INFO, logger="wardwatch.imaging"):
        assert load_imaging_model(Settings(model_registry=empty), metrics) is None
    (line,) = [r.getMessage() for r in caplog.records if r.name == "wardwatch.imaging"]
    assert line.startswith("imaging off: no usable lung-nodule model")
    with pytest.raises(ConfigError, match="imaging_enabled is true"):
        load_imaging_model(Settings(model_registry=empty, imaging_enabled=True), metrics)
    assert sample(metrics, "wardwatch_model_load_failures_total", model="lung-nodule") == 1
