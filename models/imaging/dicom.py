"""Read one CT series from DICOM files into Hounsfield units, checked, with its geometry.

:func:`load_ct_series` takes a directory (searched recursively) or a single file, keeps the
instances of one SeriesInstanceUID, orders them by ImagePositionPatient projected on the
slice normal (the cross product of ImageOrientationPatient's direction cosines), converts
stored values to Hounsfield units with RescaleSlope and RescaleIntercept, and checks that the
slices make one volume. Every failure is an :class:`~models.imaging.errors.ImagingError`
with its dead-letter reason; the messages name files by their name only and never carry
patient data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from models.imaging.errors import (
    ImagingError,
    SeriesGap,
    SeriesInconsistent,
    SeriesNotFound,
    StudyNotCT,
    StudyTruncated,
    StudyUnreadable,
)
from models.imaging.geometry import VolumeGeometry

GAP_TOLERANCE: Final = 0.25
"""Neighbouring slices may be ``(1 ± GAP_TOLERANCE)`` times the median spacing apart; wider
is a gap (a missing slice), narrower (to a duplicate) is inconsistent."""

ORIENTATION_TOLERANCE: Final = 1e-3
"""Direction cosines that differ by more between instances are different orientations."""

SPACING_TOLERANCE_MM: Final = 1e-3
"""PixelSpacing values that differ by more between instances are different spacings."""

MAX_FILES: Final = 4096
"""The most files read for one study (a chest CT has a few hundred slices)."""

_DICOMDIR: Final = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage

HEADER_TAGS: Final = (
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "Modality",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "SliceThickness",
    "SpacingBetweenSlices",
)
"""The only elements of a header that are parsed: the patient module (name, id, birth date)
never is, so no patient value can reach a warning or a log line."""

PIXEL_TAGS: Final = (
    *HEADER_TAGS,
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelData",
)

_REQUIRED: Final = (
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
)


@dataclass(frozen=True)
class CTSeries:
    """One series in Hounsfield units, ``hu[k, j, i]`` (slice, row, column), float32."""

    hu: npt.NDArray[np.float32]
    geometry: VolumeGeometry
    study_instance_uid: str
    series_instance_uid: str
    files_ignored: int = 0  # files in the directory that are not DICOM


def local_path(uri: str) -> Path:
    """The local file or directory of an event's ``uri`` (an absolute path or ``file://``).

    A DICOMweb / WADO-RS URL is valid in an event but not retrieved yet: it raises
    :class:`~models.imaging.errors.StudyUnreadable`."""
    if uri.startswith("/"):
        return Path(uri)
    scheme, _, rest = uri.partition("://")
    if scheme.lower() == "file":
        path = rest[len("localhost") :] if rest.startswith("localhost/") else rest
        return Path(unquote(path))
    raise StudyUnreadable(f"{scheme.lower()[:16]} URIs are not retrieved yet (local files only)")


def load_ct_series(path: str | Path, series_instance_uid: str | None = None) -> CTSeries:
    """The CT series ``series_instance_uid`` at ``path`` (a directory or a file).

    Without a UID the instances must all belong to one series. Raises an
    :class:`~models.imaging.errors.ImagingError` subclass for an unreadable, non-CT,
    truncated, missing or inconsistent series, and nothing else: pydicom reads values
    lazily, so a corrupt element may fail anywhere, and is then unreadable."""
    try:
        return _load(Path(path), series_instance_uid)
    except ImagingError:
        raise
    except Exception as exc:
        raise StudyUnreadable(f"the series cannot be read ({type(exc).__name__})") from None


def _load(path: Path, series_instance_uid: str | None) -> CTSeries:
    headers, ignored = _read_headers(path)
    uids = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if series_instance_uid is None:
        if len(uids) > 1:
            raise SeriesInconsistent(
                f"{len(uids)} series where one was expected; name the SeriesInstanceUID"
            )
        series_instance_uid = uids.pop()
    chosen = [(f, ds) for f, ds in headers if ds.get("SeriesInstanceUID") == series_instance_uid]
    if not chosen:
        raise SeriesNotFound(
            f"no instance of the series among {len(headers)} DICOM file(s) ({len(uids)} other series)"
        )
    for f, ds in chosen:
        modality = str(ds.get("Modality", "")).strip().upper()
        if modality != "CT":
            raise StudyNotCT(f"{f.name}: Modality {modality[:16] or '(none)'!r}, not CT")
    studies = {str(ds.get("StudyInstanceUID", "")) for _, ds in chosen}
    if len(studies) > 1:
        raise SeriesInconsistent("the instances of the series name different studies")
    geometry, order = _geometry([ds for _, ds in chosen], [f for f, _ in chosen])
    slices = [_hounsfield(chosen[n][0]) for n in order]
    hu = np.stack(slices).astype(np.float32, copy=False)
    return CTSeries(hu, geometry, studies.pop(), str(series_instance_uid), ignored)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise StudyUnreadable("the URI names no file or directory")
    files = sorted(p for p in path.rglob("*") if p.is_file())
    if len(files) > MAX_FILES:
        raise StudyUnreadable(f"{len(files)} files, more than the {MAX_FILES} read for a study")
    return files


def _read_headers(path: Path) -> tuple[list[tuple[Path, Dataset]], int]:
    """The header (no pixel data) of every DICOM file at ``path``, and how many files were
    not DICOM (no ``DICM`` preamble: a DICOMDIR's neighbours, notes). A single file that is
    not DICOM, or a file that claims to be and cannot be parsed, is unreadable."""
    files = _files(path)
    headers: list[tuple[Path, Dataset]] = []
    ignored = 0
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
        except InvalidDicomError:
            if path.is_file():
                raise StudyUnreadable(f"{f.name}: not a DICOM file") from None
            ignored += 1
            continue
        except Exception as exc:
            raise StudyUnreadable(f"{f.name}: cannot be parsed ({type(exc).__name__})") from None
        meta = getattr(ds, "file_meta", None)
        if meta is not None and meta.get("MediaStorageSOPClassUID") == _DICOMDIR:
            ignored += 1  # DICOM, but an index of the files, not an image
            continue
        if "SeriesInstanceUID" not in ds:
            raise StudyUnreadable(f"{f.name}: no SeriesInstanceUID (truncated, or not an image)")
        headers.append((f, ds))
    if not headers:
        raise StudyUnreadable(f"no DICOM image among {len(files)} file(s)")
    return headers, ignored


def _floats(ds: Dataset, tag: str, n: int, name: str) -> npt.NDArray[np.float64]:
    try:
        values = np.asarray([float(v) for v in ds[tag].value], dtype=np.float64)
    except Exception:
        raise StudyUnreadable(f"{name}: {tag} is not {n} numbers") from None
    if values.shape != (n,) or not np.all(np.isfinite(values)):
        raise StudyUnreadable(f"{name}: {tag} is not {n} finite numbers")
    return values


def _geometry(datasets: list[Dataset], files: list[Path]) -> tuple[VolumeGeometry, list[int]]:
    """The volume's geometry and the order of the instances along the slice normal."""
    for f, ds in zip(files, datasets, strict=True):
        missing = [t for t in _REQUIRED if t not in ds]
        if missing:
            raise StudyUnreadable(f"{f.name}: missing {', '.join(missing)}")
    first = datasets[0]
    shape = (int(first.Rows), int(first.Columns))
    iop = _floats(first, "ImageOrientationPatient", 6, files[0].name)
    spacing = _floats(first, "PixelSpacing", 2, files[0].name)
    x, y = iop[:3], iop[3:]
    if not (
        abs(np.linalg.norm(x) - 1) < 1e-2
        and abs(np.linalg.norm(y) - 1) < 1e-2
        and abs(float(x @ y)) < 1e-2
    ):
        raise SeriesInconsistent(f"{files[0].name}: ImageOrientationPatient is not orthonormal")
    if np.any(spacing <= 0):
        raise SeriesInconsistent(f"{files[0].name}: PixelSpacing is not positive")
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    normal = np.cross(x, y)
    positions = []
    for f, ds in zip(files, datasets, strict=True):
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise SeriesInconsistent(
                f"{f.name}: {ds.Rows} x {ds.Columns} pixels, not {shape[0]} x {shape[1]}"
            )
        if np.max(np.abs(_floats(ds, "ImageOrientationPatient", 6, f.name) - iop)) > (
            ORIENTATION_TOLERANCE
        ):
            raise SeriesInconsistent(f"{f.name}: another ImageOrientationPatient")
        if np.max(np.abs(_floats(ds, "PixelSpacing", 2, f.name) - spacing)) > (
            SPACING_TOLERANCE_MM
        ):
            raise SeriesInconsistent(f"{f.name}: another PixelSpacing")
        positions.append(_floats(ds, "ImagePositionPatient", 3, f.name))
    pos = np.stack(positions)
    along = pos @ normal
    order = [int(n) for n in np.argsort(along, kind="stable")]
    pos, along = pos[order], along[order]
    slice_mm = _slice_spacing(along, first, [files[n] for n in order])
    # the stack must run along the normal: a tilted gantry (or mixed stacks) shifts the
    # in-plane position from slice to slice
    inplane = (pos - pos[0]) - np.outer(along - along[0], normal)
    drift = float(np.max(np.linalg.norm(inplane, axis=1)))
    if drift > 0.5 * float(np.min(spacing)):
        raise SeriesInconsistent(
            f"slices shifted in-plane by up to {drift:.2f} mm (tilted or mixed stacks)"
        )
    direction = np.stack([normal, y, x], axis=1)  # columns: the (k, j, i) axes
    geometry = VolumeGeometry(
        (float(pos[0][0]), float(pos[0][1]), float(pos[0][2])),
        (slice_mm, float(spacing[0]), float(spacing[1])),
        tuple((float(r[0]), float(r[1]), float(r[2])) for r in direction),
    )
    return geometry, order


def _slice_spacing(along: npt.NDArray[np.float64], first: Dataset, files: list[Path]) -> float:
    """The distance between slices: the median step between sorted positions (checked for
    duplicates and gaps), or SpacingBetweenSlices / SliceThickness for a single slice."""
    if len(along) == 1:
        for tag in ("SpacingBetweenSlices", "SliceThickness"):
            value = first.get(tag)
            try:
                mm = float(value) if value is not None else 0.0
            except (TypeError, ValueError):
                mm = 0.0
            if np.isfinite(mm) and mm > 0:
                return mm
        raise SeriesInconsistent("a single slice without SliceThickness: no slice spacing")
    steps = np.diff(along)
    median = float(np.median(steps))
    if median <= 1e-3:
        raise SeriesInconsistent("most slices share their position (duplicated instances)")
    low = int(np.argmin(steps))
    if steps[low] < (1 - GAP_TOLERANCE) * median:
        raise SeriesInconsistent(
            f"{files[low].name} and {files[low + 1].name} are {steps[low]:.2f} mm apart, "
            f"the series' spacing is {median:.2f} mm (a duplicated or overlapping slice)"
        )
    high = int(np.argmax(steps))
    if steps[high] > (1 + GAP_TOLERANCE) * median:
        missing = round(float(steps[high]) / median) - 1
        raise SeriesGap(
            f"{files[high].name} and {files[high + 1].name} are {steps[high]:.2f} mm apart, "
            f"the series' spacing is {median:.2f} mm (about {missing} missing slice(s))"
        )
    return median


def _expected_bytes(ds: Dataset) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    return int(ds.Rows) * int(ds.Columns) * frames * samples * bits // 8


def _hounsfield(f: Path) -> npt.NDArray[np.float32]:
    """One slice in Hounsfield units (stored value x RescaleSlope + RescaleIntercept)."""
    try:
        ds = pydicom.dcmread(f, specific_tags=list(PIXEL_TAGS))
    except Exception as exc:
        raise StudyTruncated(
            f"{f.name}: pixel data cannot be read ({type(exc).__name__})"
        ) from None
    if "PixelData" not in ds:
        raise StudyUnreadable(f"{f.name}: no pixel data")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        raise StudyUnreadable(f"{f.name}: not a single-frame greyscale image")
    if not ds.file_meta.TransferSyntaxUID.is_compressed:
        have, want = len(ds.PixelData), _expected_bytes(ds)
        if have < want:
            raise StudyTruncated(f"{f.name}: {have} bytes of pixel data, {want} expected")
    try:
        stored = ds.pixel_array
    except Exception as exc:
        raise StudyUnreadable(
            f"{f.name}: pixel data cannot be decoded ({type(exc).__name__}; transfer syntax "
            f"{ds.file_meta.TransferSyntaxUID.name})"
        ) from None
    if stored.shape != (int(ds.Rows), int(ds.Columns)):
        raise StudyUnreadable(f"{f.name}: pixel array of shape {stored.shape}")
    slope = _rescale(ds, "RescaleSlope", 1.0, f)
    intercept = _rescale(ds, "RescaleIntercept", 0.0, f)
    if slope == 0:
        raise StudyUnreadable(f"{f.name}: RescaleSlope is 0")
    hu: npt.NDArray[np.float32] = stored.astype(np.float32) * np.float32(slope) + np.float32(
        intercept
    )
    return hu


def _rescale(ds: Dataset, tag: str, default: float, f: Path) -> float:
    value: Any = ds.get(tag)
    if value is None:
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise StudyUnreadable(f"{f.name}: {tag} is not a number") from None
    if not np.isfinite(out):
        raise StudyUnreadable(f"{f.name}: {tag} is not finite")
    return out


def series_uids(path: str | Path) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM images at ``path`` (sorted)."""
    headers, _ = _read_headers(Path(path))
    return sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in headers})
