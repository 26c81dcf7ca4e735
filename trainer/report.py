"""Readable reports of a held-out evaluation: Markdown, and one HTML page with plots.

Both render the dict :func:`trainer.evaluate.evaluate` returns (with the registry
metadata, and for HTML optionally the external check of :mod:`trainer.external`); they
compute nothing new. The plots are inline SVG, so no plotting library is needed.
"""

from __future__ import annotations

import math
from typing import Any

from trainer.evaluate import NEWS2_THRESHOLD
from trainer.svg import unit_plot

__all__ = ["grounding_lines", "report_html", "report_markdown"]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(block: dict[str, Any]) -> list[str]:
    rows = [
        ("AUROC", "auroc"),
        ("AUPRC", "auprc"),
        ("threshold", "threshold"),
        ("alert rate (fraction of observations)", "alert_rate"),
        ("sensitivity at that rate", "sensitivity"),
        ("PPV at that rate", "ppv"),
        ("alerts (threshold crossings)", "alerts"),
        ("alerts per patient-day", "alerts_per_patient_day"),
        ("median lead time (h)", "median_lead_time_h"),
        ("outcomes detected / with outcome", None),
    ]
    cols = [c for c in ("model", "fused", "news2") if c in block]
    names = {"model": "model", "fused": "fused (stacked on NEWS2)", "news2": "NEWS2"}
    out = [
        "| metric | " + " | ".join(names[c] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for label, key in rows:
        if key is None:
            cells = [
                f"{block[c]['detected_outcomes']}/{block[c]['patients_with_outcome']}" for c in cols
            ]
        else:
            cells = [_fmt(block[c][key]) for c in cols]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def _ci(ci: Any) -> str:
    return "n/a" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def comparison_lines(metrics: dict[str, Any]) -> list[str]:
    """The AUROC comparisons with NEWS2 (paired bootstrap by patient), as Markdown."""
    rows = [
        (label, metrics[key])
        for label, key in (("fused", "fused_vs_news2"), ("model", "model_vs_news2"))
        if metrics.get(key)
    ]
    if not rows:
        return []
    first = rows[0][1]
    lines = [
        "## AUROC vs NEWS2 (95 % intervals, paired bootstrap resampling patients)",
        "",
        f"{first['n_boot']} replicates over {first['patients']} patients.",
        "",
        "| score | AUROC | 95 % CI | NEWS2 AUROC | 95 % CI | difference | 95 % CI |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, c in rows:
        lines.append(
            f"| {label} | {_fmt(c['auroc'])} | {_ci(c['ci'])} | {_fmt(c['news2_auroc'])} "
            f"| {_ci(c['news2_ci'])} | {_fmt(c['difference'])} | {_ci(c['difference_ci'])} |"
        )
    return [*lines, ""]


def operating_lines(
    points: dict[str, Any] | None, test: dict[str, Any] | None, *, test_name: str = "test"
) -> list[str]:
    """The operating points (calibration split) and the same thresholds on the test split
    (``test_name``)."""
    if not points:
        return []
    lines = [
        "## Operating points (the alert policy's model-risk thresholds)",
        "",
        f"Chosen on the {points['split']} split: medium {points['medium']:.4f}, high "
        f"{points['high']:.4f} on the fused risk; budget {_fmt(points['budget'])} pages per "
        f"patient-day (high: {_fmt(points['high_fraction'])} of it), one-sided 95 % bounds "
        f"(Garwood for pages, Clopper-Pearson for sensitivity); sensitivity floor "
        f"{_fmt(points['sensitivity_floor'])} ({points['sensitivity_floor_source']}); a patient "
        f"is detected when the fused risk reaches medium{_news2_detects(points)} within "
        f"{_fmt(points['window_h'])} h before the outcome.",
        "",
        *_counting_lines(points),
        "| split | patients | patient-days | pages/patient-day | upper bound | high pages/patient-day "
        "| upper bound | sensitivity | lower bound | NEWS2 >= 5 sensitivity | NEWS2 >= 5 pages/patient-day |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, b in ((points["split"], points), (test_name, test)):
        if not b:
            continue
        lines.append(
            f"| {name} | {b['patients']} | {_fmt(b['patient_days'])} "
            f"| {_fmt(b['pages_per_patient_day'])} | {_fmt(b['upper_bound'])} "
            f"| {_fmt(b['high_pages_per_patient_day'])} | {_fmt(b['high_upper_bound'])} "
            f"| {_fmt(b['sensitivity'])} ({b['detected']}/{b['patients_with_outcome']}) "
            f"| {_fmt(b['sensitivity_lower_bound'])} | {_fmt(b['news2_ge5_sensitivity'])} "
            f"| {_fmt(b['news2_ge5_pages_per_patient_day'])} |"
        )
    return [*lines, ""]


def _news2_detects(points: dict[str, Any]) -> str:
    n2 = (points.get("counting") or {}).get("news2_high")
    return "" if n2 is None else f" or NEWS2 reaches {n2}"


def _counting_lines(points: dict[str, Any]) -> list[str]:
    """How the pages were counted and, where chosen under it, the first-day budget."""
    counting = points.get("counting") or {}
    out = [f"Pages counted from: {counting.get('trigger', 'the fused risk alone')}."]
    if points.get("stable_first_day_upper_bound") is not None:
        out[0] += (
            f" Patients without an outcome paged within their first "
            f"{_fmt(counting.get('first_day_h'))} h: {points['stable_first_day_paged']}/"
            f"{points['patients_without_outcome']} (upper bound "
            f"{_fmt(points['stable_first_day_upper_bound'])}, budget "
            f"{_fmt(points.get('stable_first_day_fraction_budget'))})."
        )
    return [*out, ""]


def stacking_lines(fusion: dict[str, Any] | None, *, split: str = "calibration split") -> list[str]:
    st = (fusion or {}).get("stacking")
    if not st:
        return []
    sel = st.get("selection", {})
    n2, both = sel.get("news2_only", {}), sel.get("with_model", {})
    return [
        "## Fused risk: stacked on NEWS2",
        "",
        f"`logit(fused) = {st['a']:.4f} + {st['b']:.4f} · NEWS2 + {st['c']:.4f} · logit(p_model)` "
        f"(`{st['tag']}`), fitted on the {split} "
        f"({(st.get('fit_on') or {}).get('patients', 'n/a')} patients). The model's term is "
        f"{'kept' if st.get('uses_model') else 'dropped (c = 0: the fused risk ranks as NEWS2)'}: "
        f"{sel.get('folds', 'n/a')}-fold cross-validation by patient, out-of-fold log-loss "
        f"{_fmt(both.get('log_loss'))} with the model vs {_fmt(n2.get('log_loss'))} NEWS2 "
        f"alone, AUROC {_fmt(both.get('auroc'))} vs NEWS2's {_fmt(n2.get('auroc'))}.",
        "",
    ]


_GROUNDING_RUNS = (
    ("before", "simulator, hand-chosen (before)"),
    ("after", "simulator, trained on (after)"),
    ("export_charting", "after, charted as the export"),
)
_VITAL_NAMES = {
    "heart_rate_bpm": "Heart rate (/min)",
    "respiratory_rate_per_min": "Respiratory rate (/min)",
    "spo2_pct": "SpO2 (%)",
    "systolic_bp_mmhg": "Systolic BP (mmHg)",
    "diastolic_bp_mmhg": "Diastolic BP (mmHg)",
    "temperature_c": "Temperature (°C)",
}


def _interval(iv: dict[str, Any] | None) -> str:
    iv = iv or {}
    return f"{_fmt(iv.get('median'))} [{_fmt(iv.get('q25'))}, {_fmt(iv.get('q75'))}]"


def grounding_lines(g: dict[str, Any] | None) -> list[str]:
    """The simulated training cohort's vitals against the MIMIC-IV demo's: per vital real
    vs the hand-chosen simulator (before) vs the one trained on (after), as Markdown."""
    if not g:
        return []
    if not g.get("available", True):
        return [
            "## Simulated vitals vs a real hospital's (MIMIC-IV demo)",
            "",
            f"Not computed: {g.get('reason', 'n/a')}.",
            "",
        ]
    ref = g["reference"]
    runs = [(k, label) for k, label in _GROUNDING_RUNS if k in g]
    cohort = g.get("cohort", {})
    lines = [
        "## Simulated vitals vs a real hospital's (MIMIC-IV demo)",
        "",
        f"Real: {ref.get('patients')} ICU stays, {ref.get('patient_hours')} stay-hours of the "
        "MIMIC-IV demo (YAIB hourly export; committed summary "
        "`trainer/reference/mimic_iv_demo_summary.json`). Simulated: the first "
        f"{cohort.get('patients')} patients of the training cohort (seed {cohort.get('seed')}), "
        f"resampled onto the same grid ({g.get('grid', 'hourly')}). Before: the same patients "
        "with the hand-chosen parameters; after: the parameters fitted to the export "
        "(`simulator/reference.json`). The export is an ICU's, the simulator a ward's: levels "
        "(centres) stay the ward's on purpose, so the distances do not go to zero. KS: "
        "two-sample Kolmogorov-Smirnov statistic; W1: Wasserstein-1 distance (unit of the "
        "vital); interval: hours between charted hours, median [IQR]; missing: share of "
        "patient-hours without a value.",
        "",
        "| figure | real | " + " | ".join(label for _, label in runs) + " |",
        "|---" * (len(runs) + 2) + "|",
    ]
    summary_rows = (
        ("mean KS over vitals", "ks_mean"),
        ("Spearman correlation, max abs diff", "spearman_max_abs_diff"),
        ("Spearman correlation, mean abs diff", "spearman_mean_abs_diff"),
        ("missingness, mean abs diff", "missing_mean_abs_diff"),
    )
    for label, key in summary_rows:
        lines.append(f"| {label} | 0 | " + " | ".join(_fmt(g[k].get(key)) for k, _ in runs) + " |")
    lines.append("")
    for vital, r in ref["vitals"].items():
        blocks = [g[k]["vitals"][vital] for k, _ in runs]
        rows: list[tuple[str, str, list[str]]] = [
            ("KS", "0", [_fmt(b.get("ks")) for b in blocks]),
            ("W1", "0", [_fmt(b.get("wasserstein")) for b in blocks]),
            ("mean", _fmt(r.get("mean")), [_fmt(b.get("mean")) for b in blocks]),
            ("sd", _fmt(r.get("sd")), [_fmt(b.get("sd")) for b in blocks]),
            *(
                (
                    f"{q}th percentile",
                    _fmt(r["quantiles"].get(q)),
                    [_fmt(b["quantiles"].get(q)) for b in blocks],
                )
                for q in ("5", "25", "50", "75", "95")
            ),
            ("missing", _fmt(r.get("missing")), [_fmt(b.get("missing")) for b in blocks]),
            (
                "interval (h)",
                _interval(r.get("interval_h")),
                [_interval(b.get("interval_h")) for b in blocks],
            ),
        ]
        lines += [
            f"### {_VITAL_NAMES.get(vital, vital)} ({r.get('dropped_impossible', 0)} impossible "
            "real values dropped)",
            "",
            "| figure | real | " + " | ".join(label for _, label in runs) + " |",
            "|---" * (len(runs) + 2) + "|",
        ]
        lines += [f"| {name} | {real} | " + " | ".join(cells) + " |" for name, real, cells in rows]
        lines.append("")
    return lines


def report_markdown(metrics: dict[str, Any], meta: dict[str, Any] | None = None) -> str:
    """A human-readable report of :func:`evaluate`'s output."""
    meta = meta or {}
    lines = [f"# {meta.get('name', 'model')} {meta.get('version', '')}".rstrip(), ""]
    if meta:
        lines += [
            f"- created: {meta.get('created_at', 'n/a')}",
            f"- training data: {meta.get('training_data', {}).get('source', {})}",
            f"- data fingerprint: `{meta.get('training_data', {}).get('fingerprint', 'n/a')}`",
            f"- code version: {meta.get('code_version', 'n/a')}",
            "",
        ]
    lines += [
        f"## Held-out test split (label: outcome within {_fmt(metrics['horizon_h'])} h)",
        "",
        f"{metrics['patients']} patients, {metrics['observations']} observations, "
        f"{metrics['positive_observations']} positive (prevalence {_fmt(metrics['prevalence'])}). "
        f"The model threshold matches the alert rate of NEWS2 >= {NEWS2_THRESHOLD}"
        + ("; the fused risk's is its medium operating point" if "fused" in metrics else "")
        + f". Lead time counts the first crossing within {_fmt(metrics['lookback_h'])} h "
        "before the outcome.",
        "",
        *_table(metrics),
        "",
        *stacking_lines(meta.get("fusion")),
        *comparison_lines(metrics),
        *operating_lines(meta.get("operating_points"), metrics.get("operating")),
        *grounding_lines(meta.get("grounding")),
        "## Calibration (10 bins of predicted risk)",
        "",
        f"Model: ECE {_fmt(metrics['calibration']['ece'])}, "
        f"Brier {_fmt(metrics['calibration']['brier'])}."
        + (
            f" Fused risk: ECE {_fmt(metrics['fused_calibration']['ece'])}, "
            f"Brier {_fmt(metrics['fused_calibration']['brier'])}."
            if metrics.get("fused_calibration")
            else ""
        ),
        "",
        "| bin | n | mean predicted | observed rate |",
        "|---|---|---|---|",
    ]
    for b in metrics["calibration"]["bins"]:
        lines.append(
            f"| {b['bin']} | {b['n']} | {_fmt(b['mean_predicted'])} | {_fmt(b['observed_rate'])} |"
        )
    sub = metrics["subgroups"]["spo2_scale2"]
    lines += ["", "## Subgroup: SpO2 scale 2 (hypercapnic) patients", ""]
    if sub.get("patients"):
        lines += [
            f"{sub['patients']} patients, {sub['observations']} observations, "
            f"{sub['positive_observations']} positive; model threshold as overall.",
            "",
            *_table(sub),
        ]
    else:
        lines.append("No scale-2 patients in the test split.")
    parity = meta.get("parity")
    if parity:
        lines += [
            "",
            "## ONNX parity (ONNX Runtime vs PyTorch, step by step)",
            "",
            f"max |risk| difference: random {parity['max_abs_diff_risk_random']:.2e}, "
            f"real {parity['max_abs_diff_risk_real']:.2e} (tolerance {parity['tolerance']:.0e}; "
            f"{parity['random_sequences']} random and {parity['real_sequences']} real sequences).",
        ]
    lines += [
        "",
        "Simulated data only: these figures say the pipeline works, not that the model is "
        "clinically valid (`wardwatch evaluate` adds the external check on real ICU data).",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# HTML report with plots (inline SVG, no plotting library needed)
# ---------------------------------------------------------------------------------------


def _html_table(block: dict[str, Any]) -> str:
    import html

    table = _table(block)
    rows = [[c.strip() for c in row.strip("|").split("|")] for row in table]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    cells = [
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cols) + "</tr>" for cols in rows[2:]
    ]
    return f"<table><tr>{head}</tr>" + "".join(cells) + "</table>"


def _md_html(lines: list[str]) -> str:
    """The few Markdown forms of the sections above (headings, tables, paragraphs)."""
    import html

    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                for r in table[2:]
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
            table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        flush()
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("### "):
            out.append(f"<h3>{html.escape(line[4:])}</h3>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "".join(out)


def report_html(
    metrics: dict[str, Any],
    meta: dict[str, Any] | None = None,
    external: dict[str, Any] | None = None,
) -> str:
    """The report as one self-contained HTML page with ROC and calibration plots."""
    import html

    meta = meta or {}
    title = html.escape(f"{meta.get('name', 'model')} {meta.get('version', '')}".strip())
    roc = metrics.get("roc") or {}
    roc_svg = unit_plot(
        [
            (f"model (AUROC {_fmt(metrics['model']['auroc'])})", "#2563eb", roc.get("model", [])),
            (f"NEWS2 (AUROC {_fmt(metrics['news2']['auroc'])})", "#dc2626", roc.get("news2", [])),
            *(
                [(f"fused (AUROC {_fmt(metrics['fused']['auroc'])})", "#16a34a", roc["fused"])]
                if roc.get("fused") and "fused" in metrics
                else []
            ),
        ],
        title="ROC, held-out observations",
        x_label="false positive rate",
        y_label="true positive rate",
    )
    calib = [
        [float(b["mean_predicted"]), float(b["observed_rate"])]
        for b in metrics["calibration"]["bins"]
        if b["n"] and b["mean_predicted"] is not None
    ]
    fcal = metrics.get("fused_calibration")
    fused_calib = [
        [float(b["mean_predicted"]), float(b["observed_rate"])]
        for b in (fcal or {}).get("bins", [])
        if b["n"] and b["mean_predicted"] is not None
    ]
    cal_svg = unit_plot(
        [
            (f"model (ECE {_fmt(metrics['calibration']['ece'])})", "#2563eb", calib),
            *(
                [(f"fused (ECE {_fmt(fcal['ece'])})", "#16a34a", fused_calib)]
                if fcal and fused_calib
                else []
            ),
        ],
        title="Calibration (10 bins)",
        x_label="mean predicted risk",
        y_label="observed rate",
    )
    sub = metrics["subgroups"]["spo2_scale2"]
    sections = _md_html(
        [
            *stacking_lines(meta.get("fusion")),
            *comparison_lines(metrics),
            *operating_lines(meta.get("operating_points"), metrics.get("operating")),
            *grounding_lines(meta.get("grounding")),
        ]
    )
    ext_html = ""
    if external and external.get("datasets"):

        def fused_cells(d: dict[str, Any]) -> str:
            f = d.get("fused") or {}
            cells = []
            for form in ("transported", "recalibrated"):
                b = f.get(form) or {}
                cells.append(
                    f"<td>{_fmt(b.get('auroc'))}</td>"
                    f"<td>{_fmt(b.get('difference'))} {html.escape(_ci(b.get('difference_ci')))}</td>"
                    if b.get("auroc") is not None
                    else "<td>n/a</td><td>n/a</td>"
                )
            return "".join(cells)

        rows = "".join(
            f"<tr><td>{html.escape(str(name))}</td><td>{d.get('n')}</td>"
            f"<td>{_fmt(d.get('prevalence'))}</td><td>{_fmt((d.get('model') or {}).get('auroc'))}</td>"
            f"<td>{_fmt((d.get('news2') or {}).get('auroc'))}</td>{fused_cells(d)}</tr>"
            for name, d in external["datasets"].items()
            if isinstance(d, dict)
        )
        ext_html = (
            "<h2>External check on real ICU data</h2><table><tr><th>dataset</th><th>n</th>"
            "<th>prevalence</th><th>model AUROC</th><th>NEWS2 AUROC</th>"
            "<th>fused AUROC, transported</th><th>fused &minus; NEWS2 (95 % CI)</th>"
            "<th>fused AUROC, recalibrated</th><th>fused &minus; NEWS2 (95 % CI)</th>"
            f"</tr>{rows}</table>"
            "<p>Snapshot form of the model (one observation, fresh state) against a partial "
            "NEWS2 from the parameters the data set has. Fused: the version's stacking on "
            "NEWS2 as trained (transported), and refitted on the data set by 5-fold "
            "cross-fitting with the model's term dropped unless it helps there "
            "(recalibrated); paired bootstrap intervals. See <code>docs/trainer.md</code>.</p>"
        )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{title}: evaluation</title>
<style>body{{font:14px system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#111}}
table{{border-collapse:collapse;margin:.5rem 0 1rem}}td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}.plots{{display:flex;gap:1rem;flex-wrap:wrap}}</style></head>
<body><h1>{title}</h1>
<p>Held-out test split: {metrics["patients"]} patients, {metrics["observations"]} observations,
{metrics["positive_observations"]} positive (prevalence {_fmt(metrics["prevalence"])}); label:
outcome within {_fmt(metrics["horizon_h"])} h. The model's threshold gives the alert rate of
NEWS2 &ge; {NEWS2_THRESHOLD}.</p>
{_html_table(metrics)}
<div class="plots">{roc_svg}{cal_svg}</div>
{sections}
<h2>Subgroup: SpO2 scale 2 (hypercapnic) patients</h2>
{_html_table(sub) if sub.get("patients") else "<p>None in the test split.</p>"}
{ext_html}
<p>Simulated training and test data: these figures show the pipeline works and how the model
compares with NEWS2 on the simulator, not clinical validity.</p>
</body></html>
"""
