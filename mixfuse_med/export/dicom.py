"""DICOM series of a fused study: the RGB overlay and the functional volume, on the MRI's slices.

SOP classes, and why (every choice checked with dciodvfy, SimpleITK and Orthanc):

* Fused RGB overlay -> **Secondary Capture Image Storage** (highdicom ``SCImage``),
  one RGB instance per MRI slice, with the Image Plane attributes
  (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness)
  and the MRI's FrameOfReferenceUID added.  That makes it a *Standard Extended*
  SOP class (dciodvfy: warnings "not present in standard IOD", no error), and it
  is what every PACS and viewer stores and shows, stacked by position; GDCM
  (SimpleITK) reads the plane attributes of SC.  The single-frame colour IODs
  with a native image plane do not exist; the colour enhanced IODs
  (Enhanced MR Color) need the MR acquisition functional groups a derived
  overlay does not have, highdicom has no class for them, and few viewers show
  them.  Multi-frame True Color SC would break "one instance per MRI slice".
* Registered PET -> **PET Image Storage** (pydicom; highdicom has no PET class):
  the IOD PACS and viewers know for PET values, with Units (GML for SUV with
  SUVType, BQML, CNTS) and per-slice RescaleSlope over signed 16-bit pixels
  (the PET IOD fixes RescaleIntercept at 0).  Radiopharmaceutical and decay
  facts are copied from the source PET when it was DICOM.
* Registered SPECT -> **Secondary Capture**, 16-bit grey with a Modality LUT
  (per-slice RescaleSlope/Intercept; RescaleType US with the units in
  ImageComments, counts being no defined term of RescaleType), plane attributes
  as for the overlay.  The NM Image IOD was tried: as a RECON TOMO it requires
  rotation/acquisition attributes (start angle, scan arc, ...) a resampled
  volume does not have, and dciodvfy's NM IOD has no Rescale Slope, so counts
  could not be kept.

Float values: slice k is stored as ``round(value / slope)`` (PET) or
``round((value - intercept) / slope)`` (SC) with the slope chosen from that
slice's range, so reading back gives the values to within half a slope.
NaN (outside the functional field of view) is written as 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from copy import deepcopy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage
from pydicom.valuerep import format_number_as_ds

from mixfuse_med.export.dicom_series import MANUFACTURER, SeriesWriter, code_item, to_numpy
from mixfuse_med.export.dicom_sources import SourceSeries
from mixfuse_med.export.identity import new_uid

# Defined terms of Rescale Type (0028,1054), PS3.3 C.11.1.1.2
_RESCALE_TYPES = {"OD", "HU", "US", "MGML", "Z_EFF", "ED", "EDW", "HU_MOD", "PCT"}
# PET Units (0054,1001) and SUV Type (0054,1006) for the units strings of the volume contract
_PET_UNITS = {"SUVBW": ("GML", "BW"), "SUVLBM": ("GML", "LBM"), "SUVIBW": ("GML", "IBW"),
              "SUVBSA": ("CM2ML", "BSA"), "BQML": ("BQML", None), "CNTS": ("CNTS", None)}
# copied from the source PET when present: radiopharmaceutical, decay and timing facts
_PET_COPIED = ("RadiopharmaceuticalInformationSequence", "DecayCorrection", "CorrectedImage", "CountsSource",
               "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "FrameReferenceTime",
               "ActualFrameDuration", "DecayFactor", "ReconstructionMethod", "PatientWeight", "PatientSize")


def _sc_image(writer: SeriesWriter, pixels: np.ndarray, photometric: str, bits: int, k: int) -> Dataset:
    identity = writer.identity
    orientation = writer.orientation()

    def optional(value: str) -> str | None:
        return value or None

    ds = hd.sc.SCImage(
        pixel_array=pixels, photometric_interpretation=photometric, bits_allocated=bits,
        coordinate_system="PATIENT", study_instance_uid=identity.StudyInstanceUID,
        series_instance_uid=writer.series_uid, series_number=writer.number, sop_instance_uid=new_uid(),
        instance_number=k + 1, manufacturer=MANUFACTURER, patient_id=optional(identity.PatientID),
        patient_name=optional(identity.PatientName), patient_orientation=tuple(o[0] for o in orientation),
        pixel_spacing=writer.geometry.pixel_spacing,
    )
    ds.PatientOrientation = list(orientation)  # highdicom takes one letter; oblique planes have more
    ds.ConversionType = "WSD"  # made on a workstation from other images
    return ds


def fused_rgb_datasets(writer: SeriesWriter) -> Iterator[Dataset]:
    """One RGB Secondary Capture per MRI slice; slice k pixels = rgb[:, :, :, k] as (rows=Y, cols=X)."""
    study = writer.study
    rgb = to_numpy(study.fused_rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    for k in range(rgb.shape[3]):
        ds = _sc_image(writer, np.ascontiguousarray(rgb[:, :, :, k].transpose(2, 1, 0)), "RGB", 8, k)
        ds.Modality = "OT"
        ds.ImageType = ["DERIVED", "SECONDARY", "FUSION"]
        ds.DerivationDescription = (f"MixFuse fusion of MR (luma) with registered {study.modality} "
                                    f"(colour map {study.colormap}, window {study.window[0]:g} to "
                                    f"{study.window[1]:g} {study.functional.meta.get('units', '')})")[:1024]
        yield writer.complete(ds, k)


def _quantise(values: np.ndarray, signed_zero_intercept: bool) -> tuple[np.ndarray, float, float]:
    """Integers, slope and intercept for one slice (slope written as DS, so use its DS value)."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0)
    if signed_zero_intercept:
        top = float(np.abs(values).max())
        slope = float(format_number_as_ds(top / 32767)) if top > 0 else 1.0
        pixels = np.clip(np.round(values / slope), -32768, 32767).astype("<i2")
        return pixels, slope, 0.0
    low, high = float(values.min()), float(values.max())
    intercept = float(format_number_as_ds(low))
    slope = float(format_number_as_ds((high - intercept) / 65535)) if high > intercept else 1.0
    pixels = np.clip(np.round((values - intercept) / slope), 0, 65535).astype("<u2")
    return pixels, slope, intercept


