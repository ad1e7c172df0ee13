"""SUVbw by the QIBA rules: the generator's known dose, weight and times, and every rule that can fail."""

import copy
import shutil
from datetime import timedelta

import numpy as np
import pydicom
import pytest

from mixfuse_med.errors import InputError
from mixfuse_med.io import SuvError, load_volume, suv_parameters
from mixfuse_med.synthetic import make_synthetic_study


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("suv"), "PET", seed=4, downsample=4)


@pytest.fixture(scope="module")
def headers(study):
    return [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(study.functional_dicom.glob("*.dcm"))]


def hand_factor(dose_bq, weight_kg, half_life_s, injection, scan):
    seconds = (scan - injection).total_seconds()
    return weight_kg * 1000.0 / (dose_bq * 0.5 ** (seconds / half_life_s))


def test_suv_matches_the_hand_computed_value(study):
    truth = study.suv
    expected = hand_factor(truth.injected_dose_bq, truth.patient_weight_kg, truth.half_life_s,
                           truth.injection_time, truth.scan_time)
    assert 1800 <= (truth.scan_time - truth.injection_time).total_seconds() <= 5400  # a real decay
    suv = load_volume(study.functional_dicom)
    raw = load_volume(study.functional_dicom, suv=False)
    nifti_bqml = load_volume(study.functional_nifti, modality="PET", suv=False)
    assert suv.meta["units"] == "SUVbw" and raw.meta["units"] == "BQML"
    assert suv.meta["suv"]["factor"] == pytest.approx(expected, rel=1e-4)
    assert suv.meta["suv"]["decay_time_s"] == pytest.approx((truth.scan_time - truth.injection_time).seconds)
    brain = raw.numpy() > 0.05 * float(raw.max())
    np.testing.assert_allclose(suv.numpy()[brain], raw.numpy()[brain] * expected, rtol=1e-4)
    np.testing.assert_allclose(suv.numpy()[brain], nifti_bqml.numpy()[brain] * expected, rtol=1e-4)
    # and SUV is in the range the phantom was built with (grey matter ~8, blurred)
    assert 4.0 < float(suv.max()) < 12.0


def test_factor_from_headers(headers, study):
    params = suv_parameters(headers)
    assert params.factor == pytest.approx(study.suv.factor, rel=1e-9)
    assert params.reference_source == "SeriesDateTime"
    assert params.patient_weight_kg == study.suv.patient_weight_kg


def mutated(headers, change):
    out = copy.deepcopy(headers)
    for h in out:
        change(h)
    return out


def drug(h):
    return h.RadiopharmaceuticalInformationSequence[0]


@pytest.mark.parametrize("tag, change", [
    ("Units", lambda h: setattr(h, "Units", "CNTS")),
    ("Units", lambda h: delattr(h, "Units")),
    ("CorrectedImage", lambda h: setattr(h, "CorrectedImage", ["ATTN", "SCAT"])),
    ("CorrectedImage", lambda h: setattr(h, "CorrectedImage", ["DECY"])),
    ("DecayCorrection", lambda h: setattr(h, "DecayCorrection", "ADMIN")),
    ("PatientWeight", lambda h: delattr(h, "PatientWeight")),
    ("PatientWeight", lambda h: setattr(h, "PatientWeight", "0")),
    ("RadionuclideTotalDose", lambda h: delattr(drug(h), "RadionuclideTotalDose")),
    ("RadionuclideHalfLife", lambda h: delattr(drug(h), "RadionuclideHalfLife")),
    ("RadiopharmaceuticalInformationSequence",
     lambda h: delattr(h, "RadiopharmaceuticalInformationSequence")),
    ("RadiopharmaceuticalStartTime", lambda h: (delattr(drug(h), "RadiopharmaceuticalStartTime"),
                                                delattr(drug(h), "RadiopharmaceuticalStartDateTime"))),
    ("SeriesTime", lambda h: delattr(h, "SeriesTime")),
    ("Modality", lambda h: setattr(h, "Modality", "NM")),
])
def test_each_rule_names_its_tag(headers, tmp_path, tag, change):
    with pytest.raises(SuvError) as err:
        suv_parameters(mutated(headers, change), tmp_path)
    assert tag in err.value.tag and tag in str(err.value)
    assert err.value.path == tmp_path
    assert isinstance(err.value, InputError)


def test_injection_after_the_scan_is_inconsistent(headers, study):
    late = (study.suv.scan_time + timedelta(minutes=5)).strftime("%Y%m%d%H%M%S")
    with pytest.raises(SuvError, match="after the scan reference time"):
        suv_parameters(mutated(headers, lambda h: setattr(drug(h), "RadiopharmaceuticalStartDateTime", late)))


def test_series_time_after_acquisition_uses_the_acquisition_time(headers, study):
    """A re-processed series (SeriesTime later than the acquisition): QIBA decays to the acquisition."""
    later = (study.suv.scan_time + timedelta(hours=2)).strftime("%H%M%S")
    params = suv_parameters(mutated(headers, lambda h: setattr(h, "SeriesTime", later)))
    assert params.reference_source == "AcquisitionDateTime"
    assert params.factor == pytest.approx(study.suv.factor, rel=1e-9)


def test_start_time_without_date_across_midnight(headers):
    def overnight(h):
        h.SeriesDate = h.AcquisitionDate = "20240316"
        h.SeriesTime = h.AcquisitionTime = "003000"
        del drug(h).RadiopharmaceuticalStartDateTime
        drug(h).RadiopharmaceuticalStartTime = "233000"

    params = suv_parameters(mutated(headers, overnight))
    assert params.decay_time_s == pytest.approx(3600.0)
    assert params.injection_time.startswith("2024-03-15T23:30")
    assert params.notes


def test_missing_tag_falls_back_to_raw_activity_only_when_asked(study, tmp_path):
    folder = shutil.copytree(study.functional_dicom, tmp_path / "pt")
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        del ds.PatientWeight
        ds.save_as(f)
    with pytest.raises(InputError, match="PatientWeight") as err:
        load_volume(folder)
    assert err.value.path == folder
    raw = load_volume(folder, allow_raw_activity=True)
    assert raw.meta["units"] == "BQML"
    assert raw.meta["suv"]["applied"] is False and raw.meta["suv"]["tag"] == "PatientWeight"
    np.testing.assert_array_equal(raw.numpy(), load_volume(study.functional_dicom, suv=False).numpy())


def test_non_pet_units_refuse_suv(study, tmp_path):
    folder = shutil.copytree(study.functional_dicom, tmp_path / "pt")
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.Units = "CNTS"
        ds.save_as(f)
    with pytest.raises(InputError, match="Units is 'CNTS'"):
        load_volume(folder)
    assert load_volume(folder, allow_raw_activity=True).meta["units"] == "CNTS"
