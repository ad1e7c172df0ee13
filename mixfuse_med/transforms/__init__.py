"""MONAI transforms for the MRI + PET/SPECT path: register, resample, normalise, colour map.

Each is an array ``Transform`` with a dictionary ``MapTransform`` twin.
"""

from .colour import ApplyColormap, ApplyColormapd, RGBToLuma
from .intensity import (
    DEFAULT_SUV_WINDOW,
    NormalizeFunctional,
    NormalizeFunctionald,
    NormalizeMRI,
    NormalizeMRId,
    n4_bias_correct,
)
from .registration import (
    RegistrationResult,
    RigidOptions,
    RigidRegister,
    RigidRegisterd,
    load_transform,
    register_rigid,
    register_rigid_with_result,
    save_transform,
    transform_from_meta,
)
from .resample import ResampleToReference, ResampleToReferenced, resample_to_reference

__all__ = [
    "DEFAULT_SUV_WINDOW",
    "ApplyColormap",
    "ApplyColormapd",
    "NormalizeFunctional",
    "NormalizeFunctionald",
    "NormalizeMRI",
    "NormalizeMRId",
    "RGBToLuma",
    "RegistrationResult",
    "ResampleToReference",
    "ResampleToReferenced",
    "RigidOptions",
    "RigidRegister",
    "RigidRegisterd",
    "load_transform",
    "n4_bias_correct",
    "register_rigid",
    "register_rigid_with_result",
    "resample_to_reference",
    "save_transform",
    "transform_from_meta",
]
