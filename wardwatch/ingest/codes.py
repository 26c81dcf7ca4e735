"""FHIR codes: which LOINC code maps to which :class:`~wardwatch.schemas.VitalsEvent` field,
how a CodeableConcept is read, and the ACVPU words for level of consciousness."""

from __future__ import annotations

import re
from typing import Any, Final

from wardwatch.ingest.result import _fail
from wardwatch.schemas import RejectReason

LOINC_SYSTEM: Final = "http://loinc.org"
UCUM_SYSTEM: Final = "http://unitsofmeasure.org"

_O2_FLOW: Final = "_oxygen_flow"  # internal kind for 3151-8 -> on_oxygen
_BP_PANEL: Final = "_bp_panel"  # internal kind for panels carrying components

LOINC_TO_FIELD: dict[str, str] = {
    "8867-4": "heart_rate_bpm",
    "9279-1": "respiratory_rate_per_min",
    "2708-6": "spo2_pct",
    "59408-5": "spo2_pct",
    "8310-5": "temperature_c",
    "8480-6": "systolic_bp_mmhg",
    "8462-4": "diastolic_bp_mmhg",
    "85354-9": _BP_PANEL,
    "55284-4": _BP_PANEL,  # older "Blood pressure systolic and diastolic" panel
    "3151-8": _O2_FLOW,
    "67775-7": "consciousness",
}
"""LOINC code -> VitalsEvent field (or an internal kind for panels / oxygen flow)."""

_BP_COMPONENTS: Final[dict[str, str]] = {
    "8480-6": "systolic_bp_mmhg",
    "8462-4": "diastolic_bp_mmhg",
}


_ACVPU_WORDS: Final[dict[str, str]] = {
    "a": "A",
    "alert": "A",
    "c": "C",
    "confusion": "C",
    "new confusion": "C",
    "confused": "C",
    "v": "V",
    "voice": "V",
    "responds to voice": "V",
    "p": "P",
    "pain": "P",
    "responds to pain": "P",
    "u": "U",
    "unresponsive": "U",
}
_ACVPU_CODE_HINTS: Final[tuple[str, ...]] = (
    "conscious",
    "responsiveness",
    "acvpu",
    "avpu",
)


def _loinc_codes(cc: object, where: str) -> list[str]:
    """LOINC codes of a CodeableConcept (codings without a system are read as LOINC)."""
    if not isinstance(cc, dict):
        _fail(RejectReason.FHIR_INVALID, f"{where}: must be a CodeableConcept object")
    coding = cc.get("coding")
    if coding is None:
        return []
    if not isinstance(coding, list):
        _fail(RejectReason.FHIR_INVALID, f"{where}.coding: must be an array")
    codes: list[str] = []
    for j, c in enumerate(coding):
        if not isinstance(c, dict):
            _fail(RejectReason.FHIR_INVALID, f"{where}.coding[{j}]: must be an object")
        system = c.get("system")
        code = c.get("code")
        if (system is not None and not isinstance(system, str)) or (
            code is not None and not isinstance(code, str)
        ):
            _fail(RejectReason.FHIR_INVALID, f"{where}.coding[{j}]: system/code must be strings")
        if code is not None and system in (None, LOINC_SYSTEM):
            codes.append(code)
    return codes


def _cc_texts(cc: dict[str, Any]) -> list[str]:
    """code, display and text strings of a CodeableConcept (already shape-checked)."""
    out: list[str] = []
    coding = cc.get("coding")
    if isinstance(coding, list):
        for c in coding:
            if isinstance(c, dict):
                for key in ("code", "display"):
                    s = c.get(key)
                    if isinstance(s, str):
                        out.append(s)
    text = cc.get("text")
    if isinstance(text, str):
        out.append(text)
    return out


def _observation_kind(o: dict[str, Any], where: str) -> tuple[str | None, list[str]]:
    code = o.get("code")
    if code is None:
        _fail(RejectReason.FHIR_INVALID, f"{where}.code: required")
    codes = _loinc_codes(code, f"{where}.code")
    kinds = {LOINC_TO_FIELD[c] for c in codes if c in LOINC_TO_FIELD}
    if len(kinds) > 1:
        _fail(
            RejectReason.FHIR_INVALID,
            f"{where}.code: codings map to different vitals ({', '.join(sorted(kinds))})",
        )
    if kinds:
        return kinds.pop(), codes
    # Level of consciousness under another code: the code must say so in its text/display.
    label = " ".join(s.casefold() for s in _cc_texts(code))
    if any(h in label for h in _ACVPU_CODE_HINTS):
        return "consciousness", codes
    return None, codes


def _field_label(kind: str) -> str:
    if kind == _O2_FLOW:
        return "oxygen flow (on_oxygen)"
    if kind == _BP_PANEL:
        return "blood pressure panel"
    return kind


def _acvpu(vkey: str, value: object, where: str) -> str:
    if vkey == "valueString":
        if not isinstance(value, str):
            _fail(RejectReason.FHIR_INVALID, f"{where}.valueString: must be a string")
        candidates = [value]
    elif vkey == "valueCodeableConcept":
        if not isinstance(value, dict):
            _fail(RejectReason.FHIR_INVALID, f"{where}.valueCodeableConcept: must be an object")
        _loinc_codes(value, f"{where}.valueCodeableConcept")  # shape check only
        candidates = _cc_texts(value)
    else:
        _fail(
            RejectReason.FHIR_UNSUPPORTED,
            f"{where}: consciousness must be a valueCodeableConcept or valueString, not {vkey}",
        )
    found = {a for s in candidates if (a := _ACVPU_WORDS.get(_norm_word(s))) is not None}
    if not found:
        _fail(
            RejectReason.FHIR_UNSUPPORTED,
            f"{where}: consciousness value is not one of A, C, V, P, U "
            "(or Alert, Confusion, Voice, Pain, Unresponsive)",
        )
    if len(found) > 1:
        _fail(RejectReason.INCONSISTENT, f"{where}: consciousness codings disagree")
    return found.pop()


_PAREN_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")


def _norm_word(s: str) -> str:
    return _PAREN_SUFFIX.sub("", s).strip().casefold()
