"""From the CNN's outputs to a finding and a heatmap (pure functions, NumPy; Pillow writes
the PNG).

* :func:`upsample_cam`: the class activation map (``[d, h, w]``, each cell summarising a
  block of the input) trilinearly onto the input grid, cell centres at block centres;
* :func:`build_finding`: the peak of that map in patient coordinates, the series' slice
  through it, and the equivalent diameter of the region above half the peak;
* :func:`heatmap_rgb`, :func:`write_heatmap`: the most relevant axial slice in the lung
  window with the map in colour over it (PNG), and a JSON sidecar for viewers.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from models.imaging.geometry import VolumeGeometry
from models.imaging.preprocess import PreparedVolume, _linear_along

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

HALF_PEAK: Final = 0.5
"""The lesion's region: the connected voxels of the upsampled map above this share of its
peak."""

OVERLAY_ALPHA: Final = 0.5
"""The colour's weight where the map is 1 (it fades to grey where the map is 0)."""

PNG_SCALE: Final = 3
"""The PNG is drawn at this many pixels per voxel (bilinear)."""

# a perceptual colour map (matplotlib's "inferno" at 9 stops), interpolated linearly
_INFERNO: Final = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 140, 10],
        [249, 201, 50],
        [252, 255, 164],
    ],
    dtype=np.float32,
)


def upsample_cam(cam: F32, shape: tuple[int, int, int]) -> F32:
    """``cam`` ``[d, h, w]`` on the ``shape`` grid: the centre of cell ``c`` sits at the
    centre of the block of ``shape / cam.shape`` voxels it covers (voxel ``(c + 0.5) * s -
    0.5``), linear between centres and flat beyond the outer ones."""
    out = np.asarray(cam, dtype=np.float32)
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        coords = (np.arange(n, dtype=np.float64) + 0.5) * (m / n) - 0.5
        out = _linear_along(out, axis, coords)
    return out


def peak_index(volume: F32) -> npt.NDArray[np.float64]:
    """The (fractional) index of ``volume``'s maximum: the centroid of the voxels within
    1e-6 of it near the first one (an interpolated map's peak between voxels is a tie)."""
    flat = int(np.argmax(volume))
    k0, j0, i0 = np.unravel_index(flat, volume.shape)
    top = float(volume.reshape(-1)[flat])
    lo = [max(int(c) - 2, 0) for c in (k0, j0, i0)]
    box = volume[lo[0] : k0 + 3, lo[1] : j0 + 3, lo[2] : i0 + 3]
    near = np.argwhere(box >= top - 1e-6 * max(abs(top), 1e-12))
    out: npt.NDArray[np.float64] = near.mean(axis=0) + np.asarray(lo, dtype=np.float64)
    return out


def region_above(volume: F32, seed: tuple[int, int, int], level: float) -> npt.NDArray[np.bool_]:
    """The voxels above ``level`` connected (6-neighbourhood) to ``seed``.

    Grown a whole run at a time: each pass along an axis takes in every run of voxels
    above ``level`` on a line that touches the region, so a pass count follows the turns
    of the region, not its size in voxels."""
    mask = volume > level
    region = np.zeros_like(mask)
    if not mask[seed]:
        return region
    region[seed] = True
    count = 1
    while True:
        for axis in range(3):
            region = _runs_touching(mask, region, axis)
        grown = int(region.sum())
        if grown == count:
            return region
        count = grown


def _runs_touching(
    mask: npt.NDArray[np.bool_], region: npt.NDArray[np.bool_], axis: int
) -> npt.NDArray[np.bool_]:
    """``region`` with every run of ``mask`` along ``axis`` that it touches filled in."""
    m = np.moveaxis(mask, axis, -1)
    shape = m.shape
    rows = m.reshape(-1, shape[-1])
    starts = rows.copy()
    starts[:, 1:] &= ~rows[:, :-1]
    numbers = np.cumsum(starts.ravel())
    labels = numbers * rows.ravel()  # run number, 0 outside the mask
    hit = np.zeros(int(numbers[-1]) + 1 if numbers.size else 1, dtype=bool)
    hit[labels[np.moveaxis(region, axis, -1).ravel()]] = True
    hit[0] = False
    out = hit[labels].reshape(shape)
    return np.moveaxis(out, -1, axis) | region


