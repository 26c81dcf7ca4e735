"""Seeded, physiologically grounded ward-patient simulator.

This is a **simulator**: it produces plausible synthetic vital signs for development,
load testing and pre-training. It is not a validated physiological model and its output
is not clinical data. The assumptions and their sources are in ``docs/simulator.md``.

One package serves two users:

* the live bedside simulator (:func:`stream_events`, published to Kafka by
  :mod:`simulator.publish`), which replays a cohort in (compressed) real time, and
* the offline trainer and the benchmarks (:func:`simulate_cohort`), which generate
  labelled cohorts.

Everything is pure and deterministic given a seed. Patients are independent: a profile is
drawn from a generator seeded by ``(seed, index)``, and a patient's observations from a
generator seeded by ``(seed, patient_id)``, so ``simulate_patient(p, seed=s)`` reproduces
exactly that patient's share of ``simulate_cohort(..., seed=s)`` and ``make_profiles(10)``
is a prefix of ``make_profiles(20)``.

Each numeric vital is modelled at each observation time ``t`` (hours since admission) as::

    baseline + circadian(clock time) + slow AR(1) drift + deterioration(t) + device noise

then rounded as charted (integers for HR/RR/SpO2/BP, 0.1 °C), with irregular sampling,
missing vitals, isolated artifacts, oxygen started by a simple nursing rule, and
consciousness charted only every Nth set.

Modules: :mod:`~simulator.profiles` (the cohort knobs, who the patients are),
:mod:`~simulator.physiology` (rhythms, drift, deterioration), :mod:`~simulator.devices`
(noise, artifacts, charting), :mod:`~simulator.patient` (one stay),
:mod:`~simulator.cohort` (merged cohorts and the stream) and :mod:`~simulator.publish`
(the Kafka publisher; not re-exported here, so that importing the simulator does not
import a Kafka client).
"""

from simulator.cohort import Cohort, simulate_cohort, stream_events
from simulator.patient import simulate_patient
from simulator.profiles import TRAJECTORIES, PatientProfile, SimConfig, Trajectory, make_profiles

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
