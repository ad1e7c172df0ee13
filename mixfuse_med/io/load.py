"""One entry point for every scan: a NIfTI file or a DICOM folder -> MetaTensor.

The result follows the in-memory volume contract of docs/architecture.md:
(1, X, Y, Z) float32, RAS affine, header facts in ``meta``.  Inputs are only
read, never written.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from pydicom.dataset import Dataset

from ..errors import InputError
from .dicom import (
    DicomSeries,
    list_dicom_series,
    normalise_modality,
    read_series_pixels,
    select_series,
    sort_slices,
)
from .geometry import from_sitk
from .suv import SuvError, suv_parameters

NIFTI_SUFFIXES = (".nii", ".nii.gz")

PATIENT_KEYS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
              "StudyDescription", "ReferringPhysicianName")
SERIES_KEYS = ("SeriesInstanceUID", "SeriesDescription", "SeriesNumber", "FrameOfReferenceUID", "Modality")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def load_volume(path: str | Path, *, modality: str | None = None, series_uid: str | None = None,
                suv: bool = True, allow_raw_activity: bool = False) -> MetaTensor:
    """A 3D scan as a (1, X, Y, Z) float32 MetaTensor with a RAS affine.

    ``path``: a NIfTI file, a DICOM folder (searched recursively) or one file
    of a DICOM series.  ``modality`` (MR/PT/NM or MRI/PET/SPECT) and
    ``series_uid`` pick a series when the folder holds several; for NIfTI,
    which has no such header, ``modality`` labels the volume.

    PET from DICOM is converted to SUVbw when ``suv`` is true.  When the
    headers do not allow it, an ``InputError`` names the tag, unless
    ``allow_raw_activity`` is true: then the stored activity is kept and
    ``meta['suv']`` says why.  A NIfTI file has no such headers, so a PET
    NIfTI needs ``suv=False`` (values as stored) or ``allow_raw_activity``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_file() and is_nifti(path):
        volume = _load_nifti(path, modality)
        return _apply_suv_nifti(volume, path, suv, allow_raw_activity)
    if path.is_dir():
        series = select_series(path, list_dicom_series(path), series_uid=series_uid, modality=modality)
    elif path.is_file():
        series = _series_of_file(path, series_uid, modality)
    else:
        raise InputError(path, "neither a file nor a folder")
    return _load_dicom(path, series, suv, allow_raw_activity)


# NIfTI ---------------------------------------------------------------------------------------------


def _load_nifti(path: Path, modality: str | None) -> MetaTensor:
    try:
        image = nib.load(str(path))
        array = np.asarray(image.get_fdata(dtype=np.float32))
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as err:  # nibabel raises many types for damaged files
        raise InputError(path, f"cannot read NIfTI file ({type(err).__name__}: {err})") from None
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim > 3:
        raise InputError(path, f"is {array.ndim}D with shape {array.shape}; a 3D volume is needed")
    if array.ndim < 3 or min(array.shape) < 2:
        raise InputError(path, f"is 2D (shape {array.shape}); a 3D volume is needed")
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, "has a degenerate or non-finite affine (no usable geometry)")
    _check_finite(array, path)
    code = normalise_modality(modality) or "OT"
    affine_t = torch.as_tensor(affine, dtype=torch.float64)
    meta = {
        "affine": affine_t,
        "original_affine": affine_t.clone(),
        "spatial_shape": np.asarray(array.shape),
        "space": "RAS",
        "filename_or_obj": str(path),
        **_facts(code, units="", patient={}, study={}, series={"Modality": code},
                 source_format="nifti", source_files=[str(path)]),
    }
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array))[None], meta=meta)


def _apply_suv_nifti(volume: MetaTensor, path: Path, suv: bool, allow_raw: bool) -> MetaTensor:
    if volume.meta["modality"] != "PT" or not suv:
        if volume.meta["modality"] == "PT":
            volume.meta["suv"] = {"applied": False, "reason": "suv=False: values as stored"}
        return volume
    reason = "a NIfTI file carries no DICOM dose, time and weight headers"
    if not allow_raw:
        raise InputError(path, f"cannot compute SUV: {reason}; load the DICOM series, or pass suv=False "
                               "(values as stored) or allow_raw_activity=True")
    volume.meta["suv"] = {"applied": False, "reason": reason}
    return volume


# DICOM ---------------------------------------------------------------------------------------------


