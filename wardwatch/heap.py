"""Garbage-collector settings for the processes that run the scoring hot loop.

CPython's cyclic collector runs every few hundred allocations and, every so often,
walks every container object alive: after imports (pydantic, numpy, ONNX Runtime, Faust)
that is hundreds of thousands of objects per full pass, for nothing, since the scoring
path frees what it allocates by reference counting. Measured on ``wardwatch score``:
about a quarter of the time per event went to the collector.

:func:`settle` is called once, after start-up (imports, model loaded): it moves every
object alive then out of the collector's view (``gc.freeze``) and lets more allocations
pass between young-generation collections. Cycles are still collected.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations between young-generation collections (CPython's default is 700)."""


def settle(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Collect once, freeze what is alive now, and raise the young-generation threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
