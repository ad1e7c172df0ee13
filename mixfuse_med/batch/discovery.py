"""Finding the MRI and the PET/SPECT scan of each patient folder, without guessing.

Each subfolder of the batch root is one patient.  Inside it (searched
recursively) the scans are DICOM series, told apart by their Modality (MR;
PT for PET; NM for SPECT), or NIfTI files, told apart by words in their
names (``t1_mri.nii.gz``, ``FDG-PET.nii``, ``spect.nii.gz``).  Exactly one
MRI and one PET/SPECT scan must be found: none or several is an error for
that patient naming what was found, never a pick.  Only headers are read
here; pixels are read by the worker that fuses the patient.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.dicom import DicomSeries, list_dicom_series
from ..io.load import is_nifti

# Words in a NIfTI file name (split at anything but letters and digits) -> what the file holds.
# ("pt" and "nm", the DICOM codes, are left out: "pt01" names a patient as often as a PET.)
NIFTI_WORDS = {
    "MRI": ("mri", "mr", "t1", "t1w", "t2", "t2w", "flair", "anat"),
    "PET": ("pet", "fdg"),
    "SPECT": ("spect",),
}
DICOM_KINDS = {"MR": "MRI", "PT": "PET", "NM": "SPECT"}
FUNCTIONAL_KINDS = ("PET", "SPECT")


@dataclass(frozen=True)
class ScanInput:
    """One scan found in a patient folder: what to hand to ``fuse_study`` and what it holds."""

    kind: str  # "MRI", "PET" or "SPECT"
    path: Path  # a NIfTI file, or the folder holding the DICOM series
    format: str  # "nifti" or "dicom"
    files: tuple[Path, ...]  # every file of the scan (for checksums)
    shape: tuple[int, ...]  # voxels per axis, from the headers
    patient_id: str = ""  # DICOM PatientID; "" for NIfTI
    description: str = ""  # for messages

    @property
    def voxels(self) -> int:
        count = 1
        for n in self.shape:
            count *= int(n)
        return count


@dataclass
class PatientCase:
    """One patient folder: its two scans, or why it cannot be fused."""

    key: str  # the folder's name under the batch root (unique, stable between runs)
    folder: Path
    mri: ScanInput | None = None
    functional: ScanInput | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def modality(self) -> str | None:
        return self.functional.kind if self.functional else None

    @property
    def patient_id(self) -> str:
        """What the output folder is named after: the DICOM PatientID, else the folder name."""
        for scan in (self.mri, self.functional):
            if scan is not None and scan.patient_id.strip():
                return scan.patient_id.strip()
        return self.key


def nifti_kinds(name: str) -> set[str]:
    """The kinds (MRI, PET, SPECT) whose words appear in a NIfTI file name."""
    stem = re.sub(r"\.nii(\.gz)?$", "", name.lower())
    words = set(re.split(r"[^a-z0-9]+", stem))
    return {kind for kind, names in NIFTI_WORDS.items() if words & set(names)}


def walk_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, hidden ones aside; an unreadable folder or file is an error.

    ``Path.rglob`` skips folders it may not read without a word, which would
    turn a permission problem into a misleading "no PET found".
    """
    def fail(err: OSError) -> None:
        raise InputError(err.filename or folder, f"cannot read ({err.strerror or err})")

    files = []
    for top, dirs, names in os.walk(folder, onerror=fail, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(top) / name
            try:
                with open(path, "rb"):
                    pass
            except OSError as err:
                raise InputError(path, f"cannot read ({err.strerror or err})") from None
            files.append(path)
    return files


def _dicom_scan(series: DicomSeries, kind: str) -> ScanInput:
    first = series.headers[0]
    frames = int(first.get("NumberOfFrames", 1) or 1)
    depth = frames if len(series.files) == 1 else len(series.files)
    folder = Path(os.path.commonpath([str(p.parent) for p in series.files]))
    return ScanInput(kind=kind, path=folder, format="dicom", files=tuple(series.files),
                     shape=(int(first.get("Columns", 0) or 0), int(first.get("Rows", 0) or 0), depth),
                     patient_id=str(first.get("PatientID", "") or ""), description=series.summary())


def _nifti_scan(path: Path, kind: str) -> ScanInput:
    import nibabel as nib

    try:
        shape = tuple(int(n) for n in nib.load(str(path)).shape)
    except Exception as err:  # nibabel raises many types for damaged headers
        raise InputError(path, f"cannot read NIfTI header ({type(err).__name__}: {err})") from None
    return ScanInput(kind=kind, path=path, format="nifti", files=(path,), shape=shape,
                     description=f"NIfTI file {path.name}")


def _listing(scans: list[ScanInput]) -> str:
    return "; ".join(s.description for s in scans)


def _pick(case: PatientCase, kind_label: str, found: list[ScanInput], others: list[str],
          hint: str) -> ScanInput:
    if not found:
        seen = f" (found: {'; '.join(others)})" if others else ""
        raise InputError(case.folder, f"no {kind_label} found{seen}")
    if len(found) > 1:
        raise InputError(case.folder, f"{len(found)} {kind_label} candidates, expected one: "
                                      f"{_listing(found)}; {hint}")
    return found[0]


def inspect_patient(folder: Path, key: str | None = None, *, modality: str | None = None,
                    allow_id_mismatch: bool = False) -> PatientCase:
    """The two scans of one patient folder; ``case.error`` says why not when they cannot be told."""
    case = PatientCase(key=key or folder.name, folder=folder)
    try:
        _inspect(case, modality, allow_id_mismatch)
    except InputError as err:
        case.error = str(err)
    except OSError as err:
        case.error = f"{err.filename or folder}: cannot read ({err.strerror or err})"
    except Exception as err:  # a header no reader foresaw must still fail this patient only
        case.error = f"{folder}: cannot be read ({type(err).__name__}: {err})"
    return case


def _inspect(case: PatientCase, modality: str | None, allow_id_mismatch: bool) -> None:
    files = walk_files(case.folder)
    if not files:
        raise InputError(case.folder, "empty folder: no files")
    scans: list[ScanInput] = []
    others: list[str] = []
    for series in list_dicom_series(case.folder):
        kind = DICOM_KINDS.get(series.modality.upper())
        if kind is None:
            others.append(f"{series.summary()}, not MR, PT or NM")
        else:
            scans.append(_dicom_scan(series, kind))
    unrecognised = []
    for path in (p for p in files if is_nifti(p)):
        kinds = nifti_kinds(path.name)
        if len(kinds) > 1:
            raise InputError(path, f"NIfTI name fits {' and '.join(sorted(kinds))}; rename it so it "
                                   "names one scan (e.g. mri.nii.gz, pet.nii.gz)")
        if kinds:
            scans.append(_nifti_scan(path, kinds.pop()))
        else:
            unrecognised.append(path.name)
    if unrecognised:
        others.append(f"NIfTI file(s) {', '.join(unrecognised)} named like no scan kind "
                      "(name them mri/t1/..., pet/fdg, spect)")
    if not scans and not others:
        raise InputError(case.folder, f"no DICOM images and no NIfTI files among {len(files)} file(s) "
                                      f"(e.g. {files[0].name})")
    wanted = FUNCTIONAL_KINDS if modality is None else (modality,)
    mri = _pick(case, "MRI", [s for s in scans if s.kind == "MRI"],
                others + [s.description for s in scans if s.kind != "MRI"],
                "keep one MRI in the folder")
    functional = _pick(case, " or ".join(wanted), [s for s in scans if s.kind in wanted],
                       others + [s.description for s in scans if s.kind not in wanted],
                       "keep one in the folder" + ("" if modality else ", or choose with --modality"))
    case.mri, case.functional = mri, functional
    case.notes += check_same_patient(mri, functional, allow_id_mismatch, case.folder)


def check_same_patient(mri: ScanInput, functional: ScanInput, allow_mismatch: bool,
                       where: Path | None = None) -> list[str]:
    """Refuse two scans whose DICOM PatientIDs differ (a mix-up), unless allowed; notes for the record.

    NIfTI files carry no identity, so a pair with one of them cannot be checked.
    """
    if not (mri.patient_id and functional.patient_id) or mri.patient_id == functional.patient_id:
        return []
    problem = (f"PatientID differs between the MRI ({mri.patient_id!r}) and the {functional.kind} "
               f"({functional.patient_id!r})")
    if not allow_mismatch:
        raise InputError(where, f"{problem}; pass --allow-id-mismatch if they are one patient")
    return [f"{problem}; fused anyway (--allow-id-mismatch)"]


def describe_scan(path: str | Path, kind: str) -> ScanInput:
    """The scan at ``path`` (NIfTI file, DICOM folder or one file of a series) from its headers.

    ``kind`` is "MRI", "PET" or "SPECT"; a folder holding several series is
    narrowed to that kind's modality, as ``load_volume`` does.
    """
    import pydicom

    from ..io.dicom import normalise_modality, select_series

    path = Path(path)
    if not path.exists():
        raise InputError(path, "does not exist")
    if path.is_file() and is_nifti(path):
        return _nifti_scan(path, kind)
    code = normalise_modality(kind)
    if path.is_dir():
        return _dicom_scan(select_series(path, list_dicom_series(path), modality=code), kind)
    try:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).get("SeriesInstanceUID", ""))
    except Exception:
        raise InputError(path, "neither a NIfTI file (.nii, .nii.gz) nor a readable DICOM file") from None
    return _dicom_scan(select_series(path.parent, list_dicom_series(path.parent), series_uid=uid), kind)


