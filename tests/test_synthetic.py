"""The synthetic study generator: its truth is what the files say."""

import json
import socket

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from mixfuse_med.errors import OutputExistsError
from mixfuse_med.io import load_volume
from mixfuse_med.io.geometry import to_sitk
from mixfuse_med.synthetic import brain_points, make_synthetic_study, mni_templates, random_rigid


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("syn"), "PET", seed=7, downsample=4)


def test_templates_come_from_the_nilearn_wheel_without_network(monkeypatch):
    from nilearn import datasets

    def no_network(*args, **kwargs):
        raise OSError("network used")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for load in (datasets.load_mni152_template, datasets.load_mni152_gm_template,
                 datasets.load_mni152_wm_template):
        image = load(resolution=1)
        assert image.shape == (197, 233, 189)
    templates = mni_templates()
    assert set(templates) >= {"t1", "gm", "wm", "csf", "brain"}


def test_random_movements_stay_within_the_limits():
    for seed in range(40):
        tx = random_rigid(seed)
        rotation = Rotation.from_matrix(np.reshape(tx.GetMatrix(), (3, 3)))
        angle = np.rad2deg(np.linalg.norm(rotation.as_rotvec()))
        assert angle <= 10.0 + 1e-9 and np.linalg.norm(tx.GetTranslation()) <= 15.0 + 1e-9
    at_max = random_rigid(3, at_maximum=True)
    assert np.linalg.norm(at_max.GetTranslation()) == pytest.approx(15.0)
    assert random_rigid(5).GetParameters() == random_rigid(5).GetParameters()
    assert random_rigid(5).GetParameters() != random_rigid(6).GetParameters()


def test_files_and_truth_are_written(study):
    for path in (study.mri_nifti, study.functional_nifti, study.transform_file, study.truth_json):
        assert path.is_file()
    assert len(list(study.mri_dicom.glob("*.dcm"))) > 10
    assert len(list(study.functional_dicom.glob("*.dcm"))) > 10
    truth = json.loads(study.truth_json.read_text())
    assert truth["suv"]["factor"] == pytest.approx(study.suv.factor)
    assert truth["true_transform"]["parameters"] == pytest.approx(list(study.true_transform.GetParameters()))
    saved = sitk.ReadTransform(str(study.transform_file))
    for p in brain_points(20):
        np.testing.assert_allclose(saved.TransformPoint(p), study.true_transform.TransformPoint(p), atol=1e-6)
    assert not list(study.out_dir.rglob(".*"))  # no temporary files left


def test_same_seed_same_study(study, tmp_path):
    again = make_synthetic_study(tmp_path, "PET", seed=7, downsample=4, formats=("dicom",))
    a = sorted(study.functional_dicom.glob("*.dcm"))
    b = sorted(again.functional_dicom.glob("*.dcm"))
    assert [f.read_bytes() for f in a] == [f.read_bytes() for f in b]
    assert again.mri_nifti is None


def test_identity_is_shared_by_mri_and_pet(study):
    mr = pydicom.dcmread(next(study.mri_dicom.glob("*.dcm")), stop_before_pixels=True)
    pt = pydicom.dcmread(next(study.functional_dicom.glob("*.dcm")), stop_before_pixels=True)
    for key in ("PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID", "AccessionNumber"):
        assert mr.get(key) == pt.get(key), key
    assert mr.SeriesInstanceUID != pt.SeriesInstanceUID
    assert mr.FrameOfReferenceUID != pt.FrameOfReferenceUID  # two scanners, not registered
    assert pt.Units == "BQML" and float(pt.PatientWeight) == study.suv.patient_weight_kg
    assert float(pt.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose) == \
        study.suv.injected_dose_bq


def test_true_transform_aligns_the_functional_with_the_grey_matter(study):
    """The convention: resampling the PET through the truth puts uptake on the MRI's grey matter."""
    mri = to_sitk(load_volume(study.mri_nifti))
    pet = to_sitk(load_volume(study.functional_nifti, modality="PET", suv=False))
    gm = sitk.GetArrayFromImage(sitk.Resample(mni_templates()["gm"], mri)).ravel()

    def correlation(transform):
        moved = sitk.GetArrayFromImage(sitk.Resample(pet, mri, transform)).ravel()
        return np.corrcoef(moved, gm)[0, 1]

    aligned, unaligned = correlation(study.true_transform), correlation(sitk.Euler3DTransform())
    assert aligned > 0.8 and aligned > unaligned + 0.1


def test_spect_is_coarser_and_in_counts(tmp_path):
    spect = make_synthetic_study(tmp_path, "SPECT", seed=7, downsample=4, formats=("dicom",))
    volume = load_volume(spect.functional_dicom)
    assert volume.meta["modality"] == "NM" and volume.meta["units"] == "CNTS" and spect.suv is None
    np.testing.assert_allclose(np.linalg.norm(np.asarray(volume.affine)[:3, :3], axis=0), 16.0)
    assert np.array_equal(volume.numpy(), np.round(volume.numpy()))  # whole counts


def test_existing_outputs_are_kept_unless_overwrite(study):
    before = study.truth_json.read_bytes()
    with pytest.raises(OutputExistsError):
        make_synthetic_study(study.out_dir, "PET", seed=8, downsample=4)
    assert study.truth_json.read_bytes() == before
    again = make_synthetic_study(study.out_dir, "PET", seed=7, downsample=4, overwrite=True)
    assert again.truth_json.read_bytes() == before


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="PET or SPECT"):
        make_synthetic_study(tmp_path, "CT")
    with pytest.raises(ValueError, match="formats"):
        make_synthetic_study(tmp_path, formats=("png",))
