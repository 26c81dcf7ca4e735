"""Shadow-mode comparison (``wardwatch validate --shadow``): the live alerts and a
candidate's would-be alerts, side by side, against the outcomes, over a window.

:func:`compare` is a pure function over lists of messages (the ``alerts`` and
``alerts-shadow`` transitions, the vitals events for the exposure, the outcomes);
:func:`read_shadow` reads them from Kafka (from the beginning, no consumer group, like
:mod:`trainer.kafka_data`); :func:`shadow_html` renders the report;
:func:`record_shadow` writes it into the candidate's registry version as ``shadow.json``,
which the promotion gate reads (``promotion_min_shadow_h``).

What counts, on both sides alike:

* a *page* is a transition that pages (``alerts.webhook.should_page`` at the webhook's
  lowest priority) other than a re-page for an alert nobody acknowledged (reason
  ``unacknowledged``): those depend on the care team, who never see the shadow's alerts;
* each ``transition_id`` counts once (delivery is at least once);
* exposure: each patient from their first to their last vitals event inside the window
  (at least an hour), summed, in patient-days;
* an outcome (any kind but ``none``) is *caught* when the patient was paged within
  ``horizon_h`` before it; lead time is from the first such page to the outcome.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.webhook import should_page
from trainer.svg import unit_plot
from trainer.validation.html import _e, _f, _pct, _table

__all__ = ["compare", "read_shadow", "record_shadow", "shadow_html", "shadow_record"]

_H_MS = 3600 * 1000
_DAY_MS = 24 * _H_MS
_MIN_SPAN_MS = _H_MS  # a patient observed once counts for an hour
_BLUE, _RED = "#2563eb", "#dc2626"
SHADOW_RECORD = "shadow.json"


def _ms(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    return int(value)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _is_page(msg: Mapping[str, Any], min_priority: str) -> bool:
    return should_page(dict(msg), min_priority) and "unacknowledged" not in (
        msg.get("reason") or []
    )


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _side(
    messages: Iterable[Mapping[str, Any]],
    lo: int,
    hi: int,
    patient_days: float,
    outcomes: Sequence[tuple[str, int]],
    horizon_ms: int,
    min_priority: str,
) -> tuple[dict[str, Any], dict[str, list[int]]]:
    seen: set[str] = set()
    pages: dict[str, list[int]] = {}
    by_priority = {"medium": 0, "high": 0}
    opened = 0
    versions: set[str] = set()
    for m in messages:
        tid = str(m.get("transition_id", ""))
        ts = int(m.get("ts_ms", -1))
        if tid in seen or not lo <= ts <= hi:
            continue
        seen.add(tid)
        if m.get("model_version"):
            versions.add(str(m["model_version"]))
        if m.get("transition") == "OPEN":
            opened += 1
        if _is_page(m, min_priority):
            pages.setdefault(str(m["patient_id"]), []).append(ts)
            if m.get("priority") in by_priority:
                by_priority[str(m["priority"])] += 1
    n_pages = sum(len(v) for v in pages.values())

    def rate(n: int) -> float | None:
        return round(n / patient_days, 4) if patient_days > 0 else None

    leads: list[float] = []
    caught = 0
    for pid, out_ms in outcomes:
        before = [t for t in pages.get(pid, []) if out_ms - horizon_ms <= t <= out_ms]
        if before:
            caught += 1
            leads.append((out_ms - min(before)) / _H_MS)
    median_lead = _median(leads)
    side = {
        "transitions": len(seen),
        "alerts_opened": opened,
        "pages": n_pages,
        "pages_by_priority": by_priority,
        "pages_per_patient_day": rate(n_pages),
        "pages_per_patient_day_by_priority": {k: rate(v) for k, v in by_priority.items()},
        "patients_paged": len(pages),
        "outcomes_caught": caught,
        "sensitivity": round(caught / len(outcomes), 4) if outcomes else None,
        "median_lead_time_h": None if median_lead is None else round(median_lead, 3),
        "model_versions": sorted(versions),
    }
    return side, {k: sorted(v) for k, v in pages.items()}


def compare(
    live: Iterable[Mapping[str, Any]],
    shadow: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    outcomes: Iterable[Mapping[str, Any]],
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    horizon_h: float = 12.0,
    min_priority: str = "medium",
) -> dict[str, Any]:
    """Live vs shadow over the window [``since_ms``, ``until_ms``] (default: from the
    first vitals event, each a dict with ``patient_id`` and ``ts``, ISO, datetime or epoch
    ms, to the last event, outcome or transition). ``outcomes``: dicts with ``patient_id``, ``ts`` and ``kind``. See the
    module docstring for what counts."""
    live, shadow, outcomes = list(live), list(shadow), list(outcomes)
    times: dict[str, list[int]] = {}
    for e in events:
        times.setdefault(str(e["patient_id"]), []).append(_ms(e["ts"]))
    every = [t for ts in times.values() for t in ts]
    lo = since_ms if since_ms is not None else (min(every) if every else 0)
    if until_ms is not None:
        hi = until_ms
    else:  # what came last: an outcome usually follows the patient's last vitals
        last = [*every, *(_ms(o["ts"]) for o in outcomes)]
        last += [int(m["ts_ms"]) for m in (*live, *shadow) if "ts_ms" in m]
        hi = max(last, default=lo)
    spans: dict[str, tuple[int, int]] = {}
    for pid, ts in times.items():
        inside = [t for t in ts if lo <= t <= hi]
        if inside:
            spans[pid] = (min(inside), max(inside))
    patient_days = sum(max(b - a, _MIN_SPAN_MS) for a, b in spans.values()) / _DAY_MS
    outs = sorted(
        (str(o["patient_id"]), _ms(o["ts"]))
        for o in outcomes
        if o.get("kind", "icu_transfer") != "none" and lo <= _ms(o["ts"]) <= hi
    )
    horizon_ms = int(horizon_h * _H_MS)
    args = (lo, hi, patient_days, outs, horizon_ms, min_priority)
    live_side, live_pages = _side(live, *args)
    shadow_side, shadow_pages = _side(shadow, *args)
    both = set(live_pages) & set(shadow_pages)
    return {
        "kind": "shadow",
        "window": {
            "since": _iso(lo),
            "until": _iso(hi),
            "since_ms": lo,
            "until_ms": hi,
            "hours": round((hi - lo) / _H_MS, 3),
            "patients": len(spans),
            "patient_days": round(patient_days, 4),
        },
        "outcomes": len(outs),
        "horizon_h": horizon_h,
        "min_priority": min_priority,
        "live": live_side,
        "shadow": shadow_side,
        "agreement": {
            "paged_by_both": len(both),
            "only_live": len(set(live_pages) - both),
            "only_shadow": len(set(shadow_pages) - both),
        },
        "cumulative_pages": {
            "live": _cumulative(live_pages, lo, hi),
            "shadow": _cumulative(shadow_pages, lo, hi),
        },
    }


def _cumulative(pages: Mapping[str, list[int]], lo: int, hi: int) -> list[list[float]]:
    """Pages so far against time, both as fractions of the window and of the count."""
    ts = sorted(t for v in pages.values() for t in v)
    if not ts or hi <= lo:
        return []
    pts = [[0.0, 0.0]]
    for i, t in enumerate(ts, 1):
        pts.append([round((t - lo) / (hi - lo), 4), round(i / len(ts), 4)])
    return pts


# ---- Kafka --------------------------------------------------------------------------
def _read_json(settings: Any, topics: Sequence[str], timeout_s: float) -> dict[str, list[Any]]:
    """Every JSON object on ``topics`` from the beginning to the end offsets at the start
    of the read (as :func:`trainer.kafka_data.read_topics_full`); non-JSON is skipped."""
    from kafka import TopicPartition

    from trainer.kafka_data import _consumer, _partitions, records_to_end

    deadline = time.monotonic() + timeout_s
    consumer = _consumer(settings)
    out: dict[str, list[Any]] = {t: [] for t in topics}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in _partitions(consumer, t, deadline)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = {tp: int(o) for tp, o in consumer.end_offsets(tps).items()}
        for topic, value in records_to_end(consumer, ends, set(), deadline, timeout_s):
            try:
                obj = json.loads(value or b"")
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(obj, dict):
                out[topic].append(obj)
    finally:
        consumer.close()
    return out


def read_shadow(settings: Any, *, timeout_s: float = 120.0) -> dict[str, list[Any]]:
    """``live`` and ``shadow`` transitions, ``events`` (vitals) and ``outcomes`` (dicts)
    from the topics; vitals and outcomes through :func:`trainer.kafka_data.read_topics_full`."""
    from trainer.kafka_data import read_topics_full

    t = settings.topics
    alerts = _read_json(settings, (t.alerts, t.alerts_shadow), timeout_s)
    res = read_topics_full(settings, timeout_s=timeout_s)
    return {
        "live": alerts[t.alerts],
        "shadow": alerts[t.alerts_shadow],
        "events": [{"patient_id": e["patient_id"], "ts": e["ts"]} for e in res.events],
        "outcomes": [o.model_dump() for o in res.outcomes],
    }


# ---- the record the gate reads --------------------------------------------------------
def shadow_record(report: Mapping[str, Any], version: str) -> dict[str, Any]:
    """What ``shadow.json`` keeps: the window and the figures the gate and a reviewer need."""
    return {
        "version": version,
        "recorded_at": datetime.now(UTC).isoformat(),
        "window": report["window"],
        "shadow_pages_per_patient_day": report["shadow"]["pages_per_patient_day"],
        "live_pages_per_patient_day": report["live"]["pages_per_patient_day"],
        "report": {k: v for k, v in report.items() if k != "cumulative_pages"},
    }


def record_shadow(root: Path, name: str, version: str, report: Mapping[str, Any]) -> Path:
    """Write ``shadow.json`` into the candidate's version directory (atomically)."""
    from models.registry import version_dir

    d = version_dir(root, name, version)
    if not (d / "metadata.json").is_file():
        raise FileNotFoundError(f"no model {name} {version} in {root}")
    path = d / SHADOW_RECORD
    tmp = path.with_name(f".{SHADOW_RECORD}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(shadow_record(report, version), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


# ---- the page -------------------------------------------------------------------------
def _rate(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else _f(v)


def shadow_html(report: Mapping[str, Any]) -> str:
    """The comparison as one self-contained page (tables and an inline SVG plot)."""
    w, live, sh, agree = report["window"], report["live"], report["shadow"], report["agreement"]
    version = ", ".join(sh["model_versions"]) or "n/a"
    rows = [
        [
            "pages per patient-day",
            _rate(live["pages_per_patient_day"]),
            _rate(sh["pages_per_patient_day"]),
        ],
        *[
            [
                f"{p} pages per patient-day",
                _rate(live["pages_per_patient_day_by_priority"][p]),
                _rate(sh["pages_per_patient_day_by_priority"][p]),
            ]
            for p in ("medium", "high")
        ],
        ["pages", _f(live["pages"]), _f(sh["pages"])],
        ["alerts opened", _f(live["alerts_opened"]), _f(sh["alerts_opened"])],
        ["patients paged", _f(live["patients_paged"]), _f(sh["patients_paged"])],
        ["outcomes caught", _f(live["outcomes_caught"]), _f(sh["outcomes_caught"])],
        ["sensitivity", _pct(live["sensitivity"]), _pct(sh["sensitivity"])],
        ["median lead time (h)", _f(live["median_lead_time_h"]), _f(sh["median_lead_time_h"])],
    ]
    cum = report["cumulative_pages"]
    plot = unit_plot(
        [("live", _BLUE, cum["live"]), (f"shadow {version}", _RED, cum["shadow"])],
        title="Pages over the window",
        x_label="fraction of the window",
        y_label="fraction of the side's pages",
        legend_at=(0.05, 0.9),
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>wardwatch shadow comparison: {_e(version)}</title>
<style>body{{font:14px system-ui,sans-serif;max-width:62rem;margin:2rem auto;color:#111}}
table{{border-collapse:collapse;margin:.5rem 0 1rem}}td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head>
<body><h1>Shadow mode: live vs candidate {_e(version)}</h1>
<p>Window {_e(w["since"])} to {_e(w["until"])}: {_f(w["hours"], 1)} h, {_f(w["patients"])}
patients, {_f(w["patient_days"], 2)} patient-days, {_f(report["outcomes"])} outcomes
(caught: paged within {_f(report["horizon_h"], 0)} h before). The shadow's alerts were
never paged; re-pages of unacknowledged alerts are not counted on either side.</p>
{_table(["", "live", "shadow"], rows)}
<h2>Agreement (patients paged)</h2>
{_table(["by both", "only live", "only shadow"], [[_f(agree["paged_by_both"]), _f(agree["only_live"]), _f(agree["only_shadow"])]])}
{plot}
</body></html>
"""
