"""Putting the functional volume on the MRI grid (linear, values kept in their units)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import SimpleITK as sitk
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from ..io.geometry import from_sitk, to_sitk
from .registration import REGISTRATION_KEY, transform_from_meta

_GEOMETRY_KEYS = ("affine", "original_affine", "spatial_shape", "space")


def resample_to_reference(image: MetaTensor, reference: MetaTensor,
                          transform: sitk.Transform | None = None) -> MetaTensor:
    """``image`` sampled on ``reference``'s grid through ``transform`` (reference -> image points).

    Linear interpolation, so values stay in the image's units (SUV stays
    SUV); voxels outside the image's field of view are 0.  The header facts
    of ``image`` are kept; the geometry is the reference's.
    """
    moving = to_sitk(image)
    if moving.GetPixelID() != sitk.sitkFloat32:
        moving = sitk.Cast(moving, sitk.sitkFloat32)
    out = sitk.Resample(moving, to_sitk(reference), transform or sitk.Transform(), sitk.sitkLinear, 0.0,
                        sitk.sitkFloat32)
    meta = {k: v for k, v in image.meta.items() if k not in _GEOMETRY_KEYS}
    meta["resampled_to"] = str(reference.meta.get("filename_or_obj", ""))
    return from_sitk(out, meta)


class ResampleToReference(Transform):
    """Array transform: ``(image, reference, transform=None) -> image on the reference grid``."""

    def __call__(self, image: MetaTensor, reference: MetaTensor,
                 transform: sitk.Transform | None = None) -> MetaTensor:
        return resample_to_reference(image, reference, transform)


class ResampleToReferenced(MapTransform):
    """Dictionary twin: resamples ``keys`` onto ``ref_key``'s grid.

    The transform is ``transform`` when given (e.g. ``load_transform(path)``),
    else the one ``RigidRegisterd`` left in the volume's
    ``meta['registration']``, else identity (the scanners' own geometry).
    """

    def __init__(self, keys: KeysCollection, ref_key: str = "mri", transform: sitk.Transform | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.transform = transform
        self.resampler = ResampleToReference()

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            transform = self.transform
            record = d[key].meta.get(REGISTRATION_KEY) if isinstance(d[key], MetaTensor) else None
            if transform is None and record:
                transform = transform_from_meta(record)
            d[key] = self.resampler(d[key], d[self.ref_key], transform)
        return d
