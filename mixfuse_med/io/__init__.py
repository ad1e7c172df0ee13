"""Reading NIfTI files and DICOM series into MetaTensors; world geometry."""
