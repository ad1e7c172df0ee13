"""NIfTI outputs for research tools: fused luma, RGB overlay, functional volume on the MRI grid.

Every file takes the MRI's affine as both qform and sform, so nibabel,
SimpleITK, ITK-SNAP and 3D Slicer place it exactly over the MRI.  The colour
overlay is NIfTI datatype RGB24 (128): the one colour type those tools all
show as colour rather than as three separate volumes.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from mixfuse_med.atomic import atomic_path

RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
_SCANNER_ANAT = 1  # NIfTI xform code: scanner-based anatomical coordinates


def _array(volume) -> np.ndarray:
    if isinstance(volume, torch.Tensor):
        volume = volume.detach().cpu().numpy()
    return np.asarray(volume)


def affine_of(volume) -> np.ndarray:
    """The RAS affine of a MetaTensor as float64 numpy."""
    affine = volume.affine
    return np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)


def _xform_codes(meta: dict) -> tuple[int, int]:
    """qform/sform codes of the MRI when it came from NIfTI (MONAI keeps them), else scanner."""
    def code(key: str) -> int:
        value = meta.get(key)
        try:
            value = int(np.asarray(value).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            return _SCANNER_ANAT
        return value if value > 0 else _SCANNER_ANAT

    return code("qform_code"), code("sform_code")


def rgb24(volume) -> np.ndarray:
    """(3, X, Y, Z) uint8 -> (X, Y, Z) array of RGB24 records."""
    array = _array(volume)
    if array.ndim != 4 or array.shape[0] != 3:
        raise ValueError(f"expected an RGB volume (3, X, Y, Z), got shape {array.shape}")
    array = np.clip(array, 0, 255).astype(np.uint8) if array.dtype != np.uint8 else array
    return np.ascontiguousarray(np.moveaxis(array, 0, -1)).view(RGB24)[..., 0]


def nifti_image(data: np.ndarray, affine: np.ndarray, *, meta: dict | None = None, description: str = "",
                intent_name: str = "", display_range: tuple[float, float] | None = None) -> nib.Nifti1Image:
    """A NIfTI-1 image with qform and sform both set to ``affine`` (RAS, mm)."""
    image = nib.Nifti1Image(data, affine)
    qcode, scode = _xform_codes(meta or {})
    image.set_qform(affine, code=qcode)
    image.set_sform(affine, code=scode)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = description.encode("ascii", "replace")[:79]
    if intent_name:
        header.set_intent(0, name=intent_name[:15])
    if display_range is not None:
        header["cal_min"], header["cal_max"] = display_range
    return image


def save_nifti(image: nib.Nifti1Image, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``image`` to ``path`` atomically (temporary sibling, then rename)."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as temp:
        nib.save(image, temp)
    return path


def fused_luma_image(study) -> nib.Nifti1Image:
    luma = _array(study.fused_luma)[0].astype(np.float32)
    return nifti_image(luma, affine_of(study.mri), meta=study.mri.meta, display_range=(0.0, 1.0),
                       description=f"mixfuse-med fused luma MR+{study.modality} [0,1]")


def fused_rgb_image(study) -> nib.Nifti1Image:
    return nifti_image(rgb24(study.fused_rgb), affine_of(study.mri), meta=study.mri.meta,
                       description=f"mixfuse-med fused MR+{study.modality} RGB, colormap {study.colormap}")


def functional_image(study) -> nib.Nifti1Image:
    units = str(study.functional.meta.get("units", "") or "")
    values = _array(study.functional)[0].astype(np.float32)
    return nifti_image(values, affine_of(study.mri), meta=study.mri.meta, intent_name=units,
                       display_range=tuple(float(v) for v in study.window),
                       description=f"{study.modality} registered to MRI grid, units {units or 'unknown'}")
