"""Reading NIfTI files and DICOM series into MetaTensors; SUV; world geometry."""

from .dicom import DicomSeries, list_dicom_series
from .load import load_volume
from .suv import SuvError, SuvParameters, suv_parameters

__all__ = ["DicomSeries", "SuvError", "SuvParameters", "list_dicom_series", "load_volume", "suv_parameters"]
