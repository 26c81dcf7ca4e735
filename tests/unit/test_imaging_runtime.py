"""The lung-nodule model's runtime, finding and heatmap, on tiny ONNX graphs that keep the
contract, registered in a temporary registry, scoring synthetic DICOM series."""

from __future__ import annotations

import base64
import json
import math
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pydicom
import pytest
from PIL import Image
from pydicom.uid import SecondaryCaptureImageStorage

from cli.main import main
from models.imaging.errors import ImagingError, StudyNotCT
from models.imaging.finding import (
    build_finding,
    equivalent_diameter_mm,
    heatmap_rgb,
    region_above,
    upsample_cam,
)
from models.imaging.pipeline import Inferred, infer, post_process, prepare_study, score_study
from models.imaging.preprocess import PreprocessConfig
from models.imaging.runtime import LungNoduleModel
from models.registry import RegistryError
from tests.imaging_models import (
    BLOB,
    CAM,
    INPUT,
    NAME,
    SPACING,
    contract_meta,
    dense_cam_model,
    fixed_blob_model,
    register,
)
from tests.imaging_series import Phantom, write_series


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    register(root, fixed_blob_model(), contract_meta())
    register(
        root,
        dense_cam_model(),
        contract_meta(cam_shape=(INPUT[0] // 4, INPUT[1] // 4, INPUT[2] // 4)),
        "v2",
        promote=False,
    )
    return root


@pytest.fixture(scope="module")
def model(registry: Path) -> LungNoduleModel:
    return LungNoduleModel.from_registry(registry)


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Phantom, Path]:
    ph = Phantom(n_slices=30, rows=80, cols=80, slice_mm=2.5)
    d = tmp_path_factory.mktemp("ct")
    write_series(ph, d, shuffle_seed=3)
    return ph, d


# ---- runtime ------------------------------------------------------------------------------
def test_loads_promoted_version_on_cpu(model: LungNoduleModel) -> None:
    assert "CUDAExecutionProvider" not in ort.get_available_providers()  # this machine
    assert model.version == "v1"
    assert model.session.provider == "CPUExecutionProvider"
    assert model.threshold == 0.5
    assert model.preprocess == PreprocessConfig(spacing_mm=SPACING, shape=INPUT)


def test_batched_scoring_is_one_call_of_n(
    model: LungNoduleModel, series_dir: tuple[Phantom, Path]
) -> None:
    study = prepare_study(series_dir[1], model)
    volumes = [study.volume] * 3
    calls = []
    real_run = model.session.run

    def counting(feeds: Any) -> Any:
        calls.append(feeds["volume"].shape)
        return real_run(feeds)

    model.session.run = counting  # type: ignore[method-assign]
    try:
        prob, cam = model.score(volumes)
    finally:
        del model.session.run
    assert calls == [(3, 1, *INPUT)]
    assert prob.shape == (3,) and prob.dtype == np.float32
    assert cam.shape == (3, *CAM)
    assert np.allclose(prob, prob[0]) and 0 < prob[0] < 1
    empty_p, empty_c = model.score([])
    assert empty_p.shape == (0,) and empty_c.shape == (0, *CAM)


def test_volume_prepared_otherwise_is_refused(
    model: LungNoduleModel, series_dir: tuple[Phantom, Path]
) -> None:
    from models.imaging.dicom import load_ct_series
    from models.imaging.preprocess import preprocess
    from wardwatch.errors import ModelError

    other = preprocess(
        load_ct_series(series_dir[1]), PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), shape=INPUT)
    )
    with pytest.raises(ModelError, match="prepared with"):
        model.score([other])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.pop("cam_shape"), "lacks cam_shape"),
        (lambda m: m.pop("threshold"), "lacks threshold"),
        (lambda m: m.pop("parity"), "lacks parity"),
        (lambda m: m.update(kind="gru-deterioration"), "'kind'"),
        (lambda m: m.update(input_shape=[32, 64]), "'input_shape' must be three"),
        (lambda m: m.update(input_shape=[32, 64, 32]), "'preprocess.shape'"),
        (lambda m: m.update(cam_shape=[8, 16, 8]), "cam_shape"),
        (lambda m: m.update(threshold=1.5), "'threshold'"),
        (lambda m: m.update(threshold="high"), "'threshold'"),
        (lambda m: m["preprocess"].pop("window_center_hu"), "lacks window_center_hu"),
        (lambda m: m["preprocess"].update(spacing_mm=[1.5, -1, 1.5]), "'preprocess'"),
        (lambda m: m.update(outputs={"probability": {}}), "'outputs' must name"),
        (lambda m: m.update(inputs=["features"]), "'inputs' must name 'volume'"),
    ],
)
def test_contract_refuses_bad_metadata(tmp_path: Path, change: Any, match: str) -> None:
    meta = contract_meta()
    change(meta)
    register(tmp_path, fixed_blob_model(), meta)
    with pytest.raises(RegistryError, match=match):
        LungNoduleModel.from_registry(tmp_path)


