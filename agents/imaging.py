"""Chest-CT studies from ``imaging-studies`` scored by the lung-nodule model, off the event
loop, their findings on ``imaging-findings`` (keyed by patient id).

A study takes far longer than a vitals batch (seconds of DICOM reading, pre-processing
and a 3-D CNN), so it is scored in a bounded pool of threads (``imaging_workers``, one by
default): pydicom's parsing, NumPy and ONNX Runtime release the GIL for most of the work,
and the event loop goes on consuming and scoring vitals meanwhile. Each study is either
published as a finding or dead-lettered with its reason, and only then acknowledged, so
that its offset is committed (``docs/delivery.md``); nothing a study holds can stop the
worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.batch import Origin
from agents.metrics import Metrics
from models.imaging.dicom import local_path
from models.imaging.errors import ImagingError
from models.imaging.pipeline import infer, post_process, prepare_study
from models.imaging.runtime import DEFAULT_NAME, LungNoduleModel
from models.registry import RegistryError
from models.session import choose_providers
from wardwatch.errors import ConfigError
from wardwatch.ingest import ImagingRejection, decode_imaging_study, scrub_patient_ids
from wardwatch.schemas import (
    FailureReason,
    ImagingFinding,
    ImagingReason,
    ImagingStudyEvent,
    RejectReason,
)
from wardwatch.settings import Settings

log = logging.getLogger("wardwatch.imaging")

Reason = RejectReason | FailureReason | ImagingReason
DeadLetter = Callable[[Origin, Reason, str], Awaitable[None]]
Retrying = Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
Publish = Callable[[str, bytes], Awaitable[None]]


def load_imaging_model(settings: Settings, metrics: Metrics) -> LungNoduleModel | None:
    """The lung-nodule model the worker scores studies with, or None when imaging is off.

    ``imaging_enabled`` unset: on when the registry has a promoted (or the named) version
    that loads, else off, said in one log line. ``imaging_enabled`` true and no usable
    model: a :class:`~wardwatch.errors.ConfigError` (the worker does not start)."""
    wanted = settings.imaging_enabled
    if wanted is False:
        log.info("imaging off (imaging_enabled is false)")
        return None
    root = settings.resolved_model_registry()
    try:
        return LungNoduleModel.from_registry(
            root,
            version=settings.imaging_model_version or None,
            providers=choose_providers(settings.onnx_provider),
        )
    except RegistryError as exc:
        if wanted:
            metrics.model_load_failures.labels(DEFAULT_NAME).inc()
            raise ConfigError(f"imaging_enabled is true but {exc}") from exc
        if (root / DEFAULT_NAME).is_dir():  # a model there, refused: worth counting
            metrics.model_load_failures.labels(DEFAULT_NAME).inc()
        log.info("imaging off: no usable %s model in %s (%s)", DEFAULT_NAME, root, exc)
        return None


class ImagingScorer:
    """Decodes, scores and publishes one ``imaging-studies`` message at a time per caller;
    the scoring itself runs in its own thread pool."""

    def __init__(
        self,
        model: LungNoduleModel,
        settings: Settings,
        metrics: Metrics,
        *,
        dead_letter: DeadLetter,
        retrying: Retrying,
        publish: Publish,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.retrying = retrying
        self.publish = publish
        self.max_future_skew_s = settings.max_future_skew_s
        self.out_dir: Path = settings.imaging_output_dir
        self.executor = ThreadPoolExecutor(
            max_workers=settings.imaging_workers, thread_name_prefix="imaging"
        )
        for reason in (*ImagingReason, FailureReason.PROCESSING_ERROR):
            metrics.imaging_dead_lettered.labels(reason.value).inc(0)
        for suspicious in ("true", "false"):
            metrics.imaging_scored.labels(suspicious).inc(0)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def handle(self, raw: bytes, origin: Origin) -> None:
        """One message: its finding published, or a dead letter; returns once the broker
        has acknowledged either. Raises only what ``retrying`` gives up on."""
        self.metrics.imaging_consumed.inc()
        decoded = decode_imaging_study(
            raw, now=datetime.now(UTC), max_future_skew_s=self.max_future_skew_s
        )
        if isinstance(decoded, ImagingRejection):
            await self._reject(origin, decoded.reason, decoded.detail)
            return
        loop = asyncio.get_running_loop()
        self.metrics.imaging_in_flight.inc()
        try:
            finding = await loop.run_in_executor(self.executor, self.score, decoded)
            message = ImagingFinding.model_validate(
                {
                    "patient_id": decoded.patient_id,
                    "study_instance_uid": decoded.study_instance_uid,
                    "series_instance_uid": decoded.series_instance_uid,
                    "acquired_at": decoded.acquired_at,
                    "scored_at": datetime.now(UTC),
                    **finding,
                }
            )
        except ImagingError as exc:
            detail = scrub_patient_ids(str(exc), [decoded.patient_id])
            await self._reject(origin, exc.reason, detail)
            return
        except Exception as exc:  # noqa: BLE001 - a model or disk failure fails the study alone
            await self._reject(
                origin, FailureReason.PROCESSING_ERROR, f"scoring failed ({type(exc).__name__})"
            )
            return
        finally:
            self.metrics.imaging_in_flight.dec()
        value = message.model_dump_json().encode()
        pid = decoded.patient_id
        await self.retrying("imaging-finding", lambda: self.publish(pid, value))
        self.metrics.imaging_scored.labels(str(message.suspicious).lower()).inc()
        log.info(
            "imaging study %s scored: probability %.3f (%s)",
            origin.key,
            message.probability,
            "suspicious" if message.suspicious else "not suspicious",
        )

    def score(self, event: ImagingStudyEvent) -> dict[str, Any]:
        """Pre-process → infer → post-process one study (in a pool thread), each stage
        timed; raises the imaging error tree for a study that cannot be loaded."""
        observe = self.metrics.imaging_seconds.labels
        t0 = time.perf_counter()
        study = prepare_study(local_path(event.uri), self.model, event.series_instance_uid)
        t1 = time.perf_counter()
        (inferred,) = infer(self.model, [study])
        t2 = time.perf_counter()
        finding = post_process(self.model, study, inferred, self.out_dir)
        t3 = time.perf_counter()
        observe("load").observe(t1 - t0)
        observe("infer").observe(t2 - t1)
        observe("post").observe(t3 - t2)
        return finding

    async def _reject(self, origin: Origin, reason: Reason, detail: str) -> None:
        await self.dead_letter(origin, reason, detail)
        self.metrics.imaging_dead_lettered.labels(reason.value).inc()
