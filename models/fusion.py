"""Risk fusion: the deterioration model stacked on NEWS2, then shifted by the latest
imaging finding.

A registry version's ``metadata.json`` may carry ``fusion.stacking``, a logistic
regression the trainer fitted on a calibration split of held-out patients::

    logit(stacked) = a + b · NEWS2_total + c · logit(p_model)

``b`` > 0 and ``c`` >= 0 (the fused risk never falls when NEWS2 or the model's risk
rises). When the trainer found that the model's term adds nothing, ``c`` = 0 and the
stacked risk is an increasing function of the NEWS2 total alone: it ranks patients exactly
as NEWS2 does, ties included. The imaging shift is then applied as before. A version
without ``stacking`` (v1) fuses as it always did: the model's risk, shifted by imaging.

Everything here is a pure function; :func:`fuse_arrays` is the same formula over arrays
(the trainer's evaluation), so the worker and the trainer compute one number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "EPS",
    "STACKING_TAG",
    "FusionParams",
    "Stacking",
    "Thresholds",
    "fuse",
    "fuse_arrays",
    "logit",
]

STACKING_TAG = "news2-logit-v1"
"""The only stacking form this code computes; a version with another tag is refused."""

EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] before taking log-odds


def logit(p: float) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class Stacking:
    """``logit(stacked) = a + b · NEWS2_total + c · logit(p_model)``."""

    a: float
    b: float
    c: float
    tag: str = STACKING_TAG

    @classmethod
    def from_dict(cls, raw: object) -> Stacking:
        """Parse and check ``fusion.stacking`` (ValueError when unusable)."""
        if not isinstance(raw, Mapping):
            raise ValueError("stacking must be an object with a, b, c and tag")
        tag = raw.get("tag")
        if tag != STACKING_TAG:
            raise ValueError(f"stacking tag {tag!r} is not {STACKING_TAG!r}")
        a = _finite(raw.get("a"), "stacking.a")
        b = _finite(raw.get("b"), "stacking.b")
        c = _finite(raw.get("c"), "stacking.c")
        if b <= 0 or c < 0:
            raise ValueError(f"stacking needs b > 0 and c >= 0 (monotone), got b={b}, c={c}")
        return cls(a, b, c, tag)

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "c": self.c, "tag": self.tag}

    def model_risk_floor(self, threshold: float, news2_alerts_at: int = 5) -> float | None:
        """The lowest model risk with which the stacked risk reaches ``threshold`` while the
        NEWS2 total is below ``news2_alerts_at`` (where NEWS2 would not alert by itself):
        the risk at which it is reached with a total of ``news2_alerts_at - 1``. None when
        ``c`` = 0 (the model's risk does not enter the stacked risk)."""
        if not self.c:
            return None
        z = (logit(threshold) - self.a - self.b * (news2_alerts_at - 1)) / self.c
        return _sigmoid(z)

    def risk(self, model_risk: float, news2_total: int | None) -> float:
        """The stacked risk; a NEWS2 with nothing scoreable counts 0 (as in training)."""
        z = self.a + self.b * float(news2_total or 0)
        if self.c:
            z += self.c * logit(model_risk)
        return _sigmoid(z)


def fuse(
    vitals_risk: float | None,
    imaging_probability: float | None = None,
    *,
    imaging_weight: float = 0.5,
    imaging_prior: float = 0.1,
    news2_total: int | None = None,
    stacking: Stacking | None = None,
) -> float | None:
    """The patient's fused risk.

    With ``stacking``, first ``logit(s) = a + b · news2_total + c · logit(vitals_risk)``;
    without, ``s`` is the vitals model's risk. Then the imaging shift on the log-odds
    scale: ``logit(fused) = logit(s) + w · (logit(p_imaging) − logit(prior))``. With no
    imaging finding it is ``s`` unchanged; a finding at the prior changes nothing; ``w``
    and the prior come from the model metadata (``fusion``). Of the static context, the
    SpO2 scale enters as one of the vitals model's features; age band and conditions
    are not inputs (they are shown in explanations). No model risk (an outage): no fused
    risk, the rules alert alone.
    """
    if vitals_risk is None:
        return None
    risk = vitals_risk if stacking is None else stacking.risk(vitals_risk, news2_total)
    if imaging_probability is None:
        return risk
    z = logit(risk) + imaging_weight * (logit(imaging_probability) - logit(imaging_prior))
    return _sigmoid(z)


def fuse_arrays(
    vitals_risk: npt.ArrayLike, news2_total: npt.ArrayLike, stacking: Stacking | None
) -> npt.NDArray[np.float64]:
    """:func:`fuse` without imaging over arrays (the trainer's evaluation)."""
    p = np.asarray(vitals_risk, dtype=np.float64)
    if stacking is None:
        return p.copy()
    z = stacking.a + stacking.b * np.asarray(news2_total, dtype=np.float64)
    if stacking.c:
        q = np.clip(p, EPS, 1 - EPS)
        z = z + stacking.c * np.log(q / (1 - q))
    out: npt.NDArray[np.float64] = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


@dataclass(frozen=True, slots=True)
class FusionParams:
    """A version's ``fusion`` block: the stacking (None: fused = model risk) and the
    imaging shift's weight and prior."""

    stacking: Stacking | None = None
    imaging_weight: float = 0.5
    imaging_prior: float = 0.1

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> FusionParams:
        """Parse ``meta["fusion"]`` (absent: the defaults, no stacking); ValueError when
        it is unusable."""
        raw = meta.get("fusion")
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValueError("fusion must be an object")
        weight = _finite(raw.get("imaging_weight", 0.5), "fusion.imaging_weight")
        prior = _finite(raw.get("imaging_prior", 0.1), "fusion.imaging_prior")
        if not 0.0 < prior < 1.0:
            raise ValueError(f"fusion.imaging_prior must be in (0, 1), got {prior}")
        stacking = raw.get("stacking")
        return cls(
            None if stacking is None else Stacking.from_dict(stacking),
            weight,
            prior,
        )

    def parts(
        self, model_risk: float | None, news2_total: int | None, imaging: float | None = None
    ) -> dict[str, float] | None:
        """What each input adds to the fused risk, on the log-odds scale: ``base`` (the
        stacking's intercept), ``news2`` (``b`` · total), ``model`` (``c`` · logit of the
        model's own risk; 0 where ``c`` = 0) and ``imaging`` (the shift; 0 without a
        finding). Their sum is the fused risk's log-odds. None without a stacking (the
        fused risk is then the model's own) or without a model risk."""
        if self.stacking is None or model_risk is None:
            return None
        st = self.stacking
        out = {
            "base": st.a,
            "news2": st.b * float(news2_total or 0),
            "model": st.c * logit(model_risk) if st.c else 0.0,
            "imaging": 0.0,
        }
        if imaging is not None:
            out["imaging"] = self.imaging_weight * (logit(imaging) - logit(self.imaging_prior))
        return out

    def fuse(
        self, model_risk: float | None, news2_total: int | None, imaging: float | None = None
    ) -> float | None:
        return fuse(
            model_risk,
            imaging,
            imaging_weight=self.imaging_weight,
            imaging_prior=self.imaging_prior,
            news2_total=news2_total,
            stacking=self.stacking,
        )


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A version's operating points on the fused risk (``metadata.json``
    ``operating_points``): the alert policy's model-risk thresholds for its scores."""

    medium: float
    high: float

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Thresholds | None:
        """``operating_points.medium`` / ``.high`` (None when the version has none);
        ValueError unless ``0 < medium <= high <= 1``."""
        raw = meta.get("operating_points")
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise ValueError("operating_points must be an object")
        medium = _finite(raw.get("medium"), "operating_points.medium")
        high = _finite(raw.get("high"), "operating_points.high")
        if not 0.0 < medium <= high <= 1.0:
            raise ValueError(f"operating_points need 0 < medium <= high <= 1, got {medium}, {high}")
        return cls(medium, high)