def functional_kind(path: str | Path) -> str:
    """PET or SPECT, told by the DICOM Modality (PT, NM) or the NIfTI file name; an error if unclear."""
    path = Path(path)
    if path.is_file() and is_nifti(path):
        kinds = nifti_kinds(path.name) & set(FUNCTIONAL_KINDS)
    elif path.is_dir():
        kinds = {DICOM_KINDS.get(s.modality.upper()) for s in list_dicom_series(path)} & set(FUNCTIONAL_KINDS)
    else:
        kinds = set()
    if len(kinds) != 1:
        raise InputError(path, "cannot tell PET from SPECT from the file; pass --modality PET or SPECT")
    return kinds.pop()


def discover_patients(root: str | Path, *, modality: str | None = None, allow_id_mismatch: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> list[PatientCase]:
    """One case per subfolder of ``root`` (hidden ones aside), sorted by name.

    ``progress(done, total)`` follows the folders (reading every DICOM header takes a while).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder (the batch root holds one folder per patient)")
    try:
        entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        raise InputError(root, f"cannot read ({err.strerror or err})") from None
    cases = []
    for folder in entries:
        cases.append(inspect_patient(folder, folder.name, modality=modality,
                                     allow_id_mismatch=allow_id_mismatch))
        if progress is not None:
            progress(len(cases), len(entries))
    return cases
