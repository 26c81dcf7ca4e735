"""Risk fusion: the vitals model's risk combined with the latest imaging finding."""

from __future__ import annotations

import math


def fuse(
    vitals_risk: float | None,
    imaging_probability: float | None = None,
    *,
    imaging_weight: float = 0.5,
    imaging_prior: float = 0.1,
) -> float | None:
    """The patient's fused risk: the vitals model's risk, shifted on the log-odds scale by
    how much the latest imaging finding departs from its prior.

    ``logit(fused) = logit(vitals) + w · (logit(p_imaging) − logit(prior))``. With no
    imaging finding it is the vitals risk unchanged; a finding at the prior changes
    nothing; ``w`` and the prior come from the model metadata (``fusion``). Static context
    (age band, COPD / SpO2 scale) is already an input of the vitals model.
    """
    if vitals_risk is None:
        return None
    if imaging_probability is None:
        return vitals_risk

    def logit(p: float) -> float:
        p = min(max(p, 1e-6), 1 - 1e-6)
        return math.log(p / (1 - p))

    z = logit(vitals_risk) + imaging_weight * (logit(imaging_probability) - logit(imaging_prior))
    return 1.0 / (1.0 + math.exp(-z))
