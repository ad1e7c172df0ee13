"""The napari plugin without a window: manifest, layer geometry, reader, writers, samples, choice checks.

World coordinates are checked against sources that do not go through the
plugin: nibabel's affine for NIfTI, and ImagePositionPatient /
ImageOrientationPatient / PixelSpacing read with pydicom for DICOM.
"""

import shutil
from importlib.metadata import entry_points
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from napari.layers import Image, Layer
from nibabel.orientations import axcodes2ornt

from mixfuse_med.atomic import temporary_name
from mixfuse_med.errors import InputError
from mixfuse_med.io import load_volume
from mixfuse_med.synthetic import make_synthetic_study
from napari_plugin._choices import LayerChoiceError, check_layers, guess_layers
from napari_plugin._colourbar import colourbar_ticks
from napari_plugin._layers import (
    DISPLAY_AXCODES,
    layer_to_volume,
    ras_from_world,
    volume_to_layer_data,
    world_from_ras,
)
from napari_plugin._progress import FusionCancelled, StageProgress
from napari_plugin._reader import get_reader, modality_from_name
from napari_plugin._sample_data import sample_layers
from napari_plugin._writer import write_nifti, write_nifti_folder

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "napari_plugin" / "napari.yaml"


@pytest.fixture(scope="module")
def pet_study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("pet"), "PET", seed=4, downsample=4)


def layer_of(data_tuple) -> Layer:
    return Layer.create(*data_tuple)


def display_index_of_world(layer: Layer, world: np.ndarray) -> tuple[int, ...]:
    """The layer's data index at a world point (checked to be a voxel centre)."""
    index = np.asarray(layer.world_to_data(tuple(world)), dtype=np.float64)
    np.testing.assert_allclose(index, np.round(index), atol=1e-6)
    return tuple(int(v) for v in np.round(index))


# Manifest --------------------------------------------------------------------------------------------


def test_manifest_validates_with_npe2_and_imports_every_command():
    from npe2.cli import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["validate", str(MANIFEST), "--imports"])  # `npe2 validate`, in-process
    assert result.exit_code == 0, result.output
    assert "valid!" in result.output and "Invalid" not in result.output


def test_manifest_is_the_one_the_entry_point_names_and_declares_every_contribution():
    from npe2 import PluginManifest

    [entry] = [e for e in entry_points(group="napari.manifest") if e.name == "mixfuse-med"]
    assert entry.value == "napari_plugin:napari.yaml" and entry.dist.name == "mixfuse-med"
    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "mixfuse-med"  # npe2 matches the manifest to the distribution by this name
    contributions = manifest.contributions
    assert contributions.readers[0].accepts_directories
    assert {"*.nii", "*.nii.gz"} <= set(contributions.readers[0].filename_patterns)
    assert {s.key for s in contributions.sample_data} == {"pet", "spect"}
    assert [w.display_name for w in contributions.widgets] == ["MixFuse fusion"]
    assert {w.command for w in contributions.writers} == {"mixfuse-med.write_nifti",
                                                           "mixfuse-med.write_nifti_folder"}


# MetaTensor <-> layer --------------------------------------------------------------------------------


def volume_with(axcodes: tuple[str, str, str], spacing=(1.5, 2.0, 3.0), oblique_deg: float = 0.0,
                rgb: bool = False) -> MetaTensor:
    """A volume of distinct voxel values whose axes run along ``axcodes`` (possibly tilted)."""
    shape = (5, 6, 7)
    ornt = axcodes2ornt(axcodes)
    linear = np.zeros((3, 3))
    for voxel_axis, (world_axis, flip) in enumerate(ornt.astype(int)):
        linear[world_axis, voxel_axis] = flip * spacing[voxel_axis]
    angle = np.radians(oblique_deg)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = tilt @ linear
    affine[:3, 3] = (-12.5, 30.25, 7.0)
    values = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    if rgb:
        array = np.stack([values % 256, (values * 3) % 256, (values * 7) % 256]).astype(np.uint8)
    else:
        array = values[None]
    meta = {"affine": torch.as_tensor(affine), "modality": "PT", "units": "SUVbw",
            "patient": {"PatientID": "P1"}, "series": {"SeriesDescription": "test"}}
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), meta=meta)


@pytest.mark.filterwarnings("ignore:Non-orthogonal slicing:UserWarning")  # the tilted case, by design
@pytest.mark.parametrize("axcodes,oblique", [(("R", "A", "S"), 0.0), (("L", "P", "S"), 0.0),
                                             (("P", "S", "R"), 0.0), (("I", "L", "A"), 0.0),
                                             (("R", "A", "S"), 12.0)])