def test_graph_that_breaks_the_contract_is_refused(tmp_path: Path) -> None:
    register(tmp_path, fixed_blob_model(outputs=("prob", "cam")), contract_meta())
    with pytest.raises(RegistryError, match="returns"):
        LungNoduleModel.from_registry(tmp_path)
    # the metadata says another input size than the graph reads
    register(tmp_path, fixed_blob_model((16, 64, 64)), contract_meta(), "v2")
    with pytest.raises(RegistryError, match="the graph's 'volume'"):
        LungNoduleModel.from_registry(tmp_path, version="v2")


def test_tampered_file_and_missing_model(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no lung-nodule model is registered"):
        LungNoduleModel.from_registry(tmp_path)
    d = register(tmp_path, fixed_blob_model(), contract_meta(), promote=False)
    with pytest.raises(RegistryError, match=r"no promoted version .*registered: v1"):
        LungNoduleModel.from_registry(tmp_path)
    assert LungNoduleModel.from_registry(tmp_path, version="v1").version == "v1"
    with (d / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(RegistryError, match="sha256 mismatch"):
        LungNoduleModel.from_registry(tmp_path, version="v1")


# ---- finding ------------------------------------------------------------------------------
def test_upsampled_cell_centres_sit_at_block_centres() -> None:
    cam = np.zeros(CAM, np.float32)
    cam[BLOB] = 1.0
    up = upsample_cam(cam, INPUT)
    assert up.shape == INPUT
    # cell c covers voxels 4c .. 4c + 3: its centre 4c + 1.5, a tie of 4c + 1 and 4c + 2
    for axis, c in enumerate(BLOB):
        profile = up.max(axis=tuple(a for a in range(3) if a != axis))
        assert set(np.flatnonzero(profile == profile.max())) == {4 * c + 1, 4 * c + 2}
    flat = upsample_cam(np.ones(CAM, np.float32), INPUT)
    assert np.allclose(flat, 1.0)


def test_region_and_equivalent_diameter() -> None:
    vol = np.zeros((20, 20, 20), np.float32)
    k, j, i = np.mgrid[0:20, 0:20, 0:20]
    vol[(k - 10) ** 2 + (j - 10) ** 2 + (i - 10) ** 2 <= 16] = 1.0
    vol[0, 0, 0] = 1.0  # above the level but not connected
    region = region_above(vol, (10, 10, 10), 0.5)
    assert region.sum() == (vol > 0.5).sum() - 1
    d = equivalent_diameter_mm(int(region.sum()), (1.5, 1.5, 1.5))
    assert d == pytest.approx(1.5 * (6 * region.sum() / math.pi) ** (1 / 3))
    assert 7.5 * 1.5 < d < 8.5 * 1.5  # a ball of radius 4 voxels: 8 across


def _flood(mask: np.ndarray, seed: tuple[int, int, int]) -> np.ndarray:
    """A plain breadth-first flood fill (6-neighbourhood), for comparison."""
    seen = np.zeros_like(mask)
    seen[seed] = True
    queue = deque([seed])
    while queue:
        p = queue.popleft()
        for axis in range(3):
            for step in (-1, 1):
                n = list(p)
                n[axis] += step
                q = (n[0], n[1], n[2])
                if 0 <= q[axis] < mask.shape[axis] and mask[q] and not seen[q]:
                    seen[q] = True
                    queue.append(q)
    return seen


@pytest.mark.parametrize("seed", range(10))
def test_region_is_the_connected_component(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vol = rng.random((9, 11, 13)).astype(np.float32)
    vol[4, 5, 6] = 1.0
    region = region_above(vol, (4, 5, 6), 0.45)
    assert np.array_equal(region, _flood(vol > 0.45, (4, 5, 6)))


def test_finding_maps_the_blob_to_patient_coordinates(
    model: LungNoduleModel, series_dir: tuple[Phantom, Path]
) -> None:
    ph, d = series_dir
    study = prepare_study(d, model)
    (inferred,) = infer(model, [study])
    finding, up = build_finding(
        inferred.probability,
        inferred.cam,
        study.volume,
        study.series.geometry,
        threshold=model.threshold,
        model={"name": model.name, "version": model.version},
    )
    json.dumps(finding)
    blob_voxel = [4 * c + 1.5 for c in BLOB]
    expected = study.volume.geometry.to_patient(blob_voxel)
    got = np.asarray(finding["location_patient_mm"])
    assert np.all(np.abs(got - expected) <= np.asarray(SPACING) + 1e-6)
    # the series' slice through it: slice 0 at the lowest position along the normal
    z0 = ph.position(0)[2]
    assert finding["slice_index"] == round((expected[2] - z0) / ph.slice_mm)
    assert finding["probability"] == pytest.approx(inferred.probability, abs=1e-6)
    assert finding["suspicious"] == (inferred.probability >= 0.5)
    # the blob (sigma one cell) above half its peak: a ball of radius ~1.18 cells
    assert 10 < finding["estimated_size_mm"] < 20
    assert finding["model"] == {"name": NAME, "version": "v1"}
    assert up.shape == INPUT


def test_empty_map_points_nowhere(
    model: LungNoduleModel, series_dir: tuple[Phantom, Path], tmp_path: Path
) -> None:
    study = prepare_study(series_dir[1], model)
    empty = Inferred(0.1, np.zeros(CAM, np.float32))
    finding = post_process(model, study, empty, tmp_path)
    assert finding["location_patient_mm"] is None and finding["slice_index"] is None
    assert finding["estimated_size_mm"] == 0.0 and finding["suspicious"] is False
    doc = json.loads(Path(finding["heatmap_json"]).read_text())
    assert doc["slice_index"] is None
    centre_k = study.volume.geometry.to_index(study.volume.body_centre_mm)[0]
    assert doc["volume_slice"] == round(centre_k)
    with Image.open(finding["heatmap_png"]) as im:
        rgb = np.asarray(im)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_data_driven_map_finds_the_sphere(
    registry: Path, series_dir: tuple[Phantom, Path], tmp_path: Path
) -> None:
    """Independent of the runtime's own geometry: the map peaks at the phantom's dense
    sphere, whose centre the series was written around."""
    ph, d = series_dir
    dense = LungNoduleModel.from_registry(registry, version="v2")
    finding = score_study(d, dense, tmp_path)
    got = np.asarray(finding["location_patient_mm"])
    cell = 4 * SPACING[0]
    assert np.all(np.abs(got - np.asarray(ph.sphere_centre)) <= cell / 2 + SPACING[0])
    assert finding["suspicious"] is True
    assert 6 <= finding["estimated_size_mm"] <= 24  # a 12 mm sphere, at 6 mm cells
    z0 = ph.position(0)[2]
    assert abs(finding["slice_index"] - (ph.sphere_centre[2] - z0) / ph.slice_mm) <= 2.5


def test_heatmap_png_and_sidecar(
    model: LungNoduleModel, series_dir: tuple[Phantom, Path], tmp_path: Path
) -> None:
    study = prepare_study(series_dir[1], model)
    (inferred,) = infer(model, [study])
    finding = post_process(model, study, inferred, tmp_path / "out")
    png, sidecar = Path(finding["heatmap_png"]), Path(finding["heatmap_json"])
    assert png.parent == sidecar.parent == tmp_path / "out"
    assert study.series.series_instance_uid not in png.name
    with Image.open(png) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (INPUT[2] * 3, INPUT[1] * 3)
        pixels = np.asarray(im)
    doc = json.loads(sidecar.read_text())
    k = doc["volume_slice"]
    assert k == round(finding["volume_index"][0])
    assert doc["slice_index"] == finding["slice_index"]
    cam = np.frombuffer(base64.b64decode(doc["cam_slice"]["data"]), np.uint8).reshape(
        doc["cam_slice"]["shape"]
    )
    assert cam.shape == INPUT[1:]
    # the map's hottest pixel is the blob's row and column; the overlay is coloured there
    j, i = np.unravel_index(int(np.argmax(cam)), cam.shape)
    assert abs(j - (4 * BLOB[1] + 1.5)) <= 1 and abs(i - (4 * BLOB[2] + 1.5)) <= 1
    hot = pixels[j * 3 + 1, i * 3 + 1]
    assert not (hot[0] == hot[1] == hot[2])
    corner = pixels[0, 0]
    assert corner[0] == corner[1] == corner[2]  # no map there: plain grey
    origin = np.asarray(doc["slice_geometry"]["origin_mm"])
    assert np.allclose(origin, study.volume.geometry.to_patient((k, 0, 0)), atol=1e-3)
    assert doc["finding"]["probability"] == finding["probability"]
    # the same overlay as a Secondary Capture of the study, nothing of the patient in it
    sc = pydicom.dcmread(finding["heatmap_dcm"])
    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert sc.StudyInstanceUID == study.series.study_instance_uid
    assert sc.SeriesInstanceUID != study.series.series_instance_uid
    assert sc.PatientID == "" and str(sc.PatientName) == ""
    assert sc.Modality == "OT" and sc.PhotometricInterpretation == "RGB"
    assert np.array_equal(sc.pixel_array, pixels)
    assert doc["dcm"] == Path(finding["heatmap_dcm"]).name


def test_overlay_blend() -> None:
    grey = np.full((4, 4), 0.5, np.float32)
    cam = np.zeros((4, 4), np.float32)
    cam[1, 2] = 1.0
    rgb = heatmap_rgb(grey, cam)
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 128).all()
    # top of the colour map (252, 255, 164) at half weight over grey 127.5
    assert rgb[1, 2].tolist() == [190, 191, 146]


def test_unusable_study_is_an_imaging_error(
    model: LungNoduleModel, series_dir: tuple[Phantom, Path], tmp_path: Path
) -> None:
    write_series(Phantom(n_slices=4), tmp_path / "mr", modality="MR")
    with pytest.raises(StudyNotCT) as err:
        score_study(tmp_path / "mr", model, tmp_path / "out")
    assert err.value.reason == "study_not_ct"
    with pytest.raises(ImagingError):
        score_study(tmp_path / "nothing-here", model, None)
    assert not (tmp_path / "out").exists()


# ---- CLI ----------------------------------------------------------------------------------
def test_cli_scores_a_series(
    registry: Path,
    series_dir: tuple[Phantom, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "findings"
    code = main(
        ["imaging", "score", str(series_dir[1]), "--registry", str(registry), "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    finding = json.loads(captured.out)
    assert finding["model"] == {"name": NAME, "version": "v1"}
    for kind in ("png", "json", "dcm"):
        assert Path(finding[f"heatmap_{kind}"]).is_file()
    assert finding["provider"] == "CPUExecutionProvider"
    assert set(finding) >= {
        "probability",
        "suspicious",
        "location_patient_mm",
        "slice_index",
        "estimated_size_mm",
    }
    # one file of the series, and another version
    one = sorted(series_dir[1].iterdir())[0]
    args = ["imaging", "score", str(one), "--registry", str(registry), "--out", str(out)]
    assert main([*args, "--model-version", "v2"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["version"] == "v2"


def test_cli_exit_2_without_model_or_study(
    registry: Path,
    series_dir: tuple[Phantom, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "empty-registry"
    empty.mkdir()
    code = main(["imaging", "score", str(series_dir[1]), "--registry", str(empty)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "no lung-nodule model is registered" in captured.err
    code = main(["imaging", "score", str(tmp_path / "absent"), "--registry", str(registry)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "study_unreadable" in captured.err
    assert str(tmp_path) not in captured.err
