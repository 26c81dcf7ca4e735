"""Loading a CT series from DICOM files and pre-processing it: order, Hounsfield units,
geometry back to patient coordinates, the fixed-size volume, and every error path."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from models.imaging.dicom import (
    PIXEL_TAGS,
    CTSeries,
    load_ct_series,
    local_path,
    series_uids,
)
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
from models.imaging.preprocess import (
    PreprocessConfig,
    crop_or_pad,
    lung_window,
    preprocess,
    resample,
)
from tests.imaging_series import AIR_HU, LUNG_HU, SPHERE_HU, WALL_HU, Phantom, write_series
from wardwatch.errors import WardwatchError
from wardwatch.schemas import ImagingReason

C30, S30 = math.cos(math.radians(30)), math.sin(math.radians(30))

ORIENTATIONS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    # normal -z: slice 0 is the highest, IPP z decreases with k
    "axial-flipped": ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "oblique-30": ((C30, S30, 0.0), (-S30, C30, 0.0)),
}


def _loaded(tmp_path: Path, phantom: Phantom, **kw: object) -> CTSeries:
    write_series(phantom, tmp_path, **kw)  # type: ignore[arg-type]
    return load_ct_series(tmp_path, phantom.series_uid)


def test_shuffled_files_are_ordered_by_position_along_the_normal(tmp_path: Path) -> None:
    ph = Phantom(n_slices=24)
    series = _loaded(tmp_path, ph, shuffle_seed=3)
    assert series.hu.shape == (24, ph.rows, ph.cols)
    assert series.series_instance_uid == ph.series_uid
    assert series.study_instance_uid == ph.study_uid
    for k in range(ph.n_slices):
        np.testing.assert_array_equal(series.hu[k], ph.hu_slice(k).astype(np.float32))
    g = series.geometry
    assert g.spacing_mm == pytest.approx((2.0, 0.8, 0.8))
    assert g.origin_mm == pytest.approx(ph.first_mm)


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_the_sphere_maps_back_to_its_patient_coordinates(tmp_path: Path, name: str) -> None:
    row_dir, col_dir = ORIENTATIONS[name]
    normal = np.cross(row_dir, col_dir)
    # centre the stack on the body whatever the orientation
    first = -np.asarray(row_dir) * 38.0 - np.asarray(col_dir) * 38.0 - normal * 39.0
    ph = Phantom(row_dir=row_dir, col_dir=col_dir, first_mm=tuple(first))  # type: ignore[arg-type]
    series = _loaded(tmp_path, ph, shuffle_seed=7)
    assert series.hu.max() == SPHERE_HU and series.hu.min() == AIR_HU
    # in the series: the voxel nearest the sphere's centre is the sphere
    k, j, i = np.round(series.geometry.to_index(ph.sphere_centre)).astype(int)
    assert series.hu[k, j, i] == SPHERE_HU

    prepared = preprocess(series)
    vox, g = prepared.voxels, prepared.geometry
    assert vox.shape == (64, 128, 128) and vox.dtype == np.float32
    assert g.spacing_mm == (1.5, 1.5, 1.5)
    assert vox.min() >= 0.0 and vox.max() <= 1.0
    # the sphere: bright voxels within 12 mm of its centre (the body wall is further)
    idx = np.argwhere(vox > 0.9)
    near = idx[np.linalg.norm(g.to_patient(idx) - ph.sphere_centre, axis=1) < 12.0]
    centroid_mm = g.to_patient(near.mean(axis=0))
    assert np.linalg.norm(centroid_mm - ph.sphere_centre) < 1.5  # within a voxel
    # its volume: 4/3 pi r^3 within 25 %
    volume_mm3 = len(near) * 1.5**3
    assert volume_mm3 == pytest.approx(4 / 3 * math.pi * ph.sphere_radius_mm**3, rel=0.25)
    # lung around it, air outside the body
    lung = (LUNG_HU + 1350) / 1500
    kji = np.round(g.to_index(np.asarray(ph.sphere_centre) + 10.0 * np.asarray(row_dir)))
    assert vox[tuple(kji.astype(int))] == pytest.approx(lung, abs=1e-5)


def test_the_crop_is_centred_on_the_body(tmp_path: Path) -> None:
    ph = Phantom(n_slices=30, body_centre_xy=(6.0, -4.0), body_radius_mm=28.0, sphere_radius_mm=0.0)
    prepared = preprocess(_loaded(tmp_path, ph))
    cx, cy, cz = prepared.body_centre_mm
    assert (cx, cy) == pytest.approx((6.0, -4.0), abs=0.75)
    assert cz == pytest.approx(-40.0 + 29 * 2.0 / 2, abs=0.75)  # the stack's middle
    centre = prepared.geometry.to_patient((np.asarray(prepared.voxels.shape) - 1) / 2)
    assert np.linalg.norm(centre - np.asarray(prepared.body_centre_mm)) <= 1.5
    # the stack is 58 mm long: padded with air (-1024 HU) above and below
    pad = (-1024 + 1350) / 1500
    assert np.all(prepared.voxels[0] == np.float32(pad)) and np.all(prepared.voxels[-1] == pad)
    assert prepared.resampled_shape == (39, 51, 51)
    assert prepared.source_shape == (30, 96, 96)


def test_hounsfield_units_come_from_slope_and_intercept(tmp_path: Path) -> None:
    ph = Phantom()
    series = _loaded(tmp_path, ph, slices=[19, 20, 21], slope=0.5, intercept=-1000.0)
    assert set(np.unique(series.hu)) == {AIR_HU, WALL_HU, LUNG_HU, SPHERE_HU}
    np.testing.assert_array_equal(series.hu[1], ph.hu_slice(20))


@settings(max_examples=25, deadline=None)
@given(
    spacing=st.tuples(*[st.floats(0.4, 3.0) for _ in range(3)]),
    target=st.tuples(*[st.floats(0.7, 3.0) for _ in range(3)]),
    shape=st.tuples(*[st.integers(1, 9) for _ in range(3)]),
    slope=st.tuples(*[st.floats(-5, 5) for _ in range(3)]),
)
def test_trilinear_resampling_is_exact_on_a_linear_field(
    spacing: tuple[float, float, float],
    target: tuple[float, float, float],
    shape: tuple[int, int, int],
    slope: tuple[float, float, float],
) -> None:
    """A field linear in patient coordinates is reproduced exactly, at every new voxel's
    own patient coordinates: the grid and its geometry agree."""
    rot = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    g = VolumeGeometry((10.0, -20.0, 30.0), spacing, tuple(tuple(r) for r in rot))  # type: ignore[arg-type]
    idx = np.indices(shape).reshape(3, -1).T
    field = (g.to_patient(idx) @ np.asarray(slope)).reshape(shape).astype(np.float32)
    out, g2 = resample(field, g, target)
    assert g2.spacing_mm == target and g2.origin_mm == g.origin_mm
    for n, old, new, m in zip(shape, spacing, target, out.shape, strict=True):
        assert (m - 1) * new <= (n - 1) * old + 1e-3 < m * new
    idx2 = np.indices(out.shape).reshape(3, -1).T
    want = (g2.to_patient(idx2) @ np.asarray(slope)).reshape(out.shape)
    # a single-slice axis is constant along itself: compare only the covered extent
    np.testing.assert_allclose(out, want, atol=1e-3 * (1 + np.abs(want).max()))


@given(st.lists(st.floats(-3000, 3000), min_size=1, max_size=50))
def test_the_lung_window_clips_and_scales_to_unit_range(values: list[float]) -> None:
    v = np.asarray(values, dtype=np.float32)
    out = lung_window(v, -600.0, 1500.0)
    assert out.dtype == np.float32 and np.all((out >= 0) & (out <= 1))
    np.testing.assert_allclose(out, np.clip((v + 1350) / 1500, 0, 1), atol=1e-6)


def test_crop_or_pad_keeps_voxels_at_their_index() -> None:
    vol = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    box = crop_or_pad(vol, (-1, 2, 3), (3, 4, 2), -7.0)
    assert box.shape == (3, 4, 2)
    assert box[1, 0, 0] == vol[0, 2, 3] and box[2, 2, 1] == vol[1, 4, 4]
    assert box[0].max() == -7.0 and box[:, 3].max() == -7.0
    assert crop_or_pad(vol, (9, 0, 0), (2, 2, 2), 1.0).tolist() == np.ones((2, 2, 2)).tolist()


def test_geometry_round_trips() -> None:
    g = VolumeGeometry((1.0, 2.0, 3.0), (2.0, 0.5, 0.7), ((0, 0, 1), (0, 1, 0), (1, 0, 0)))  # type: ignore[arg-type]
    p = g.to_patient((2, 4, 10))
    assert p.tolist() == pytest.approx([1.0 + 7.0, 2.0 + 2.0, 3.0 + 4.0])
    assert g.to_index(p).tolist() == pytest.approx([2, 4, 10])
    assert g.shifted((1, 0, 0)).origin_mm == pytest.approx((1.0, 2.0, 5.0))
    assert g.to_dict()["spacing_mm"] == [2.0, 0.5, 0.7]


def test_pydicoms_real_ct_slice_loads_and_prepares() -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    series = load_ct_series(path)
    raw = pydicom.dcmread(path)
    assert series.hu.shape == (1, 128, 128)
    np.testing.assert_array_equal(series.hu[0], raw.pixel_array.astype(np.float32) - 1024)
    assert series.geometry.spacing_mm == pytest.approx((5.0, 0.661468, 0.661468))
    assert series.geometry.origin_mm == pytest.approx((-158.135803, -179.035797, -75.699997))
    assert series.series_instance_uid == raw.SeriesInstanceUID
    prepared = preprocess(series)
    assert prepared.voxels.shape == (64, 128, 128)
    # one 5 mm slice: 1 resampled plane (the grid covers the stack's extent, one point)
    assert prepared.resampled_shape == (1, 57, 57)
    assert 0 < float(prepared.voxels.max()) <= 1.0
    # the pixel at the top-left corner lands where DICOM says it is
    first = np.asarray(series.geometry.origin_mm)
    k, j, i = np.round(prepared.geometry.to_index(first)).astype(int)
    window = (series.hu[0, 0, 0] + 1350) / 1500
    assert prepared.voxels[k, j, i] == pytest.approx(np.clip(window, 0, 1), abs=1e-5)


def test_a_custom_config_sets_shape_and_spacing(tmp_path: Path) -> None:
    cfg = PreprocessConfig(spacing_mm=(2.0, 1.0, 1.0), shape=(16, 32, 48))
    prepared = preprocess(_loaded(tmp_path, Phantom(n_slices=10)), cfg)
    assert prepared.voxels.shape == (16, 32, 48) and prepared.geometry.spacing_mm == (2, 1, 1)
    with pytest.raises(ValueError):
        PreprocessConfig(spacing_mm=(0.0, 1.0, 1.0))


# --- error paths ------------------------------------------------------------------------


def _raises(exc: type[ImagingError], reason: ImagingReason, path: Path | str, *a: str) -> str:
    with pytest.raises(exc) as info:
        load_ct_series(path, *a)
    err = info.value
    assert isinstance(err, WardwatchError) and type(err) is exc
    assert err.reason is reason
    assert "SYNTHETIC" not in str(err)  # the PatientID never appears in a detail
    return str(err)


def test_a_missing_slice_is_a_gap(tmp_path: Path) -> None:
    ph = Phantom(n_slices=10)
    write_series(ph, tmp_path, slices=[0, 1, 2, 3, 5, 6, 7, 8, 9], shuffle_seed=1)
    detail = _raises(SeriesGap, ImagingReason.SERIES_GAP, tmp_path, ph.series_uid)
    assert "4.00 mm apart" in detail and "1 missing slice" in detail


def test_a_duplicated_position_is_inconsistent(tmp_path: Path) -> None:
    ph = Phantom(n_slices=6)
    write_series(ph, tmp_path)
    write_series(ph, tmp_path, slices=[3], name_prefix="dup")
    detail = _raises(SeriesInconsistent, ImagingReason.SERIES_INCONSISTENT, tmp_path, ph.series_uid)
    assert "0.00 mm apart" in detail


def test_a_non_ct_modality(tmp_path: Path) -> None:
    ph = Phantom(n_slices=3)
    write_series(ph, tmp_path, modality="MR")
    assert "'MR'" in _raises(StudyNotCT, ImagingReason.STUDY_NOT_CT, tmp_path, ph.series_uid)


def test_truncated_pixel_data(tmp_path: Path) -> None:
    ph = Phantom(n_slices=4)
    paths = write_series(ph, tmp_path)
    paths[2].write_bytes(paths[2].read_bytes()[:-1000])
    detail = _raises(StudyTruncated, ImagingReason.STUDY_TRUNCATED, tmp_path, ph.series_uid)
    assert "img0002.dcm" in detail and "18432 expected" in detail


def test_a_file_cut_inside_its_header_is_unreadable(tmp_path: Path) -> None:
    ph = Phantom(n_slices=3)
    paths = write_series(ph, tmp_path)
    paths[1].write_bytes(paths[1].read_bytes()[:300])
    _raises(StudyUnreadable, ImagingReason.STUDY_UNREADABLE, tmp_path, ph.series_uid)


def test_mixed_series_keep_the_announced_one(tmp_path: Path) -> None:
    a, b = Phantom(n_slices=5), Phantom(n_slices=3, slice_mm=3.0)
    write_series(a, tmp_path, name_prefix="a")
    write_series(b, tmp_path, name_prefix="b")
    assert series_uids(tmp_path) == sorted([a.series_uid, b.series_uid])
    assert load_ct_series(tmp_path, a.series_uid).hu.shape[0] == 5
    got = load_ct_series(tmp_path, b.series_uid)
    assert got.hu.shape[0] == 3 and got.geometry.spacing_mm[0] == pytest.approx(3.0)
    assert "2 series" in _raises(SeriesInconsistent, ImagingReason.SERIES_INCONSISTENT, tmp_path)
    _raises(SeriesNotFound, ImagingReason.SERIES_NOT_FOUND, tmp_path, "1.2.3.4")


def test_slices_of_another_size_or_orientation_are_inconsistent(tmp_path: Path) -> None:
    a = Phantom(n_slices=4)
    write_series(a, tmp_path / "size", slices=[0, 1])
    write_series(
        Phantom(n_slices=4, rows=80, series_uid=a.series_uid, study_uid=a.study_uid),
        tmp_path / "size",
        slices=[2, 3],
        name_prefix="b",
    )
    assert "80 x 96" in _raises(
        SeriesInconsistent, ImagingReason.SERIES_INCONSISTENT, tmp_path / "size"
    )
    tilted = Phantom(
        n_slices=4,
        row_dir=(C30, S30, 0.0),
        col_dir=(-S30, C30, 0.0),
        series_uid=a.series_uid,
        study_uid=a.study_uid,
    )
    write_series(a, tmp_path / "iop", slices=[0, 1])
    write_series(tilted, tmp_path / "iop", slices=[2, 3], name_prefix="b")
    assert "ImageOrientationPatient" in _raises(
        SeriesInconsistent, ImagingReason.SERIES_INCONSISTENT, tmp_path / "iop"
    )


def test_a_series_across_two_studies_is_inconsistent(tmp_path: Path) -> None:
    a = Phantom(n_slices=4)
    write_series(a, tmp_path, slices=[0, 1])
    write_series(
        Phantom(n_slices=4, series_uid=a.series_uid), tmp_path, slices=[2, 3], name_prefix="b"
    )
    assert "different studies" in _raises(
        SeriesInconsistent, ImagingReason.SERIES_INCONSISTENT, tmp_path, a.series_uid
    )


def test_a_tilted_stack_is_inconsistent(tmp_path: Path) -> None:
    ph = Phantom(n_slices=5)
    write_series(ph, tmp_path)
    for n, p in enumerate(sorted(tmp_path.iterdir())):  # shift each slice 1 mm along x
        ds = pydicom.dcmread(p)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x + n:.3f}", f"{y:.3f}", f"{z:.3f}"]
        ds.save_as(p)
    assert "in-plane" in _raises(SeriesInconsistent, ImagingReason.SERIES_INCONSISTENT, tmp_path)


def test_unreadable_inputs(tmp_path: Path) -> None:
    _raises(StudyUnreadable, ImagingReason.STUDY_UNREADABLE, tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    _raises(StudyUnreadable, ImagingReason.STUDY_UNREADABLE, tmp_path / "empty")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not an image")
    assert "no DICOM image among 1" in _raises(
        StudyUnreadable, ImagingReason.STUDY_UNREADABLE, notes
    )
    _raises(StudyUnreadable, ImagingReason.STUDY_UNREADABLE, notes / "readme.txt")


def test_non_dicom_neighbours_are_ignored_and_counted(tmp_path: Path) -> None:
    ph = Phantom(n_slices=3)
    write_series(ph, tmp_path)
    (tmp_path / "LOCKFILE").write_bytes(b"\x00" * 10)
    assert load_ct_series(tmp_path, ph.series_uid).files_ignored == 1


def test_missing_geometry_tags_are_unreadable(tmp_path: Path) -> None:
    ph = Phantom(n_slices=3)
    paths = write_series(ph, tmp_path)
    ds = pydicom.dcmread(paths[0])
    del ds.ImagePositionPatient
    ds.save_as(paths[0])
    assert "ImagePositionPatient" in _raises(
        StudyUnreadable, ImagingReason.STUDY_UNREADABLE, tmp_path, ph.series_uid
    )


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), drop=st.integers(1, 7))
def test_any_file_order_loads_the_same_volume_and_any_inner_missing_slice_is_a_gap(
    tmp_path_factory: pytest.TempPathFactory, seed: int, drop: int
) -> None:
    ph = Phantom(n_slices=9, rows=16, cols=16, first_mm=(-6.0, -6.0, -8.0))
    whole = tmp_path_factory.mktemp("whole")
    got = _loaded(whole, ph, shuffle_seed=seed)
    np.testing.assert_array_equal(got.hu, np.stack([ph.hu_slice(k) for k in range(9)]))
    holed = tmp_path_factory.mktemp("holed")
    write_series(ph, holed, slices=[k for k in range(9) if k != drop], shuffle_seed=seed)
    with pytest.raises(SeriesGap):
        load_ct_series(holed, ph.series_uid)


def test_compressed_pixel_data_without_a_decoder_is_unreadable(tmp_path: Path) -> None:
    ph = Phantom(n_slices=2)
    paths = write_series(ph, tmp_path)
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[0])
    detail = _raises(StudyUnreadable, ImagingReason.STUDY_UNREADABLE, tmp_path, ph.series_uid)
    assert "cannot be decoded" in detail and "JPEG" in detail


def test_event_uris_name_local_paths(tmp_path: Path) -> None:
    assert local_path("/pacs/study") == Path("/pacs/study")
    assert local_path("file:///pacs/a%20b") == Path("/pacs/a b")
    assert local_path("file://localhost/pacs/x") == Path("/pacs/x")
    with pytest.raises(StudyUnreadable, match="https URIs are not retrieved yet"):
        local_path("https://pacs.example.org/dicom-web/studies/1")
    ph = Phantom(n_slices=3)
    write_series(ph, tmp_path)
    assert load_ct_series(local_path(tmp_path.as_uri()), ph.series_uid).hu.shape[0] == 3


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_corrupted_file_loads_or_raises_an_imaging_error(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Bytes of one file overwritten anywhere (header or pixels): the series loads, or
    fails with an ImagingError and its reason, never with another exception."""
    d = tmp_path_factory.mktemp("corrupt")
    ph = Phantom(n_slices=3, rows=8, cols=8, first_mm=(-3.0, -3.0, -2.0))
    paths = write_series(ph, d)
    raw = bytearray(paths[1].read_bytes())
    at = int(data.draw(st.floats(0, 1)) * (len(raw) - 1))  # UIDs vary the file's length
    patch = data.draw(st.binary(min_size=1, max_size=16))
    raw[at : at + len(patch)] = patch
    if data.draw(st.booleans()):
        raw = raw[: int(data.draw(st.floats(0, 1)) * len(raw))]
    paths[1].write_bytes(bytes(raw))
    try:
        load_ct_series(d, ph.series_uid)
    except ImagingError as err:
        assert isinstance(err.reason, ImagingReason)


def test_patient_values_never_reach_a_warning_or_a_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Invalid patient elements (an age or sex that breaks its VR) may warn, with the
    value, when parsed: the loader parses only the image's elements."""
    ph = Phantom(n_slices=3)
    paths = write_series(ph, tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PatientAge = "SYNTHETIC"
        ds.PatientSex = "SYNTHETIC-X"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(p)
    caplog.clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        series = load_ct_series(tmp_path, ph.series_uid)
        preprocess(series)
    assert series.hu.shape[0] == 3
    assert not [w for w in seen if "SYNTHETIC" in str(w.message)]
    assert "SYNTHETIC" not in caplog.text
    # only image elements are parsed, never the patient module
    assert not {"PatientName", "PatientID", "PatientAge", "PatientSex"} & set(PIXEL_TAGS)
