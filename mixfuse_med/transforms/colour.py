"""Scalar functional volume in [0, 1] -> pseudo-colour RGB and its luma (spec section 1).

The network fuses the MRI with the luma Y of the coloured functional image
and the chroma is put back afterwards, so the functional volume must be
coloured the way the training images were (``mixfuse_med.colormaps``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from ..color import rgb_to_luma
from ..colormaps import DEFAULT_COLORMAP, apply_colormap, colormap_table

COLORMAP_KEY = "colormap"


def _with_meta(array: torch.Tensor, like, **extra) -> MetaTensor:
    meta = dict(like.meta) if isinstance(like, MetaTensor) else {}
    meta.update(extra)
    return MetaTensor(array, meta=meta)


class ApplyColormap(Transform):
    """(1, X, Y, Z) values in [0, 1] -> (3, X, Y, Z) RGB in [0, 1] through a named colour map.

    ``name=None`` picks the map of the volume's modality (PET/PT -> "pet",
    SPECT/NM -> "spect").
    """

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            colormap_table(name)  # fail early on a typo
        self.name = name

    def colormap_for(self, volume) -> str:
        if self.name is not None:
            return self.name
        modality = str(volume.meta.get("modality", "")) if isinstance(volume, MetaTensor) else ""
        if modality.upper() not in DEFAULT_COLORMAP:
            raise ValueError(f"no colour map given and modality {modality or 'unknown'!r} has no default; "
                             f"pass name= one of 'pet', 'spect', 'hot', 'gray'")
        return DEFAULT_COLORMAP[modality.upper()]

    def __call__(self, volume: torch.Tensor) -> MetaTensor:
        if volume.shape[0] != 1:
            raise ValueError(f"expected one channel (1, X, Y, Z), got shape {tuple(volume.shape)}")
        name = self.colormap_for(volume)
        scalar = volume.as_tensor() if isinstance(volume, MetaTensor) else torch.as_tensor(volume)
        rgb = apply_colormap(scalar[0], name)  # (X, Y, Z, 3)
        return _with_meta(rgb.permute(3, 0, 1, 2).contiguous(), volume, **{COLORMAP_KEY: name})


class RGBToLuma(Transform):
    """(3, X, Y, Z) RGB -> (1, X, Y, Z) luma Y = .299 R + .587 G + .114 B."""

    def __call__(self, rgb: torch.Tensor) -> MetaTensor:
        if rgb.shape[0] != 3:
            raise ValueError(f"expected RGB channels first (3, X, Y, Z), got shape {tuple(rgb.shape)}")
        plain = rgb.as_tensor() if isinstance(rgb, MetaTensor) else torch.as_tensor(rgb)
        luma = rgb_to_luma(plain.permute(1, 2, 3, 0))[None]
        return _with_meta(luma.contiguous(), rgb)


class ApplyColormapd(MapTransform):
    """Dictionary twin: adds ``<key>_rgb`` (3, X, Y, Z) and ``<key>_luma`` (1, X, Y, Z) for each key.

    The scalar volume under ``key`` is left as it is.
    """

    def __init__(self, keys: KeysCollection, name: str | None = None, rgb_postfix: str = "_rgb",
                 luma_postfix: str = "_luma", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.colour = ApplyColormap(name)
        self.luma = RGBToLuma()
        self.rgb_postfix, self.luma_postfix = rgb_postfix, luma_postfix

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            rgb = self.colour(d[key])
            d[f"{key}{self.rgb_postfix}"] = rgb
            d[f"{key}{self.luma_postfix}"] = self.luma(rgb)
        return d
