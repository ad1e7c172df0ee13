"""DICOM series: find them in a folder, check they form one 3D volume, read them.

Headers come from pydicom (it reads everything, including what SimpleITK
hides); pixels from SimpleITK's ImageSeriesReader with float32 output, so that
each slice's own RescaleSlope is applied without rounding (PET stores one
slope per slice).  Every problem is an ``InputError`` naming the file.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ..atomic import finished_files
from ..errors import InputError

log = logging.getLogger(__name__)

# Modality names users type -> DICOM Modality codes.
MODALITY_ALIASES = {"MRI": "MR", "MR": "MR", "PET": "PT", "PT": "PT", "SPECT": "NM", "NM": "NM",
                    "CT": "CT", "OT": "OT"}

_ORIENTATION_TOLERANCE = 1e-3  # direction cosines
_SPACING_TOLERANCE = 0.1  # relative deviation of a slice step from the median step


def normalise_modality(modality: str | None) -> str | None:
    """'PET' -> 'PT', 'SPECT' -> 'NM', 'MRI' -> 'MR'; other codes upper-cased as given."""
    if modality is None:
        return None
    return MODALITY_ALIASES.get(modality.strip().upper(), modality.strip().upper())


@dataclass
class DicomSeries:
    """One image series found in a folder (headers read, pixels not)."""

    series_uid: str
    modality: str
    description: str
    number: str
    files: list[Path]
    headers: list[Dataset] = field(repr=False)

    def summary(self) -> str:
        return (f"{self.modality} series {self.number or '?'} '{self.description}' "
                f"({len(self.files)} file(s)), SeriesInstanceUID={self.series_uid}")


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _is_image_storage(sop_class: str) -> bool:
    try:
        return UID(sop_class).name.endswith("Image Storage")
    except Exception:
        return False


def _read_header(path: Path) -> Dataset | None:
    """The header of a DICOM file; None for files that are not DICOM, or DICOM without pixels.

    A file that claims to be DICOM (preamble) but cannot be parsed, or an
    image whose header stops short of its size and place, is corrupt: an
    error, not something to skip silently, since it may be a slice.
    """
    claims_dicom = _has_dicom_preamble(path)
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        if claims_dicom:
            raise InputError(path, "corrupt DICOM file (header cannot be parsed)") from None
        return None
    except Exception as err:  # pydicom raises many types on truncated/garbled data
        if claims_dicom or path.suffix.lower() == ".dcm":
            raise InputError(path, f"corrupt DICOM file ({type(err).__name__}: {err})") from None
        return None
    file_meta = getattr(header, "file_meta", None)
    sop_class = str(header.get("SOPClassUID") or (file_meta.get("MediaStorageSOPClassUID") if file_meta
                                                   else "") or "")
    if claims_dicom and not sop_class:
        raise InputError(path, "corrupt DICOM file (no SOP class: garbled or truncated header)")
    if _is_image_storage(sop_class):
        missing = [k for k in ("SeriesInstanceUID", "Rows", "Columns") if k not in header]
        if missing:
            raise InputError(path, f"corrupt DICOM image: header lacks {', '.join(missing)} "
                                   "(truncated or garbled file?)")
    elif "Rows" not in header:
        return None  # a report, structure set, DICOMDIR...: nothing to load
    return header


def list_dicom_series(folder: str | Path) -> list[DicomSeries]:
    """All image series under ``folder`` (searched recursively), sorted by series number.

    Files that are not DICOM, DICOM objects without pixels (reports,
    structure sets, DICOMDIR), and partial outputs of an interrupted export
    (``mixfuse_med.atomic``) are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for path in sorted(finished_files(folder)):
        header = _read_header(path)
        if header is None or "SeriesInstanceUID" not in header:
            continue
        groups[str(header.SeriesInstanceUID)].append((path, header))
    series = []
    for uid, items in groups.items():
        first = items[0][1]
        series.append(DicomSeries(
            series_uid=uid,
            modality=str(first.get("Modality", "OT") or "OT"),
            description=str(first.get("SeriesDescription", "") or ""),
            number=str(first.get("SeriesNumber", "") or ""),
            files=[p for p, _ in items],
            headers=[h for _, h in items],
        ))

    def order(s: DicomSeries):
        return (int(s.number) if s.number.lstrip("-").isdigit() else 10**9, s.series_uid)

    return sorted(series, key=order)


def select_series(folder: Path, series: list[DicomSeries], *, series_uid: str | None = None,
                  modality: str | None = None) -> DicomSeries:
    """The one series asked for; an error listing what was found otherwise."""
    if not series:
        raise InputError(folder, "no DICOM image files found")
    listing = "; ".join(s.summary() for s in series)
    candidates = series
    if series_uid is not None:
        candidates = [s for s in candidates if s.series_uid == series_uid]
        if not candidates:
            raise InputError(folder, f"no series with SeriesInstanceUID {series_uid}; found: {listing}")
    code = normalise_modality(modality)
    if code is not None:
        candidates = [s for s in candidates if s.modality.upper() == code]
        if not candidates:
            raise InputError(folder, f"no {code} series; found: {listing}")
    if len(candidates) > 1:
        raise InputError(folder, f"{len(candidates)} series match, choose one by SeriesInstanceUID "
                                 f"or modality; found: {listing}")
    return candidates[0]


