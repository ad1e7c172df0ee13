"""Small fused studies with known content for the export tests, and a dciodvfy runner.

A DICOM-source study gets real source series written here with pydicom (an
oblique MR and a PET on another grid), so identity, frame of reference and
derivation references can be checked against files that exist.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds
from scipy.spatial.transform import Rotation

from mixfuse_med.io.geometry import dicom_slice_geometry
from mixfuse_med.study import FusedStudy

SHAPE = (10, 8, 5)  # X, Y, Z: small, non-cubic, so axis mix-ups show
PATIENT = {"PatientID": "PAT-0042", "PatientName": "Doe^Jane^Q", "PatientBirthDate": "19711203",
           "PatientSex": "F"}
STUDY = {"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1001", "StudyDate": "20240315", "StudyTime": "101500",
         "AccessionNumber": "ACC-77", "StudyID": "S77", "StudyDescription": "MR BRAIN + PET",
         "ReferringPhysicianName": "Who^Doctor"}
MR_SERIES = {"SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1001.3", "SeriesDescription": "T1 MPRAGE",
             "SeriesNumber": 3, "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.1001.9", "Modality": "MR"}
PET_SERIES = {"SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1001.5", "SeriesDescription": "PET AC",
              "SeriesNumber": 5, "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.1001.8", "Modality": "PT"}


def oblique_affine(seed: int = 0, spacing=(0.9, 1.1, 2.5)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", rng.uniform(-25, 25, 3), degrees=True).as_matrix()
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = rng.uniform(-100, 100, 3)
    return affine


def _ds(values) -> list[str]:
    return [format_number_as_ds(float(v)) for v in values]


def write_source_series(folder: Path, modality: str, affine: np.ndarray, shape, series: dict,
                        extra: dict | None = None) -> list[str]:
    """A minimal single-frame series (MR Image or PET Image) on ``affine``; files sorted along Z."""
    folder.mkdir(parents=True, exist_ok=True)
    sop_class = {"MR": "1.2.840.10008.5.1.4.1.1.4", "PT": "1.2.840.10008.5.1.4.1.1.128"}[modality]
    geometry = dicom_slice_geometry(affine, shape)
    files = []
    for k in range(shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SpecificCharacterSet = "ISO_IR 192"
        for key, value in {**PATIENT, **STUDY, **series}.items():
            setattr(ds, key, value)
        ds.InstitutionName = "General Hospital"
        ds.BodyPartExamined = "BRAIN"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = _ds(geometry.positions[k])
        ds.ImageOrientationPatient = _ds(geometry.image_orientation)
        ds.PixelSpacing = _ds(geometry.pixel_spacing)
        ds.SliceThickness = format_number_as_ds(geometry.slice_spacing)
        ds.Rows, ds.Columns = shape[1], shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.full((shape[1], shape[0]), 100 + k, "<u2").tobytes()
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        path = folder / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(str(path))
    return files


def _pet_extra() -> dict:
    radiopharmaceutical = Dataset()
    radiopharmaceutical.Radiopharmaceutical = "Fluorodeoxyglucose"
    radiopharmaceutical.RadiopharmaceuticalStartTime = "093000"
    radiopharmaceutical.RadionuclideTotalDose = "350000000"
    radiopharmaceutical.RadionuclideHalfLife = "6586.2"
    return {"Units": "BQML", "DecayCorrection": "START", "DecayFactor": "1.02",
            "CorrectedImage": ["DECY", "ATTN"],
            "SeriesDate": "20240315", "SeriesTime": "100000", "FrameReferenceTime": "0",
            "RadiopharmaceuticalInformationSequence": Sequence([radiopharmaceutical]),
            "PatientWeight": "71.5"}


def known_functional(shape=SHAPE) -> np.ndarray:
    """SUV-like values: a hot blob on a warm background, a few negatives (resampling ringing)."""
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    blob = 9.5 * np.exp(-((x - 6) ** 2 + (y - 3) ** 2 + (z - 2) ** 2) / 6.0)
    values = 0.8 + blob + np.random.default_rng(3).normal(0, 0.05, shape)
    values[0, 0, :] = -0.25
    return values.astype(np.float32)


def make_study(tmp_path: Path | None = None, *, source: str = "dicom", modality: str = "PET",
               seed: int = 0, units: str | None = None) -> FusedStudy:
    """A FusedStudy on an oblique MRI grid; ``source="dicom"`` also writes the source series."""
    affine = oblique_affine(seed)
    rng = np.random.default_rng(seed)
    units = units or ("SUVbw" if modality == "PET" else "CNTS")
    mri_meta: dict = {"modality": "MR", "units": "", "patient": {}, "study": {}, "series": {},
                      "source_format": "nifti", "source_files": []}
    fun_meta: dict = {"modality": "PT" if modality == "PET" else "NM", "units": units, "patient": {},
                      "study": {}, "series": {}, "source_format": "nifti", "source_files": []}
    if source == "dicom":
        assert tmp_path is not None
        mr_files = write_source_series(tmp_path / "source_mr", "MR", affine, SHAPE, MR_SERIES)
        pet_affine = oblique_affine(seed + 7, (2.0, 2.0, 3.0))
        pet_files = write_source_series(tmp_path / "source_pet", "PT", pet_affine, (6, 5, 3), PET_SERIES,
                                        _pet_extra())
        mri_meta.update(patient=dict(PATIENT), study=dict(STUDY), series=dict(MR_SERIES),
                        source_format="dicom", source_files=mr_files)
        fun_meta.update(patient=dict(PATIENT), study=dict(STUDY), series=dict(PET_SERIES),
                        source_format="dicom", source_files=pet_files)
    elif tmp_path is not None:
        mri_meta["source_files"] = [str(tmp_path / "mri.nii.gz")]
        fun_meta["source_files"] = [str(tmp_path / "pet.nii.gz")]
    torch_affine = torch.as_tensor(affine, dtype=torch.float64)
    mri = MetaTensor(torch.as_tensor(rng.random((1, *SHAPE), dtype=np.float32) * 800), affine=torch_affine,
                     meta=mri_meta)
    functional = MetaTensor(torch.as_tensor(known_functional()[None]), affine=torch_affine, meta=fun_meta)
    luma = MetaTensor(torch.as_tensor(rng.random((1, *SHAPE), dtype=np.float32)), affine=torch_affine)
    rgb = MetaTensor(torch.as_tensor(rng.integers(0, 256, (3, *SHAPE), dtype=np.uint8)), affine=torch_affine)
    return FusedStudy(mri=mri, functional=functional, fused_luma=luma, fused_rgb=rgb, modality=modality,
                      colormap="hot", window=(0.0, 8.0))


def parse_dciodvfy(output: str, returncode: int) -> tuple[list[str], list[str]]:
    """(errors, warnings) in dciodvfy's output, each the whole line.

    dciodvfy prefixes some messages with the attribute, e.g.
    ``(0x0008,0x103e) LO Series Description  - Error - Bad Value Length ...``, so
    a message is recognised anywhere in its line.  A non-zero exit status with no
    error line (a crash, an unreadable file) is an error too: dciodvfy exits 0
    when it reports warnings only.
    """
    errors, warns = [], []
    for line in output.splitlines():
        line = line.strip()
        if "Error -" in line:
            errors.append(line)
        elif "Warning -" in line:
            warns.append(line)
    if returncode != 0 and not errors:
        errors.append(f"dciodvfy exited with status {returncode} without an error message")
    return errors, warns


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) dciodvfy reports for one file."""
    if shutil.which("dciodvfy") is None:  # fail, not skip: the checks must run in CI
        raise AssertionError("dciodvfy not found: install the Debian package 'dicom3tools'")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return parse_dciodvfy(result.stdout + result.stderr, result.returncode)


def assert_dciodvfy_clean(folder: Path) -> set[str]:
    """No dciodvfy error in any file of ``folder``; warnings are shown as pytest warnings and returned."""
    all_warnings: set[str] = set()
    files = sorted(folder.glob("*.dcm"))
    assert files, f"no DICOM files in {folder}"
    for path in files:
        errors, warns = dciodvfy(path)
        assert not errors, f"dciodvfy errors in {path}:\n" + "\n".join(errors)
        all_warnings.update(warns)
    for message in sorted(all_warnings):
        warnings.warn(f"dciodvfy warning ({folder.name}): {message}", UserWarning, stacklevel=2)
    return all_warnings


def read_series_pydicom(folder: Path) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda d: int(d.InstanceNumber))
