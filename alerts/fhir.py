"""Alert transitions as FHIR R4 ``DetectedIssue`` resources.

One alert episode is one DetectedIssue (``id`` = the alert id); each transition renders
a new version of it:

=============================  ==============  ===========================================
transition                     ``status``      meaning here
=============================  ==============  ===========================================
OPEN, ESCALATED, UPDATED       preliminary     active, not yet reviewed by a clinician
ACKNOWLEDGED                   final           reviewed: a clinician has taken it on
RESOLVED                       cancelled       no longer active (recovered or closed by a
                                               person; see ``mitigation``)
=============================  ==============  ===========================================

Severity follows the alarm priority (high → high, medium → moderate, low → low). The
NEWS2 total is coded with SNOMED CT 1104051000000101 when NEWS2 drove the alert.
Validated against ``fhir.resources.R4B`` in the tests (R4B's DetectedIssue equals R4's).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from alerts.state import AlertEvent

__all__ = ["NEWS2_SNOMED", "detected_issue", "fhir_datetime"]

SNOMED: Final = "http://snomed.info/sct"
NEWS2_SNOMED: Final = "1104051000000101"
NEWS2_DISPLAY: Final = "Royal College of Physicians National Early Warning Score 2 total score"
REASON_SYSTEM: Final = "urn:wardwatch:alert-reason"
ALERT_ID_SYSTEM: Final = "urn:wardwatch:alert-id"
TRANSITION_ID_SYSTEM: Final = "urn:wardwatch:alert-transition-id"
EXT_TRANSITION: Final = "urn:wardwatch:fhir:alert-transition"
EXT_PRIORITY: Final = "urn:wardwatch:fhir:alert-priority"
EXT_EPISODE: Final = "urn:wardwatch:fhir:alert-episode"

_STATUS: Final = {
    "OPEN": "preliminary",
    "ESCALATED": "preliminary",
    "UPDATED": "preliminary",
    "ACKNOWLEDGED": "final",
    "RESOLVED": "cancelled",
}
_SEVERITY: Final = {"high": "high", "medium": "moderate", "low": "low"}
_NEWS2_REASONS: Final = frozenset({"news2_threshold", "single_parameter_3", "news2_trend"})
_REASON_TEXT: Final = {
    "news2_threshold": "NEWS2 threshold",
    "single_parameter_3": "NEWS2 single parameter scoring 3",
    "news2_trend": "rising NEWS2",
    "baseline_deviation": "sustained deviation from personal baseline",
    "model_risk": "deterioration model risk",
    "unacknowledged": "not acknowledged",
    "improving": "improving",
    "recovered": "recovered",
    "acknowledged": "acknowledged",
    "manual_resolve": "resolved by the care team",
}


def fhir_datetime(ts_ms: int) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``, e.g. ``2024-05-01T12:00:00.000Z``."""
    dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reference(kind: str, ident: str) -> dict[str, str]:
    return {"reference": ident if "/" in ident else f"{kind}/{ident}"}


def _actor(actor: str) -> dict[str, str]:
    if actor.startswith(("Practitioner/", "PractitionerRole/")):
        return {"reference": actor}
    return {"display": actor}


def _news2_coding() -> dict[str, str]:
    return {"system": SNOMED, "code": NEWS2_SNOMED, "display": NEWS2_DISPLAY}


def detected_issue(
    event: AlertEvent, *, evidence_observation_ids: list[str] | None = None
) -> dict[str, Any]:
    """The FHIR R4 ``DetectedIssue`` (JSON-ready dict) for one alert transition.

    ``evidence_observation_ids`` are Observation ids (or ``Observation/<id>`` references)
    the alert is based on.
    """
    # an acknowledgement or re-page carries the clinical triggers in its explanation
    triggers = [str(t) for t in (event.explanation or {}).get("triggers") or []]
    reasons = list(dict.fromkeys([*event.reason, *triggers]))
    news2_driven = bool(_NEWS2_REASONS.intersection(reasons))
    reason_codings = [
        {"system": REASON_SYSTEM, "code": r, "display": _REASON_TEXT.get(r, r)} for r in reasons
    ]
    codings = ([_news2_coding()] if news2_driven else []) + reason_codings
    label = f"Clinical deterioration early warning ({event.priority} priority"
    if event.news2_total is not None:
        label += f", NEWS2 {event.news2_total}"
    label += ")"

    summary = event.explanation.get("summary") if event.explanation else None
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": event.alert_id,
        "extension": [
            {"url": EXT_TRANSITION, "valueCode": event.transition},
            {"url": EXT_PRIORITY, "valueCode": event.priority},
            {"url": EXT_EPISODE, "valueInteger": event.episode},
        ],
        "identifier": [
            {"system": ALERT_ID_SYSTEM, "value": event.alert_id},
            {"system": TRANSITION_ID_SYSTEM, "value": event.transition_id},
        ],
        "status": _STATUS[event.transition],
        "code": {"coding": codings, "text": label} if codings else {"text": label},
        "severity": _SEVERITY[event.priority],
        "patient": _reference("Patient", event.patient_id),
        "identifiedDateTime": fhir_datetime(event.ts_ms),
        "author": {"display": "wardwatch early-warning system"},
        "detail": str(summary) if summary else label,
    }

    evidence: list[dict[str, Any]] = []
    if event.news2_total is not None:
        evidence.append(
            {"code": [{"coding": [_news2_coding()], "text": f"NEWS2 {event.news2_total}"}]}
        )
    ids = [i for i in (evidence_observation_ids or []) if i]
    if ids:
        evidence.append({"detail": [_reference("Observation", i) for i in ids]})
    if evidence:
        resource["evidence"] = evidence

    mitigation: dict[str, Any] | None = None
    when = fhir_datetime(event.ts_ms)
    if event.transition == "ACKNOWLEDGED":
        mitigation = {"action": {"text": "Alert acknowledged by the care team"}, "date": when}
    elif event.transition == "RESOLVED":
        text = (
            "Alert resolved by the care team"
            if event.actor
            else "Resolved automatically: NEWS2 stayed below the threshold for the hold time"
        )
        mitigation = {"action": {"text": text}, "date": when}
    if mitigation is not None:
        if event.actor:
            mitigation["author"] = _actor(event.actor)
        resource["mitigation"] = [mitigation]
    return resource
