"""De-identified export: keyed, repeatable pseudonyms; no source identity left; still valid DICOM."""

from __future__ import annotations

import stat

import pydicom
import pytest
from export_fixtures import MR_SERIES, PATIENT, PET_SERIES, STUDY, assert_dciodvfy_clean, make_study

from mixfuse_med.export import Pseudonymizer, export_study
from mixfuse_med.export import deid as deid_module
from mixfuse_med.export.deid import basic_profile


def _files(paths) -> list:
    return sorted(p for key in ("fused_rgb_dicom", "functional_dicom") for p in paths[key].glob("*.dcm"))


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deid")
    study = make_study(tmp, source="dicom", modality="PET")
    runs = [export_study(study, tmp / f"run{i}", formats=("dicom",), deidentify=Pseudonymizer(b"site key"))
            for i in (1, 2)]
    return study, runs


def test_pseudonym_is_keyed_and_repeatable(deidentified, tmp_path):
    study, runs = deidentified
    first, second = ([pydicom.dcmread(f) for f in _files(run)] for run in runs)
    names = [{(d.PatientID, str(d.PatientName)) for d in run} for run in (first, second)]
    assert names[0] == names[1]
    (patient_id,) = {d.PatientID for d in first}
    assert patient_id.startswith("ANON-") and patient_id != PATIENT["PatientID"]
    # the same source study and frame of reference map to the same new UIDs in both runs and both series
    assert len({d.StudyInstanceUID for d in first + second}) == 1
    assert len({d.FrameOfReferenceUID for d in first + second}) == 1
    assert first[0].StudyInstanceUID == Pseudonymizer(b"site key").uid(STUDY["StudyInstanceUID"])

    other = export_study(study, tmp_path / "other", formats=("dicom",), deidentify=Pseudonymizer(b"other"))
    assert pydicom.dcmread(_files(other)[0]).PatientID != patient_id


def test_no_source_identity_survives_anywhere_in_the_files(deidentified):
    study, runs = deidentified
    secrets = [PATIENT["PatientID"], "Doe", "Jane", PATIENT["PatientBirthDate"], STUDY["AccessionNumber"],
               STUDY["StudyInstanceUID"], STUDY["StudyDate"], "Who^Doctor", STUDY["StudyDescription"],
               MR_SERIES["SeriesInstanceUID"], MR_SERIES["FrameOfReferenceUID"],
               MR_SERIES["SeriesDescription"], PET_SERIES["SeriesInstanceUID"], "093000", "71.5"]
    secrets += [pydicom.dcmread(f).SOPInstanceUID for f in study.mri.meta["source_files"]]
    for path in _files(runs[0]):
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret!r} left in {path}"


def test_basic_profile_applied_and_declared(deidentified):
    study, runs = deidentified
    profile = basic_profile()
    # our own generated descriptions are kept under the Clean Descriptors Option (declared below)
    kept = {pydicom.tag.Tag("SeriesDescription"), pydicom.tag.Tag("DerivationDescription")}
    removed = {tag for tag, action in profile.items() if action == "X"} - kept
    key = Pseudonymizer(b"site key")
    mr_uids = {key.uid(pydicom.dcmread(f).SOPInstanceUID) for f in study.mri.meta["source_files"]}
    for path in _files(runs[0]):
        ds = pydicom.dcmread(path)
        present = {element.tag for element in ds.iterall()}
        assert not present & removed, [pydicom.datadict.keyword_for_tag(t) for t in present & removed]
        for keyword in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                        "ReferringPhysicianName", "StudyDate", "StudyTime"):
            assert ds.get(keyword) in (None, ""), keyword
        assert ds.PatientIdentityRemoved == "YES"
        assert {"113100", "113105"} <= {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        # derivation references still resolve, to the pseudonymous UIDs of the source MR slices
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in mr_uids
    for key_name in ("fused_rgb_dicom", "functional_dicom"):
        assert_dciodvfy_clean(runs[0][key_name])


def test_key_from_environment_or_a_private_key_file(tmp_path, monkeypatch):
    study = make_study(tmp_path, source="dicom")
    monkeypatch.setenv(deid_module.KEY_ENV, "env key")
    from_env = export_study(study, tmp_path / "env", formats=("dicom",), deidentify=True)
    expected = Pseudonymizer("env key").code(deid_module.ExportIdentity(PATIENT["PatientID"], "", "", ""))
    assert pydicom.dcmread(_files(from_env)[0]).PatientID == "ANON-" + expected

    monkeypatch.delenv(deid_module.KEY_ENV)
    monkeypatch.setattr(deid_module, "KEY_FILE", tmp_path / "config" / "deid.key")
    runs = [export_study(study, tmp_path / f"file{i}", formats=("dicom",), deidentify=True) for i in (1, 2)]
    assert stat.S_IMODE((tmp_path / "config" / "deid.key").stat().st_mode) == 0o600
    ids = {pydicom.dcmread(_files(run)[0]).PatientID for run in runs}
    assert len(ids) == 1 and ids != {"ANON-" + expected}