def equivalent_diameter_mm(n_voxels: int, spacing_mm: tuple[float, float, float]) -> float:
    """The diameter of the sphere with the volume of ``n_voxels`` voxels."""
    volume = n_voxels * spacing_mm[0] * spacing_mm[1] * spacing_mm[2]
    return float(np.cbrt(6.0 * volume / math.pi))


def source_slice(point_mm: npt.ArrayLike, source_geometry: VolumeGeometry, n_slices: int) -> int:
    """The slice of the original series (in its order along the slice normal, 0 first)
    nearest ``point_mm``."""
    k = float(source_geometry.to_index(point_mm)[0])
    return int(min(max(round(k), 0), n_slices - 1))


def build_finding(
    probability: float,
    cam: F32,
    prepared: PreparedVolume,
    source_geometry: VolumeGeometry,
    *,
    threshold: float,
    model: dict[str, str],
) -> tuple[dict[str, Any], F32]:
    """The finding (JSON-ready) and the upsampled map it was read from.

    ``cam`` is one volume's ``[d, h, w]`` map; ``source_geometry`` the series' (its slice
    0 first along the normal, as :func:`models.imaging.dicom.load_ct_series` orders it)."""
    up = upsample_cam(cam, prepared.config.shape)
    top = float(up.max())
    finding: dict[str, Any] = {
        "probability": round(float(probability), 6),
        "suspicious": bool(probability >= threshold),
        "threshold": threshold,
        # an empty map points nowhere: no location, slice or size
        "location_patient_mm": None,
        "slice_index": None,
        "estimated_size_mm": 0.0,
        "cam_peak": round(top, 6),
        "volume_index": None,
        "model": dict(model),
    }
    if top > 0:
        peak = peak_index(up)
        location = prepared.geometry.to_patient(peak)
        k0, j0, i0 = np.unravel_index(int(np.argmax(up)), up.shape)
        region = region_above(up, (int(k0), int(j0), int(i0)), HALF_PEAK * top)
        size = equivalent_diameter_mm(int(region.sum()), prepared.config.spacing_mm)
        finding.update(
            location_patient_mm=[round(float(c), 2) for c in location],
            slice_index=source_slice(location, source_geometry, prepared.source_shape[0]),
            estimated_size_mm=round(size, 1),
            volume_index=[round(float(c), 2) for c in peak],
        )
    return finding, up


# ---- heatmap ------------------------------------------------------------------------------
def colour_map(values: F32) -> F32:
    """RGB in [0, 255] (float) of ``values`` in [0, 1] on the inferno colour map."""
    x = np.clip(values, 0.0, 1.0) * (len(_INFERNO) - 1)
    lo = np.minimum(np.floor(x).astype(np.intp), len(_INFERNO) - 2)
    w = (x - lo)[..., None]
    out: F32 = _INFERNO[lo] * (1 - w) + _INFERNO[lo + 1] * w
    return out


def heatmap_rgb(grey: F32, cam: F32, alpha: float = OVERLAY_ALPHA) -> U8:
    """An RGB image (``[H, W, 3]`` uint8): ``grey`` (the lung-windowed slice, [0, 1]) with
    ``cam`` ([0, 1], same shape) in colour over it, blended with weight ``alpha * cam``."""
    base = np.repeat((np.clip(grey, 0.0, 1.0) * 255.0)[..., None], 3, axis=-1)
    weight = (alpha * np.clip(cam, 0.0, 1.0))[..., None]
    rgb = base * (1 - weight) + colour_map(cam) * weight
    out: U8 = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out


def slice_geometry(geometry: VolumeGeometry, k: int) -> dict[str, Any]:
    """Where the pixels of slice ``k`` of a volume are: the centre of pixel (0, 0), the
    spacing between rows and between columns, the column and row direction cosines."""
    d = np.asarray(geometry.direction, dtype=np.float64)
    origin = geometry.to_patient((k, 0, 0))
    return {
        "origin_mm": [round(float(c), 4) for c in origin],
        "pixel_spacing_mm": [geometry.spacing_mm[1], geometry.spacing_mm[2]],
        "column_direction": [round(float(c), 6) for c in d[:, 1]],
        "row_direction": [round(float(c), 6) for c in d[:, 2]],
        "normal": [round(float(c), 6) for c in d[:, 0]],
    }


