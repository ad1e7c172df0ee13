"""What the exported series were derived from: source series and instances, read from their headers.

Derivation references let a PACS or viewer link an exported slice back to the
MRI slice it lies on, and an exported series to its source series.  Headers
are read again from ``meta["source_files"]`` (without pixel data); when they
are gone, series-level references from the metadata are still made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError


@dataclass
class SourceSeries:
    """One source series: its UIDs, the first instance's header and each instance's position (LPS)."""

    study_uid: str
    series_uid: str
    modality: str = ""
    header: Dataset | None = None  # first instance, no pixel data
    instances: list[tuple[str, str, np.ndarray | None]] = field(default_factory=list)  # class, uid, IPP

    def instance_at(self, position_lps, tolerance: float) -> tuple[str, str] | None:
        """The single-frame instance whose ImagePositionPatient is ``position_lps``, if any."""
        best, best_distance = None, tolerance
        for sop_class, sop_uid, where in self.instances:
            if where is None:
                continue
            distance = float(np.linalg.norm(where - np.asarray(position_lps)))
            if distance <= best_distance:
                best, best_distance = (sop_class, sop_uid), distance
        return best


def _read_header(path) -> Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, InvalidDicomError, ValueError, TypeError):
        return None


def read_source_series(meta: dict) -> SourceSeries | None:
    """The series a volume was read from, or None when it has no DICOM identity (NIfTI input)."""
    series = dict(meta.get("series") or {})
    study = dict(meta.get("study") or {})
    files = meta.get("source_files") or []
    if isinstance(files, (str, bytes)) or not isinstance(files, (list, tuple)):
        files = [files]
    headers = [h for h in (_read_header(f) for f in files) if h is not None] \
        if meta.get("source_format") == "dicom" else []
    first = headers[0] if headers else None
    series_uid = str(series.get("SeriesInstanceUID") or getattr(first, "SeriesInstanceUID", "") or "")
    study_uid = str(study.get("StudyInstanceUID") or getattr(first, "StudyInstanceUID", "") or "")
    if not series_uid or not study_uid:
        return None
    modality = str(getattr(first, "Modality", "") or series.get("Modality", ""))
    source = SourceSeries(study_uid, series_uid, modality, first)
    for header in headers:
        if getattr(header, "SeriesInstanceUID", series_uid) != series_uid or "SOPInstanceUID" not in header:
            continue
        position = header.get("ImagePositionPatient")
        single_frame = int(header.get("NumberOfFrames", 1) or 1) == 1
        where = np.asarray([float(v) for v in position]) if position is not None and single_frame else None
        source.instances.append((str(header.SOPClassUID), str(header.SOPInstanceUID), where))
    return source
