"""Two tiers of limits per numeric vital, and the pure functions that place a value in them.

* **possible** (inclusive): a value outside it is physically impossible or a "no signal"
  reading (a heart rate of 0, a temperature no living patient ever had, a value beyond
  every bedside monitor's measurement range). Ingest sets the field aside: it is removed
  from the observation set that is scored, with a warning naming field, value and reason.
* **extreme** (inclusive bounds: at or below ``low``, at or above ``high``): clinically
  extreme but possible. The value is scored with its full NEWS2 points and flagged
  ``verify_reading``; an alert explanation asks the care team to verify it.

``docs/ingest.md`` has the table with the source of every limit; a test keeps the two
equal. The alert explanations use :func:`extreme_readings` on the values the score used,
so the flag they show is the one ingest raised.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Tier = Literal["ordinary", "extreme", "impossible"]


@dataclass(frozen=True, slots=True)
class VitalLimits:
    """The limits of one numeric vital (in the unit of its field name)."""

    possible_low: float  # below: set aside (impossible or no signal)
    possible_high: float  # above: set aside
    extreme_low: float | None  # at or below (and possible): scored, verify_reading
    extreme_high: float | None  # at or above (and possible): scored, verify_reading

    def tier(self, value: float) -> Tier:
        """Where ``value`` lies: ``impossible`` also for NaN and infinities."""
        if not (self.possible_low <= value <= self.possible_high):  # NaN fails too
            return "impossible"
        if (self.extreme_low is not None and value <= self.extreme_low) or (
            self.extreme_high is not None and value >= self.extreme_high
        ):
            return "extreme"
        return "ordinary"


VITAL_LIMITS: Final[Mapping[str, VitalLimits]] = {
    # ECG heart rate: adult monitors measure 15-300 /min (Philips IntelliVue); 0 is
    # leads off / no signal. Extreme: profound bradycardia, rates above the sinus maximum.
    "heart_rate_bpm": VitalLimits(15.0, 300.0, 30.0, 220.0),
    # impedance respiration: adult range 0-120 /min (IntelliVue); a rate below 1 /min is
    # no breath counted in the minute (apnoea, or a disconnected sensor).
    "respiratory_rate_per_min": VitalLimits(1.0, 120.0, 5.0, 60.0),
    # physiology caps saturation at 100 %; oximeters are specified only from 70 %
    # (ISO 80601-2-61) and below 20 % no living patient's reading is reported.
    "spo2_pct": VitalLimits(20.0, 100.0, 60.0, None),
    # NIBP measures systolic 30-270 mmHg (IntelliVue adult), arterial lines lower; an
    # arterial line's flush bag is at 300 mmHg.
    "systolic_bp_mmhg": VitalLimits(20.0, 300.0, 50.0, 250.0),
    # NIBP diastolic 10-245 mmHg (IntelliVue adult).
    "diastolic_bp_mmhg": VitalLimits(10.0, 250.0, 20.0, 150.0),
    # survival records: 13.7 °C accidental hypothermia, 46.5 °C heatstroke.
    "temperature_c": VitalLimits(13.7, 46.5, 32.0, 42.0),
}
"""Per numeric :class:`~wardwatch.schemas.VitalsEvent` field, its two tiers of limits."""


def tier(field: str, value: float) -> Tier:
    """The tier of ``value`` for the numeric vital ``field`` (a key of VITAL_LIMITS)."""
    return VITAL_LIMITS[field].tier(value)


def extreme_readings(vitals: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The extreme-but-possible values among ``vitals`` (field name -> value), in the
    order of :data:`VITAL_LIMITS`: the readings to verify."""
    out: list[tuple[str, float]] = []
    for field, limits in VITAL_LIMITS.items():
        v = vitals.get(field)
        if v is None or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        f = float(v)
        if math.isfinite(f) and limits.tier(f) == "extreme":
            out.append((field, f))
    return out
