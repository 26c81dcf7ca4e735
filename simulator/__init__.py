"""The simulator: seeded, physiologically grounded ward patients (demo, trainer, benchmarks)."""
