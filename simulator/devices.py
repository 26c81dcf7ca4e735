"""What the bedside devices show and the nurse charts: noise, limits, artifacts, rounding.

:func:`measure` turns the latent vitals of one patient (an ``(n, 6)`` array in
:data:`simulator.physiology.VITALS` column order) into charted values: device noise (plus
beat-to-beat irregularity in arrhythmia), the display limits of the devices, isolated
artifacts (SpO2 probe off or poor perfusion, a motion spike in the heart rate, a
misplaced thermometer), diastolic kept below systolic, and rounding as charted (integers
for HR/RR/SpO2/BP, 0.1 °C).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from simulator.physiology import DBP, HR, SBP, SPO2, TEMP, FloatArray

__all__ = ["DEVICE_NOISE_SD", "Readings", "measure"]

BoolArray = npt.NDArray[np.bool_]

# Device / charting measurement noise (sd).
_NOISE_SD = np.array([2.0, 1.5, 0.8, 5.0, 4.0, 0.15])
DEVICE_NOISE_SD: tuple[float, ...] = tuple(float(x) for x in _NOISE_SD)
"""Device / charting noise sd per vital (the floor of the grounded hour-to-hour sd)."""
# Hard plausibility limits for what a device would display.
_LO = np.array([25.0, 4.0, 50.0, 50.0, 20.0, 32.0])
_HI = np.array([220.0, 60.0, 100.0, 250.0, 150.0, 42.5])


class Readings(NamedTuple):
    """Charted values ``(n, 6)`` and which observation sets carry an artifact, by vital."""

    charted: FloatArray
    artifact_hr: BoolArray
    artifact_spo2: BoolArray
    artifact_temp: BoolArray


def measure(
    latent: FloatArray,
    hr_extra_sd: FloatArray,
    rng: np.random.Generator,
    *,
    artifact_prob: float,
    noise_sd: FloatArray | None = None,
) -> Readings:
    """The charted readings of ``latent``; draws noise, then artifacts, from ``rng``.

    ``noise_sd`` (per vital) defaults to the device noise; the grounded simulator passes
    the fitted hour-to-hour variation, which is never below it."""
    n = int(latent.shape[0])
    sd = _NOISE_SD if noise_sd is None else np.maximum(noise_sd, _NOISE_SD)
    # Measurement: device noise (+ beat-to-beat irregularity in arrhythmia), limits.
    meas = latent + sd * rng.standard_normal((n, 6))
    meas[:, HR] += hr_extra_sd * rng.standard_normal(n)
    meas = np.clip(meas, _LO, _HI)

    # Isolated artifacts: SpO2 probe off / poor perfusion, motion HR spike, misplaced
    # thermometer. One reading; the next set is normal again.
    art = rng.random(n) < artifact_prob
    art_kind = rng.random(n)
    art_val = rng.random(n)
    art_spo2 = art & (art_kind < 0.5)
    art_hr = art & (art_kind >= 0.5) & (art_kind < 0.85)
    art_temp = art & (art_kind >= 0.85)
    meas[:, SPO2] = np.where(art_spo2, 70.0 + 10.0 * art_val, meas[:, SPO2])
    meas[:, HR] = np.where(
        art_hr, np.minimum(meas[:, HR] + 40.0 + 30.0 * art_val, 200.0), meas[:, HR]
    )
    meas[:, TEMP] = np.where(art_temp, 34.0 + 1.0 * art_val, meas[:, TEMP])

    meas[:, DBP] = np.maximum(np.minimum(meas[:, DBP], meas[:, SBP] - 10.0), _LO[DBP])
    charted: FloatArray = np.rint(meas)
    charted[:, TEMP] = np.round(meas[:, TEMP], 1)
    return Readings(charted, art_hr, art_spo2, art_temp)
