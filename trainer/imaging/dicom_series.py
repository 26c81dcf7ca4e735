"""CT series written as real DICOM files (pydicom): one uncompressed 16-bit slice per file.

Shared by the synthetic volumes (:func:`trainer.imaging.synth.write_dicom_series`) and
the imaging tests' phantom (``tests/imaging_series.py``). NumPy and pydicom only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

__all__ = ["CTSeriesSpec", "ct_slice_dataset", "write_ct_slices"]


@dataclass(frozen=True)
class CTSeriesSpec:
    """Where a series' slices are (patient coordinates, mm) and what identifies it."""

    study_uid: str
    series_uid: str
    pixel_mm: tuple[float, float]  # (between rows, between columns)
    slice_mm: float
    row_dir: tuple[float, float, float]  # ImageOrientationPatient's row direction cosines
    col_dir: tuple[float, float, float]
    first_mm: tuple[float, float, float]  # ImagePositionPatient of slice 0

    def normal(self) -> npt.NDArray[np.float64]:
        return np.cross(np.asarray(self.row_dir), np.asarray(self.col_dir))

    def position(self, k: int) -> npt.NDArray[np.float64]:
        """ImagePositionPatient of slice k."""
        return np.asarray(self.first_mm) + k * self.slice_mm * self.normal()


def ct_slice_dataset(
    spec: CTSeriesSpec,
    k: int,
    rows: int,
    cols: int,
    *,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    series_uid: str | None = None,
) -> Dataset:
    """The dataset of slice ``k`` (16-bit unsigned, no pixel data yet)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = series_uid or spec.series_uid
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.PatientID = "SYNTHETIC"
    ds.InstanceNumber = k + 1
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [f"{spec.pixel_mm[0]:g}", f"{spec.pixel_mm[1]:g}"]
    ds.SliceThickness = f"{spec.slice_mm:g}"
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*spec.row_dir, *spec.col_dir)]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in spec.position(k)]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    return ds


def write_ct_slices(
    spec: CTSeriesSpec,
    hu: npt.NDArray[np.floating],
    directory: Path,
    *,
    intercept: float = -1024.0,
    name_prefix: str = "img",
) -> list[Path]:
    """Write ``hu[k]`` (Hounsfield units, ``(slices, rows, columns)``) as slice ``k`` of
    ``spec``, stored as ``round(HU - intercept)`` clipped to 0..65535; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(hu.shape[0]):
        stored = np.clip(np.round(hu[k] - intercept), 0, 65535).astype(np.uint16)
        ds = ct_slice_dataset(spec, k, hu.shape[1], hu.shape[2], intercept=intercept)
        ds.PixelData = stored.tobytes()
        path = directory / f"{name_prefix}{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