def _series_of_file(path: Path, series_uid: str | None, modality: str | None) -> DicomSeries:
    """The series a single DICOM file belongs to: itself if multi-frame, else its folder's."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        raise InputError(path, "neither a NIfTI file (.nii, .nii.gz) nor a readable DICOM file") from None
    uid = series_uid or str(header.get("SeriesInstanceUID", ""))
    if int(header.get("NumberOfFrames", 1) or 1) > 1:
        return DicomSeries(uid, str(header.get("Modality", "OT")), str(header.get("SeriesDescription", "")),
                           str(header.get("SeriesNumber", "")), [path], [header])
    return select_series(path.parent, list_dicom_series(path.parent), series_uid=uid, modality=modality)


def _load_dicom(path: Path, series: DicomSeries, suv: bool, allow_raw: bool) -> MetaTensor:
    if len(series.files) == 1 and int(series.headers[0].get("NumberOfFrames", 1) or 1) > 1:
        files, headers = series.files, series.headers
        _check_multiframe(files[0], headers[0])
    else:
        files, headers = sort_slices(series)
    image = read_series_pixels(files)
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise InputError(files[0], f"image of size {image.GetSize()}; a 3D volume is needed")
    first = headers[0]
    code = str(first.get("Modality", "OT") or "OT")
    units = str(first.get("Units", "") or "") if code == "PT" else ("CNTS" if code == "NM" else "")
    meta = {
        "filename_or_obj": str(path),
        **_facts(code, units=units, patient=_strings(first, PATIENT_KEYS), study=_strings(first, STUDY_KEYS),
                 series=_strings(first, SERIES_KEYS), source_format="dicom",
                 source_files=[str(f) for f in files]),
    }
    volume = from_sitk(image, meta)
    _check_finite(volume.numpy(), path)
    if code == "PT":
        _apply_suv_dicom(volume, headers, path, suv, allow_raw)
    return volume


def _check_multiframe(path: Path, header: Dataset) -> None:
    frames = int(header.NumberOfFrames)
    modality = str(header.get("Modality", ""))
    kind = [str(v).upper() for v in (header.get("ImageType") or [])]
    if modality == "NM" and not any("RECON" in k for k in kind):
        raise InputError(path, f"NM image of type {'/'.join(kind) or '?'} with {frames} frames is not a "
                               "reconstructed volume (ImageType RECON TOMO or RECON GATED TOMO needed)")
    slices = header.get("NumberOfSlices")
    if modality == "NM" and slices not in (None, "") and int(slices) != frames:
        raise InputError(path, f"{frames} frames hold {int(slices)} slices (NumberOfSlices): a 4D (gated "
                               "or dynamic) volume; a 3D volume is needed")
    if "PerFrameFunctionalGroupsSequence" in header and modality != "NM":
        raise InputError(path, "enhanced multi-frame DICOM is not supported; export the series as "
                               "single-frame images or NIfTI")


def _apply_suv_dicom(volume: MetaTensor, headers: list[Dataset], path: Path, suv: bool,
                     allow_raw: bool) -> None:
    if not suv:
        volume.meta["suv"] = {"applied": False, "reason": "suv=False: values as stored"}
        return
    if str(headers[0].get("Units", "") or "").upper() == "GML":  # stored as SUV already (e.g. ours)
        suv_type = str(headers[0].get("SUVType", "") or "BW").upper()
        volume.meta["units"] = "SUVbw" if suv_type == "BW" else f"SUV{suv_type.lower()}"
        volume.meta["suv"] = {"applied": False, "stored_as_suv": True, "suv_type": suv_type,
                              "reason": f"Units GML: values are SUV ({suv_type}) already"}
        return
    try:
        params = suv_parameters(headers, path)
    except SuvError as err:
        if not allow_raw:
            raise
        volume.meta["suv"] = {"applied": False, "reason": err.problem, "tag": err.tag}
        return
    volume.mul_(params.factor)
    volume.meta["units"] = "SUVbw"
    volume.meta["suv"] = params.as_meta()


# Shared --------------------------------------------------------------------------------------------


def _facts(modality: str, *, units: str, patient: dict, study: dict, series: dict, source_format: str,
           source_files: list[str]) -> dict:
    return {"modality": modality, "units": units, "patient": patient, "study": study, "series": series,
            "source_format": source_format, "source_files": source_files, "suv": None}


def _strings(header: Dataset, keys: tuple[str, ...]) -> dict[str, str]:
    return {k: str(header.get(k, "") or "") for k in keys}


def _check_finite(array: np.ndarray, path: Path) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise InputError(path, f"{bad} voxel(s) are NaN or infinite")
