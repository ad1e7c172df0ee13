"""Colour handling for fusion: RGB <-> Y/Cb/Cr (spec section 1).

A pseudo-coloured functional image is fused through its luma Y: the network
fuses Y with the MRI, and the chroma (Cb, Cr) of the functional scan is put
back, so the tracer's colour survives and the anatomy shows through its
brightness.  Works on numpy arrays and torch tensors, channels last.

Putting the chroma back can leave the RGB cube: a bright MRI under a
saturated tracer colour (white matter under red) asks for R > 1.  Clipping
channel by channel would flatten the anatomy there and change the luma the
network produced, so :func:`ycbcr_to_rgb_in_gamut` (what fusion uses)
shrinks such a colour's chroma towards grey instead: hue and luma are kept,
only saturation gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _clip01(x: Array) -> Array:
    return x.clamp(0.0, 1.0) if isinstance(x, torch.Tensor) else np.clip(x, 0.0, 1.0)


def _stack(channels: list, like: Array) -> Array:
    if isinstance(like, torch.Tensor):
        return torch.stack(channels, dim=-1)
    return np.stack(channels, axis=-1)


def rgb_to_luma(rgb: Array) -> Array:
    """Y = .299 R + .587 G + .114 B of (..., 3) values in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b


def rgb_to_ycbcr(rgb: Array) -> Array:
    """(..., 3) RGB in [0, 1] -> (..., 3) Y, Cb, Cr, each clamped to [0, 1]."""
    y = rgb_to_luma(rgb)
    cr = (rgb[..., 0] - y) * 0.713 + 0.5
    cb = (rgb[..., 2] - y) * 0.564 + 0.5
    return _clip01(_stack([y, cb, cr], rgb))


def _chroma_offsets(ycbcr: Array) -> Array:
    """(..., 3) R, G, B minus Y for the chroma of (..., 3) Y, Cb, Cr."""
    cb, cr = ycbcr[..., 1] - 0.5, ycbcr[..., 2] - 0.5
    return _stack([1.403 * cr, -0.714 * cr - 0.344 * cb, 1.773 * cb], ycbcr)


def ycbcr_to_rgb(ycbcr: Array) -> Array:
    """(..., 3) Y, Cb, Cr -> (..., 3) RGB clamped to [0, 1]."""
    return _clip01(ycbcr[..., :1] + _chroma_offsets(ycbcr))


def ycbcr_to_rgb_in_gamut(ycbcr: Array) -> Array:
    """(..., 3) Y, Cb, Cr -> RGB in [0, 1] with Y kept exactly and chroma scaled down to fit.

    For each pixel the largest s in [0, 1] with Y + s * (chroma offset) inside
    [0, 1] on every channel is taken; colours already in gamut (s = 1) are
    exactly :func:`ycbcr_to_rgb`'s.
    """
    if not isinstance(ycbcr, torch.Tensor):
        return ycbcr_to_rgb_in_gamut(torch.from_numpy(np.ascontiguousarray(ycbcr))).numpy()
    y, offsets = ycbcr[..., :1], _chroma_offsets(ycbcr)
    tiny = 1e-12
    # room before a channel reaches 1 (offset up) or 0 (offset down); a flat channel sets no limit
    limit = (offsets > 0).to(ycbcr.dtype)
    moving = offsets.abs() > tiny
    room = torch.where(moving, (limit - y) / torch.where(moving, offsets, torch.ones_like(offsets)),
                       torch.ones_like(offsets))
    scale = room.amin(dim=-1, keepdim=True).clamp(0.0, 1.0)
    return _clip01(y + scale * offsets)


def fuse_colour(
    mri: Array, functional: Array, fuse_luma: Callable[[Array, Array], Array],
    colormap: str | None = None,
) -> Array:
    """Fuse a grey MRI (...) with a colour (..., 3) or scalar (...) functional image.

    A scalar functional image in [0, 1] is first mapped through ``colormap``
    (see :mod:`mixfuse_med.colormaps`; "pet" when not given).
    ``fuse_luma(mri, y)`` returns the fused luma; its chroma comes from the
    functional image, fitted into the RGB gamut by
    :func:`ycbcr_to_rgb_in_gamut`.  Returns RGB (..., 3) in [0, 1].
    """
    if functional.ndim == mri.ndim:
        from .colormaps import apply_colormap

        functional = apply_colormap(functional, colormap or "pet")
    ycbcr = rgb_to_ycbcr(functional)
    fused_y = fuse_luma(mri, ycbcr[..., 0])
    return ycbcr_to_rgb_in_gamut(_stack([fused_y, ycbcr[..., 1], ycbcr[..., 2]], ycbcr))
