"""DICOM export: dciodvfy-clean series that read back (SimpleITK, pydicom) to the in-memory study."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from export_fixtures import (
    MR_SERIES,
    PATIENT,
    PET_SERIES,
    STUDY,
    assert_dciodvfy_clean,
    make_study,
    parse_dciodvfy,
    read_series_pydicom,
)
from pydicom.dataelem import RawDataElement

from mixfuse_med.errors import InputError
from mixfuse_med.export import export_study
from mixfuse_med.io.geometry import from_sitk

PET_CLASS = "1.2.840.10008.5.1.4.1.1.128"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def pet_export(tmp_path_factory):
    """A DICOM-source PET study exported once, shared by the read-only checks below."""
    tmp = tmp_path_factory.mktemp("pet")
    study = make_study(tmp, source="dicom", modality="PET")
    return study, export_study(study, tmp / "out", formats=("dicom",))


@pytest.fixture(scope="module")
def spect_export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spect")
    study = make_study(tmp, source="nifti", modality="SPECT", seed=1)
    return study, export_study(study, tmp / "out", formats=("dicom",))


def _truth(study):
    return np.asarray(study.mri.affine, dtype=np.float64), study.functional.numpy()[0]


def _affine_from_headers(series: list[pydicom.Dataset]) -> np.ndarray:
    """RAS affine rebuilt from the headers alone (independent of the exporter's geometry code)."""
    first, last = series[0], series[-1]
    iop = np.asarray(first.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * column_spacing
    lps[:3, 1] = iop[3:] * row_spacing
    start, end = (np.asarray(ds.ImagePositionPatient, float) for ds in (first, last))
    lps[:3, 2] = (end - start) / (len(series) - 1)
    lps[:3, 3] = start
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@pytest.mark.parametrize("which", ["pet_export", "spect_export"])
def test_every_file_passes_dciodvfy(which, request):
    _, paths = request.getfixturevalue(which)
    for key in ("fused_rgb_dicom", "functional_dicom"):
        assert_dciodvfy_clean(paths[key])


def _broken_copy(pet_export, tmp_path, name: str, damage) -> Path:
    """A copy of one exported PET instance, damaged by ``damage(dataset)``, alone in a folder."""
    _, paths = pet_export
    source = sorted(paths["functional_dicom"].glob("*.dcm"))[0]
    folder = tmp_path / name
    folder.mkdir()
    ds = pydicom.dcmread(source)
    damage(ds)
    ds.save_as(folder / source.name)
    return folder


def test_dciodvfy_check_fails_on_a_missing_type_1_attribute(pet_export, tmp_path):
    folder = _broken_copy(pet_export, tmp_path, "no_spacing", lambda ds: delattr(ds, "PixelSpacing"))
    with pytest.raises(AssertionError, match=r"Type 1 Required Element=<PixelSpacing>"):
        assert_dciodvfy_clean(folder)


def test_dciodvfy_check_sees_messages_prefixed_with_the_attribute(pet_export, tmp_path):
    def odd_length(ds):  # raw, so pydicom writes the odd length instead of padding it
        tag = pydicom.tag.Tag("SeriesDescription")
        ds[tag] = RawDataElement(tag, "LO", 3, b"abc", 0, False, True)

    folder = _broken_copy(pet_export, tmp_path, "odd", odd_length)
    with pytest.raises(AssertionError, match=re.escape(
            "(0x0008,0x103e) LO Series Description  - Error - Bad Value Length")):
        assert_dciodvfy_clean(folder)

    # a private tag without owner is only a warning: listed, and the file still passes
    folder = _broken_copy(pet_export, tmp_path, "private", lambda ds: ds.add_new(0x00091010, "LO", "ab"))
    owner = re.escape("(0x0009,0x1010)  ?  - Warning - Private tag without owner")
    with pytest.warns(UserWarning, match=owner):
        assert_dciodvfy_clean(folder)


def test_dciodvfy_exit_status_counts_when_no_error_line_is_printed():
    errors, warns = parse_dciodvfy("PETImage\nWarning - Missing attribute ... - Study ID\n", 1)
    assert len(errors) == 1 and "status 1" in errors[0]
    assert warns == ["Warning - Missing attribute ... - Study ID"]
    assert parse_dciodvfy("PETImage\nWarning - x\n", 0) == ([], ["Warning - x"])


def test_one_instance_per_mri_slice_with_the_mri_geometry(pet_export):
    study, paths = pet_export
    affine, _ = _truth(study)
    for key in ("fused_rgb_dicom", "functional_dicom"):
        series = read_series_pydicom(paths[key])
        assert len(series) == study.mri.shape[3]
        np.testing.assert_allclose(_affine_from_headers(series), affine, atol=1e-6)
        assert (series[0].Rows, series[0].Columns) == (study.mri.shape[2], study.mri.shape[1])


def test_rgb_reads_back_with_pydicom_and_simpleitk(pet_export):
    study, paths = pet_export
    affine, _ = _truth(study)
    expected = study.fused_rgb.numpy()
    series = read_series_pydicom(paths["fused_rgb_dicom"])
    assert {ds.SOPClassUID for ds in series} == {SC_CLASS}
    assert series[0].PhotometricInterpretation == "RGB" and series[0].SamplesPerPixel == 3
    volume = np.stack([ds.pixel_array.transpose(2, 1, 0) for ds in series], axis=-1)  # (3, X, Y, Z)
    np.testing.assert_array_equal(volume, expected)

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(paths["fused_rgb_dicom"]))
    image = sitk.ReadImage(files)
    assert image.GetNumberOfComponentsPerPixel() == 3
    back = from_sitk(image, dtype=np.uint8)
    np.testing.assert_array_equal(back.numpy(), expected)
    np.testing.assert_allclose(np.asarray(back.affine), affine, atol=1e-5)


def test_pet_values_round_trip_within_half_a_slope(pet_export):
    study, paths = pet_export
    affine, truth = _truth(study)
    series = read_series_pydicom(paths["functional_dicom"])
    assert {ds.SOPClassUID for ds in series} == {PET_CLASS}
    assert truth.min() < 0  # the fixture has negatives: signed pixels are exercised
    for k, ds in enumerate(series):
        assert float(ds.RescaleIntercept) == 0.0  # the PET IOD demands it
        values = ds.pixel_array.T * float(ds.RescaleSlope)
        assert np.abs(values - truth[:, :, k]).max() <= float(ds.RescaleSlope) / 2 * 1.0001
        assert float(ds.RescaleSlope) < np.abs(truth[:, :, k]).max() / 30000  # the full int16 range is used

    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(paths["functional_dicom"]))
    back = from_sitk(sitk.ReadImage(files, sitk.sitkFloat32))
    np.testing.assert_allclose(np.asarray(back.affine), affine, atol=1e-5)
    slope = max(float(ds.RescaleSlope) for ds in series)
    assert np.abs(back.numpy()[0] - truth).max() <= slope / 2 * 1.0001
    if study.functional.meta["units"] == "SUVbw":  # our loader takes it back as SUV, unscaled
        from mixfuse_med.io import load_volume

        loaded = load_volume(paths["functional_dicom"])
        assert loaded.meta["units"] == "SUVbw" and loaded.meta["suv"]["stored_as_suv"]
        assert np.abs(loaded.numpy()[0] - truth).max() <= slope / 2 * 1.0001


