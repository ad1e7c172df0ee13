"""NIfTI export: the MRI's affine in qform and sform, RGB24 colour, functional values in their units."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import SimpleITK as sitk
from export_fixtures import make_study

from mixfuse_med.export import export_study
from mixfuse_med.io.geometry import sitk_to_affine


def test_nifti_outputs_keep_mri_geometry_values_and_units(tmp_path):
    study = make_study(tmp_path, source="nifti", modality="PET")
    paths = export_study(study, tmp_path / "out", formats=("nifti",))
    assert set(paths) == {"fused_luma_nifti", "fused_rgb_nifti", "functional_nifti"}
    assert paths["functional_nifti"].name == "pet_on_mri.nii.gz"
    affine = np.asarray(study.mri.affine, dtype=np.float64)
    for path in paths.values():
        image = nib.load(path)
        qform, qcode = image.get_qform(coded=True)
        sform, scode = image.get_sform(coded=True)
        assert qcode == 1 and scode == 1  # scanner anatomical
        np.testing.assert_allclose(qform, affine, atol=1e-4)  # qform is stored as float32 quaternion
        np.testing.assert_allclose(sform, affine, atol=1e-4)
        np.testing.assert_allclose(sitk_to_affine(sitk.ReadImage(str(path))), affine, atol=1e-4)

    luma = nib.load(paths["fused_luma_nifti"])
    assert luma.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asarray(luma.dataobj), study.fused_luma.numpy()[0])

    functional = nib.load(paths["functional_nifti"])
    np.testing.assert_array_equal(np.asarray(functional.dataobj), study.functional.numpy()[0])
    assert functional.header.get_intent()[2] == "SUVbw"
    assert (float(functional.header["cal_min"]), float(functional.header["cal_max"])) == study.window


def test_rgb_overlay_is_rgb24_colour_for_nibabel_and_itk(tmp_path):
    study = make_study(tmp_path, source="nifti", modality="SPECT")
    path = export_study(study, tmp_path / "out", formats=("nifti",))["fused_rgb_nifti"]
    image = nib.load(path)
    assert int(image.header["datatype"]) == 128  # NIFTI_TYPE_RGB24
    records = np.asarray(image.dataobj)
    assert records.shape == tuple(study.mri.shape[1:])
    rgb = np.stack([records["R"], records["G"], records["B"]])
    np.testing.assert_array_equal(rgb, study.fused_rgb.numpy())

    itk_image = sitk.ReadImage(str(path))  # ITK-SNAP and 3D Slicer read NIfTI through ITK
    assert itk_image.GetNumberOfComponentsPerPixel() == 3
    assert itk_image.GetPixelID() == sitk.sitkVectorUInt8
    voxel = (3, 2, 1)
    assert itk_image[voxel] == tuple(int(v) for v in study.fused_rgb.numpy()[(slice(None), *voxel)])


def test_qform_and_sform_codes_of_a_nifti_mri_are_kept(tmp_path):
    study = make_study(tmp_path, source="nifti")
    study.mri.meta["qform_code"], study.mri.meta["sform_code"] = np.array(1), np.array(2)  # as MONAI does
    path = export_study(study, tmp_path / "out", formats=("nifti",))["fused_luma_nifti"]
    image = nib.load(path)
    assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == (1, 2)
