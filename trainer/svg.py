"""Inline SVG line plots on the unit square (ROC, reliability curves) for the trainer's
and the validation's self-contained HTML reports: no plotting library, no script."""

from __future__ import annotations

import html
from collections.abc import Sequence

__all__ = ["unit_plot"]

Series = tuple[str, str, Sequence[Sequence[float]]]  # (label, colour, [[x, y], ...])


def unit_plot(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = True,
    dots: bool | None = None,
    legend_at: tuple[float, float] = (0.55, 0.12),
) -> str:
    """One SVG plot of ``series`` over [0, 1] × [0, 1] with ticks, axis labels, the
    diagonal (chance, or perfect calibration) and a legend at ``legend_at`` (axis units).
    ``dots``: mark each point (None: only for a series of at most 12 points). Every text
    is HTML-escaped."""
    e = html.escape
    w, h, pad = 360, 300, 44

    def sx(x: float) -> float:
        return pad + x * (w - pad - 12)

    def sy(y: float) -> float:
        return h - pad - y * (h - pad - 24)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="{e(title)}">',
        f'<text x="{w / 2:g}" y="16" text-anchor="middle" font-size="13">{e(title)}</text>',
        f'<rect x="{sx(0):g}" y="{sy(1):g}" width="{sx(1) - sx(0):g}" '
        f'height="{sy(0) - sy(1):g}" fill="none" stroke="#999"/>',
    ]
    if diagonal:
        parts.append(
            f'<line x1="{sx(0):g}" y1="{sy(0):g}" x2="{sx(1):g}" y2="{sy(1):g}" '
            'stroke="#bbb" stroke-dasharray="4 3"/>'
        )
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<text x="{sx(t):g}" y="{sy(0) + 14:g}" text-anchor="middle" font-size="10">{t:g}</text>'
            f'<text x="{sx(0) - 6:g}" y="{sy(t) + 3:g}" text-anchor="end" font-size="10">{t:g}</text>'
        )
    parts.append(
        f'<text x="{w / 2:g}" y="{h - 8}" text-anchor="middle" font-size="11">{e(x_label)}</text>'
        f'<text x="12" y="{h / 2:g}" text-anchor="middle" font-size="11" '
        f'transform="rotate(-90 12 {h / 2:g})">{e(y_label)}</text>'
    )
    lx, ly = legend_at
    for i, (label, color, pts) in enumerate(series):
        if pts:
            d = " ".join(
                f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts)
            )
            parts.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
            if dots or (dots is None and len(pts) <= 12):
                parts += [
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>'
                    for x, y in pts
                ]
        parts.append(
            f'<text x="{sx(lx):.1f}" y="{sy(ly) + 14 * i:.1f}" font-size="11" '
            f'fill="{color}">{e(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
