"""MetaTensor <-> napari image layer, the one conversion the reader, widget and writer share.

napari's world here is the DICOM patient coordinate system (LPS, mm) with
its axes in the order (S, P, L): the (z, y, x) order ITK and SimpleITK use
for numpy arrays.  With napari's default camera an axial slice then shows
anterior at the top and the patient's right on the screen's left (the
radiological convention), and the status bar reads the same millimetres as
a DICOM viewer (reversed).  ``world_from_ras`` converts.

A layer's data are the volume's voxels with the axes permuted and flipped
(views, no copy) so that data axis 0 runs towards S, 1 towards P and 2
towards L; the layer ``affine`` is then close to a positive diagonal (exactly
one for non-oblique scans), which napari slices without warnings.  The
volume's ``meta`` dict goes into ``layer.metadata`` unchanged, plus
``voxel_axcodes`` (the source array's axis codes), so :func:`layer_to_volume`
gives back the same array in the same voxel order with the same RAS affine.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt2axcodes
from nibabel.orientations import ornt_transform as _ornt_transform

LayerDataTuple = tuple[Any, dict, str]

DISPLAY_AXCODES = ("S", "P", "L")  # napari data axes run towards these (nibabel RAS axis codes)
AXCODES_KEY = "voxel_axcodes"
ROLE_KEY = "mixfuse_role"  # what a layer is: "mri", "functional", "registered", "fused_rgb", "fused_luma"

# world (S, P, L) from RAS: S = z, P = -y, L = -x
WORLD_FROM_RAS = np.array([[0.0, 0.0, 1.0, 0.0],
                           [0.0, -1.0, 0.0, 0.0],
                           [-1.0, 0.0, 0.0, 0.0],
                           [0.0, 0.0, 0.0, 1.0]])
RAS_FROM_WORLD = np.linalg.inv(WORLD_FROM_RAS)


def world_from_ras(points: np.ndarray) -> np.ndarray:
    """RAS millimetres (..., 3) -> napari world coordinates (..., 3) of this plugin."""
    points = np.asarray(points, dtype=np.float64)
    return points @ WORLD_FROM_RAS[:3, :3].T


def ras_from_world(points: np.ndarray) -> np.ndarray:
    """napari world coordinates (..., 3) of this plugin -> RAS millimetres (..., 3)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ RAS_FROM_WORLD[:3, :3].T


def _affine(volume: MetaTensor) -> np.ndarray:
    affine = volume.affine
    return np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)


def _orientation_change(source_axcodes: tuple[str, ...], target_axcodes: tuple[str, ...]) -> np.ndarray:
    return _ornt_transform(axcodes2ornt(source_axcodes), axcodes2ornt(target_axcodes))


def to_display(array: np.ndarray, affine_ras: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Voxels (X, Y, Z, ...) and their RAS affine -> (data, layer affine, source axis codes).

    ``data`` is a view of ``array`` with its first three axes reordered and
    flipped to run towards S, P, L; trailing axes (RGB) stay last.
    """
    source = tuple(ornt2axcodes(io_orientation(affine_ras)))
    change = _orientation_change(source, DISPLAY_AXCODES)
    data = apply_orientation(array, change)
    display_ras = affine_ras @ inv_ornt_aff(change, array.shape[:3])
    return data, WORLD_FROM_RAS @ display_ras, source


def from_display(data: np.ndarray, layer_affine: np.ndarray,
                 source_axcodes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_display`: layer data and affine -> source voxels and RAS affine."""
    change = _orientation_change(DISPLAY_AXCODES, tuple(source_axcodes))
    array = apply_orientation(np.asarray(data), change)
    display_ras = RAS_FROM_WORLD @ np.asarray(layer_affine, dtype=np.float64)
    return array, display_ras @ inv_ornt_aff(change, np.asarray(data).shape[:3])


def layer_name(meta: Mapping, fallback: str = "volume") -> str:
    """A name a user recognises: modality, series description or file name, and units."""
    series = meta.get("series") or {}
    description = str(series.get("SeriesDescription", "") or "")
    source = str(meta.get("filename_or_obj", "") or "")
    stem = Path(source).name.removesuffix(".gz").removesuffix(".nii") if source else fallback
    modality = str(meta.get("modality", "") or "")
    units = str(meta.get("units", "") or "")
    name = f"{modality} {description or stem}".strip()
    return f"{name} [{units}]" if units else name


def volume_to_layer_data(volume: MetaTensor, *, name: str | None = None, role: str | None = None,
                         **layer_kwargs) -> LayerDataTuple:
    """A (C, X, Y, Z) MetaTensor -> napari image layer data tuple, placed in the plugin's world.

    One channel gives a scalar image, three (uint8) an RGB image.  ``role``
    tags the layer for the widget; other keyword arguments go to the layer
    (colormap, contrast_limits, blending, opacity, visible ...).
    """
    if not isinstance(volume, MetaTensor) or volume.dim() != 4 or volume.shape[0] not in (1, 3):
        shape = tuple(getattr(volume, "shape", ()))
        raise ValueError(f"expected a (1 or 3, X, Y, Z) MetaTensor, got {type(volume).__name__} {shape}")
    array = volume.detach().cpu().numpy()
    array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    data, affine, source = to_display(array, _affine(volume))
    metadata = {**volume.meta, AXCODES_KEY: source}
    if role is not None:
        metadata[ROLE_KEY] = role
    kwargs = {"name": name or layer_name(volume.meta), "affine": affine, "metadata": metadata,
              "rgb": volume.shape[0] == 3, **layer_kwargs}
    return data, kwargs, "image"


def data_to_world_matrix(layer) -> np.ndarray:
    """The layer's full data -> world matrix: ``affine`` after scale, rotate, shear, translate."""
    from napari.utils.transforms import Affine

    physical = Affine(scale=layer.scale, translate=layer.translate, rotate=layer.rotate, shear=layer.shear)
    return np.asarray(layer.affine.affine_matrix, dtype=np.float64) @ physical.affine_matrix


def layer_to_volume(layer) -> MetaTensor:
    """A napari image layer -> (C, X, Y, Z) MetaTensor with a RAS affine and the layer's metadata.

    The geometry comes from the layer itself (its data and affine), so a
    layer moved in napari keeps its new place; the voxel order is the source
    volume's when the layer came from :func:`volume_to_layer_data`.  A plain
    napari layer (no ``voxel_axcodes``) is taken as already in display order.
    """
    data = np.asarray(layer.data)
    spatial = data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    if spatial != 3:
        raise ValueError(f"layer {layer.name!r} is {spatial}D (shape {data.shape}); a 3D volume is needed")
    metadata = dict(layer.metadata or {})
    source = tuple(metadata.pop(AXCODES_KEY, DISPLAY_AXCODES))
    metadata.pop(ROLE_KEY, None)
    array, affine = from_display(data, data_to_world_matrix(layer), source)
    if layer.rgb:
        array = np.moveaxis(array, -1, 0)[:3]  # drop an alpha channel
    else:
        array = array[None].astype(np.float32, copy=False)
    affine_t = torch.as_tensor(affine, dtype=torch.float64)
    metadata["affine"] = affine_t
    metadata.setdefault("original_affine", affine_t.clone())
    metadata["spatial_shape"] = np.asarray(array.shape[1:])
    metadata.setdefault("space", "RAS")
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), meta=metadata)