def test_spect_values_round_trip_in_counts(spect_export):
    study, paths = spect_export
    affine, truth = _truth(study)
    series = read_series_pydicom(paths["functional_dicom"])
    assert {ds.SOPClassUID for ds in series} == {SC_CLASS}
    assert series[0].Modality == "NM" and series[0].RescaleType == "US"
    assert series[0].ImageComments == "values in CNTS"
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(paths["functional_dicom"]))
    back = from_sitk(sitk.ReadImage(files, sitk.sitkFloat32))
    np.testing.assert_allclose(np.asarray(back.affine), affine, atol=1e-5)
    for k, ds in enumerate(series):
        slope = float(ds.RescaleSlope)
        values = ds.pixel_array.T * slope + float(ds.RescaleIntercept)
        assert np.abs(values - truth[:, :, k]).max() <= slope / 2 * 1.0001 + 1e-9
        assert np.abs(back.numpy()[0, :, :, k] - truth[:, :, k]).max() <= slope / 2 * 1.0001 + 1e-6


def test_identity_is_the_source_mri_with_new_series_and_instances(pet_export):
    study, paths = pet_export
    rgb = read_series_pydicom(paths["fused_rgb_dicom"])
    pet = read_series_pydicom(paths["functional_dicom"])
    for ds in rgb + pet:
        for key, value in {**PATIENT, **{k: STUDY[k] for k in ("StudyInstanceUID", "AccessionNumber",
                                                                 "StudyID", "StudyDate")}}.items():
            assert str(ds[key].value) == value, key
        assert ds.FrameOfReferenceUID == MR_SERIES["FrameOfReferenceUID"]
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    series_uids = {ds.SeriesInstanceUID for ds in rgb} | {ds.SeriesInstanceUID for ds in pet}
    assert len(series_uids) == 2 and not series_uids & {MR_SERIES["SeriesInstanceUID"],
                                                        PET_SERIES["SeriesInstanceUID"]}
    source_uids = {pydicom.dcmread(f).SOPInstanceUID for f in study.mri.meta["source_files"]}
    sop_uids = [ds.SOPInstanceUID for ds in rgb + pet]
    assert len(set(sop_uids)) == len(sop_uids) and not set(sop_uids) & source_uids
    assert "fused" in rgb[0].SeriesDescription.lower() and "PET" in rgb[0].SeriesDescription
    assert "SUVbw" in pet[0].SeriesDescription and "MR grid" in pet[0].SeriesDescription


