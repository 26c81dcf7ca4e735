"""Shared observation data for the alert policy and explanation tests."""

from __future__ import annotations

from typing import Any

T0 = 1_700_000_000_000  # ms
MIN = 60_000

NORMAL: dict[str, Any] = {
    "respiratory_rate_per_min": 16,
    "spo2_pct": 97,
    "on_oxygen": False,
    "systolic_bp_mmhg": 125,
    "heart_rate_bpm": 75,
    "consciousness": "A",
    "temperature_c": 37.0,
}
"""A full observation set scoring NEWS2 0."""
