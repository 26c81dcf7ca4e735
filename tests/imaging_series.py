"""Synthetic CT series written as real DICOM files (pydicom), for the imaging tests.

The phantom: air (-1000 HU) around a cylindrical body along the patient's z axis, a wall
of soft tissue (40 HU) around lung (-800 HU), and a bright sphere (200 HU) at a known
point of the lung. Every value is stored as ``(HU - intercept) / slope`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from trainer.imaging.dicom_series import CTSeriesSpec, ct_slice_dataset

AIR_HU = -1000
WALL_HU = 40
LUNG_HU = -800
SPHERE_HU = 200


@dataclass
class Phantom:
    """Where the phantom is, in patient coordinates (mm)."""

    rows: int = 96
    cols: int = 96
    n_slices: int = 40
    pixel_mm: tuple[float, float] = (0.8, 0.8)  # (between rows, between columns)
    slice_mm: float = 2.0
    # row and column direction cosines (ImageOrientationPatient)
    row_dir: tuple[float, float, float] = (1.0, 0.0, 0.0)
    col_dir: tuple[float, float, float] = (0.0, 1.0, 0.0)
    first_mm: tuple[float, float, float] = (-38.0, -38.0, -40.0)  # slice 0, pixel (0, 0)
    body_centre_xy: tuple[float, float] = (0.0, 0.0)
    body_radius_mm: float = 34.0
    wall_mm: float = 5.0
    sphere_centre: tuple[float, float, float] = (8.0, -6.0, 0.0)
    sphere_radius_mm: float = 6.0
    study_uid: str = field(default_factory=lambda: generate_uid())
    series_uid: str = field(default_factory=lambda: generate_uid())

    def normal(self) -> npt.NDArray[np.float64]:
        return np.cross(np.asarray(self.row_dir), np.asarray(self.col_dir))

    def position(self, k: int) -> npt.NDArray[np.float64]:
        """ImagePositionPatient of slice k."""
        return np.asarray(self.first_mm) + k * self.slice_mm * self.normal()

    def hu_slice(self, k: int) -> npt.NDArray[np.float64]:
        """HU of slice k, (rows, cols)."""
        j, i = np.mgrid[0 : self.rows, 0 : self.cols]
        p = (
            self.position(k)[None, None, :]
            + (i * self.pixel_mm[1])[..., None] * np.asarray(self.row_dir)
            + (j * self.pixel_mm[0])[..., None] * np.asarray(self.col_dir)
        )
        r_xy = np.hypot(p[..., 0] - self.body_centre_xy[0], p[..., 1] - self.body_centre_xy[1])
        hu = np.full((self.rows, self.cols), float(AIR_HU))
        hu[r_xy <= self.body_radius_mm] = WALL_HU
        hu[r_xy <= self.body_radius_mm - self.wall_mm] = LUNG_HU
        d = np.linalg.norm(p - np.asarray(self.sphere_centre), axis=-1)
        hu[d <= self.sphere_radius_mm] = SPHERE_HU
        return hu


def write_series(
    phantom: Phantom,
    directory: Path,
    *,
    slices: Sequence[int] | None = None,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
    shuffle_seed: int | None = None,
    series_uid: str | None = None,
    name_prefix: str = "img",
) -> list[Path]:
    """Write the phantom's slices (all, or ``slices``) as one DICOM file each; with a seed,
    the files are named in a shuffled order (so a name sort does not give the slice order)."""
    directory.mkdir(parents=True, exist_ok=True)
    ks = list(range(phantom.n_slices)) if slices is None else list(slices)
    names = list(range(len(ks)))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(names)
    paths = []
    for n, k in zip(names, ks, strict=True):
        stored = np.round((phantom.hu_slice(k) - intercept) / slope)
        ds = _dataset(phantom, k, modality, slope, intercept, series_uid or phantom.series_uid)
        ds.PixelData = stored.astype(np.uint16).tobytes()
        path = directory / f"{name_prefix}{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _dataset(
    ph: Phantom, k: int, modality: str, slope: float, intercept: float, series_uid: str
) -> Dataset:
    spec = CTSeriesSpec(
        study_uid=ph.study_uid,
        series_uid=series_uid,
        pixel_mm=ph.pixel_mm,
        slice_mm=ph.slice_mm,
        row_dir=ph.row_dir,
        col_dir=ph.col_dir,
        first_mm=ph.first_mm,
    )
    return ct_slice_dataset(
        spec, k, ph.rows, ph.cols, modality=modality, slope=slope, intercept=intercept
    )
