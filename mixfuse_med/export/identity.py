"""Who and what the exported DICOM series belong to.

Derived series must land in the source MRI's patient and study, on its frame
of reference, or a PACS files them apart from the images they were made from.
A study read from NIfTI has no identity; it gets a clearly synthetic one
(``MIXFUSE^SYNTHETIC``), the same for the same input files, which the caller
can override field by field.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from dataclasses import dataclass, fields, replace
from pathlib import Path

from mixfuse_med.errors import InputError

SYNTHETIC_PATIENT_NAME = "MIXFUSE^SYNTHETIC"
SYNTHETIC_PATIENT_PREFIX = "MIXFUSE-SYNTH-"


_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "mixfuse-med")


def new_uid(*entropy: str) -> str:
    """A 2.25 (UUID-derived) UID: random, or name-based (the same for the same strings)."""
    if not entropy:
        return f"2.25.{uuid.uuid4().int}"
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, chr(31).join(entropy)).int}"


@dataclass(frozen=True)
class ExportIdentity:
    """Patient, study and frame of reference shared by every exported series."""

    PatientID: str
    PatientName: str
    StudyInstanceUID: str
    FrameOfReferenceUID: str
    PatientBirthDate: str = ""
    PatientSex: str = ""
    StudyDate: str = ""
    StudyTime: str = ""
    AccessionNumber: str = ""
    StudyID: str = ""
    StudyDescription: str = ""
    ReferringPhysicianName: str = ""
    synthetic: bool = False  # made up because the input had no identity (NIfTI)

    def overridden(self, overrides: dict | None) -> ExportIdentity:
        """A copy with the user's values; unknown keys are an error, not silently dropped."""
        if not overrides:
            return self
        allowed = {f.name for f in fields(self)} - {"synthetic"}
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise InputError(None, f"unknown identity field(s) {unknown}; allowed: {sorted(allowed)}")
        return replace(self, **{key: str(value) for key, value in overrides.items()})


def _text(value) -> str:
    return "" if value is None else str(value)


def _source_key(meta: dict) -> str:
    files = meta.get("source_files") or []
    if isinstance(files, (str, Path)):
        files = [files]
    name = meta.get("filename_or_obj") or ""
    return "|".join(str(Path(f).resolve()) for f in files) or str(name)


def identity_from_mri(mri_meta: dict, overrides: dict | None = None) -> ExportIdentity:
    """The MRI's patient/study/frame of reference, or a synthetic one when it had none."""
    patient = dict(mri_meta.get("patient") or {})
    study = dict(mri_meta.get("study") or {})
    series = dict(mri_meta.get("series") or {})
    key = _source_key(mri_meta)
    entropy = [key] if key else [new_uid()]  # no source files: random, shared by study and frame
    synthetic = not patient.get("PatientID") and not study.get("StudyInstanceUID")
    if synthetic:
        digest = hashlib.sha256((key or entropy[0]).encode()).hexdigest()[:12].upper()
        patient = {"PatientID": SYNTHETIC_PATIENT_PREFIX + digest, "PatientName": SYNTHETIC_PATIENT_NAME}
        now = datetime.datetime.now()
        study = {"StudyDescription": "MixFuse synthetic study (no source identity)", "StudyID": "MIXFUSE",
                 "StudyDate": now.strftime("%Y%m%d"), "StudyTime": now.strftime("%H%M%S")}
    identity = ExportIdentity(
        PatientID=_text(patient.get("PatientID")),
        PatientName=_text(patient.get("PatientName")),
        PatientBirthDate=_text(patient.get("PatientBirthDate")),
        PatientSex=_text(patient.get("PatientSex")),
        StudyInstanceUID=_text(study.get("StudyInstanceUID")) or new_uid(*entropy, "study"),
        StudyDate=_text(study.get("StudyDate")),
        StudyTime=_text(study.get("StudyTime")),
        AccessionNumber=_text(study.get("AccessionNumber")),
        StudyID=_text(study.get("StudyID")),
        StudyDescription=_text(study.get("StudyDescription")),
        ReferringPhysicianName=_text(study.get("ReferringPhysicianName")),
        FrameOfReferenceUID=_text(series.get("FrameOfReferenceUID")) or new_uid(*entropy, "frame"),
        synthetic=synthetic,
    )
    return identity.overridden(overrides)
