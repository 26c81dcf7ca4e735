"""Alert explanations: why an alert fired, in words a nurse reads in five seconds.

:func:`explain` turns one scored observation into a JSON-ready dict: a one-sentence
summary, the NEWS2 breakdown, the parameters that drove it (with units, NEWS2 points and
the distance from this patient's own baseline), the NEWS2 trend, the fused risk beside the
deterioration model's own risk with what each part adds to it (the model's feature
contributions only where its risk carries weight), the NEWS2 guideline response for the risk tier, and the readings
to check: a clinically extreme value the score used ("verify reading: systolic BP 36
mmHg", limits of :mod:`wardwatch.ingest.limits`) and a reading ingest set aside.

Rules kept here on purpose:

* no patient identifier anywhere in the texts (the summary travels to pagers and logs);
* the response is the NEWS2 guideline response (RCP 2017) and the minimum observation
  frequency, never a treatment order; a model or personalized trigger adds a note that
  the guideline response still applies and clinical judgement decides the rest.

The module is pure and depends only on the data types of :mod:`alerts.state`, never on
the policy (the policy imports this module), so the few policy numbers it needs are
keyword arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from alerts.state import RANK, TRIGGERS
from wardwatch.ingest import extreme_readings

if TYPE_CHECKING:  # pragma: no cover
    from alerts.state import AlertState, Observation

__all__ = [
    "TRIGGERS",
    "VITAL_INFO",
    "action_explanation",
    "explain",
    "explain_recent",
    "format_value",
    "lower_first",
    "news2_rise",
    "reading_flags",
    "trend_window_min",
]

# vital field -> (label, unit, decimals, NEWS2 parameter or None)
VITAL_INFO: Final[Mapping[str, tuple[str, str | None, int, str | None]]] = {
    "respiratory_rate_per_min": ("Respiratory rate", "/min", 0, "respiration_rate"),
    "spo2_pct": ("SpO2", "%", 0, "spo2"),
    "on_oxygen": ("Supplemental oxygen", None, 0, "air_or_oxygen"),
    "systolic_bp_mmhg": ("Systolic blood pressure", "mmHg", 0, "systolic_bp"),
    "diastolic_bp_mmhg": ("Diastolic blood pressure", "mmHg", 0, None),
    "heart_rate_bpm": ("Pulse", "/min", 0, "pulse"),
    "consciousness": ("Consciousness", None, 0, "consciousness"),
    "temperature_c": ("Temperature", "°C", 1, "temperature"),
}
"""How each vitals field is named and shown; order = the order drivers are listed in."""

_SHORT_LABEL: Final[Mapping[str, str]] = {
    "respiratory_rate_per_min": "respiratory rate",
    "spo2_pct": "SpO2",
    "systolic_bp_mmhg": "systolic BP",
    "diastolic_bp_mmhg": "diastolic BP",
    "heart_rate_bpm": "pulse",
    "temperature_c": "temperature",
}

_ACVPU: Final[Mapping[str, str]] = {
    "A": "alert",
    "C": "new confusion",
    "V": "responds to voice only",
    "P": "responds to pain only",
    "U": "unresponsive",
}

_NEWS2_LABEL: Final[Mapping[str, str]] = {
    "respiration_rate": "respiratory rate",
    "spo2": "SpO2",
    "air_or_oxygen": "air or oxygen",
    "systolic_bp": "systolic BP",
    "pulse": "pulse",
    "consciousness": "consciousness",
    "temperature": "temperature",
}

_PRIORITY_WORDS: Final[Mapping[str, str]] = {
    "high": "High priority",
    "medium": "Medium priority",
    "low": "Low priority (for awareness)",
}

_TRIGGER_NOTE_NAMES: Final[Mapping[str, str]] = {
    "news2_trend": "a rising NEWS2 trend",
    "baseline_deviation": "a sustained change from this patient's own baseline",
    "model_risk": "the deterioration model",
}

_MAX_CONTRIBUTIONS: Final = 10


# ---------------------------------------------------------------------------------------
# Small shared helpers (also used by the policy)
# ---------------------------------------------------------------------------------------


def trend_window_min(recent: Sequence[Sequence[int]], ts_ms: int, window_s: float) -> int | None:
    """Lowest NEWS2 total recorded in ``[ts_ms - window, ts_ms)`` (None: no entry)."""
    start = ts_ms - int(window_s * 1000)
    prior = [int(total) for t, total in recent if start <= int(t) < ts_ms]
    return min(prior) if prior else None


def news2_rise(
    recent: Sequence[Sequence[int]], ts_ms: int, total: int | None, window_s: float
) -> int:
    """How far ``total`` (at ``ts_ms``) is above the lowest total in the preceding window.

    ``recent`` is a list of ``(ts_ms, total)``; entries at or after ``ts_ms`` are ignored,
    so the state before or after the current observation was appended gives the same
    answer. 0 when there is no earlier entry or the score did not rise.
    """
    if total is None:
        return 0
    low = trend_window_min(recent, ts_ms, window_s)
    return 0 if low is None else max(0, int(total) - low)


def format_value(value: Any, decimals: int = 0) -> str:
    """A vital's value as a nurse writes it: whole numbers, temperature to 0.1."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(float(value)):
        return str(value)
    if decimals <= 0:
        return str(round(float(value)))
    return f"{float(value):.{decimals}f}"


