"""Sanity check of a ``lung-nodule`` version on two real chest CT volumes with lesion
masks: ``lung1`` and ``lung2`` of the pyradiomics 3.0.1 source distribution
(``data/lung{1,2}_image.nrrd`` and ``_label.nrrd``).

``python -m trainer.imaging.real_check [--registry DIR] [--version V] [--data DIR]``
downloads the sdist once into ``--data`` (default ``~/.cache/wardwatch/pyradiomics``;
its page on the package index, then the file; only the four ``lung*`` files are kept),
reads them with ``pynrrd`` (``pip install pynrrd``), pre-processes each volume exactly as
the runtime does (:func:`models.imaging.preprocess.preprocess`), scores it with ONNX
Runtime and prints, as JSON, per volume: the probability and whether it is over the
version's threshold, whether the lesion lies in the model's crop, where the CAM's peak
is (patient coordinates) and its distance to the nearest lesion voxel, whether it falls
in the lesion, and the share of the lesion's voxels in the crop covered by the CAM's
region above one half of its peak. The data are never stored in the repository.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import re
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.imaging.dicom import CTSeries
from models.imaging.geometry import VolumeGeometry
from models.imaging.preprocess import PreprocessConfig, preprocess
from models.registry import load_metadata, promoted_version, version_dir

INDEX = "https://pypi.org/simple/pyradiomics/"
SDIST = "pyradiomics-3.0.1.tar.gz"
NAMES = ("lung1", "lung2")


def fetch(data: Path) -> Path:
    """The four ``lung*`` files in ``data`` (downloaded once, 34 MB)."""
    want = [data / f"{n}_{part}.nrrd" for n in NAMES for part in ("image", "label")]
    if all(p.exists() for p in want):
        return data
    page = urllib.request.urlopen(INDEX, timeout=60).read().decode()
    links = re.findall(r'href="([^"]*' + re.escape(SDIST) + r'[^"]*)"', page)
    if not links:
        raise RuntimeError(f"{SDIST} not found on {INDEX}")
    blob = urllib.request.urlopen(links[0], timeout=600).read()
    data.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if "/data/" in member.name and name in {p.name for p in want}:
                src = tar.extractfile(member)
                if src is not None:
                    (data / name).write_bytes(src.read())
    return data


def _read(path: Path) -> tuple[np.ndarray[Any, Any], VolumeGeometry]:
    nrrd = importlib.import_module("nrrd")  # pynrrd: only this check needs it

    arr, header = nrrd.read(str(path), index_order="C")  # (z, y, x)
    if header.get("space") not in ("left-posterior-superior", "LPS"):
        raise ValueError(f"{path.name}: space {header.get('space')} is not LPS")
    dirs = np.asarray(header["space directions"], dtype=np.float64)  # rows: x, y, z axes
    spacing = np.linalg.norm(dirs, axis=1)
    unit = dirs / spacing[:, None]
    # array axes (k, j, i) = (z, y, x): the direction's columns are those axes
    direction = np.stack([unit[2], unit[1], unit[0]], axis=1)
    origin = np.asarray(header["space origin"], dtype=np.float64)
    geo = VolumeGeometry(
        (float(origin[0]), float(origin[1]), float(origin[2])),
        (float(spacing[2]), float(spacing[1]), float(spacing[0])),
        tuple((float(r[0]), float(r[1]), float(r[2])) for r in direction),
    )
    return arr, geo


def check_volume(
    sess: ort.InferenceSession, meta: dict[str, Any], image: Path, label: Path
) -> dict[str, Any]:
    hu, geo = _read(image)
    lesion, lgeo = _read(label)
    pp = meta["preprocess"]
    cfg = PreprocessConfig(
        spacing_mm=(
            float(pp["spacing_mm"][0]),
            float(pp["spacing_mm"][1]),
            float(pp["spacing_mm"][2]),
        ),
        shape=(int(pp["shape"][0]), int(pp["shape"][1]), int(pp["shape"][2])),
        window_level_hu=pp["window_center_hu"],
        window_width_hu=pp["window_width_hu"],
    )
    prepared = preprocess(CTSeries(hu.astype(np.float32), geo, "real", "real"), cfg)
    prob, cam = sess.run(["probability", "cam"], {"volume": prepared.voxels[None, None]})
    p, c = float(prob[0]), cam[0]
    shape = np.asarray(cfg.shape, dtype=np.float64)
    scale = shape / np.asarray(c.shape, dtype=np.float64)
    peak = np.asarray(np.unravel_index(int(np.argmax(c)), c.shape), dtype=np.float64)
    peak_idx = (peak + 0.5) * scale - 0.5
    peak_mm = prepared.geometry.to_patient(peak_idx)
    les_idx = np.argwhere(lesion > 0).astype(np.float64)
    les_mm = lgeo.to_patient(les_idx)
    dist = float(np.sqrt(((les_mm - peak_mm) ** 2).sum(axis=1)).min()) if len(les_mm) else None
    in_label = np.round(lgeo.to_index(peak_mm)).astype(int)
    inside = bool(
        np.all(in_label >= 0) and np.all(in_label < lesion.shape) and lesion[tuple(in_label)] > 0
    )
    # the lesion's voxels in the crop, and the CAM cell each falls in
    crop = prepared.geometry.to_index(les_mm)
    cell = np.floor((crop + 0.5) / scale).astype(int)
    ok = np.all((cell >= 0) & (cell < np.asarray(c.shape)), axis=1)
    covered = c[tuple(cell[ok].T)] >= 0.5 if ok.any() else np.zeros(0, bool)
    threshold = float(meta["threshold"]["value"])
    return {
        "probability": round(p, 4),
        "suspicious": p >= threshold,
        "threshold": threshold,
        "lesion_voxels": len(les_mm),
        "lesion_centroid_mm": [round(float(v), 1) for v in les_mm.mean(axis=0)],
        "lesion_in_crop_fraction": round(float(ok.mean()), 3) if len(ok) else 0.0,
        "cam_peak_mm": [round(float(v), 1) for v in peak_mm],
        "cam_peak_in_lesion": inside,
        "cam_peak_to_lesion_mm": None if dist is None else round(dist, 1),
        "lesion_in_crop_covered_by_cam_half_max": (
            round(float(covered.mean()), 3) if len(covered) else None
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trainer.imaging.real_check")
    ap.add_argument("--registry", default="model-registry")
    ap.add_argument("--version", default=None)
    ap.add_argument("--data", default=str(Path.home() / ".cache/wardwatch/pyradiomics"))
    args = ap.parse_args(argv)
    root = Path(args.registry)
    version = args.version or promoted_version(root, "lung-nodule")
    if version is None:
        print("no lung-nodule version promoted", file=sys.stderr)
        return 2
    meta = load_metadata(root, "lung-nodule", version)
    sess = ort.InferenceSession(
        str(version_dir(root, "lung-nodule", version) / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    data = fetch(Path(args.data))
    out = {"model": f"lung-nodule {version}"}
    for name in NAMES:
        out[name] = check_volume(
            sess, meta, data / f"{name}_image.nrrd", data / f"{name}_label.nrrd"
        )  # type: ignore[assignment]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
