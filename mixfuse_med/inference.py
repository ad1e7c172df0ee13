"""Running the trained network: shipped weights, one slice pair, whole volumes.

Volumes are fused slice by slice (MixFuse is a 2D network) with slices
batched, on CUDA with float16 autocast where present, else on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .color import rgb_to_ycbcr, ycbcr_to_rgb_in_gamut
from .networks import MixFuse

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "mixfuse_default.pt"

Progress = Callable[[int, int], None]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def read_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(network configuration, weights) of a file.

    The weights are a state dict, or a checkpoint holding one (MONAI and
    ignite keep it under "network" or "model").  The configuration is the
    checkpoint's "config" dict (see :func:`save_weights`), else {} (the
    paper's configuration).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state.get("config") if isinstance(state, dict) else None
    for key in ("network", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return dict(config or {}), state[key]
    return dict(config or {}), state


def read_state_dict(path: str | Path) -> dict:
    """The network weights in a file: a state dict, or a checkpoint holding one."""
    return read_checkpoint(path)[1]


def save_weights(model: MixFuse, path: str | Path, *, overwrite: bool = False) -> Path:
    """Weights with their configuration, so :func:`load_pretrained` rebuilds any MixFuse size."""
    from .atomic import atomic_path

    with atomic_path(path, overwrite=overwrite) as tmp:
        torch.save({"config": model.config_dict(), "network": model.state_dict()}, tmp)
    return Path(path)


def load_pretrained(device: str | torch.device | None = None,
                    weights: str | Path | None = None) -> MixFuse:
    """The shipped MixFuse weights (paper configuration), in eval mode on ``device``.

    ``device`` defaults to CUDA when present, else CPU.  ``weights`` may point
    to another checkpoint: a state dict of the default configuration, a MONAI
    checkpoint dict holding one under "network" or "model", or a file from
    :func:`save_weights`, which records its configuration.
    """
    path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: MixFuse weights not found")
    device = torch.device(device) if device is not None else default_device()
    config, state = read_checkpoint(path)
    try:
        model = MixFuse(**config)
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        what = "its recorded" if config else "the default"
        raise ValueError(f"{path}: not a checkpoint of {what} MixFuse configuration ({err})") from err
    return model.to(device).eval()


@lru_cache(maxsize=4)
def _cached_pretrained(device: str) -> MixFuse:
    return load_pretrained(device)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def fuse_slices(mri: torch.Tensor, functional: torch.Tensor, model: MixFuse, *,
                batch_size: int = 16, progress: Progress | None = None) -> torch.Tensor:
    """Fuse (N, 1, H, W) slice stacks in [0, 1], ``batch_size`` slices at a time.

    ``progress(done, total)`` is called after each batch; raising from it
    cancels the run.  Returns (N, 1, H, W) float32 on the CPU.
    """
    if mri.shape != functional.shape or mri.dim() != 4 or mri.shape[1] != 1:
        raise ValueError(f"expected two (N, 1, H, W) stacks of one shape, got "
                         f"{tuple(mri.shape)} and {tuple(functional.shape)}")
    device = next(model.parameters()).device
    out = torch.empty(mri.shape, dtype=torch.float32)
    total = mri.shape[0]
    for start in range(0, total, batch_size):
        stop = min(total, start + batch_size)
        a = mri[start:stop].to(device, torch.float32)
        b = functional[start:stop].to(device, torch.float32)
        with _autocast(device):
            fused = model(a, b)
        out[start:stop] = fused.float().clamp_(0.0, 1.0).cpu()
        if progress is not None:
            progress(stop, total)
    return out


def fuse_volume(mri: np.ndarray | torch.Tensor, functional_rgb: np.ndarray | torch.Tensor,
                model: MixFuse, *, axis: int = 2, batch_size: int = 16,
                progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fuse an MRI (X, Y, Z) with a colour functional volume (3, X, Y, Z), both in [0, 1].

    Slices are taken along voxel ``axis``.  The network fuses the MRI with the
    functional luma; the functional chroma is put back (spec section 1).
    Returns (fused luma (X, Y, Z), fused RGB (3, X, Y, Z)), float32 in [0, 1].
    """
    mri = torch.as_tensor(np.asarray(mri), dtype=torch.float32)
    rgb = torch.as_tensor(np.asarray(functional_rgb), dtype=torch.float32)
    if mri.dim() != 3 or rgb.shape != (3, *mri.shape):
        raise ValueError(f"expected MRI (X, Y, Z) and functional RGB (3, X, Y, Z), got "
                         f"{tuple(mri.shape)} and {tuple(rgb.shape)}")
    ycbcr = rgb_to_ycbcr(rgb.permute(1, 2, 3, 0))  # (X, Y, Z, 3)
    mri_slices = mri.movedim(axis, 0).unsqueeze(1)
    luma_slices = ycbcr[..., 0].movedim(axis, 0).unsqueeze(1)
    fused = fuse_slices(mri_slices, luma_slices, model, batch_size=batch_size, progress=progress)
    luma = fused.squeeze(1).movedim(0, axis)
    fused_rgb = ycbcr_to_rgb_in_gamut(torch.stack([luma, ycbcr[..., 1], ycbcr[..., 2]], dim=-1))
    return luma.numpy(), fused_rgb.permute(3, 0, 1, 2).contiguous().numpy()


def _to_unit_float(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{what}: expected uint8 or float in [0, 1], got {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    if image.size and (image.min() < 0.0 or image.max() > 1.0):
        raise ValueError(f"{what}: float values must lie in [0, 1], got "
                         f"[{image.min():.4g}, {image.max():.4g}]")
    return image.astype(np.float32)


def fuse_2d(mri: np.ndarray, functional: np.ndarray, model: MixFuse | None = None) -> np.ndarray:
    """Fuse one slice pair: MRI (H, W) with functional (H, W) grey or (H, W, 3) colour.

    uint8 in gives uint8 out; float in [0, 1] gives float32 out.  A colour
    functional image gives a colour (H, W, 3) result (luma fused, chroma
    kept); a grey one gives (H, W).  ``model`` defaults to the shipped weights.
    """
    mri_arr, func_arr = np.asarray(mri), np.asarray(functional)
    if mri_arr.ndim != 2:
        raise ValueError(f"mri: expected an (H, W) image, got shape {mri_arr.shape}")
    if func_arr.shape[:2] != mri_arr.shape or func_arr.ndim not in (2, 3) or (
            func_arr.ndim == 3 and func_arr.shape[2] != 3):
        raise ValueError(f"functional: expected (H, W) or (H, W, 3) matching the MRI's "
                         f"{mri_arr.shape}, got {func_arr.shape}")
    as_uint8 = mri_arr.dtype == np.uint8 and func_arr.dtype == np.uint8
    a = _to_unit_float(mri_arr, "mri")
    b = _to_unit_float(func_arr, "functional")
    if model is None:
        model = _cached_pretrained(str(default_device()))
    if b.ndim == 3:
        rgb = np.moveaxis(b, -1, 0)[..., None]  # (3, H, W, 1)
        _, fused = fuse_volume(a[..., None], rgb, model, axis=2)
        result = np.moveaxis(fused[..., 0], 0, -1)
    else:
        fused = fuse_slices(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], model)
        result = fused[0, 0].numpy()
    if as_uint8:
        return np.rint(result * 255.0).astype(np.uint8)
    return result.astype(np.float32)
