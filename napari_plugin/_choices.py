"""Checking the widget's layer choices before any work starts, in words a user acts on."""

from __future__ import annotations

from collections.abc import Iterable

from ._display import FUNCTIONAL_CODES, RESULT_ROLES
from ._layers import ROLE_KEY


class LayerChoiceError(ValueError):
    """The chosen layers cannot be fused; the message says what to choose instead."""


def _modality(layer) -> str:
    return str((layer.metadata or {}).get("modality", "") or "").upper()


def _patient_id(layer) -> str:
    return str(((layer.metadata or {}).get("patient") or {}).get("PatientID", "") or "").strip()


def _check_volume(layer, what: str) -> None:
    if getattr(layer, "rgb", False):
        raise LayerChoiceError(f"{what}: layer {layer.name!r} is an RGB image (a fused overlay?); "
                               "choose a scan with one value per voxel")
    if layer.ndim != 3:
        raise LayerChoiceError(f"{what}: layer {layer.name!r} is {layer.ndim}D (shape "
                               f"{tuple(layer.data.shape)}); MixFuse fuses 3D volumes")


def check_layers(mri, functional) -> list[str]:
    """Raise ``LayerChoiceError`` for a choice that cannot work; return warnings for doubtful ones.

    Refused: a missing layer, the same layer twice, a 2D or RGB layer, and
    two layers whose PatientIDs differ (never fuse two people's scans).
    """
    if functional is None:
        raise LayerChoiceError("No PET or SPECT layer chosen: open one (File > Open, or File > Open Sample "
                               "> mixfuse-med) and pick it as the functional scan")
    if mri is None:
        raise LayerChoiceError("No MRI layer chosen: open the MRI and pick it as the anatomical scan")
    if mri is functional:
        raise LayerChoiceError(f"The same layer ({mri.name!r}) is chosen as MRI and as PET/SPECT: "
                               "choose two different scans")
    _check_volume(mri, "MRI")
    _check_volume(functional, "PET/SPECT")
    mri_id, functional_id = _patient_id(mri), _patient_id(functional)
    if mri_id and functional_id and mri_id != functional_id:
        raise LayerChoiceError(f"The scans belong to different patients: MRI {mri.name!r} has PatientID "
                               f"{mri_id!r}, PET/SPECT {functional.name!r} has {functional_id!r}")
    warnings = []
    if _modality(mri) in FUNCTIONAL_CODES:
        warnings.append(f"The MRI choice {mri.name!r} is a {_modality(mri)} scan; is it the MRI?")
    if _modality(functional) == "MR":
        warnings.append(f"The PET/SPECT choice {functional.name!r} is an MR scan; is it the functional scan?")
    for layer in (mri, functional):
        if (layer.metadata or {}).get(ROLE_KEY) in RESULT_ROLES:
            warnings.append(f"{layer.name!r} is a fusion result, not a scan")
    return warnings


def guess_layers(layers: Iterable) -> tuple[object | None, object | None]:
    """The MRI and the functional layer a user most likely means: by modality, else by order."""
    scans = [layer for layer in layers if (layer.metadata or {}).get(ROLE_KEY) not in RESULT_ROLES
             and not getattr(layer, "rgb", False) and layer.ndim == 3]
    mri = next((layer for layer in scans if _modality(layer) == "MR"), None)
    functional = next((layer for layer in scans if _modality(layer) in FUNCTIONAL_CODES), None)
    return mri, functional
