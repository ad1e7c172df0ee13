"""Reader: NIfTI files, DICOM series folders and single DICOM files, through ``mixfuse_med.io``.

A folder holding several series (an MRI and a PET export, say) opens as one
layer per series.  PET from DICOM is converted to SUV (body weight) when its
headers allow it; otherwise the stored activity is kept and
``layer.metadata["suv"]`` says why, so a scan always opens.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ._layers import LayerDataTuple

ReaderFunction = Callable[[str | list[str]], list[LayerDataTuple]]
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_DICOM_PROBE_LIMIT = 200  # files looked at to decide whether a folder holds DICOM


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _folder_has_dicom(folder: Path) -> bool:
    """Probe the files ``list_dicom_series`` would read (partial exports skipped), not all of them."""
    from mixfuse_med.atomic import finished_files

    for seen, path in enumerate(finished_files(folder), start=1):
        if _has_dicom_preamble(path):
            return True
        if seen >= _DICOM_PROBE_LIMIT:
            return False
    return False


def _readable(path: Path) -> bool:
    if path.is_dir():
        return _folder_has_dicom(path)
    return path.is_file() and (_is_nifti(path) or _has_dicom_preamble(path))


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """napari's reader hook: :func:`read_scans` when every path is a NIfTI file or holds DICOM."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(_readable(Path(p)) for p in paths):
        return None
    return read_scans


def read_scans(path: str | list[str]) -> list[LayerDataTuple]:
    """One image layer per scan found: geometry, values (SUV for PET) and header facts kept."""
    from napari.utils.notifications import show_warning

    from mixfuse_med.errors import InputError

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerDataTuple] = []
    for item in paths:
        found, problems = _read_one(Path(item))
        layers += found
        if problems and not found:
            raise problems[0]
        for problem in problems:
            show_warning(f"mixfuse-med skipped a series: {problem}")
    if not layers:
        raise InputError(paths[0], "no 3D scan found")
    return layers


def _read_one(path: Path) -> tuple[list[LayerDataTuple], list[Exception]]:
    from mixfuse_med.errors import InputError
    from mixfuse_med.io import list_dicom_series, load_volume

    from ._display import scan_layer_data

    if not path.is_dir():
        modality = modality_from_name(path) if _is_nifti(path) else None
        return [scan_layer_data(load_volume(path, modality=modality, allow_raw_activity=True))], []
    layers, problems = [], []
    for series in list_dicom_series(path):
        try:
            volume = load_volume(path, series_uid=series.series_uid, allow_raw_activity=True)
        except InputError as error:  # e.g. a 2D localiser next to the 3D series
            problems.append(error)
            continue
        layers.append(scan_layer_data(volume))
    return layers, problems


_NAME_MODALITIES = {"pet": "PT", "pt": "PT", "fdg": "PT", "spect": "NM", "nm": "NM", "mri": "MR", "mr": "MR",
                    "t1w": "MR", "t2w": "MR", "t1": "MR", "t2": "MR", "flair": "MR", "anat": "MR"}


def modality_from_name(path: Path) -> str | None:
    """NIfTI has no modality header: take it from the file name (BIDS suffixes _pet, _T1w ...), else None."""
    stem = path.name.lower().removesuffix(".gz").removesuffix(".nii")
    found = {_NAME_MODALITIES[t] for t in re.split(r"[^a-z0-9]+", stem) if t in _NAME_MODALITIES}
    return found.pop() if len(found) == 1 else None