def test_every_voxel_lands_at_its_world_point_and_the_volume_comes_back_unchanged(axcodes, oblique):
    volume = volume_with(axcodes, oblique_deg=oblique)
    layer = layer_of(volume_to_layer_data(volume))
    affine = np.asarray(volume.affine)
    source = volume[0].numpy()
    for index in np.ndindex(*source.shape):
        if sum(index) % 5:  # a spread-out subset
            continue
        world = world_from_ras(affine[:3, :3] @ index + affine[:3, 3])
        assert layer.data[display_index_of_world(layer, world)] == source[index]
    if oblique == 0.0:  # display axes run towards S, P, L: a positive diagonal napari slices cleanly
        matrix = layer.affine.affine_matrix[:3, :3]
        np.testing.assert_allclose(matrix, np.diag(np.abs(np.diag(matrix))), atol=1e-12)
    back = layer_to_volume(layer)
    assert torch.equal(back, volume)
    np.testing.assert_allclose(np.asarray(back.affine), affine, atol=1e-9)
    assert back.meta["patient"] == {"PatientID": "P1"} and back.meta["units"] == "SUVbw"


def test_rgb_volume_round_trips_with_channels_last_in_napari():
    volume = volume_with(("L", "A", "S"), rgb=True)
    data, kwargs, kind = volume_to_layer_data(volume)
    assert kind == "image" and kwargs["rgb"] and data.shape[-1] == 3 and data.dtype == np.uint8
    back = layer_to_volume(layer_of((data, kwargs, kind)))
    assert torch.equal(back, volume)
    np.testing.assert_allclose(np.asarray(back.affine), np.asarray(volume.affine), atol=1e-9)


def test_world_convention_is_dicom_lps_in_z_y_x_order():
    ras = np.array([10.0, -20.0, 30.0])
    np.testing.assert_allclose(world_from_ras(ras), [30.0, 20.0, -10.0])  # (S, P, L) = (z, -y, -x)
    np.testing.assert_allclose(ras_from_world(world_from_ras(ras)), ras)
    assert DISPLAY_AXCODES == ("S", "P", "L")


def test_a_layer_moved_in_napari_keeps_its_new_place():
    volume = volume_with(("R", "A", "S"))
    layer = layer_of(volume_to_layer_data(volume))
    layer.translate = (5.0, -2.0, 0.0)
    layer.scale = (1.0, 1.0, 2.0)
    back = layer_to_volume(layer)
    assert torch.equal(back, volume)
    affine = np.asarray(back.affine)
    for display_index in [(0, 0, 0), (4, 3, 2), (6, 5, 4)]:
        source_index = np.unravel_index(int(layer.data[display_index]), volume.shape[1:])
        np.testing.assert_allclose(world_from_ras(affine[:3, :3] @ source_index + affine[:3, 3]),
                                   layer.data_to_world(display_index), atol=1e-9)


def test_a_2d_layer_is_refused_by_name():
    with pytest.raises(ValueError, match="'flat' is 2D"):
        layer_to_volume(Image(np.zeros((4, 5)), name="flat"))


# Reader ----------------------------------------------------------------------------------------------


def test_reader_opens_nifti_with_nibabel_geometry(pet_study):
    reader = get_reader(str(pet_study.mri_nifti))
    assert reader is not None
    [data_tuple] = reader(str(pet_study.mri_nifti))
    layer = layer_of(data_tuple)
    assert layer.metadata["modality"] == "MR"  # from the file name: NIfTI has no modality header
    image = nib.load(pet_study.mri_nifti)
    source = np.asarray(image.dataobj, dtype=np.float32)
    for index in [(0, 0, 0), tuple(s - 1 for s in source.shape), (3, 17, 9), (20, 5, 30)]:
        world = world_from_ras(image.affine[:3, :3] @ index + image.affine[:3, 3])
        assert layer.data[display_index_of_world(layer, world)] == pytest.approx(source[index])
    assert layer.colormap.name == "gray"


