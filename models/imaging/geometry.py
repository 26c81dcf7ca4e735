"""Where a voxel is in the patient: DICOM patient coordinates (LPS, millimetres).

Voxel indices are in array order ``(k, j, i)`` = (slice, row, column). A voxel's centre is
``origin + direction @ (spacing * (k, j, i))``: ``direction``'s columns are the unit vectors
of the three array axes in patient coordinates (the slice normal, the column direction
cosines of ImageOrientationPatient, its row direction cosines), ``spacing`` the distance
between neighbours along each axis and ``origin`` the centre of voxel ``(0, 0, 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vec = npt.NDArray[np.float64]


@dataclass(frozen=True)
class VolumeGeometry:
    """The affine map from voxel indices ``(k, j, i)`` to patient coordinates (mm)."""

    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]  # along (k, j, i)
    direction: tuple[tuple[float, float, float], ...]  # 3 rows; columns are the axes

    def matrix(self) -> Vec:
        """The 3 x 3 matrix ``direction @ diag(spacing)``."""
        out: Vec = np.asarray(self.direction, dtype=np.float64) * np.asarray(self.spacing_mm)
        return out

    def to_patient(self, index: npt.ArrayLike) -> Vec:
        """Patient coordinates (mm) of voxel indices (fractional allowed), shape (..., 3)."""
        idx = np.asarray(index, dtype=np.float64)
        out: Vec = idx @ self.matrix().T + np.asarray(self.origin_mm)
        return out

    def to_index(self, point_mm: npt.ArrayLike) -> Vec:
        """Fractional voxel indices ``(k, j, i)`` of patient coordinates, shape (..., 3)."""
        p = np.asarray(point_mm, dtype=np.float64) - np.asarray(self.origin_mm)
        out: Vec = p @ np.linalg.inv(self.matrix()).T
        return out

    def shifted(self, index: npt.ArrayLike) -> VolumeGeometry:
        """The geometry of a crop (or pad) whose voxel 0 is ``index`` of this one."""
        o = self.to_patient(index)
        return VolumeGeometry(
            (float(o[0]), float(o[1]), float(o[2])), self.spacing_mm, self.direction
        )

    def with_spacing(self, spacing_mm: tuple[float, float, float]) -> VolumeGeometry:
        """The same origin and axes, another spacing (a resampled grid)."""
        return VolumeGeometry(self.origin_mm, spacing_mm, self.direction)

    def to_dict(self) -> dict[str, list[float] | list[list[float]]]:
        """JSON-ready."""
        return {
            "origin_mm": list(self.origin_mm),
            "spacing_mm": list(self.spacing_mm),
            "direction": [list(r) for r in self.direction],
        }