def test_derivation_references_point_at_the_source_series_and_slices(pet_export):
    study, paths = pet_export
    source = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in study.mri.meta["source_files"]}
    for key in ("fused_rgb_dicom", "functional_dicom"):
        for ds in read_series_pydicom(paths[key]):
            related = {item.SeriesInstanceUID for item in ds.RelatedSeriesSequence}
            assert related == {MR_SERIES["SeriesInstanceUID"], PET_SERIES["SeriesInstanceUID"]}
            (reference,) = ds.SourceImageSequence
            mr_slice = source[reference.ReferencedSOPInstanceUID]
            assert reference.ReferencedSOPClassUID == mr_slice.SOPClassUID
            np.testing.assert_allclose(np.asarray(mr_slice.ImagePositionPatient, float),
                                       np.asarray(ds.ImagePositionPatient, float), atol=1e-6)
            (series_ref,) = ds.ReferencedSeriesSequence
            assert series_ref.SeriesInstanceUID == MR_SERIES["SeriesInstanceUID"]
    pet = read_series_pydicom(paths["functional_dicom"])[0]
    assert pet.DerivationCodeSequence[0].CodeValue == "113085"  # spatial resampling
    assert pet.Units == "GML" and pet.SUVType == "BW"
    # decay and radiopharmaceutical facts of the source PET travel with the values
    assert pet.DecayCorrection == "START" and float(pet.DecayFactor) == pytest.approx(1.02)
    assert pet.RadiopharmaceuticalInformationSequence[0].Radiopharmaceutical == "Fluorodeoxyglucose"


def test_nifti_input_gets_a_synthetic_identity_that_is_stable_and_overridable(tmp_path, spect_export):
    _, paths = spect_export
    rgb = read_series_pydicom(paths["fused_rgb_dicom"])
    spect = read_series_pydicom(paths["functional_dicom"])
    assert rgb[0].PatientName == "MIXFUSE^SYNTHETIC" and rgb[0].PatientID.startswith("MIXFUSE-SYNTH-")
    assert "synthetic" in rgb[0].PatientComments.lower()
    assert rgb[0].StudyInstanceUID == spect[0].StudyInstanceUID
    assert rgb[0].FrameOfReferenceUID == spect[0].FrameOfReferenceUID
    assert "SourceImageSequence" not in rgb[0] and "RelatedSeriesSequence" not in rgb[0]

    # the same input files give the same synthetic patient and study on every run; other files another
    study = make_study(tmp_path, source="nifti", modality="SPECT", seed=1)
    runs = [export_study(study, tmp_path / run, formats=("dicom",))["fused_rgb_dicom"] for run in "ab"]
    runs = [read_series_pydicom(folder)[0] for folder in runs]
    assert (runs[0].PatientID, runs[0].StudyInstanceUID) == (runs[1].PatientID, runs[1].StudyInstanceUID)
    assert runs[0].SeriesInstanceUID != runs[1].SeriesInstanceUID
    assert (runs[0].PatientID, runs[0].StudyInstanceUID) != (rgb[0].PatientID, rgb[0].StudyInstanceUID)

    chosen = {"PatientID": "RESEARCH-7", "PatientName": "Study^Subject7", "StudyInstanceUID": "1.2.3.4.5"}
    overridden = export_study(study, tmp_path / "chosen", formats=("dicom",), identity=chosen)
    for ds in read_series_pydicom(overridden["functional_dicom"]):
        assert (ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID) == tuple(chosen.values())
    with pytest.raises(InputError, match="PatientNmae"):
        export_study(study, tmp_path / "typo", formats=("dicom",), identity={"PatientNmae": "x"})
    assert not (tmp_path / "typo" / "dicom" / "fused_rgb").exists()


@pytest.mark.parametrize("modality, source, units, identity", [
    ("PET", "nifti", "BQML", None),
    ("PET", "nifti", "kBq/cc?", None),  # units the PET IOD has no term for: written as NONE
    ("SPECT", "dicom", "CNTS", None),
    ("PET", "dicom", "SUVbw", {"StudyInstanceUID": "1.2.3.4.5.6"}),  # moved to another study
])
def test_other_variants_pass_dciodvfy(tmp_path, modality, source, units, identity):
    study = make_study(tmp_path, source=source, modality=modality, units=units)
    paths = export_study(study, tmp_path / "out", formats=("dicom",), identity=identity)
    for key in ("fused_rgb_dicom", "functional_dicom"):
        assert_dciodvfy_clean(paths[key])
    first = read_series_pydicom(paths["functional_dicom"])[0]
    if modality == "PET":
        assert first.Units == {"BQML": "BQML", "SUVbw": "GML"}.get(units, "NONE")
    if identity:
        (other,) = first.StudiesContainingOtherReferencedInstancesSequence
        assert other.StudyInstanceUID == STUDY["StudyInstanceUID"] and "ReferencedSeriesSequence" not in first


def test_nan_outside_the_functional_field_of_view_is_written_as_zero(tmp_path):
    study = make_study(tmp_path, source="nifti", modality="PET")
    study.functional[0, :3, :, 2] = float("nan")
    paths = export_study(study, tmp_path / "out", formats=("dicom",))
    ds = read_series_pydicom(paths["functional_dicom"])[2]
    values = ds.pixel_array.T * float(ds.RescaleSlope)
    assert np.all(values[:3] == 0)
    truth = study.functional.numpy()[0, 3:, :, 2]
    assert np.abs(values[3:] - truth).max() <= float(ds.RescaleSlope) / 2 * 1.0001