def write_heatmap(
    finding: dict[str, Any],
    cam_volume: F32,
    prepared: PreparedVolume,
    out_dir: Path,
    stem: str,
    study_instance_uid: str | None = None,
) -> dict[str, Path]:
    """The PNG overlay of the slice of the prepared volume through the map's peak and its
    JSON sidecar (``<stem>.png``, ``<stem>.json`` in ``out_dir``); with the study's UID,
    also the overlay as a DICOM Secondary Capture of that study (``<stem>.dcm``). Returns
    the paths by kind (``png``, ``json``, ``dcm``)."""
    from PIL import Image  # only the post-processing stage draws

    index = finding["volume_index"]
    if index is None:  # an empty map: the slice through the body's centre
        index = prepared.geometry.to_index(prepared.body_centre_mm)
    k = int(np.clip(round(index[0]), 0, cam_volume.shape[0] - 1))
    grey = prepared.voxels[k]
    cam = cam_volume[k]
    out_dir.mkdir(parents=True, exist_ok=True)
    png, sidecar = out_dir / f"{stem}.png", out_dir / f"{stem}.json"
    rgb = heatmap_rgb(grey, cam)
    image = Image.fromarray(rgb)
    if PNG_SCALE > 1:
        h, w = grey.shape
        image = image.resize((w * PNG_SCALE, h * PNG_SCALE), Image.Resampling.BILINEAR)
    image.save(png, format="PNG")
    quantised = np.clip(np.rint(cam * 255.0), 0, 255).astype(np.uint8)
    doc = {
        "kind": "wardwatch-ct-heatmap",
        "slice_index": finding["slice_index"],
        "volume_slice": k,
        "png": png.name,
        "png_scale": PNG_SCALE,
        "cam_slice": {
            "shape": list(quantised.shape),
            "dtype": "uint8",
            "scale": 1 / 255,
            "encoding": "base64, row-major",
            "data": base64.b64encode(quantised.tobytes()).decode(),
        },
        "slice_geometry": slice_geometry(prepared.geometry, k),
        "volume_geometry": prepared.geometry.to_dict(),
        "window": {
            "level_hu": prepared.config.window_level_hu,
            "width_hu": prepared.config.window_width_hu,
        },
        "finding": {
            key: finding[key]
            for key in (
                "probability",
                "suspicious",
                "location_patient_mm",
                "estimated_size_mm",
                "model",
            )
        },
    }
    paths = {"png": png, "json": sidecar}
    if study_instance_uid is not None:
        pixel_mm = (prepared.geometry.spacing_mm[1], prepared.geometry.spacing_mm[2])
        dcm = out_dir / f"{stem}.dcm"
        write_secondary_capture(
            np.asarray(image), study_instance_uid, dcm, finding, pixel_mm, PNG_SCALE
        )
        paths["dcm"] = dcm
        doc["dcm"] = dcm.name
    sidecar.write_text(json.dumps(doc, indent=1) + "\n")
    return paths


def write_secondary_capture(
    rgb: U8,
    study_instance_uid: str,
    path: Path,
    finding: dict[str, Any],
    pixel_mm: tuple[float, float],
    scale: int,
) -> None:
    """``rgb`` (``[H, W, 3]`` uint8) as a DICOM Secondary Capture image of the study, in a
    new series: the patient module's elements are present and empty (nothing of the
    patient's is read or written; a PACS files it by the StudyInstanceUID)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_instance_uid
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 9901
    ds.InstanceNumber = 1
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    model = finding.get("model") or {}
    ds.SeriesDescription = "Lung nodule heatmap"
    ds.DerivationDescription = (
        f"{model.get('name', '')} {model.get('version', '')}: class activation map over "
        + (
            f"the series' slice {finding['slice_index']}"
            if finding.get("slice_index") is not None
            else "the slice through the body's centre (empty map)"
        )
        + f", probability {finding['probability']:.3f}"
    )[:1024]
    ds.PixelSpacing = [f"{pixel_mm[0] / scale:.6g}", f"{pixel_mm[1] / scale:.6g}"]
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
