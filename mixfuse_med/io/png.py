"""2D images (PNG and other PIL formats) for the spec's 2D fusion use and training pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_path
from ..color import rgb_to_luma
from ..errors import InputError


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such image file")
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(path, f"cannot read image ({err})") from err
    return image


def read_grey(path: str | Path) -> np.ndarray:
    """(H, W) float32 in [0, 1]; a colour file is reduced to its luma."""
    image = _open(path)
    if image.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0
    return rgb_to_luma(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; a grey file is repeated over the channels."""
    return np.asarray(_open(path).convert("RGB"), dtype=np.float32) / 255.0


def write_image(array: np.ndarray, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write (H, W) or (H, W, 3) uint8, or float in [0, 1], atomically (temp file, then rename)."""
    path = Path(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(array).save(tmp, format=image_format)
    return path
