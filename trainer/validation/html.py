"""The validation report as one self-contained HTML page: tables and inline SVG plots
(ROC, reliability), no external assets, no JavaScript. It renders the report dict of
:func:`trainer.validation.run.validate_export` and computes nothing new; the same report
gives the same page, byte for byte."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from trainer.svg import unit_plot

__all__ = ["report_html"]

_BLUE, _RED = "#2563eb", "#dc2626"


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return _e(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _ci(m: dict[str, Any] | None) -> str:
    if not m or m.get("value") is None:
        return "n/a"
    ci = m.get("ci")
    interval = f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else ""
    return f"{_f(m['value'])}{interval}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _discrimination(d: dict[str, Any], caption: str) -> str:
    fused = d.get("fused")
    rows = [
        ["AUROC", _ci(d["news2"]["auroc"]), _ci(fused["auroc"]) if fused else "no model"],
        ["AUPRC", _ci(d["news2"]["auprc"]), _ci(fused["auprc"]) if fused else "no model"],
    ]
    diff = (d.get("difference") or {}).get("auroc")
    text = ""
    if diff:
        text = (
            f"<p>AUROC fused &minus; NEWS2: <b>{_ci(diff)}</b> (paired bootstrap; "
            f"{_pct(diff.get('share_le_0'))} of resamples &le; 0).</p>"
        )
    return f"<h3>{_e(caption)}</h3>" + _table(["", "NEWS2 (partial)", "fused risk"], rows) + text


def _burden(a: dict[str, Any]) -> str:
    pri = ("low", "medium", "high")
    rows = [
        ["opened (OPEN)", *(_f(a["opened_by_priority"].get(p)) for p in pri), _f(a["opened"])],
        [
            "escalated (ESCALATED)",
            *(_f(a["escalated_by_priority"].get(p)) for p in pri),
            _f(a["by_transition"].get("ESCALATED")),
        ],
    ]
    return (
        _table(["transitions", *pri, "all"], rows)
        + f"<p>{_f(a['patient_days'], 1)} patient-days: <b>{_f(a.get('alerts_per_patient_day'), 2)}</b> "
        f"alerts and <b>{_f(a.get('pages_per_patient_day'), 2)}</b> pages (transitions that page: "
        f"high at once, medium once the model or a repeat set bears it out; a care team "
        f"acknowledging within 10 min) per patient-day; {_f(a['patients_paged'])} patients paged; "
        f"{_f(a['after_last_observation'])} transitions after a patient's last observation "
        "not counted.</p>"
    )


def _ingest(g: dict[str, Any]) -> str:
    rej = g["rejected"]
    rows = [
        ["rows read", _f(g["rows"])],
        ["rows without any vital sign (not sent)", _f(g["rows_without_vitals"])],
        ["messages sent", _f(g["messages"])],
        ["accepted", _f(g["accepted"])],
        ["rejected (dead-lettered)", _f(rej["total"])],
        ["readings set aside (rest of the row scored)", _f(g["readings_set_aside"]["total"])],
        ["readings scored, flagged to verify", _f(g["readings_to_verify"]["total"])],
        ["events scored", _f(g["events_scored"])],
        ["duplicates skipped", _f(g["skipped"]["duplicate"])],
    ]
    out = _table(["ingest", "count"], rows)
    if rej["by_reason"]:
        out += "<h4>Rejected</h4>" + _table(
            ["reason", "rows"], [[_e(k), _f(v)] for k, v in rej["by_reason"].items()]
        )
        out += _table(
            ["row", "reason", "detail"],
            [
                [_f(x["row"]), _e(x["reason"]), f'<span class="text">{_e(x["detail"])}</span>']
                for x in rej["examples"]
            ],
        )
    aside = g["readings_set_aside"]["by_field"]
    if aside:
        out += "<h4>Readings set aside</h4>" + _table(
            ["field", "tier", "readings"],
            [[_e(f), _e(t), _f(n)] for f, tiers in aside.items() for t, n in tiers.items()],
        )
    verify = g["readings_to_verify"]["by_field"]
    if verify:
        out += "<h4>Readings to verify (scored)</h4>" + _table(
            ["field", "readings"], [[_e(f), _f(n)] for f, n in verify.items()]
        )
    return out


def _task(name: str, t: dict[str, Any]) -> str:
    c, s, lt = t["cohort"], t["sensitivity"], t["lead_time"]
    parts = [
        f"<h2>{_e(name)}</h2><p>{_e(t['label'])}.</p>",
        f"<p>{_f(c['patients'])} patients ({_f(c['positive_patients'])} positive), "
        f"{_f(c['points_evaluated'])} labelled points scored ({_f(c['positive_points'])} "
        f"positive, prevalence {_pct(c['prevalence'])}); {_f(c['points_without_score'])} "
        "without a score.</p>",
    ]
    if t.get("verdict"):
        parts.append(f"<p class=verdict><b>Verdict:</b> {_e(t['verdict']['text'])}.</p>")
    parts.append(_discrimination(t["discrimination"], "Discrimination, score at the label time"))
    recal = t.get("discrimination_recalibrated")
    if recal and recal.get("news2"):
        kept = "kept" if recal.get("uses_model") else "dropped: the fused risk ranks as NEWS2"
        parts.append(
            _discrimination(
                recal,
                "Discrimination after local recalibration (the stacking refitted on this "
                f"export, cross-fitted by patient; the model's term {kept})",
            )
        )
    if t.get("discrimination_max"):
        parts.append(
            _discrimination(t["discrimination_max"], "Discrimination, highest score of the window")
        )
    missing = t["news2"]["missing_share"]
    if missing:
        parts.append(
            "<p>NEWS2 parameters missing (share of points): "
            + ", ".join(f"{_e(k)} {_pct(v)}" for k, v in missing.items())
            + ".</p>"
        )
    roc = t["roc"]
    d = t["discrimination"]
    series = [("NEWS2 (AUROC " + _f(d["news2"]["auroc"]["value"]) + ")", _RED, roc["news2"])]
    if d.get("fused"):
        series.insert(
            0, ("fused (AUROC " + _f(d["fused"]["auroc"]["value"]) + ")", _BLUE, roc["fused"])
        )
    plots = [
        unit_plot(
            series,
            title="ROC",
            x_label="false positive rate",
            y_label="true positive rate",
            dots=False,
            legend_at=(0.45, 0.12),
        )
    ]
    cal = t.get("calibration")
    if cal:
        pts = [
            [b["mean_predicted"], b["observed_rate"]]
            for b in cal["bins"]
            if b["n"] and b["mean_predicted"] is not None
        ]
        plots.append(
            unit_plot(
                [(f"fused (ECE {_f(cal['ece'])})", _BLUE, pts)],
                title="Reliability (10 bins)",
                x_label="mean fused risk",
                y_label="observed rate",
                dots=True,
                legend_at=(0.04, 0.92),
            )
        )
    parts.append('<div class="plots">' + "".join(plots) + "</div>")
    if cal:
        parts.append(
            f"<p>Calibration: ECE {_f(cal['ece'])}, Brier {_f(cal['brier'], 4)}.</p>"
            + _table(
                ["bin", "n", "mean fused risk", "observed rate"],
                [
                    [
                        f"{b['bin'][0]:.1f}&ndash;{b['bin'][1]:.1f}",
                        _f(b["n"]),
                        _f(b["mean_predicted"]),
                        _f(b["observed_rate"]),
                    ]
                    for b in cal["bins"]
                ],
            )
        )
    parts += [
        "<h3>Alerts from the replayed policy</h3>",
        _burden(t["alerts"]),
        f"<p>Sensitivity at this burden: {_f(s['detected_points'])}/{_f(s['positive_points'])} "
        f"positive points had a page in the {_f(s['window_h'], 0)} h before them "
        f"(<b>{_pct(s['sensitivity'])}</b>); {_f(s['detected_patients'])}/"
        f"{_f(s['positive_patients'])} positive patients ({_pct(s['sensitivity_patients'])}); "
        f"{_pct(s['negative_points_paged'])} of negative points had one too.</p>",
        (
            f"<p>Median lead time: <b>{_f(lt['median_h'], 1)} h</b> (first page within "
            f"{_f(lt['lookback_h'], 0)} h before the {_e(lt['onset'])}; "
            f"{_f(lt['detected'])}/{_f(lt['positives'])} positives paged).</p>"
            if lt.get("median_h") is not None
            else f"<p>Lead time: n/a ({_e(lt.get('reason', 'no positive paged before onset'))}).</p>"
        ),
        "<h3>Ingest</h3>",
        _ingest(t["ingest"]),
    ]
    for note in t.get("notes", []):
        parts.append(f"<p><i>{_e(note)}</i></p>")
    return "".join(parts)


def report_html(report: dict[str, Any]) -> str:
    """The page of ``report``."""
    m = report["model"]
    model = (
        f"model {_e(m['name'])} {_e(m['version'])} (sha256 {_e(str(m.get('sha256'))[:12])})"
        if m.get("version")
        else f"no model ({_e(m.get('reason'))}): NEWS2 only"
    )
    method = report["method"]
    tasks = "".join(_task(name, t) for name, t in report["tasks"].items())
    notes = "".join(f"<li>{_e(n)}</li>" for n in report["notes"])
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>wardwatch validation: {_e(report["export"]["path"])}</title>
<style>body{{font:14px system-ui,sans-serif;max-width:62rem;margin:2rem auto;color:#111}}
table{{border-collapse:collapse;margin:.5rem 0 1rem}}td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}span.text{{display:block;text-align:left}}.plots{{display:flex;gap:1rem;flex-wrap:wrap}}
h2{{border-top:2px solid #ddd;padding-top:1rem}}</style></head>
<body><h1>Silent-mode validation</h1>
<p>Export <code>{_e(report["export"]["path"])}</code> ({_e(", ".join(report["export"]["format"]))}),
replayed through the worker's scoring path: {model}. Intervals are 95 % bootstrap
percentile intervals over {_f(method["bootstrap_resamples"])} resamples of patients
(seed {_f(method["seed"])}).</p>
<ul>{notes}</ul>
{tasks}
</body></html>
"""
