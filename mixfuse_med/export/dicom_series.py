"""What every exported DICOM series shares: identity, plane geometry, derivation references.

One ``SeriesWriter`` per derived series fills in the modules common to the
fused overlay and the functional series, whatever their SOP class, so the two
can never disagree about patient, study, frame of reference or slice
positions.  ``write_series`` writes a series all-or-nothing.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import torch
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import format_number_as_ds

from mixfuse_med import __version__
from mixfuse_med.atomic import atomic_path
from mixfuse_med.export.dicom_sources import SourceSeries
from mixfuse_med.export.identity import ExportIdentity, new_uid
from mixfuse_med.export.nifti import affine_of
from mixfuse_med.io.geometry import DicomSliceGeometry, dicom_slice_geometry

MANUFACTURER = "mixfuse-med"


def code_item(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _ds(values) -> list[str]:
    return [format_number_as_ds(float(v)) for v in values]


def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def _orientation_letters(direction_lps) -> str:
    """PatientOrientation letters of one in-plane direction (dominant first, as DICOM asks)."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    order = np.argsort(-np.abs(direction_lps))
    out = [letters[a][0 if direction_lps[a] > 0 else 1] for a in order if abs(direction_lps[a]) > 1e-3]
    return "".join(out[:3])


def to_numpy(volume) -> np.ndarray:
    return volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)


def series_number(mri_meta: dict, offset: int) -> int:
    """Derived series numbered after the MRI's (MR 5 -> 591, 592) so they sort next to it."""
    try:
        base = int(str((mri_meta.get("series") or {}).get("SeriesNumber") or 0))
    except ValueError:
        base = 0
    return base * 100 + offset


class SeriesWriter:
    """Shared modules of one derived series: identity, geometry, references, series UID."""

    def __init__(self, study, identity: ExportIdentity, mri_source: SourceSeries | None,
                 other_sources: list[SourceSeries], *, description: str, number: int) -> None:
        self.study = study
        self.identity = identity
        self.mri_source = mri_source
        self.related = [s for s in [mri_source, *other_sources] if s is not None]
        self.description = description[:64]
        self.number = number
        self.series_uid = new_uid()
        shape = tuple(int(n) for n in study.mri.shape[1:])
        self.geometry: DicomSliceGeometry = dicom_slice_geometry(affine_of(study.mri), shape)
        self.date, self.time = _now()
        header = mri_source.header if mri_source is not None else None
        self.body_part = str(getattr(header, "BodyPartExamined", "") or "")
        self.laterality = str(getattr(header, "Laterality", "") or "")

    def orientation(self) -> tuple[str, str]:
        iop = self.geometry.image_orientation
        return _orientation_letters(np.asarray(iop[:3])), _orientation_letters(np.asarray(iop[3:]))

    def complete(self, ds: Dataset, k: int) -> Dataset:
        """Add what every exported instance shares: plane, frame of reference, series, references."""
        identity, geometry = self.identity, self.geometry
        ds.SpecificCharacterSet = "ISO_IR 192"
        for key in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
                    "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName"):
            setattr(ds, key, getattr(identity, key))
        if identity.StudyDescription:
            ds.StudyDescription = identity.StudyDescription
        if identity.synthetic:
            ds.PatientComments = "Synthetic identity made by mixfuse-med: the input had none (NIfTI)"
        ds.SeriesInstanceUID = self.series_uid
        ds.SeriesNumber = self.number
        ds.SeriesDescription = self.description
        ds.SeriesDate, ds.SeriesTime = self.date, self.time
        ds.InstanceNumber = k + 1
        ds.ContentDate, ds.ContentTime = self.date, self.time
        ds.Manufacturer = MANUFACTURER
        ds.ManufacturerModelName = "MixFuse"
        ds.SoftwareVersions = __version__
        if self.body_part:
            ds.BodyPartExamined = self.body_part
            if self.laterality:
                ds.Laterality = self.laterality
        else:
            ds.Laterality = ""  # body part unknown: empty is what the standard asks for then
        ds.FrameOfReferenceUID = identity.FrameOfReferenceUID
        ds.ImagePositionPatient = _ds(geometry.positions[k])
        ds.ImageOrientationPatient = _ds(geometry.image_orientation)
        ds.PixelSpacing = _ds(geometry.pixel_spacing)
        ds.SliceThickness = format_number_as_ds(geometry.slice_spacing)
        self._references(ds, k)
        return ds

    def _references(self, ds: Dataset, k: int) -> None:
        related = []
        for source in self.related:
            item = Dataset()
            item.StudyInstanceUID, item.SeriesInstanceUID = source.study_uid, source.series_uid
            item.PurposeOfReferenceCodeSequence = Sequence(
                [code_item("121322", "Source image for image processing operation")])
            related.append(item)
        if related:
            ds.RelatedSeriesSequence = Sequence(related)
        if self.mri_source is None:
            return
        tolerance = 0.01 * min(self.geometry.slice_spacing, *self.geometry.pixel_spacing)
        match = self.mri_source.instance_at(self.geometry.positions[k], tolerance)
        if match is None:
            return
        source_image = Dataset()
        source_image.ReferencedSOPClassUID, source_image.ReferencedSOPInstanceUID = match
        source_image.PurposeOfReferenceCodeSequence = Sequence(
            [code_item("121322", "Source image for image processing operation")])
        ds.SourceImageSequence = Sequence([source_image])
        # Common Instance Reference: where the referenced instance lives
        instance = Dataset()
        instance.ReferencedSOPClassUID, instance.ReferencedSOPInstanceUID = match
        series = Dataset()
        series.SeriesInstanceUID = self.mri_source.series_uid
        series.ReferencedInstanceSequence = Sequence([instance])
        if self.mri_source.study_uid == self.identity.StudyInstanceUID:
            ds.ReferencedSeriesSequence = Sequence([series])
        else:  # the caller moved the export to another study
            study = Dataset()
            study.StudyInstanceUID = self.mri_source.study_uid
            study.ReferencedSeriesSequence = Sequence([series])
            ds.StudiesContainingOtherReferencedInstancesSequence = Sequence([study])


def write_series(datasets, folder: str | Path, *, overwrite: bool = False, transform=None) -> Path:
    """Write every dataset into ``folder`` as a whole: a temporary folder renamed when all are written.

    ``transform`` (e.g. de-identification) is applied to each dataset just before it is written.
    """
    folder = Path(folder)
    with atomic_path(folder, overwrite=overwrite, folder=True) as temp:
        for index, ds in enumerate(datasets, start=1):
            if transform is not None:
                ds = transform(ds)
            ds.save_as(temp / f"{index:04d}.dcm", enforce_file_format=True)
    return folder
