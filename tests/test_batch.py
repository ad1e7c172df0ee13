"""The batch runner in this process: discovery rules, safe names, the manifest, resuming.

The Dask paths (local cluster, a killed run, an external scheduler) are in
test_batch_cluster.py; the same task function runs here with ``workers=0``.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import nibabel as nib
import pytest
from batch_fixtures import copy_series, dicom_patient, nifti_patient

from mixfuse_med.atomic import TEMP_PREFIX, _host_tag, is_temporary
from mixfuse_med.batch import BatchSettings, Manifest, assign_names, discover_patients, run_batch, safe_name
from mixfuse_med.batch.checksums import file_sha256
from mixfuse_med.batch.discovery import nifti_kinds
from mixfuse_med.batch.runner import LOCK_NAME
from mixfuse_med.batch.task import PatientTask, fuse_patient
from mixfuse_med.errors import InputError
from mixfuse_med.pipeline import load_study


@pytest.fixture
def pet(pet_ds4):
    return pet_ds4


@pytest.fixture
def spect(spect_ds4):
    return spect_ds4


@pytest.fixture
def settings(tiny_weights_file) -> BatchSettings:
    return BatchSettings(weights=str(tiny_weights_file), weights_sha256=file_sha256(tiny_weights_file),
                         formats=("nifti",), options={"batch_size": 64})


def run(root: Path, out: Path, settings: BatchSettings, **kwargs):
    return run_batch(root, out, settings, workers=0, show_progress=False, say=lambda text: None, **kwargs)


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not is_temporary(p) and not p.name.startswith("."))


# Names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, name", [
    ("../../etc/passwd", "etc_passwd"), ("..", "patient"), ("", "patient"), ("  ", "patient"),
    (".hidden", "hidden"), ("-rf", "rf"), ("CON", "patient_CON"), ("nul.txt", "patient_nul.txt"),
    ("Müller^Jörg", "Muller_Jorg"), ("a/b\\c", "a_b_c"), ("PAT-0042", "PAT-0042"), ("x" * 200, "x" * 64),
])
def test_safe_names_are_one_harmless_path_component(raw, name):
    assert safe_name(raw) == name
    assert "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith(".")


def test_clashing_ids_get_distinct_names_whatever_the_order():
    wanted = {"folder_a": "PAT/1", "folder_b": "PAT_1", "folder_c": "pat_1", "folder_d": "OTHER"}
    names = assign_names(wanted)
    assert names["folder_d"] == "OTHER"
    clashing = [names[k] for k in ("folder_a", "folder_b", "folder_c")]
    assert len({n.casefold() for n in clashing}) == 3
    assert all(n.casefold().startswith("pat_1-") for n in clashing)
    assert assign_names(dict(reversed(list(wanted.items())))) == names


def test_names_given_before_are_kept_and_reserved_names_avoided():
    first = assign_names({"a": "PAT"})
    assert first == {"a": "PAT"}
    later = assign_names({"a": "PAT", "b": "PAT", "c": "manifest.json"}, taken=first,
                         reserved=["manifest.json"])
    assert later["a"] == "PAT" and later["b"] != "PAT" and later["b"].startswith("PAT-")
    assert later["c"] != "manifest.json"


# Discovery --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, kinds", [
    ("mri.nii.gz", {"MRI"}), ("sub-01_T1w.nii.gz", {"MRI"}), ("FDG-PET.nii", {"PET"}),
    ("spect.nii.gz", {"SPECT"}), ("pt01_mri.nii.gz", {"MRI"}), ("pet_on_mri.nii.gz", {"MRI", "PET"}),
    ("scan.nii.gz", set()), ("primary.nii.gz", set()),
])
def test_nifti_names_by_whole_words(name, kinds):
    assert nifti_kinds(name) == kinds


def test_discovery_finds_dicom_by_modality_and_nifti_by_name(pet, spect, tmp_path):
    dicom_patient(tmp_path / "root" / "a", pet)
    nifti_patient(tmp_path / "root" / "b", spect)
    (tmp_path / "root" / ".hidden").mkdir()
    (tmp_path / "root" / "notes.txt").write_text("not a patient")
    a, b = discover_patients(tmp_path / "root")
    assert (a.key, a.error, a.modality) == ("a", None, "PET")
    assert (a.mri.format, a.functional.format) == ("dicom", "dicom")
    assert a.patient_id == pet.patient["PatientID"] and a.mri.path == tmp_path / "root" / "a" / "MR"
    assert a.mri.shape == tuple(nib.load(pet.mri_nifti).shape)
    assert (b.key, b.error, b.modality, b.mri.format, b.patient_id) == ("b", None, "SPECT", "nifti", "b")


def test_series_mixed_in_one_folder_load_each_by_its_modality(pet, tmp_path):
    export = tmp_path / "root" / "p" / "export"
    copy_series(pet.mri_dicom, export)
    copy_series(pet.functional_dicom, export)
    (case,) = discover_patients(tmp_path / "root")
    assert case.error is None and case.mri.path == case.functional.path == export
    mri, functional = load_study(case.mri.path, case.functional.path, case.modality)
    assert (mri.meta["modality"], functional.meta["modality"]) == ("MR", "PT")


def test_both_functional_kinds_need_a_choice(pet, spect, tmp_path):
    folder = dicom_patient(tmp_path / "root" / "both", pet)
    shutil.copy(spect.functional_nifti, folder / "spect.nii.gz")
    (case,) = discover_patients(tmp_path / "root")
    assert "2 PET or SPECT candidates" in case.error and "--modality" in case.error
    (case,) = discover_patients(tmp_path / "root", modality="SPECT")
    assert case.error is None and case.functional.format == "nifti"


def test_ambiguous_nifti_name_is_an_error_naming_the_file(pet, tmp_path):
    folder = nifti_patient(tmp_path / "root" / "p", pet)
    shutil.copy(pet.functional_nifti, folder / "pet_on_mri.nii.gz")
    (case,) = discover_patients(tmp_path / "root")
    assert "pet_on_mri.nii.gz" in case.error and "MRI and PET" in case.error


def test_mismatched_ids_can_be_overridden(pet, tmp_path):
    folder = tmp_path / "root" / "p"
    dicom_patient(folder, pet)
    shutil.rmtree(folder / "PT")
    copy_series(pet.functional_dicom, folder / "PT", PatientID="OTHER")
    (case,) = discover_patients(tmp_path / "root")
    assert "PatientID differs" in case.error and "--allow-id-mismatch" in case.error
    (case,) = discover_patients(tmp_path / "root", allow_id_mismatch=True)
    assert case.error is None and "PatientID differs" in case.notes[0]


# Whole runs in this process ---------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_skips_done_retries_failed_and_redoes_changed(pet, spect, settings, tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    nifti_patient(root / "alpha", pet)
    nifti_patient(root / "beta", spect)
    (root / "gamma").mkdir(parents=True)  # empty for now: fails
    first = run(root, out, settings)
    assert sorted(first.done) == ["alpha", "beta"] and list(first.failed) == ["gamma"]
    assert first.exit_status == 1
    manifest = json.loads((out / "manifest.json").read_text())
    alpha = manifest["patients"]["alpha"]
    assert alpha["status"] == "done" and alpha["output"] == "alpha"
    assert alpha["inputs"]["mri"]["sha256"] == alpha["checksums"]["mri"]
    assert set(alpha["timings_seconds"]) >= {"load", "register", "fuse", "export"}
    assert all((out / p).exists() for p in alpha["outputs"].values())
    gamma = manifest["patients"]["gamma"]
    assert gamma["status"] == "failed" and "empty" in gamma["error"]
    report_mtime = (out / "alpha" / "fusion_report.json").stat().st_mtime_ns

    shutil.rmtree(root / "gamma")  # gamma gets its scans; beta's SPECT is replaced
    nifti_patient(root / "gamma", spect)
    beta_spect = root / "beta" / spect.functional_nifti.name
    data = beta_spect.read_bytes()
    image = nib.load(spect.functional_nifti)
    nib.save(nib.Nifti1Image(image.get_fdata() * 2, image.affine), beta_spect)
    assert beta_spect.read_bytes() != data
    second = run(root, out, settings)
    assert second.skipped == ["alpha"] and sorted(second.done) == ["beta", "gamma"]
    assert second.exit_status == 0 and not second.failed
    assert (out / "alpha" / "fusion_report.json").stat().st_mtime_ns == report_mtime  # not redone
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["patients"]["alpha"]["status"] == "skipped"
    assert "changed" in " ".join(manifest["patients"]["beta"]["notes"])
    assert manifest["patients"]["gamma"]["attempts"] == 2 and manifest["patients"]["gamma"]["error"] is None
    assert len(manifest["runs"]) == 2 and manifest["runs"][1]["done"] == 2
    assert visible(out) == ["alpha", "beta", "gamma", "manifest.json"]


@pytest.mark.slow
def test_unrecorded_complete_output_is_adopted_and_stale_partials_removed(pet, settings, tmp_path):
    root, out = tmp_path / "root", tmp_path / "out"
    nifti_patient(root / "p1", pet)
    run(root, out, settings)
    manifest = Manifest.load(out)
    manifest.patients["p1"]["status"] = "pending"  # as if killed after publishing, before recording
    manifest.save()
    stale = out / f"{TEMP_PREFIX}{_host_tag()}.999999999.abcd1234.p2"  # a dead process's partial folder
    stale.mkdir()
    (stale / "fused_luma.nii.gz").write_bytes(b"half")
    before = (out / "p1" / "fusion_report.json").stat().st_mtime_ns
    again = run(root, out, settings)
    assert again.done == ["p1"] and (out / "p1" / "fusion_report.json").stat().st_mtime_ns == before
    assert "interrupted run" in " ".join(Manifest.load(out).patients["p1"]["notes"])
    assert not stale.exists()
    assert run(root, out, settings).skipped == ["p1"]
    other = BatchSettings(**{**settings.__dict__, "register": False})  # other settings: redone
    assert run(root, out, other).done == ["p1"]


def test_output_inside_the_root_or_a_running_batch_is_refused(pet, settings, tmp_path):
    root = tmp_path / "root"
    nifti_patient(root / "p1", pet)
    with pytest.raises(InputError, match="inside the batch root"):
        run(root, root / "out", settings)
    out = tmp_path / "out"
    out.mkdir()
    with open(out / LOCK_NAME, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="another mixfuse batch"):
            run(root, out, settings)
    (out / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable batch manifest"):
        run(root, out, settings)


def test_out_of_memory_during_fusion_is_one_clear_failure(pet, settings, tmp_path, monkeypatch):
    import mixfuse_med.pipeline

    def exhausted(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 68719476736 bytes")

    monkeypatch.setattr(mixfuse_med.pipeline, "fuse_study", exhausted)
    task = PatientTask(key="p", mri=str(pet.mri_nifti), functional=str(pet.functional_nifti), modality="PET",
                       out_root=str(tmp_path), output="p", checksums={}, memory_bytes=3 << 30,
                       settings=settings)
    result = fuse_patient(task)
    assert result["status"] == "failed" and "out of memory" in result["error"]
    assert "3.0 GiB" in result["error"] and pet.mri_nifti.name in result["error"]
    assert "detail" not in result and not any(tmp_path.iterdir())  # nothing half-written