def test_reader_opens_each_series_of_a_dicom_folder_where_the_headers_put_it(pet_study):
    folder = pet_study.mri_dicom.parent  # dicom/ holds MR/ and PT/
    reader = get_reader(str(folder))
    assert reader is not None
    layers = [layer_of(t) for t in reader(str(folder))]
    assert [layer.metadata["modality"] for layer in layers] == ["MR", "PT"]
    mri, pet = layers
    assert pet.metadata["units"] == "SUVbw" and pet.metadata["suv"]["factor"] == pytest.approx(
        pet_study.suv.factor, rel=1e-6)
    assert mri.metadata["patient"]["PatientID"] == pet.metadata["patient"]["PatientID"] == \
        pet_study.patient["PatientID"]
    for layer in layers:
        files = layer.metadata["source_files"]
        headers = [pydicom.dcmread(f) for f in (files[0], files[-1])]
        last_pixel = (headers[1].Rows - 1, headers[1].Columns - 1)
        for header, corner in ((headers[0], (0, 0)), (headers[1], last_pixel)):
            row_dir, col_dir = (np.asarray(header.ImageOrientationPatient[:3], float),
                                np.asarray(header.ImageOrientationPatient[3:], float))
            row_spacing, col_spacing = (float(v) for v in header.PixelSpacing)
            r, c = corner  # pixel (row r, column c): position = IPP + c * col_spacing * row_dir + r * ...
            lps = np.asarray(header.ImagePositionPatient, float) + c * col_spacing * row_dir \
                + r * row_spacing * col_dir
            index = display_index_of_world(layer, lps[::-1])  # world is LPS in (z, y, x) order
            pixel = header.pixel_array[r, c] * float(header.get("RescaleSlope", 1)) + float(
                header.get("RescaleIntercept", 0))
            expected = pixel * (pet_study.suv.factor if layer is pet else 1.0)
            assert layer.data[index] == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_a_2d_series_beside_the_volume_is_skipped_with_a_warning(pet_study, tmp_path):
    from napari.utils.notifications import notification_manager

    folder = tmp_path / "export"
    shutil.copytree(pet_study.mri_dicom, folder / "MR")
    localiser = pydicom.dcmread(sorted((folder / "MR").iterdir())[0])
    localiser.SeriesInstanceUID = localiser.SOPInstanceUID = pydicom.uid.generate_uid()
    localiser.SeriesNumber, localiser.SeriesDescription = 99, "localiser"
    localiser.save_as(folder / "localiser.dcm")
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        layers = get_reader(str(folder))(str(folder))
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert [t[1]["metadata"]["series"]["SeriesDescription"] for t in layers] == ["T1w 3D (synthetic, MNI152)"]
    [warning] = [str(n.message) for n in seen if n.severity == "warning"]
    assert "skipped a series" in warning and "2D" in warning


def test_reader_skips_a_partial_export_like_the_library(pet_study, tmp_path):
    only_partial = tmp_path / "killed"
    shutil.copytree(pet_study.functional_dicom, temporary_name(only_partial / "pet_on_mri"))
    assert get_reader(str(only_partial)) is None

    folder = tmp_path / "out"
    shutil.copytree(pet_study.mri_dicom, folder / "mri")
    shutil.copytree(pet_study.functional_dicom, temporary_name(folder / "pet_on_mri"))
    layers = get_reader(str(folder))(str(folder))
    assert [t[1]["metadata"]["modality"] for t in layers] == ["MR"]


def test_reader_declines_what_it_cannot_read(tmp_path):
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty")) is None


def test_reader_names_a_damaged_nifti(tmp_path):
    broken = tmp_path / "broken_T1w.nii.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    reader = get_reader(str(broken))
    with pytest.raises(InputError, match="broken_T1w.nii.gz"):
        reader(str(broken))


@pytest.mark.parametrize("name,modality", [("sub-01_T1w.nii.gz", "MR"), ("sub-01_pet.nii.gz", "PT"),
                                           ("spect.nii", "NM"), ("mri.nii.gz", "MR"), ("scan.nii.gz", None),
                                           ("pet_on_mri.nii.gz", None)])
def test_modality_from_nifti_file_name(name, modality):
    assert modality_from_name(Path(name)) == modality


# Writers ---------------------------------------------------------------------------------------------


def test_nifti_writer_puts_a_layer_back_on_its_source_grid(pet_study, tmp_path):
    [data_tuple] = get_reader(str(pet_study.functional_nifti))(str(pet_study.functional_nifti))
    layer = layer_of(data_tuple)
    data, attributes, _ = layer.as_layer_data_tuple()
    [written] = write_nifti(str(tmp_path / "pet_copy"), data, attributes)
    assert written.endswith("pet_copy.nii.gz")
    original, copy = nib.load(pet_study.functional_nifti), nib.load(written)
    np.testing.assert_allclose(copy.affine, original.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(copy.dataobj), np.asarray(original.dataobj, dtype=np.float32))
    assert copy.header.get_qform(coded=True)[1] > 0 and copy.header.get_sform(coded=True)[1] > 0


