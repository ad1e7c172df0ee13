"""Loading NIfTI files and DICOM series: same voxels and world geometry either way; clear errors."""

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mixfuse_med.atomic import temporary_name
from mixfuse_med.errors import InputError
from mixfuse_med.io import list_dicom_series, load_volume
from mixfuse_med.io.geometry import to_sitk
from mixfuse_med.synthetic import make_synthetic_study


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def pet_study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("pet"), "PET", seed=0, downsample=4)


@pytest.fixture(scope="module")
def spect_study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("spect"), "SPECT", seed=1, downsample=4)


@pytest.fixture(scope="module")
def oblique_study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("oblique"), "PET", seed=2, downsample=4, oblique=True)


def assert_same_volume(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(np.asarray(a.affine), np.asarray(b.affine), atol=1e-4)
    # the same voxel lands at the same world point (LPS, through SimpleITK)
    ia, ib = to_sitk(a), to_sitk(b)
    for index in [(0, 0, 0), tuple(s - 1 for s in ia.GetSize()), (3, 5, 7)]:
        np.testing.assert_allclose(ia.TransformIndexToPhysicalPoint(index),
                                   ib.TransformIndexToPhysicalPoint(index), atol=1e-4)


def test_mri_nifti_and_dicom_load_to_same_voxels_and_geometry(pet_study):
    nifti = load_volume(pet_study.mri_nifti, modality="MR")
    dicom = load_volume(pet_study.mri_dicom)
    assert nifti.shape[0] == 1 and nifti.ndim == 4
    assert_same_volume(nifti, dicom)
    assert float(dicom.max()) > 500  # real content, not an empty volume


def test_oblique_mri_keeps_its_direction_through_dicom(oblique_study):
    nifti = load_volume(oblique_study.mri_nifti)
    dicom = load_volume(oblique_study.mri_dicom)
    assert_same_volume(nifti, dicom)
    direction = np.asarray(dicom.affine)[:3, :3] / 4.0
    assert np.abs(direction - np.diag(np.diag(direction))).max() > 0.1  # really oblique
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-5)


def test_pet_and_spect_dicom_match_their_nifti_copies(pet_study, spect_study):
    dicom = load_volume(pet_study.functional_dicom, suv=False)
    assert_same_volume(load_volume(pet_study.functional_nifti, modality="PET", suv=False), dicom)
    # the trap this guards against: one RescaleSlope per PET slice, values that are not integers
    slopes = {pydicom.dcmread(f, stop_before_pixels=True).RescaleSlope for f in dicom.meta["source_files"]}
    assert len(slopes) > 5
    assert not np.allclose(dicom.numpy(), np.round(dicom.numpy()))
    # SPECT: one multi-frame NM file
    assert_same_volume(load_volume(spect_study.functional_nifti, modality="NM"),
                       load_volume(spect_study.functional_dicom))


def test_metadata_follows_the_volume_contract(pet_study):
    mri = load_volume(pet_study.mri_dicom)
    pet = load_volume(pet_study.functional_dicom)
    keys = ("modality", "units", "patient", "study", "series", "source_format", "source_files", "suv")
    for volume in (mri, pet):
        assert all(key in volume.meta for key in keys)
        assert volume.meta["source_format"] == "dicom"
        assert volume.meta["patient"] == pet_study.patient
        assert volume.meta["study"]["StudyInstanceUID"] == pet_study.study["StudyInstanceUID"]
    assert mri.meta["modality"] == "MR" and mri.meta["units"] == ""
    assert pet.meta["modality"] == "PT" and pet.meta["units"] == "SUVbw" and pet.meta["suv"]["applied"]
    assert mri.meta["series"]["FrameOfReferenceUID"] != pet.meta["series"]["FrameOfReferenceUID"]
    # source files sorted along the slice axis: positions increase along the normal
    positions = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
                 for f in pet.meta["source_files"]]
    assert positions == sorted(positions) and len(positions) == pet.shape[3]
    nifti = load_volume(pet_study.mri_nifti)
    assert nifti.meta["source_format"] == "nifti" and nifti.meta["patient"] == {}
    assert nifti.meta["modality"] == "OT"


def test_one_file_of_a_series_loads_the_series(pet_study):
    files = sorted(pet_study.mri_dicom.glob("*.dcm"))
    assert_same_volume(load_volume(files[3]), load_volume(pet_study.mri_dicom))