def _derivation(ds: Dataset, study) -> None:
    units = study.functional.meta.get("units", "") or "unknown units"
    ds.DerivationDescription = (f"{study.modality} registered to the MR and resampled on its grid; "
                                f"values in {units}")
    ds.DerivationCodeSequence = Sequence([code_item("113085", "Spatial resampling")])


def _pet_dataset(writer: SeriesWriter, functional_source: SourceSeries | None, k: int,
                 pixels: np.ndarray, slope: float, n_slices: int) -> Dataset:
    study = writer.study
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = PositronEmissionTomographyImageStorage
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "PT"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    units = str(study.functional.meta.get("units", "") or "").upper()
    ds.Units, suv_type = _PET_UNITS.get(units, ("NONE", None))
    if suv_type:
        ds.SUVType = suv_type
    ds.CountsSource, ds.SeriesType = "EMISSION", ["STATIC", "IMAGE"]
    ds.CorrectedImage, ds.DecayCorrection, ds.CollimatorType = [], "NONE", "NONE"
    ds.NumberOfSlices = n_slices
    ds.RadiopharmaceuticalInformationSequence = Sequence()
    ds.PatientOrientationCodeSequence, ds.PatientGantryRelationshipCodeSequence = Sequence(), Sequence()
    ds.AcquisitionContextSequence = Sequence()
    ds.FrameReferenceTime, ds.ActualFrameDuration = 0, None
    ds.AcquisitionDate, ds.AcquisitionTime = None, None
    writer.complete(ds, k)
    header = functional_source.header if functional_source is not None else None
    if header is not None and getattr(header, "Modality", "") == "PT":
        for key in _PET_COPIED:
            if key in header:
                ds[key] = deepcopy(header[key])
        for item in ds.RadiopharmaceuticalInformationSequence:
            if "RadionuclideCodeSequence" not in item:  # type 2 in the PET Isotope module
                item.RadionuclideCodeSequence = Sequence()
    ds.PositionReferenceIndicator = ""  # Frame of Reference module, part of the PET IOD
    ds.ImageIndex = k + 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = "0", format_number_as_ds(slope)
    ds.PixelData = pixels.tobytes()
    return ds


def functional_datasets(writer: SeriesWriter, functional_source: SourceSeries | None) -> Iterator[Dataset]:
    """The registered PET (PET Image) or SPECT (grey SC) on the MRI's slices, in its units."""
    study = writer.study
    values = to_numpy(study.functional)[0]
    is_pet = study.modality.upper() in ("PET", "PT")
    for k in range(values.shape[2]):
        pixels, slope, intercept = _quantise(values[:, :, k].T, signed_zero_intercept=is_pet)
        if is_pet:
            ds = _pet_dataset(writer, functional_source, k, pixels, slope, values.shape[2])
        else:
            ds = _sc_image(writer, pixels, "MONOCHROME2", 16, k)
            ds.Modality = "NM"
            ds.ImageType = ["DERIVED", "SECONDARY", "RESAMPLED"]
            ds.RescaleIntercept, ds.RescaleSlope = format_number_as_ds(intercept), format_number_as_ds(slope)
            units = str(study.functional.meta.get("units", "") or "")
            # Rescale Type has defined terms (counts are not one of them): "US" = unspecified
            ds.RescaleType = units if units in _RESCALE_TYPES else "US"
            if units:
                ds.ImageComments = f"values in {units}"
            writer.complete(ds, k)
        _derivation(ds, study)
        yield ds