def test_folder_writer_writes_every_layer_including_rgb(tmp_path):
    scalar = layer_of(volume_to_layer_data(volume_with(("L", "P", "S")), name="PT test"))
    rgb = layer_of(volume_to_layer_data(volume_with(("L", "P", "S"), rgb=True), name="PT test"))
    written = write_nifti_folder(str(tmp_path / "out"),
                                 [scalar.as_layer_data_tuple(), rgb.as_layer_data_tuple()])
    assert [Path(p).name for p in written] == ["PT_test.nii.gz", "PT_test_2.nii.gz"]
    back = load_volume(written[0])
    expected_affine = np.asarray(volume_with(("L", "P", "S")).affine)
    np.testing.assert_allclose(np.asarray(back.affine), expected_affine, atol=1e-6)
    image = nib.load(written[1])
    assert image.get_data_dtype().names == ("R", "G", "B")
    expected = volume_with(("L", "P", "S"), rgb=True).numpy()
    assert np.array_equal(np.asarray(image.dataobj)["G"], expected[1])


# Sample data -----------------------------------------------------------------------------------------


def test_samples_come_from_the_synthetic_generator_and_are_reused(tmp_path):
    layers = [layer_of(t) for t in sample_layers("PET", downsample=4, folder=tmp_path)]
    assert [layer.metadata["modality"] for layer in layers] == ["MR", "PT"]
    assert layers[1].metadata["units"] == "SUVbw"
    assert layers[1].colormap.name == "mixfuse-pet" and tuple(layers[1].contrast_limits) == (0.0, 8.0)
    truth = next(tmp_path.glob("pet-*/truth.json"))
    made = truth.stat().st_mtime_ns
    again = sample_layers("PET", downsample=4, folder=tmp_path)
    assert truth.stat().st_mtime_ns == made  # read, not regenerated
    np.testing.assert_array_equal(again[1][0], layers[1].data)
    spect = [layer_of(t) for t in sample_layers("SPECT", downsample=4, folder=tmp_path)]
    assert spect[1].metadata["modality"] == "NM" and spect[1].metadata["units"] == "CNTS"


# Layer choices, progress, colour bar -----------------------------------------------------------------


def scan(name: str, modality: str = "MR", patient: str = "P1", shape=(4, 5, 6)) -> Image:
    return Image(np.zeros(shape, np.float32), name=name,
                 metadata={"modality": modality, "patient": {"PatientID": patient}})


@pytest.mark.parametrize("case,message", [
    ("no functional", "No PET or SPECT layer"),
    ("same layer", "same layer"),
    ("2D", "is 2D"),
    ("RGB", "RGB image"),
    ("other patient", "different patients"),
])
def test_bad_layer_choices_are_refused_with_a_reason(case, message):
    mri, pet = scan("mri"), scan("pet", "PT")
    choices = {"no functional": (mri, None), "same layer": (mri, mri),
               "2D": (mri, scan("slice", "PT", shape=(5, 6))),
               "RGB": (mri, Image(np.zeros((4, 5, 6, 3), np.uint8), rgb=True, name="overlay")),
               "other patient": (mri, scan("pet", "PT", patient="P2"))}[case]
    with pytest.raises(LayerChoiceError, match=message):
        check_layers(*choices)
    assert check_layers(mri, pet) == []


def test_layers_are_guessed_by_modality():
    layers = [scan("pet", "PT"), scan("t1", "MR"), scan("spect", "NM")]
    mri, functional = guess_layers(layers)
    assert mri.name == "t1" and functional.name == "pet"


def test_stage_progress_is_monotonic_and_cancels():
    seen = []
    progress = StageProgress(register=True, report=lambda stage, overall: seen.append(overall))
    for stage in ("load", "register", "resample", "normalise", "fuse"):
        for fraction in (0.0, 0.5, 1.0):
            progress(stage, fraction)
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == pytest.approx(1.0)
    cancelled = StageProgress(register=False, report=lambda *a: None, cancelled=lambda: True)
    with pytest.raises(FusionCancelled, match="resample"):
        cancelled("resample", 0.0)


def test_colour_bar_reads_suv_or_normalised_units():
    ticks, caption = colourbar_ticks((0.0, 8.0), "SUVbw", "SUV window")
    assert ticks == ["0", "4", "8"] and caption.startswith("SUVbw")
    ticks, caption = colourbar_ticks((0.0, 452.6), "CNTS", "percentiles 0-99.5")
    assert ticks == ["0", "0.5", "1"] and "1 = 452.6 CNTS" in caption
