"""The whole job for one patient on a synthetic study with a known answer."""

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from mixfuse_med.errors import InputError, OutputExistsError
from mixfuse_med.io import load_volume
from mixfuse_med.io.geometry import to_sitk
from mixfuse_med.networks import MixFuse
from mixfuse_med.pipeline import STAGES, fuse_study, fuse_volumes, load_study
from mixfuse_med.synthetic import make_synthetic_study

TINY = dict(embed_dim=8, iterations=1, cross_depth=2, self_depth=2, num_heads=2, window_size=4)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return MixFuse(**TINY).eval()


@pytest.fixture(scope="module")
def pet_study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("pet"), modality="PET", seed=3, downsample=3)


def test_fuse_study_from_dicom_keeps_the_mri_grid_and_suv(pet_study, tmp_path, tiny_model):
    stages = []
    paths = fuse_study(pet_study.mri_dicom, pet_study.functional_dicom, tmp_path / "out", modality="PET",
                       model=tiny_model, progress=lambda stage, fraction: stages.append((stage, fraction)))
    mri = load_volume(pet_study.mri_dicom)
    for key in ("fused_luma_nifti", "fused_rgb_nifti", "functional_nifti"):
        image = nib.load(paths[key])
        np.testing.assert_allclose(image.affine, np.asarray(mri.affine), atol=1e-4)
        assert image.shape[:3] == tuple(mri.shape[1:])
    luma = nib.load(paths["fused_luma_nifti"]).get_fdata()
    assert 0 <= luma.min() and luma.max() <= 1 and luma.max() > 0.2
    # Registered PET in SUV on the MRI grid, close to the truth resampled with the known transform.
    registered = nib.load(paths["functional_nifti"]).get_fdata()
    truth_bq = sitk.ReadImage(str(pet_study.functional_nifti))
    ideal = sitk.GetArrayFromImage(sitk.Resample(truth_bq, to_sitk(mri), pet_study.true_transform,
                                                 sitk.sitkLinear, 0.0)).transpose(2, 1, 0)
    ideal_suv = ideal * pet_study.suv.factor
    brain = ideal_suv > 0.5 * ideal_suv.max()
    assert np.corrcoef(registered[brain], ideal_suv[brain])[0, 1] > 0.95
    assert np.median(registered[brain] / ideal_suv[brain]) == pytest.approx(1.0, abs=0.05)
    report = json.loads(paths["report_json"].read_text())
    assert report["functional_units"] == "SUVbw" and report["registration"]["mi_after"] > \
        report["registration"]["mi_before"]
    assert [s for s, f in stages if f == 1.0] == list(STAGES)
    assert paths["fused_rgb_dicom"].is_dir() and any(paths["fused_rgb_dicom"].iterdir())


def test_cancel_from_progress_leaves_no_output(pet_study, tmp_path, tiny_model):
    def cancel(stage, fraction):
        if stage == "fuse" and fraction > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fuse_study(pet_study.mri_nifti, pet_study.functional_nifti, tmp_path / "out", modality="PET",
                   register=False, model=tiny_model, progress=cancel)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


OUTPUTS = ["fused_luma.nii.gz", "fused_rgb.nii.gz", "pet_on_mri.nii.gz", "dicom/fused_rgb",
           "dicom/pet_on_mri", "fusion_report.json"]


@pytest.mark.parametrize("existing", OUTPUTS)
def test_an_existing_output_is_refused_before_anything_is_loaded(pet_study, tmp_path, tiny_model, existing):
    out = tmp_path / "out"
    target = out / existing
    if existing.startswith("dicom/"):
        target.mkdir(parents=True)
    else:
        out.mkdir()
        target.write_text("an earlier run's output")
    stages = []
    with pytest.raises(OutputExistsError, match=existing.split("/")[-1]) as err:
        fuse_study(pet_study.mri_dicom, pet_study.functional_dicom, out, modality="PET", model=tiny_model,
                   progress=lambda stage, fraction: stages.append(stage))
    assert err.value.path == target
    assert stages == []  # refused before the load stage started
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        {existing, *(["dicom"] if existing.startswith("dicom/") else [])})


def test_outputs_of_formats_not_asked_for_do_not_block_a_run(pet_study, tmp_path, tiny_model):
    out = tmp_path / "out"
    (out / "dicom" / "pet_on_mri").mkdir(parents=True)  # an earlier DICOM export
    with pytest.raises(InputError, match="unknown export format"):  # also refused up front
        fuse_study(pet_study.mri_nifti, pet_study.functional_nifti, out, formats=("nifti", "png"),
                   model=tiny_model, progress=lambda stage, fraction: pytest.fail(f"{stage} ran"))
    paths = fuse_study(pet_study.mri_nifti, pet_study.functional_nifti, out, modality="PET", register=False,
                       formats=("nifti",), model=tiny_model)
    assert set(paths) == {"fused_luma_nifti", "fused_rgb_nifti", "functional_nifti", "report_json"}
    assert all(path.is_file() for path in paths.values())


def test_fuse_volumes_without_registration_from_nifti(pet_study, tiny_model):
    mri, pet = load_study(pet_study.mri_nifti, pet_study.functional_nifti, "PET")
    assert pet.meta["suv"]["applied"] is False  # NIfTI carries no SUV headers
    study = fuse_volumes(mri, pet, modality="PET", register=False, model=tiny_model)
    assert study.registration is None
    assert study.fused_rgb.shape == (3, *mri.shape[1:]) and study.fused_rgb.dtype == torch.uint8
    np.testing.assert_allclose(np.asarray(study.functional.affine), np.asarray(mri.affine), atol=1e-6)
    assert study.functional.meta["units"] == pet.meta["units"]
    assert study.colormap == "pet"


def test_wrong_inputs_are_refused(pet_study, tiny_model, tmp_path):
    mri, pet = load_study(pet_study.mri_nifti, pet_study.functional_nifti, "PET")
    with pytest.raises(ValueError, match="PET or SPECT"):
        fuse_volumes(mri, pet, modality="CT", model=tiny_model)
    with pytest.raises(InputError, match="not 3D"):
        fuse_volumes(mri[:, :, :, :1], pet, modality="PET", model=tiny_model)
    with pytest.raises(TypeError, match="unknown fusion option"):
        fuse_volumes(mri, pet, modality="PET", model=tiny_model, colour_map="pet")
    with pytest.raises(InputError, match="does not exist"):
        fuse_study(tmp_path / "missing", pet_study.functional_nifti, tmp_path / "out", model=tiny_model)
