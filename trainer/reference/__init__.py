"""Committed summaries of real exports the simulator is compared with (JSON, aggregates only)."""
