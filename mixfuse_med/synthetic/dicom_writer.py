"""Writing synthetic volumes as DICOM: MR and PT single-frame series, NM tomography.

Geometry comes from ``io.geometry.dicom_slice_geometry`` (slice k's pixels
are ``volume[:, :, k].T``), so a series read back lands on the same world
grid as the NIfTI copy.  Values are stored exactly: integers for MR and NM,
per-slice RescaleSlope for PT (written to the precision DICOM's 16-character
decimal strings allow, and the returned array holds what was stored).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from ..atomic import atomic_path
from ..io.geometry import dicom_slice_geometry

SOP_CLASSES = {
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "PT": "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image Storage
    "NM": "1.2.840.10008.5.1.4.1.1.20",  # Nuclear Medicine Image Storage
}
UID_ROOT = "2.25."


def ds(value: float) -> str:
    """A number as a valid 16-character DICOM decimal string."""
    return format_number_as_ds(float(value))


def deterministic_uid(*parts: object) -> str:
    """A 2.25 UID from a name-based UUID of ``parts``, so a seeded study is the same every time."""
    name = "/".join(["mixfuse-med synthetic", *map(str, parts)])
    return f"{UID_ROOT}{uuid.uuid5(uuid.NAMESPACE_URL, name).int}"


def pet_quantise(volume: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(uint16 stored values (X, Y, Z), per-slice RescaleSlope strings) for a PET volume >= 0."""
    stored = np.zeros(volume.shape, dtype=np.uint16)
    slopes = []
    for k in range(volume.shape[2]):
        peak = float(volume[:, :, k].max())
        slope = ds(peak / 65535.0) if peak > 0 else "1"
        stored[:, :, k] = np.clip(np.rint(volume[:, :, k] / float(slope)), 0, 65535).astype(np.uint16)
        slopes.append(slope)
    return stored, slopes


def pet_stored_values(stored: np.ndarray, slopes: list[str]) -> np.ndarray:
    """The float values a reader gets back from ``pet_quantise``'s output."""
    return (stored.astype(np.float64) * np.asarray([float(s) for s in slopes])).astype(np.float32)


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _pixel_module(ds_: Dataset, rows: int, columns: int) -> None:
    ds_.SamplesPerPixel = 1
    ds_.PhotometricInterpretation = "MONOCHROME2"
    ds_.Rows = rows
    ds_.Columns = columns
    ds_.BitsAllocated = 16
    ds_.BitsStored = 16
    ds_.HighBit = 15
    ds_.PixelRepresentation = 0


def write_single_frame_series(stored: np.ndarray, affine_ras: np.ndarray, folder: Path, shared: Dataset,
                              per_slice: list[dict] | None = None) -> list[Path]:
    """One file per slice (MR, PT) from uint16 ``stored`` (X, Y, Z).

    ``shared`` holds the patient/study/series attributes and ``Modality``;
    ``per_slice[k]`` adds attributes to slice k (e.g. RescaleSlope).
    """
    folder = Path(folder)
    modality = str(shared.Modality)
    geo = dicom_slice_geometry(affine_ras, stored.shape)
    normal = np.cross(geo.image_orientation[:3], geo.image_orientation[3:])
    paths = []
    with atomic_path(folder, overwrite=True, folder=True) as tmp:
        for k in range(stored.shape[2]):
            sop_instance = deterministic_uid(shared.SeriesInstanceUID, k)
            slice_ = Dataset()
            slice_.update(shared)
            slice_.file_meta = _file_meta(SOP_CLASSES[modality], sop_instance)
            slice_.SOPClassUID = SOP_CLASSES[modality]
            slice_.SOPInstanceUID = sop_instance
            slice_.InstanceNumber = k + 1
            slice_.ImagePositionPatient = [ds(v) for v in geo.positions[k]]
            slice_.ImageOrientationPatient = [ds(v) for v in geo.image_orientation]
            slice_.PixelSpacing = [ds(v) for v in geo.pixel_spacing]
            slice_.SliceThickness = ds(geo.slice_spacing)
            slice_.SpacingBetweenSlices = ds(geo.slice_spacing)
            slice_.SliceLocation = ds(float(np.dot(geo.positions[k], normal)))
            _pixel_module(slice_, stored.shape[1], stored.shape[0])
            for key, value in (per_slice[k] if per_slice else {}).items():
                setattr(slice_, key, value)
            slice_.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype("<u2").tobytes()
            name = f"{modality}{k + 1:04d}.dcm"
            slice_.save_as(tmp / name, enforce_file_format=True)
            paths.append(folder / name)
    return paths


def write_nm_tomo(stored: np.ndarray, affine_ras: np.ndarray, path: Path, shared: Dataset) -> Path:
    """A reconstructed SPECT volume as one multi-frame NM image (frames = slices along Z)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    geo = dicom_slice_geometry(affine_ras, stored.shape)
    sop_instance = deterministic_uid(shared.SeriesInstanceUID, "nm")
    nm = Dataset()
    nm.update(shared)
    nm.file_meta = _file_meta(SOP_CLASSES["NM"], sop_instance)
    nm.SOPClassUID = SOP_CLASSES["NM"]
    nm.SOPInstanceUID = sop_instance
    nm.InstanceNumber = 1
    nm.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    n = stored.shape[2]
    nm.NumberOfFrames = n
    nm.FrameIncrementPointer = 0x00540080  # SliceVector
    nm.SliceVector = list(range(1, n + 1))
    nm.NumberOfSlices = n
    nm.PixelSpacing = [ds(v) for v in geo.pixel_spacing]
    nm.SliceThickness = ds(geo.slice_spacing)
    nm.SpacingBetweenSlices = ds(geo.slice_spacing)
    detector = Dataset()
    detector.ImagePositionPatient = [ds(v) for v in geo.positions[0]]
    detector.ImageOrientationPatient = [ds(v) for v in geo.image_orientation]
    detector.CollimatorType = "PARA"
    detector.CollimatorGridName = "LEHR"
    nm.DetectorInformationSequence = [detector]
    nm.NumberOfDetectors = 1
    nm.NumberOfRotations = 1
    rotation = Dataset()  # the (fictitious) acquisition the volume was reconstructed from
    rotation.StartAngle = "0"
    rotation.AngularStep = "3"
    rotation.RotationDirection = "CW"
    rotation.ScanArc = "360"
    rotation.ActualFrameDuration = 20000
    rotation.NumberOfFramesInRotation = 120
    nm.RotationInformationSequence = [rotation]
    _pixel_module(nm, stored.shape[1], stored.shape[0])
    nm.PixelData = np.ascontiguousarray(stored.transpose(2, 1, 0)).astype("<u2").tobytes()
    with atomic_path(path, overwrite=True) as tmp:
        nm.save_as(tmp, enforce_file_format=True)
    return path
