"""Writers: image layers as NIfTI with their world geometry, through ``mixfuse_med.export.nifti``.

The geometry written is the layer's (rebuilt by :func:`layer_to_volume`), so a
layer read by this plugin is written back on its source grid with its RAS
affine as qform and sform.  RGB layers become NIfTI RGB24.  Files appear
whole or not at all; an existing file is replaced (napari's save dialog has
already asked).  The whole fused study (NIfTI and DICOM) is exported from the
fusion widget through ``mixfuse_med.export.export_study``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ._layers import layer_to_volume


def _image(data: Any, attributes: dict):
    import numpy as np
    from napari.layers import Layer

    from mixfuse_med.export.nifti import nifti_image, rgb24

    volume = layer_to_volume(Layer.create(data, attributes, "image"))
    affine = np.asarray(volume.affine, dtype=np.float64)
    name = str(attributes.get("name", ""))
    if volume.shape[0] == 3:
        return nifti_image(rgb24(volume), affine, meta=volume.meta, description=name)
    units = str(volume.meta.get("units", "") or "")
    limits = attributes.get("contrast_limits")
    return nifti_image(volume[0].numpy(), affine, meta=volume.meta, description=name, intent_name=units,
                       display_range=tuple(float(v) for v in limits) if limits is not None else None)


def _nifti_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.name.lower().endswith((".nii", ".nii.gz")) else path.with_name(path.name + ".nii.gz")


def write_nifti(path: str, data: Any, attributes: dict) -> list[str]:
    """napari writer for one image layer: ``path`` (.nii or .nii.gz) in the layer's geometry."""
    from mixfuse_med.export.nifti import save_nifti

    target = _nifti_path(path)
    save_nifti(_image(data, attributes), target, overwrite=True)
    return [str(target)]


def _file_name(name: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "layer"
    candidate, number = stem, 1
    while candidate.lower() in used:
        number += 1
        candidate = f"{stem}_{number}"
    used.add(candidate.lower())
    return f"{candidate}.nii.gz"


def write_nifti_folder(path: str, layer_data: list[tuple[Any, dict, str]]) -> list[str]:
    """napari writer for several image layers: one NIfTI per layer, named after it, in folder ``path``."""
    from mixfuse_med.export.nifti import save_nifti

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    images = [_image(data, attributes) for data, attributes, _ in layer_data]  # all checked before writing
    used: set[str] = set()
    written = []
    for image, (_, attributes, _) in zip(images, layer_data, strict=True):
        target = folder / _file_name(str(attributes.get("name", "layer")), used)
        written.append(str(save_nifti(image, target, overwrite=True)))
    return written
