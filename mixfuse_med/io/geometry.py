"""World geometry in one place: RAS (MONAI, NIfTI) <-> LPS (DICOM, SimpleITK).

A volume in mixfuse-med is a MetaTensor (C, X, Y, Z) with a RAS affine
(voxel index -> world mm).  SimpleITK images and DICOM headers use LPS.  Every
conversion between the two goes through this module so the sign flip is
written once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

# diag(-1, -1, 1): RAS <-> LPS (its own inverse)
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """4x4 voxel->RAS affine as voxel->LPS (and back: the flip is an involution)."""
    return _FLIP @ np.asarray(affine, dtype=np.float64)


lps_to_ras = ras_to_lps


def affine_to_sitk_geometry(affine_ras: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(origin, spacing, direction) of SimpleITK (LPS) from a RAS affine."""
    lps = ras_to_lps(affine_ras)
    matrix = lps[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"degenerate affine (zero voxel spacing): {affine_ras.tolist()}")
    direction = matrix / spacing
    return tuple(lps[:3, 3]), tuple(spacing), tuple(direction.flatten())


def sitk_to_affine(image: sitk.Image) -> np.ndarray:
    """RAS affine (voxel index -> world mm) of a 3D SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    lps[:3, 3] = image.GetOrigin()
    return lps_to_ras(lps)


def _affine_of(volume) -> np.ndarray:
    affine = volume.affine if isinstance(volume, MetaTensor) else None
    if affine is None:
        raise ValueError("a MetaTensor with an affine is needed to place the volume in the world")
    return np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)


def to_sitk(volume: MetaTensor | np.ndarray, affine: np.ndarray | None = None) -> sitk.Image:
    """MetaTensor (C, X, Y, Z) -> SimpleITK image with the same world geometry.

    One channel gives a scalar image, several a vector image (e.g. RGB).  A
    plain array needs ``affine`` (RAS).
    """
    if affine is None:
        affine = _affine_of(volume)
    array = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise ValueError(f"expected a (C, X, Y, Z) volume, got shape {array.shape}")
    if array.shape[0] == 1:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array[0].transpose(2, 1, 0)))
    else:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(3, 2, 1, 0)), isVector=True)
    origin, spacing, direction = affine_to_sitk_geometry(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def from_sitk(image: sitk.Image, meta: dict | None = None, dtype=np.float32) -> MetaTensor:
    """SimpleITK 3D image -> MetaTensor (C, X, Y, Z) with a RAS affine.

    ``meta`` (e.g. the source volume's header facts) is copied onto the result;
    the geometry keys are replaced by the image's own.
    """
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X[, C])
    if image.GetNumberOfComponentsPerPixel() == 1:
        array = array.transpose(2, 1, 0)[None]
    else:
        array = array.transpose(3, 2, 1, 0)
    affine = sitk_to_affine(image)
    out_meta = dict(meta or {})
    out_meta.update({
        "affine": torch.as_tensor(affine, dtype=torch.float64),
        "spatial_shape": np.asarray(array.shape[1:]),
        "space": "RAS",
    })
    out_meta.setdefault("original_affine", torch.as_tensor(affine, dtype=torch.float64))
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(array, dtype=dtype)), meta=out_meta)


def voxel_spacing(affine_ras: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine_ras, dtype=np.float64)[:3, :3], axis=0)


def axis_closest_to(affine_ras: np.ndarray, world_axis: int = 2) -> int:
    """Voxel axis most aligned with a world axis (0 R-L, 1 A-P, 2 S-I).

    Slice-wise fusion runs along the axis closest to superior-inferior, so an
    axial acquisition is fused axial slice by axial slice whatever its
    storage order.
    """
    matrix = np.asarray(affine_ras, dtype=np.float64)[:3, :3]
    cosines = np.abs(matrix[world_axis]) / np.linalg.norm(matrix, axis=0)
    return int(np.argmax(cosines))


@dataclass(frozen=True)
class DicomSliceGeometry:
    """DICOM plane geometry of slice ``k`` of a volume: (rows, columns) = (Y, X)."""

    image_orientation: tuple[float, ...]  # ImageOrientationPatient (row dir, column dir), LPS
    pixel_spacing: tuple[float, float]  # PixelSpacing: [between rows (Y), between columns (X)]
    slice_spacing: float  # along Z
    positions: tuple[tuple[float, float, float], ...]  # ImagePositionPatient of each k


def dicom_slice_geometry(affine_ras: np.ndarray, shape: tuple[int, int, int]) -> DicomSliceGeometry:
    """Per-slice DICOM geometry of a (X, Y, Z) volume sliced along Z.

    Slice k's pixel data is ``volume[:, :, k].T`` (rows run along Y, columns
    along X).
    """
    lps = ras_to_lps(affine_ras)
    matrix = lps[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    dirs = matrix / spacing
    positions = tuple(tuple(float(v) for v in lps[:3, 3] + k * matrix[:, 2]) for k in range(shape[2]))
    orientation = tuple(float(v) for v in np.concatenate([dirs[:, 0], dirs[:, 1]]))
    return DicomSliceGeometry(orientation, (float(spacing[1]), float(spacing[0])), float(spacing[2]),
                              positions)
