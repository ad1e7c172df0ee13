"""Patient folders for the batch tests: good ones from synthetic studies, each kind of bad one for real.

Every bad patient is what a hospital export really produces: a truncated
.nii.gz, a DICOM slice cut short, a folder nobody may read, a series of the
wrong modality, a PatientID made to escape the output folder...
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from mixfuse_med.inference import save_weights
from mixfuse_med.networks import MixFuse
from mixfuse_med.synthetic import make_synthetic_study

WORKTREE = Path(__file__).resolve().parents[1]
# The smallest MixFuse there is: the batch tests check the plumbing, not the network.
TINY = dict(embed_dim=4, iterations=1, cross_depth=1, self_depth=1, num_heads=1, window_size=4)
FAST = ("--weights", "{weights}", "--batch-size", "64")  # CLI options every batch test run adds


def tiny_weights(path: Path) -> Path:
    """A small random MixFuse saved with its configuration (what --weights reads)."""
    torch.manual_seed(0)
    return save_weights(MixFuse(**TINY).eval(), path, overwrite=True)


# Session fixtures (imported into conftest.py so every batch/CLI test module shares them).


@pytest.fixture(scope="session")
def pet_ds4(tmp_path_factory):
    """A synthetic PET study (DICOM and NIfTI), 4 mm MRI voxels."""
    return make_synthetic_study(tmp_path_factory.mktemp("pet_ds4"), "PET", seed=0, downsample=4)


@pytest.fixture(scope="session")
def spect_ds4(tmp_path_factory):
    """A synthetic SPECT study (NIfTI only), 4 mm MRI voxels."""
    return make_synthetic_study(tmp_path_factory.mktemp("spect_ds4"), "SPECT", seed=1, downsample=4,
                                formats=("nifti",))


@pytest.fixture(scope="session")
def tiny_weights_file(tmp_path_factory) -> Path:
    return tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.pt")


def fast_options(weights: Path) -> list[str]:
    return [a.format(weights=weights) for a in FAST]


def checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (unreadable folders are made readable by the caller)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def env() -> dict[str, str]:
    """Environment for subprocesses: the worktree's mixfuse_med first, modest thread counts."""
    path = os.pathsep.join(p for p in (str(WORKTREE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def mixfuse(*args: str, prefix: tuple[str, ...] = (), timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the worktree's ``mixfuse`` command (``prefix`` e.g. ``unshare --user``)."""
    return subprocess.run([*prefix, sys.executable, "-m", "mixfuse_med.cli", *args],
                          capture_output=True, text=True, env=env(), timeout=timeout, cwd=WORKTREE)


def copy_series(source: Path, target: Path, **changes) -> Path:
    """A copy of a DICOM series with some attributes changed in every file (new UIDs if asked)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.dcm")):
        if not changes:
            shutil.copy(path, target / path.name)
            continue
        ds = pydicom.dcmread(path)
        for key, value in changes.items():
            setattr(ds, key, value)
        if "SeriesInstanceUID" in changes:
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(target / path.name)
    return target


def dicom_patient(folder: Path, study, **changes) -> Path:
    copy_series(study.mri_dicom, folder / "MR", **changes)
    copy_series(study.functional_dicom, folder / study.functional_dicom.name, **changes)
    return folder


def nifti_patient(folder: Path, study) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(study.mri_nifti, folder / "t1_mri.nii.gz")
    shutil.copy(study.functional_nifti, folder / study.functional_nifti.name)
    return folder


def huge_nifti(path: Path, shape=(4000, 4000, 4000)) -> Path:
    """The header of an uncompressed NIfTI of ``shape`` int16 voxels (128 GB), without the voxels.

    The memory check must refuse it from the header alone, before reading a
    byte of data; were the check missing, the load would fail differently
    (truncated file), so the test tells the two apart.
    """
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    path.write_bytes(header.binaryblock + struct.pack("<4x"))
    return path


def bad_patients(root: Path, pet, spect) -> dict[str, str]:
    """Each kind of bad patient under ``root``; returns folder name -> a word its error must contain.

    ``pet`` is a DICOM+NIfTI synthetic PET study, ``spect`` a SPECT one.
    """
    expected = {}

    folder = root / "no_dicom"
    folder.mkdir()
    (folder / "readme.txt").write_text("scans to follow")
    (folder / "photo.jpg").write_bytes(os.urandom(2000))
    expected["no_dicom"] = "no DICOM images"

    folder = dicom_patient(root / "corrupt_slice", pet)
    victim = sorted((folder / "PT").glob("*.dcm"))[3]
    data = victim.read_bytes()
    victim.write_bytes(data[:-400] + os.urandom(100))  # pixel data cut short, garbage at the end
    expected["corrupt_slice"] = "corrupt"

    copy_series(pet.mri_dicom, root / "missing_pet" / "MR")
    expected["missing_pet"] = "no PET or SPECT found"

    folder = dicom_patient(root / "two_mris", pet)
    copy_series(pet.mri_dicom, folder / "MR_repeat", SeriesInstanceUID=pydicom.uid.generate_uid(),
                SeriesNumber=7, SeriesDescription="T1 repeat")
    expected["two_mris"] = "2 MRI candidates"

    folder = root / "mismatched_ids"
    copy_series(pet.mri_dicom, folder / "MR")
    copy_series(pet.functional_dicom, folder / "PT", PatientID="SOMEONE-ELSE")
    expected["mismatched_ids"] = "PatientID differs"

    folder = root / "image_2d"
    folder.mkdir()
    nib.save(nib.Nifti1Image(np.ones((40, 50), np.float32), np.eye(4)), folder / "mri.nii.gz")
    shutil.copy(pet.functional_nifti, folder / "pet.nii.gz")
    expected["image_2d"] = "2D"

    folder = root / "nans"
    folder.mkdir()
    shutil.copy(pet.mri_nifti, folder / "mri.nii.gz")
    image = nib.load(pet.functional_nifti)
    data = np.asarray(image.dataobj, dtype=np.float32)
    data[5:8, 5:8, 5:8] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine), folder / "pet.nii.gz")
    expected["nans"] = "NaN"

    (root / "empty").mkdir()
    expected["empty"] = "empty folder"

    folder = nifti_patient(root / "unreadable", spect)
    os.chmod(folder, 0)
    expected["unreadable"] = "Permission denied"

    folder = root / "truncated_nifti"
    folder.mkdir()
    shutil.copy(pet.mri_nifti, folder / "mri.nii.gz")
    data = pet.functional_nifti.read_bytes()
    (folder / "pet.nii.gz").write_bytes(data[: len(data) // 2])
    expected["truncated_nifti"] = "cannot read NIfTI"

    folder = root / "wrong_modality"
    copy_series(pet.mri_dicom, folder / "MR")
    copy_series(pet.functional_dicom, folder / "CT", Modality="CT")
    expected["wrong_modality"] = "CT series"

    folder = root / "huge_volume"
    folder.mkdir()
    huge_nifti(folder / "mri.nii")
    shutil.copy(pet.functional_nifti, folder / "pet.nii.gz")
    expected["huge_volume"] = "out of memory"
    return expected


def restore_permissions(root: Path) -> None:
    for folder in root.iterdir():
        if folder.is_dir():
            os.chmod(folder, 0o755)