def lower_first(text: str) -> str:
    """``text`` with its first letter in lower case, to follow a prefix ("...; high ...")."""
    return text[:1].lower() + text[1:] if text else text


def _with_unit(number: str, unit: str | None) -> str:
    if not unit:
        return number
    return f"{number}{unit}" if unit == "%" else f"{number} {unit}"


def _delta_text(delta: float, unit: str | None, decimals: int) -> str:
    magnitude = format_value(abs(delta), decimals)
    if unit == "/min":
        return f"{magnitude}/min"
    return _with_unit(magnitude, unit)


def _points_text(points: int | None) -> str:
    if points is None:
        return ""
    return f" ({points} point{'s' if points != 1 else ''})"


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------


def _drivers(
    obs: Observation, baseline_z_threshold: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """The parameters that explain the score, and the short phrases for the summary."""
    comps = obs.news2.components
    rows: list[tuple[tuple[float, float, int], dict[str, Any], str]] = []
    for order, (name, (label, unit, decimals, param)) in enumerate(VITAL_INFO.items()):
        value = obs.vitals.get(name)
        if value is None:
            continue
        points = comps.get(param) if param is not None else None
        z = _finite(obs.baseline_z.get(name))
        deviating = z is not None and abs(z) >= baseline_z_threshold
        if not (points or deviating):
            continue
        row: dict[str, Any] = {
            "parameter": name,
            "label": label,
            "value": value,
            "unit": unit,
            "points": points,
        }
        if name == "on_oxygen":
            text = ("On supplemental oxygen" if value else "On room air") + _points_text(points)
            short = "supplemental oxygen" if value else "room air"
        elif name == "consciousness":
            word = _ACVPU.get(str(value), str(value))
            text = f"Consciousness: {word} (ACVPU {value}){_points_text(points)}"
            short = word
        else:
            shown = _with_unit(format_value(value, decimals), unit)
            text = f"{label} {shown}{_points_text(points)}"
            short = f"{_SHORT_LABEL.get(name, label.lower())} {shown}"
            mean = _finite(obs.baseline_mean.get(name))
            fvalue = _finite(value)
            if mean is not None and fvalue is not None:
                delta = fvalue - mean
                row["baseline_mean"] = round(mean, decimals if decimals else 1)
                row["delta_from_baseline"] = round(delta, 1)
                if round(abs(delta), max(decimals, 0)) == 0:
                    text += ", at this patient's baseline"
                else:
                    side = "above" if delta > 0 else "below"
                    text += f", {_delta_text(delta, unit, decimals)} {side} this patient's baseline"
                    if deviating:
                        short += f" ({_delta_text(delta, unit, decimals)} {side} usual)"
            elif deviating and z is not None:
                side = "above" if z > 0 else "below"
                text += f", well {side} this patient's baseline ({z:+.1f} SD)"
                short += f" ({side} usual)"
        if z is not None:
            row["z"] = round(z, 2)
        row["text"] = text
        key = (-float(points or 0), -abs(z or 0.0), order)
        rows.append((key, row, short))
    rows.sort(key=lambda r: r[0])
    return [r[1] for r in rows], [r[2] for r in rows]


# ---------------------------------------------------------------------------------------
# Readings to verify, readings set aside
# ---------------------------------------------------------------------------------------

_ASIDE_WHY: Final[Mapping[str, str]] = {
    "impossible": "outside the possible range",
    "inconsistent": "systolic not above diastolic",
}


def _reading_text(name: str, value: float) -> str:
    if name == "on_oxygen":  # set aside by its oxygen flow
        return f"oxygen flow {_with_unit(format_value(value, 1), 'L/min')}"
    label, unit, decimals, _ = VITAL_INFO.get(name, (name, None, 1, None))
    return (
        f"{_SHORT_LABEL.get(name, label.lower())} {_with_unit(format_value(value, decimals), unit)}"
    )


def reading_flags(obs: Observation) -> list[dict[str, Any]]:
    """The readings of ``obs`` a nurse must know about: every clinically extreme value the
    score used (``verify reading: systolic BP 36 mmHg``), then every reading ingest set
    aside from this observation (impossible or inconsistent: not scored)."""
    out: list[dict[str, Any]] = []
    for name, value in extreme_readings(obs.vitals):
        out.append(
            {
                "parameter": name,
                "value": value,
                "tier": "extreme",
                "set_aside": False,
                "text": f"verify reading: {_reading_text(name, value)}",
            }
        )
    for flag in obs.flags:
        if not flag.set_aside:
            continue  # an extreme one is listed above when the score uses it
        finite = math.isfinite(flag.value)
        what = (
            _reading_text(flag.field, flag.value)
            if finite
            else _SHORT_LABEL.get(flag.field, flag.field)
        )
        why = _ASIDE_WHY.get(flag.tier, flag.tier) if finite else "not a finite number"
        out.append(
            {
                "parameter": flag.field,
                "value": flag.value if finite else None,
                "tier": flag.tier,
                "set_aside": True,
                "text": f"set aside, not scored: {what} ({why})",
            }
        )
    return out


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


_HYPERCAPNIC = frozenset({"copd", "hypercapnic_respiratory_failure", "obesity_hypoventilation"})


def context_notes(context: Mapping[str, Any], spo2_scale: int) -> dict[str, Any]:
    """What the patient's context (ADT) adds to an explanation; it never changes the
    score. The age band, documented conditions and ward are shown as context. A condition
    that can cause hypercapnic respiratory failure while SpO2 scale 1 is in use adds a
    prompt to review the prescribed oxygen target: NEWS2 uses scale 2 (88–92 %) only when
    a clinician has prescribed that target (RCP 2017), never because a condition is
    listed, so wardwatch does not switch scales by itself."""
    out: dict[str, Any] = {}
    band = context.get("age_band")
    if band:
        out["age_band"] = str(band)
    conditions = [str(c) for c in context.get("conditions") or []]
    if conditions:
        out["conditions"] = conditions
    if context.get("ward"):
        out["ward"] = str(context["ward"])
    risk = sorted(set(c.lower() for c in conditions) & _HYPERCAPNIC)
    if risk and spo2_scale != 2:
        out["spo2_scale_note"] = (
            f"{', '.join(r.replace('_', ' ') for r in risk)} documented and SpO2 scale 1 in "
            "use: if a clinician has prescribed a target of 88-92%, record SpO2 scale 2 "
            "(NEWS2 then scores SpO2 against that target)."
        )
    return out


def _model_part(obs: Observation) -> dict[str, Any] | None:
    """The model's share of the explanation: the fused risk the policy used, the
    deterioration model's own risk beside it, what NEWS2 and the model each add to it
    (log-odds), and the feature contributions, which explain the model's own risk and are
    shown only where that risk carries weight in the fused one."""
    risk = _finite(obs.model_risk)
    if risk is None:
        return None
    own = _finite(obs.model_own_risk)
    parts = {str(k): round(float(v), 4) for k, v in (obs.risk_parts or {}).items()}
    carries = not parts or parts.get("model", 0.0) != 0.0  # no stacking: the model's own
    contributions: dict[str, float] = {}
    if carries:
        contributions = {
            str(k): round(float(v), 4)
            for k, v in sorted(
                (obs.model_contributions or {}).items(), key=lambda kv: -abs(float(kv[1]))
            )[:_MAX_CONTRIBUTIONS]
            if _finite(v) is not None
        }
    top = [
        _SHORT_LABEL.get(k, VITAL_INFO[k][0].lower() if k in VITAL_INFO else k)
        for k, v in contributions.items()
        if v > 0
    ][:2]
    if not parts:  # the fused risk is the model's own
        text = f"deterioration model risk {round(risk * 100)}%"
        if top:
            text += f", mostly from {_join(top)}"
    elif not carries:
        text = (
            f"combined risk {round(risk * 100)}% from NEWS2 alone "
            "(the deterioration model carries no weight in this version)"
        )
    else:
        text = f"combined risk {round(risk * 100)}% from NEWS2 and the deterioration model"
        if own is not None:
            text += f" (its own risk {round(own * 100)}%"
            text += f", mostly from {_join(top)})" if top else ")"
    if parts.get("imaging"):
        text += ", shifted by the imaging finding"
    return {
        "risk": round(risk, 4),  # the fused risk: what the policy's thresholds apply to
        "own_risk": None if own is None else round(own, 4),
        "version": obs.model_version,
        "parts": parts or None,
        "carries_weight": carries,
        "contributions": contributions,
        "text": text,
    }


def explain(
    patient_id: str,
    obs: Observation,
    state: AlertState,
    priority: str,
    reasons: list[str],
    *,
    trend_window_s: float = 6 * 3600.0,
    baseline_z_threshold: float = 3.0,
    max_summary_drivers: int = 3,
) -> dict[str, Any]:
    """Explain ``obs`` at ``priority`` for ``reasons`` (JSON-ready, no patient id in texts).

    ``state`` supplies the recent NEWS2 history for the trend (entries at or after
    ``obs.ts_ms`` are ignored, so the state before or after the observation both work).
    ``patient_id`` is accepted for symmetry with the policy and deliberately not used.
    """
    del patient_id  # never part of an explanation text
    return explain_recent(
        obs,
        state.recent_news2,
        priority,
        reasons,
        trend_window_s=trend_window_s,
        baseline_z_threshold=baseline_z_threshold,
        max_summary_drivers=max_summary_drivers,
    )


def explain_recent(
    obs: Observation,
    recent_news2: Sequence[Sequence[int]],
    priority: str,
    reasons: Sequence[str],
    *,
    trend_window_s: float = 6 * 3600.0,
    baseline_z_threshold: float = 3.0,
    max_summary_drivers: int = 3,
) -> dict[str, Any]:
    """:func:`explain` with the recent NEWS2 history (``AlertState.recent_news2``) in
    place of the state: a new dict on every call, from these arguments alone."""
    n2 = obs.news2
    drivers, shorts = _drivers(obs, baseline_z_threshold)

    rise = news2_rise(recent_news2, obs.ts_ms, n2.total if n2.complete else None, trend_window_s)
    trend: dict[str, Any] | None = None
    window_h = round(trend_window_s / 3600.0, 2)
    if rise > 0 and n2.total is not None:
        trend = {
            "news2_rise": rise,
            "window_h": window_h,
            "from": int(n2.total) - rise,
            "to": int(n2.total),
        }

    model = _model_part(obs)

    # --- the sentence ---------------------------------------------------------------
    if n2.total is None:
        news = "NEWS2 not calculable (no scorable observation)"
    else:
        news = f"NEWS2 {n2.total}"
        if not n2.complete:
            missing = ", ".join(_NEWS2_LABEL.get(m, m) for m in n2.missing)
            news += f" from a partial set (missing {missing})"
    if trend is not None:
        news += f", up {rise} in the last {window_h:g} h"
    if n2.single_param_3 and (n2.total is None or n2.total < 5):
        news += ", with one parameter scoring 3"
    parts = [news]
    scoring = [s for d, s in zip(drivers, shorts, strict=True) if d["points"]]
    if scoring:
        parts.append("driven by " + _join(scoring[:max_summary_drivers]))
    unusual = [
        s
        for d, s in zip(drivers, shorts, strict=True)
        if not d["points"] and abs(d.get("z") or 0.0) >= baseline_z_threshold
    ]
    if unusual:
        parts.append(_join(unusual[:max_summary_drivers]) + " unusual for this patient")
    if model is not None:
        parts.append(model["text"])
    readings = reading_flags(obs)
    parts.extend(r["text"] for r in readings)
    summary = f"{_PRIORITY_WORDS.get(priority, priority)}: " + "; ".join(parts) + "."

    response: dict[str, Any] = {
        "text": n2.response,
        "min_obs_frequency": n2.min_obs_frequency,
        "risk": n2.risk,
        "source": "NEWS2, Royal College of Physicians 2017",
    }
    raised_by = [r for r in reasons if r in _TRIGGER_NOTE_NAMES]
    if RANK.get(priority, 0) > RANK.get(n2.priority, 0) and raised_by:
        names = _join([_TRIGGER_NOTE_NAMES[r] for r in raised_by])
        response["note"] = (
            f"Priority raised above the NEWS2 level by {names}: a prompt to assess the "
            "patient. The NEWS2 response above is the guideline response; clinical "
            "judgement decides any further escalation."
        )

    personal: dict[str, Any] = {
        "spo2_scale": n2.spo2_scale,
        "baseline_observations": int(obs.baseline_n),
    }
    if n2.spo2_scale == 2:
        personal["spo2_target"] = "88-92% (SpO2 scale 2, clinician-documented)"
    personal.update(context_notes(obs.context, n2.spo2_scale))

    return {
        "summary": summary,
        "priority": priority,
        "reasons": list(reasons),
        "triggers": [r for r in reasons if r in TRIGGERS],
        "news2": n2.to_dict(),
        "drivers": drivers,
        "trend": trend,
        "model": model,
        "response": response,
        "personal": personal,
        "reading_flags": readings,
        "observation_ts_ms": int(obs.ts_ms),
    }


def action_explanation(
    previous: Mapping[str, Any] | None, priority: str, reasons: list[str], summary: str
) -> dict[str, Any]:
    """The explanation of a transition without a new observation (acknowledge, manual
    resolve, escalation because nobody acknowledged): the latest observation's
    explanation with a new summary, priority and reasons."""
    if previous is None:
        return {
            "summary": summary,
            "priority": priority,
            "reasons": list(reasons),
            "news2": None,
            "drivers": [],
            "trend": None,
            "model": None,
            "response": {
                "text": "Follow the NEWS2 response for this patient's latest score.",
                "min_obs_frequency": "as per the latest NEWS2 score",
                "risk": None,
                "source": "NEWS2, Royal College of Physicians 2017",
            },
            "triggers": [],
            "personal": None,
            "reading_flags": [],
            "observation_ts_ms": None,
        }
    out = dict(previous)
    out.setdefault("triggers", [r for r in previous.get("reasons") or [] if r in TRIGGERS])
    out["summary"] = summary
    out["priority"] = priority
    out["reasons"] = list(reasons)
    return out
