"""The benchmark harness behind ``wardwatch bench``: each benchmark module in
``benchmarks/`` exposes ``run(quick: bool) -> dict``; results are printed as one JSON
document (and written to ``--out``). Figures are measured within one run on this machine;
compare ratios, not absolute numbers across machines."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCHMARKS = ("ingest", "scoring", "state", "alert_burden")
# run only when named: they start the embedded stack and worker processes, or a long
# run of the scoring stage on its own Redis
ON_REQUEST = ("e2e", "pipeline")


def run_benchmarks(names: Sequence[str], quick: bool, events: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "quick": quick,
        "results": {},
    }
    for name in names:
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            out["results"][name] = {"error": f"not available: {exc}"}
            continue
        t0 = time.perf_counter()
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        kwargs: dict[str, Any] = {"quick": quick}
        if events is not None and "events" in inspect.signature(mod.run).parameters:
            kwargs["events"] = events
        result = mod.run(**kwargs)
        result["wall_s"] = round(time.perf_counter() - t0, 2)
        out["results"][name] = result
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wardwatch bench")
    p.add_argument("names", nargs="*", default=list(BENCHMARKS))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--events", type=int, default=None, help="events (e2e, pipeline)")
    p.add_argument("--out", "--json", dest="out", default=None, help="write the JSON here")
    args = p.parse_args(argv)
    known = BENCHMARKS + ON_REQUEST
    unknown = [n for n in args.names if n not in known]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {list(known)}")
    if args.events is not None and args.events < 1:
        p.error("--events must be positive")
    result = run_benchmarks(args.names, args.quick, args.events)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0