@pytest.fixture(scope="module")
def mixed_folder(pet_study, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copytree(pet_study.mri_dicom, folder / "a")
    shutil.copytree(pet_study.functional_dicom, folder / "b")
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def test_series_are_listed_and_picked_by_modality_or_uid(mixed_folder, pet_study):
    series = list_dicom_series(mixed_folder)
    assert [s.modality for s in series] == ["MR", "PT"]
    assert all(len(s.files) > 5 for s in series)
    assert load_volume(mixed_folder, modality="MRI").meta["modality"] == "MR"
    assert load_volume(mixed_folder, modality="PET").meta["modality"] == "PT"
    by_uid = load_volume(mixed_folder, series_uid=series[1].series_uid, suv=False)
    assert_same_volume(by_uid, load_volume(pet_study.functional_dicom, suv=False))


def test_mixed_series_without_a_choice_lists_what_was_found(mixed_folder):
    series = list_dicom_series(mixed_folder)
    with pytest.raises(InputError) as err:
        load_volume(mixed_folder)
    assert err.value.path == mixed_folder
    for s in series:
        assert s.series_uid in str(err.value)
    with pytest.raises(InputError, match="no NM series"):
        load_volume(mixed_folder, modality="SPECT")


def test_partial_export_left_by_a_killed_run_is_not_a_series(pet_study, tmp_path):
    folder = tmp_path / "out"
    shutil.copytree(pet_study.mri_dicom, folder / "mri")
    # what a killed export leaves until the next one cleans it: a whole series under a temporary name
    shutil.copytree(pet_study.functional_dicom, temporary_name(folder / "pet_on_mri"))
    (series,) = list_dicom_series(folder)
    assert series.modality == "MR" and all(p.parent == folder / "mri" for p in series.files)
    assert load_volume(folder).meta["modality"] == "MR"  # no "2 series match" from the leftover


# Bad input --------------------------------------------------------------------------------------------


def copy_series(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM") as err:
        load_volume(tmp_path)
    assert err.value.path == tmp_path


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_volume(tmp_path / "nope.nii.gz")


def test_missing_slice_in_the_middle_names_its_neighbours(pet_study, tmp_path):
    folder = copy_series(pet_study.mri_dicom, tmp_path / "mr")
    files = sorted(folder.glob("*.dcm"))
    files[5].unlink()
    with pytest.raises(InputError, match="missing slice") as err:
        load_volume(folder)
    assert files[4].name in str(err.value) and files[6].name in str(err.value)


def test_missing_end_slice_is_caught_by_the_declared_count(pet_study, tmp_path):
    folder = copy_series(pet_study.functional_dicom, tmp_path / "pt")
    sorted(folder.glob("*.dcm"))[-1].unlink()
    with pytest.raises(InputError, match="NumberOfSlices"):
        load_volume(folder)


def test_truncated_slice_is_named(pet_study, tmp_path):
    folder = copy_series(pet_study.functional_dicom, tmp_path / "pt")
    victim = sorted(folder.glob("*.dcm"))[4]
    victim.write_bytes(victim.read_bytes()[:-300])
    with pytest.raises(InputError, match="corrupt") as err:
        load_volume(folder)
    assert err.value.path == victim


def test_garbled_slice_header_is_named(pet_study, tmp_path):
    folder = copy_series(pet_study.mri_dicom, tmp_path / "mr")
    victim = sorted(folder.glob("*.dcm"))[2]
    data = victim.read_bytes()
    victim.write_bytes(data[:132] + bytes(range(256)) * ((len(data) - 132) // 256))
    with pytest.raises(InputError, match="corrupt") as err:
        load_volume(folder)
    assert err.value.path == victim


def test_single_dicom_slice_is_2d(pet_study, tmp_path):
    shutil.copy(sorted(pet_study.mri_dicom.glob("*.dcm"))[10], tmp_path / "one.dcm")
    with pytest.raises(InputError, match="2D"):
        load_volume(tmp_path)


def test_dicom_with_repeated_positions_is_4d(pet_study, tmp_path):
    folder = copy_series(pet_study.mri_dicom, tmp_path / "mr")
    for f in sorted(folder.glob("*.dcm"))[:3]:  # a second time point of three slices, same series
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"t2_{f.name}")
    with pytest.raises(InputError, match="4D"):
        load_volume(folder)


def test_gated_nm_is_4d(spect_study, tmp_path):
    source = next(spect_study.functional_dicom.glob("*.dcm"))
    ds = pydicom.dcmread(source)
    ds.NumberOfSlices = int(ds.NumberOfFrames) // 2  # two gates of half the slices each
    ds.save_as(tmp_path / "gated.dcm")
    with pytest.raises(InputError, match="4D") as err:
        load_volume(tmp_path)
    assert err.value.path == tmp_path / "gated.dcm"


@pytest.mark.parametrize("shape, problem", [((6, 7, 8, 3), "4D"), ((6, 7), "2D"), ((6, 7, 1), "2D")])
def test_nifti_of_wrong_dimension(tmp_path, shape, problem):
    path = tmp_path / "bad.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), path)
    with pytest.raises(InputError, match=problem) as err:
        load_volume(path)
    assert err.value.path == path


def test_nifti_with_trailing_unit_dimension_is_3d(tmp_path):
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 7, 8, 1), np.float32), np.eye(4)), path)
    assert load_volume(path).shape == (1, 6, 7, 8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = np.ones((6, 7, 8), np.float32)
    data[2, 3, 4] = bad
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(InputError, match="1 voxel.*NaN or infinite") as err:
        load_volume(path)
    assert err.value.path == path


def test_unreadable_nifti(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match="cannot read NIfTI") as err:
        load_volume(path)
    assert err.value.path == path


def test_pet_nifti_needs_a_choice_about_suv(pet_study):
    with pytest.raises(InputError, match="suv=False"):
        load_volume(pet_study.functional_nifti, modality="PET")
    raw = load_volume(pet_study.functional_nifti, modality="PET", allow_raw_activity=True)
    assert raw.meta["suv"]["applied"] is False and "NIfTI" in raw.meta["suv"]["reason"]


def test_inputs_are_never_modified(pet_study, spect_study, mixed_folder, tmp_path):
    roots = [pet_study.out_dir, spect_study.out_dir, mixed_folder]
    before = [checksums(r) for r in roots]
    load_volume(pet_study.mri_nifti)
    load_volume(pet_study.mri_dicom)
    load_volume(pet_study.functional_dicom)
    load_volume(spect_study.functional_dicom)
    with pytest.raises(InputError):
        load_volume(mixed_folder)
    assert [checksums(r) for r in roots] == before
