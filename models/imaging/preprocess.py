"""From a CT series in Hounsfield units to the fixed-size volume a CNN reads.

Steps (parameters in :class:`PreprocessConfig`, described in ``docs/imaging.md``):

1. resample to a fixed spacing (1.5 mm isotropic) by trilinear interpolation, voxel 0
   kept in place, so the geometry stays exact;
2. find the body: the voxels denser than ``body_threshold_hu`` (soft tissue and bone, not
   air or lung), its centroid the centre of the crop;
3. crop, or pad with air (``pad_hu``), to ``shape`` (64 x 128 x 128) around that centre;
4. lung window (level -600 HU, width 1500 HU): clip and scale to [0, 1].

The result carries the geometry of the output volume: voxel ``(k, j, i)`` of
``PreparedVolume.voxels`` is at ``PreparedVolume.geometry.to_patient((k, j, i))``.
NumPy only: workers never load SciPy or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from models.imaging.dicom import CTSeries
from models.imaging.errors import StudyUnreadable
from models.imaging.geometry import VolumeGeometry

F32 = npt.NDArray[np.float32]

MAX_RESAMPLED_VOXELS: Final = 512 * 512 * 1024
"""The largest resampled grid accepted (a 768 mm cube at 1.5 mm is 1.3e8)."""


@dataclass(frozen=True)
class PreprocessConfig:
    """The pre-processing parameters (stored with a model: its input is defined by them)."""

    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5)  # along (k, j, i)
    shape: tuple[int, int, int] = (64, 128, 128)  # (slices, rows, columns)
    window_level_hu: float = -600.0
    window_width_hu: float = 1500.0
    body_threshold_hu: float = -500.0
    pad_hu: float = -1024.0  # air

    def __post_init__(self) -> None:
        if len(self.spacing_mm) != 3 or not all(s > 0 for s in self.spacing_mm):
            raise ValueError("spacing_mm must be three positive numbers")
        if len(self.shape) != 3 or not all(n >= 1 for n in self.shape):
            raise ValueError("shape must be three positive sizes")
        if not self.window_width_hu > 0:
            raise ValueError("window_width_hu must be positive")


@dataclass(frozen=True)
class PreparedVolume:
    """The CNN's input, ``voxels[k, j, i]`` in [0, 1] (float32, ``config.shape``), and
    where each voxel is in the patient."""

    voxels: F32
    geometry: VolumeGeometry
    config: PreprocessConfig
    body_centre_mm: tuple[float, float, float]  # the crop's centre, patient coordinates
    source_shape: tuple[int, int, int]  # the series' (slices, rows, columns)
    resampled_shape: tuple[int, int, int]


def resample(
    volume: F32, geometry: VolumeGeometry, spacing_mm: tuple[float, float, float]
) -> tuple[F32, VolumeGeometry]:
    """``volume`` on a grid of ``spacing_mm`` with the same origin and axes, by trilinear
    interpolation (three separable linear passes, the most shrinking axis first). Along each axis the new grid covers
    the old one's extent: ``floor((n - 1) * old / new) + 1`` points."""
    sizes = []
    for n, old, new in zip(volume.shape, geometry.spacing_mm, spacing_mm, strict=True):
        sizes.append(int(np.floor((n - 1) * old / new + 1e-6)) + 1)
    if int(np.prod(sizes)) > MAX_RESAMPLED_VOXELS:
        raise StudyUnreadable(f"resampled grid of {sizes} voxels is too large")
    out = volume.astype(np.float32, copy=False)
    # the axis that shrinks most first: the later passes then work on fewer voxels
    ratios = [new / old for old, new in zip(geometry.spacing_mm, spacing_mm, strict=True)]
    for axis in sorted(range(3), key=lambda a: -ratios[a]):
        coords = np.arange(sizes[axis], dtype=np.float64) * ratios[axis]
        out = _linear_along(out, axis, coords)
    return out, geometry.with_spacing(spacing_mm)


def _linear_along(volume: F32, axis: int, coords: npt.NDArray[np.float64]) -> F32:
    """Linear interpolation of ``volume`` along ``axis`` at fractional indices ``coords``
    (within ``[0, n - 1]``)."""
    n = volume.shape[axis]
    if n == 1:
        return np.repeat(volume, len(coords), axis=axis)
    coords = np.clip(coords, 0.0, n - 1)
    lo = np.minimum(np.floor(coords).astype(np.intp), n - 2)
    w = (coords - lo).astype(np.float32)
    shape = [1] * volume.ndim
    shape[axis] = len(coords)
    w = w.reshape(shape)
    a = np.take(volume, lo, axis=axis)
    b = np.take(volume, lo + 1, axis=axis)
    out: F32 = a + (b - a) * w
    return out


def body_centre(volume: F32, threshold_hu: float) -> npt.NDArray[np.float64]:
    """The centroid (fractional indices) of the voxels above ``threshold_hu``; the volume's
    centre when there are none."""
    mask = volume > threshold_hu
    if not mask.any():
        return (np.asarray(volume.shape, dtype=np.float64) - 1) / 2
    centre = [
        float(
            np.average(np.arange(n), weights=mask.sum(axis=tuple(a for a in range(3) if a != ax)))
        )
        for ax, n in enumerate(volume.shape)
    ]
    return np.asarray(centre, dtype=np.float64)


def crop_or_pad(
    volume: F32, start: tuple[int, int, int], shape: tuple[int, int, int], fill: float
) -> F32:
    """The box of ``shape`` whose voxel 0 is ``start`` of ``volume`` (negative or beyond the
    end allowed), the part outside ``volume`` filled with ``fill``."""
    out = np.full(shape, fill, dtype=np.float32)
    src, dst = [], []
    for s, size, n in zip(start, shape, volume.shape, strict=True):
        lo, hi = max(s, 0), min(s + size, n)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def lung_window(volume: F32, level_hu: float, width_hu: float) -> F32:
    """Clip to ``[level - width / 2, level + width / 2]`` and scale to [0, 1]."""
    low = level_hu - width_hu / 2
    out: F32 = np.clip((volume - np.float32(low)) / np.float32(width_hu), 0.0, 1.0)
    return out.astype(np.float32, copy=False)


def preprocess(series: CTSeries, config: PreprocessConfig | None = None) -> PreparedVolume:
    """The fixed-size, windowed and normalised volume of ``series``, with its geometry."""
    cfg = config or PreprocessConfig()
    hu, geometry = resample(series.hu, series.geometry, cfg.spacing_mm)
    centre = body_centre(hu, cfg.body_threshold_hu)
    start = tuple(int(round(c - (n - 1) / 2)) for c, n in zip(centre, cfg.shape, strict=True))
    start3 = (start[0], start[1], start[2])
    box = crop_or_pad(hu, start3, cfg.shape, cfg.pad_hu)
    voxels = lung_window(box, cfg.window_level_hu, cfg.window_width_hu)
    c_mm = geometry.to_patient(centre)
    s = series.hu.shape
    r = hu.shape
    return PreparedVolume(
        voxels,
        geometry.shifted(start3),
        cfg,
        (float(c_mm[0]), float(c_mm[1]), float(c_mm[2])),
        (s[0], s[1], s[2]),
        (r[0], r[1], r[2]),
    )