def _floats(header: Dataset, keyword: str, path: Path, count: int) -> np.ndarray:
    value = header.get(keyword)
    if value is None or len(value) != count:
        raise InputError(path, f"{keyword} missing or malformed; cannot place the slice in space")
    return np.asarray([float(v) for v in value])


def _frames(header: Dataset) -> int:
    return int(header.get("NumberOfFrames", 1) or 1)


def sort_slices(series: DicomSeries) -> tuple[list[Path], list[Dataset]]:
    """Files of a single-frame series ordered along the slice normal, checked to form a 3D grid.

    Raises for: multi-frame files mixed in, differing orientation or size,
    a single slice (2D), several images at one position (4D), and gaps or
    uneven steps between slices (a missing slice).
    """
    files, headers = series.files, series.headers
    if len(files) == 1:
        raise InputError(files[0], "the series holds a single 2D image; a 3D volume is needed")
    orientation = _floats(headers[0], "ImageOrientationPatient", files[0], 6)
    size = (headers[0].get("Rows"), headers[0].get("Columns"))
    for path, header in zip(files, headers, strict=True):
        if _frames(header) > 1:
            raise InputError(path, "multi-frame file inside a series of single-frame images")
        if np.abs(_floats(header, "ImageOrientationPatient", path, 6) - orientation).max() > \
                _ORIENTATION_TOLERANCE:
            raise InputError(path, "slice orientation differs from the rest of the series")
        if (header.get("Rows"), header.get("Columns")) != size:
            raise InputError(path, f"image size {header.get('Rows')}x{header.get('Columns')} differs "
                                   f"from the series' {size[0]}x{size[1]}")
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([_floats(h, "ImagePositionPatient", p, 3) @ normal
                          for p, h in zip(files, headers, strict=True)])
    order = np.argsort(positions, kind="stable")
    files = [files[i] for i in order]
    headers = [headers[i] for i in order]
    positions = positions[order]
    steps = np.diff(positions)
    same = np.flatnonzero(steps < 1e-3)
    if same.size:
        i = same[0]
        raise InputError(files[i + 1], f"{same.size + 1} images share slice positions (e.g. with "
                                       f"{files[i].name}): a 4D (dynamic, multi-echo) series; "
                                       "a 3D volume is needed")
    step = float(np.median(steps))
    bad = np.flatnonzero(np.abs(steps - step) > _SPACING_TOLERANCE * step)
    if bad.size:
        i = bad[0]
        missing = round(steps[i] / step) - 1
        what = (f"{missing} missing slice(s)" if missing >= 1 else "uneven slice spacing")
        raise InputError(series.files[0].parent,
                         f"{what}: gap of {steps[i]:.3g} mm between {files[i].name} and "
                         f"{files[i + 1].name}, the series' slice step is {step:.3g} mm")
    _check_count(series, files, headers)
    return files, headers


def _check_count(series: DicomSeries, files: list[Path], headers: list[Dataset]) -> None:
    """A slice missing at either end leaves no gap; the count the scanner wrote still tells."""
    keywords = ["ImagesInAcquisition"]
    if series.modality == "PT":
        keywords.insert(0, "NumberOfSlices")  # PET Series module, type 1
    single_acquisition = len({str(h.get("AcquisitionNumber", "")) for h in headers}) == 1
    for keyword in keywords:
        declared = headers[0].get(keyword)
        if declared in (None, "") or (keyword == "ImagesInAcquisition" and not single_acquisition):
            continue
        if int(declared) != len(files):
            raise InputError(files[0].parent, f"{int(declared) - len(files)} missing slice(s): {keyword} "
                                              f"says {int(declared)}, the folder holds {len(files)}")


def _find_unreadable(files: list[Path]) -> tuple[Path, str] | None:
    for path in files:
        try:
            pydicom.dcmread(path).pixel_array  # noqa: B018 (decoding is the check)
        except Exception as err:
            return path, str(err).strip().splitlines()[0]
        try:
            sitk.ReadImage(str(path), sitk.sitkFloat32)
        except RuntimeError as err:
            return path, str(err).strip().splitlines()[-1].replace("sitk::ERROR: ", "")
    return None


def read_series_pixels(files: list[Path]) -> sitk.Image:
    """A 3D float32 image from files already sorted along the slice normal.

    Multi-frame files (NM tomography, one file per volume) are read whole.
    """
    try:
        if len(files) == 1:
            image = sitk.ReadImage(str(files[0]), sitk.sitkFloat32)
        else:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames([str(f) for f in files])
            reader.SetOutputPixelType(sitk.sitkFloat32)
            image = reader.Execute()
    except RuntimeError as err:
        culprit = _find_unreadable(files)
        if culprit is not None:
            raise InputError(culprit[0], f"corrupt DICOM image, pixel data cannot be read "
                                         f"({culprit[1]})") from None
        raise InputError(files[0].parent, f"DICOM series cannot be read "
                                          f"({str(err).strip().splitlines()[-1]})") from None
    return image
