"""The stateful deterioration model in the workers: loading, scoring, its patient state.

A registry version is verified and warmed up once (:meth:`DeteriorationModel.from_registry`),
then scores batches in three steps (as in MONAI Deploy's operators): **pre-process** (events →
feature tensors, per-patient state in), **infer** (one ``session.run`` per batch on an
:class:`~models.session.OnnxSession`), **post-process** (tensors → risks, per-patient state
out).

The deterioration model is a single-step recurrent graph ``(features [B, F], h_in [B, H])
→ (risk [B, 1], h_out [B, H])``. Each patient's feature state and hidden state travel in
the patient's Redis state between events, so one new event costs one step, not a re-run of
the whole history. Hidden state is stored as float32 (128 bytes for H = 32): float16 would
halve that but breaks the 1e-4 agreement between incremental and whole-sequence scoring.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.features import (
    FEATURE_NAMES,
    N_FEATURES,
    FeatureState,
    NormConsts,
    feature_row,
    norm_constants,
)
from models.features import NORM as DEFAULT_NORM
from models.fusion import FusionParams, Thresholds
from models.registry import load_metadata, promoted_version, verify, version_dir
from models.session import OnnxSession
from wardwatch.errors import ModelError
from wardwatch.patient import SD_FLOOR, BaselineStep
from wardwatch.schemas import NUMERIC_VITALS

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]
DEFAULT_MODEL = "deterioration"


def encode_hidden(h: FloatArray) -> str:
    return base64.b64encode(np.asarray(h, dtype=np.float32).tobytes()).decode()


def decode_hidden(raw: str, hidden: int) -> FloatArray | None:
    try:
        arr = np.frombuffer(base64.b64decode(raw), dtype=np.float32)
    except (ValueError, TypeError):
        return None
    return arr.copy() if arr.size == hidden else None


@dataclass(slots=True)
class Scored:
    risk: float
    state: dict[str, Any]  # the patient's new model state (JSON-ready; {} unless last)
    contributions: dict[str, float] | None = None


@dataclass
class DeteriorationModel:
    """A verified registry version of the deterioration model, ready to score."""

    name: str
    version: str
    sha256: str
    meta: dict[str, Any]
    session: OnnxSession
    hidden: int
    norm: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)
    # how its risk is fused with NEWS2 and imaging, and the alert thresholds on the fused
    # risk (None: the policy's own), both from the metadata (checked when it is loaded)
    fusion: FusionParams = field(default_factory=FusionParams)
    thresholds: Thresholds | None = None

    @classmethod
    def from_registry(
        cls,
        root: Path,
        name: str = DEFAULT_MODEL,
        version: str | None = None,
        *,
        expected_sha256: str | None = None,
        providers: Sequence[str] | None = None,
    ) -> DeteriorationModel:
        """Load, verify (sha256, inputs, features, smoke check) and warm up a version."""
        version = version or promoted_version(root, name)
        if version is None:
            raise ModelError(f"no promoted version of {name!r} in {root}")
        sha = verify(root, name, version, expected_sha256)
        meta = load_metadata(root, name, version)
        names = tuple(meta.get("feature_names") or ())
        if names != FEATURE_NAMES:
            raise ModelError(
                f"{name} {version} expects features {len(names)} that this worker does not "
                f"build ({N_FEATURES}); upgrade the worker or pick another version"
            )
        hidden = int(meta.get("hidden_size") or meta.get("hidden") or 0)
        if hidden <= 0:
            raise ModelError(f"{name} {version}: metadata lacks hidden_size")
        try:
            session = OnnxSession(
                version_dir(root, name, version) / "model.onnx", providers=providers
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"{name} {version}: ONNX Runtime refused the file: {exc}") from exc
        if session.input_names[:2] != ["features", "h_in"] or session.output_names[:2] != [
            "risk",
            "h_out",
        ]:
            raise ModelError(f"{name} {version}: unexpected inputs/outputs {session.input_names}")
        norm = dict(meta.get("normalization") or meta.get("norm") or {})
        model = cls(
            name,
            version,
            sha,
            meta,
            session,
            hidden,
            norm,
            fusion=FusionParams.from_meta(meta),
            thresholds=Thresholds.from_meta(meta),
        )
        try:
            model.smoke_check()
        except ModelError:
            raise
        except Exception as exc:  # e.g. ONNX Runtime refusing a hidden size the graph lacks
            raise ModelError(f"{name} {version}: smoke check failed ({exc})") from exc
        log.info(
            "model %s %s loaded on %s (hidden %d, sha256 %s…)",
            name,
            version,
            session.provider,
            hidden,
            sha[:12],
        )
        return model

    # ---- infer --------------------------------------------------------------------------
    def step_batch(self, feats: FloatArray, h: FloatArray) -> tuple[FloatArray, FloatArray]:
        risk, h_out = self.session.run({"features": feats, "h_in": h})
        return np.asarray(risk, dtype=np.float32).reshape(-1), np.asarray(h_out, dtype=np.float32)

    def smoke_check(self) -> None:
        """The file computes what the trainer recorded (or at least finite risks in [0, 1])."""
        smoke = self.meta.get("smoke")
        if smoke:
            feats = np.asarray(smoke["features"], dtype=np.float32)
            h = np.asarray(smoke["h_in"], dtype=np.float32)
            risk, _ = self.step_batch(feats, h)
            if np.abs(risk - np.asarray(smoke["risk"], dtype=np.float32)).max() > 1e-4:
                raise ModelError(f"{self.name} {self.version}: smoke check disagrees with training")
        for batch in (1, 64):  # also warms up the session for both shapes
            rng = np.random.default_rng(batch)
            feats = rng.normal(0, 1, (batch, N_FEATURES)).astype(np.float32)
            risk, h_out = self.step_batch(feats, np.zeros((batch, self.hidden), np.float32))
            if risk.shape != (batch,) or h_out.shape != (batch, self.hidden):
                raise ModelError(f"{self.name} {self.version}: wrong output shapes")
            if not np.all(np.isfinite(risk)) or risk.min() < 0 or risk.max() > 1:
                raise ModelError(f"{self.name} {self.version}: risks not in [0, 1]")

    # ---- pre-process → infer → post-process ---------------------------------------------
    def _start(self, state: Mapping[str, Any] | None) -> tuple[FeatureState, FloatArray] | None:
        """The patient's feature and hidden state, if it belongs to this model version.

        The state is either as stored (JSON strings; or the fields of the feature state and
        the hidden state's float32 bytes, as the store's binary form decodes them) or,
        within one process, as left by
        :meth:`score` with ``live=True`` (a :class:`FeatureState` and the hidden state's
        float32 bytes; serialized only when a store writes it, see ``PatientState.to_json``).
        A stored state is decoded into new objects; a live one is returned as is (no copy:
        :meth:`score` steps it in place, and a caller whose scoring fails must drop it).
        """
        if not state or state.get("version") != self.version or state.get("sha256") != self.sha256:
            return None
        raw_h = state.get("h", "")
        features = state.get("features")
        if isinstance(raw_h, bytes) and isinstance(features, FeatureState):
            live_h = np.frombuffer(raw_h, dtype=np.float32)
            if live_h.size != self.hidden:
                return None
            return features, live_h
        h: FloatArray | None
        if isinstance(raw_h, bytes):  # the store's binary form: float32 bytes
            if len(raw_h) != 4 * self.hidden:
                return None
            h = np.frombuffer(raw_h, dtype=np.float32).copy()
        else:
            h = decode_hidden(str(raw_h), self.hidden)
        if h is None:
            return None
        if isinstance(features, dict):  # the binary form: the fields, new objects
            return FeatureState(**features), h
        return FeatureState.from_json(features), h

    def fresh(self) -> tuple[FeatureState, FloatArray]:
        return FeatureState(), np.zeros(self.hidden, np.float32)

    def owns(self, state: Mapping[str, Any] | None) -> bool:
        """Whether a patient's stored model state was produced by this exact version.

        Checked without parsing the feature state (``score`` parses it once): a feature
        state that does not parse makes ``score`` raise, and the caller then drops the
        batch's states, which are rebuilt from history."""
        if not state or state.get("version") != self.version or state.get("sha256") != self.sha256:
            return False
        raw_h = state.get("h", "")
        features = state.get("features")
        if isinstance(raw_h, bytes):  # live, or as the store's binary form decodes it
            return isinstance(features, FeatureState | dict) and len(raw_h) == 4 * self.hidden
        readable = isinstance(features, str | dict)
        return readable and decode_hidden(str(raw_h), self.hidden) is not None

    @property
    def norm_consts(self) -> NormConsts:
        """The normalization constants, parsed once per model."""
        consts: NormConsts | None = self.__dict__.get("_norm_consts")
        if consts is None:
            consts = norm_constants(self.norm or DEFAULT_NORM)
            self.__dict__["_norm_consts"] = consts
        return consts

    def shares_baseline(self, alpha: float | None) -> bool:
        """Whether this model's features keep the personal baseline exactly like a patient
        state with weight ``alpha`` (same alpha, same SD floors)."""
        if alpha is None:
            return False
        _, _, model_alpha, vitals = self.norm_consts
        return model_alpha == alpha and all(
            floor_sq == SD_FLOOR[name] ** 2 for name, floor_sq, _, _ in vitals
        )

    def score(
        self,
        items: Sequence[tuple[str, Mapping[str, Any] | None, Mapping[str, Any]]],
        *,
        explain_above: float | None = None,
        live: bool = False,
        baseline_steps: Sequence[Mapping[str, BaselineStep] | None] | None = None,
        baseline_alpha: float | None = None,
    ) -> list[Scored]:
        """Score events in order: ``(patient key, model state or None, event dict)`` each.

        Events of the same patient chain (the state of the first, then each result), so
        the batch runs in waves (the k-th event of every patient in wave k): one ONNX call
        per wave, usually one per batch. A state from another model version starts fresh
        (the caller rewarms it first).

        ``baseline_steps`` (per item, ``Applied.baseline_steps`` of a patient state whose
        baseline uses ``baseline_alpha``) lets the features reuse the patient state's
        baseline updates (see :func:`~models.features.feature_row`); ignored unless this
        model's normalization uses the same alpha and SD floors.

        ``live=True`` leaves the new states unserialized (the feature state object and the
        hidden state's bytes): for a caller that stores them through ``PatientState``, whose
        JSON encoding serializes them exactly as ``live=False`` would. Live input states are
        stepped in place: if scoring raises, the caller must drop them.
        """
        n = len(items)
        # wave of each item: 0 for a patient's first item, the previous item's wave + 1
        # for the next; so an item's predecessor is always in the wave just before it
        waves: list[list[int]] = []
        wave_of: list[int] = [0] * n
        prev: list[int] = [-1] * n
        pos: dict[str, int] = {}  # patient -> index of its latest item so far
        for i, item in enumerate(items):
            p = pos.get(item[0], -1)
            w = 0 if p < 0 else wave_of[p] + 1
            wave_of[i], prev[i], pos[item[0]] = w, p, i
            if w == len(waves):
                waves.append([i])
            else:
                waves[w].append(i)
        final = [False] * n
        for i in pos.values():
            final[i] = True
        consts = self.norm_consts
        steps = baseline_steps if baseline_steps and self.shares_baseline(baseline_alpha) else None
        fstate: dict[int, FeatureState] = {}  # item -> its patient's (one object per batch)
        row_of: list[int] = [0] * n  # row of each item in its wave
        out: list[Scored | None] = [None] * n
        h_prev: FloatArray | None = None
        for idxs in waves:
            rows: list[list[float]] = []
            if h_prev is None:  # the first wave: every patient's stored (or a fresh) state
                starts = []
                for i in idxs:
                    fst, h0 = self._start(items[i][1]) or self.fresh()
                    fstate[i] = fst
                    starts.append(h0)
                hs = np.array(starts, dtype=np.float32).reshape(len(idxs), self.hidden)
            else:  # every item's predecessor is in the previous wave
                hs = h_prev[[row_of[prev[i]] for i in idxs]]
                for i in idxs:
                    fstate[i] = fstate[prev[i]]
            for row, i in enumerate(idxs):
                row_of[i] = row
                rows.append(
                    feature_row(fstate[i], items[i][2], consts, steps[i] if steps else None)
                )
            feats = np.array(rows, dtype=np.float32).reshape(len(idxs), N_FEATURES)
            risk, h_out = self.step_batch(feats, hs)
            contrib = (
                self._occlusion(feats, hs, risk, explain_above) if explain_above is not None else {}
            )
            risks = risk.tolist()
            for row, i in enumerate(idxs):
                # only a patient's last item in the batch leaves a state to store
                state: dict[str, Any] = {}
                if final[i]:
                    fst = fstate[i]
                    state = {
                        "version": self.version,
                        "sha256": self.sha256,
                        "features": fst if live else fst.to_json(),
                        "h": h_out[row].tobytes() if live else encode_hidden(h_out[row]),
                    }
                out[i] = Scored(risks[row], state, contrib.get(row))
            h_prev = h_out
        return [s for s in out if s is not None]

    def _occlusion(
        self, feats: FloatArray, hs: FloatArray, risk: FloatArray, above: float
    ) -> dict[int, dict[str, float]]:
        """Per vital: how much the risk drops when that vital looks normal (one extra call)."""
        rows = [r for r in range(len(risk)) if risk[r] >= above]
        if not rows:
            return {}
        groups = len(NUMERIC_VITALS)
        x = np.repeat(feats[rows], groups, axis=0)
        h = np.repeat(hs[rows], groups, axis=0)
        for g in range(groups):
            # value at the population mean, no deviation from baseline, seen just now
            x[g::groups, 4 * g] = 0.0
            x[g::groups, 4 * g + 2] = 0.0
            x[g::groups, 4 * g + 3] = 0.0
        occluded, _ = self.step_batch(x, h)
        out: dict[int, dict[str, float]] = {}
        for k, r in enumerate(rows):
            deltas = {
                NUMERIC_VITALS[g]: round(float(risk[r] - occluded[k * groups + g]), 4)
                for g in range(groups)
            }
            out[r] = {v: d for v, d in deltas.items() if d > 0.005}
        return out
