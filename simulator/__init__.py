"""The simulator: seeded, physiologically grounded ward patients (demo, trainer, benchmarks)."""

from simulator.physiology import (
    TRAJECTORIES,
    Cohort,
    PatientProfile,
    SimConfig,
    Trajectory,
    make_profiles,
    simulate_cohort,
    simulate_patient,
    stream_events,
)

__all__ = [
    "TRAJECTORIES",
    "Cohort",
    "PatientProfile",
    "SimConfig",
    "Trajectory",
    "make_profiles",
    "simulate_cohort",
    "simulate_patient",
    "stream_events",
]
