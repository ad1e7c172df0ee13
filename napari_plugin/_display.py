"""How scans and fusion results look in napari: colour maps, windows, blending, layer names.

The colour maps are mixfuse-med's own tables (``mixfuse_med.colormaps``), so
the registered PET/SPECT layer, its colour bar and the fused overlay use the
same colours the network was trained on.
"""

from __future__ import annotations

import numpy as np
from monai.data import MetaTensor

from mixfuse_med.colormaps import DEFAULT_COLORMAP, colormap_table
from mixfuse_med.study import FusedStudy
from mixfuse_med.transforms import DEFAULT_SUV_WINDOW

from ._layers import LayerDataTuple, layer_name, volume_to_layer_data

FUNCTIONAL_CODES = ("PT", "NM")
RESULT_ROLES = ("registered", "fused_luma", "fused_rgb")


def napari_colormap(name: str):
    """A mixfuse-med colour map as a napari ``Colormap`` named ``mixfuse-<name>``."""
    from napari.utils.colormaps import Colormap

    table = colormap_table(name)
    colors = np.concatenate([table, np.ones((len(table), 1), dtype=np.float32)], axis=1)
    return Colormap(colors=colors, name=f"mixfuse-{name.lower()}", display_name=f"mixfuse {name.lower()}")


def _foreground_percentile(array: np.ndarray, percentile: float) -> float:
    values = array[array > 0]
    return float(np.percentile(values if values.size else array, percentile))


def contrast_limits(volume: MetaTensor) -> tuple[float, float]:
    """A starting window: the SUV window for SUV PET, else 0 to a high percentile of the head."""
    units = str(volume.meta.get("units", "") or "").upper()
    if units == "SUVBW":
        return tuple(float(v) for v in DEFAULT_SUV_WINDOW)
    array = volume.detach().cpu().numpy()
    low = min(0.0, float(array.min()))
    high = _foreground_percentile(array, 99.5)
    return low, high if high > low else low + 1.0


def scan_kwargs(volume: MetaTensor) -> dict:
    """Layer settings for a loaded scan: grey MRI, colour PET/SPECT blended over it."""
    modality = str(volume.meta.get("modality", "") or "").upper()
    kwargs = {"contrast_limits": contrast_limits(volume), "interpolation2d": "linear"}
    if modality in FUNCTIONAL_CODES:
        kwargs.update(colormap=napari_colormap(DEFAULT_COLORMAP[modality]), blending="additive",
                      opacity=0.7)
    else:
        kwargs.update(colormap="gray")
    return kwargs


def scan_layer_data(volume: MetaTensor) -> LayerDataTuple:
    """A loaded scan as a napari image layer data tuple, with :func:`scan_kwargs`."""
    modality = str(volume.meta.get("modality", "") or "").upper()
    role = "functional" if modality in FUNCTIONAL_CODES else "mri" if modality == "MR" else None
    return volume_to_layer_data(volume, role=role, **scan_kwargs(volume))


def units_label(study: FusedStudy) -> str:
    units = str(study.functional.meta.get("units", "") or "")
    return units or "stored units"


def study_layer_data(study: FusedStudy) -> list[LayerDataTuple]:
    """The fused study as three layers, bottom to top: registered functional, fused luma, fused RGB.

    The registered functional volume keeps its units (SUV, Bq/ml, counts) and
    is shown through the colour map and window the overlay was made with, with
    napari's colour bar; the fused RGB overlay is shown, the other two hidden.
    """
    mri_name = layer_name(study.mri.meta, "MRI")
    registered = volume_to_layer_data(
        study.functional, role="registered",
        name=f"{study.modality} on MRI grid [{units_label(study)}]",
        colormap=napari_colormap(study.colormap), contrast_limits=study.window, blending="additive",
        opacity=0.7, visible=False, interpolation2d="linear")
    registered[1]["metadata"]["intensity_window"] = {"low": study.window[0], "high": study.window[1],
                                                     "method": study.notes.get("functional_scaling", "")}
    luma = volume_to_layer_data(study.fused_luma, role="fused_luma", name=f"fused luma ({mri_name})",
                                colormap="gray", contrast_limits=(0.0, 1.0), visible=False,
                                interpolation2d="linear")
    rgb = volume_to_layer_data(study.fused_rgb, role="fused_rgb",
                               name=f"fused MR+{study.modality} ({study.colormap})", blending="translucent",
                               interpolation2d="linear")
    return [registered, luma, rgb]
