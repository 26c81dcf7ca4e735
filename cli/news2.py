"""``wardwatch news2``: NEWS2 and qSOFA for each vitals JSON line on stdin.

One output line per input line, always: a score, or an ``error`` with the same reason
code the worker would dead-letter the message with. Each line is scored on its own
(no carry-forward between lines); the SpO2 scale is the event's ``spo2_scale`` (default 1).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any

from models.news2 import news2_from_vitals
from models.qsofa import qsofa_from_vitals
from wardwatch.ingest import Rejection, decode_vitals
from wardwatch.schemas import VitalsEvent
from wardwatch.settings import Settings


def score_event(event: VitalsEvent) -> dict[str, Any]:
    vitals = event.vitals()
    n2 = news2_from_vitals(vitals, spo2_scale=event.spo2_scale or 1)
    q = qsofa_from_vitals(vitals)
    return {
        "patient_id": event.patient_id,
        "ts": event.ts.isoformat(),
        "news2": n2.total,
        "complete": n2.complete,
        "missing": list(n2.missing),
        "components": dict(n2.components),
        "risk": n2.risk,
        "response": n2.response,
        "min_obs_frequency": n2.min_obs_frequency,
        "priority": n2.priority,
        "spo2_scale": n2.spo2_scale,
        "qsofa": q.score,
        "qsofa_complete": q.complete,
        "qsofa_high_risk": q.high_risk,
    }


def score_line(raw: bytes, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    decoded = decode_vitals(
        raw, now=now or datetime.now(UTC), max_future_skew_s=settings.max_future_skew_s
    )
    if isinstance(decoded, Rejection):
        return {"error": decoded.reason.value, "detail": decoded.detail}
    results = [score_event(e) for e in decoded.events]
    out = dict(results[-1])
    if decoded.warnings:
        out["warnings"] = decoded.warnings
    if decoded.flags:  # readings set aside (not scored) or to verify, with their reasons
        out["flags"] = [{**f.to_dict(), "event": f.event} for f in decoded.flags]
    if len(results) > 1:  # a FHIR Bundle with several observation times
        out["events"] = results
    return out


def run_news2(stdin: IO[bytes], stdout: IO[str], settings: Settings) -> int:
    for raw in stdin:
        line = raw.strip()
        if not line:
            continue
        try:
            out = score_line(line, settings)
        except (ValueError, TypeError) as exc:  # a value the scorer cannot take
            out = {"error": "unscorable", "detail": str(exc)}
        stdout.write(json.dumps(out, separators=(",", ":")) + "\n")
        stdout.flush()
    return 0
