"""Token orders for (shifted) window attention, computed once per image size.

Every operation of a Swin block except attention is per token (LayerNorm, 1x1
convolutions, residual adds), so the token order is free.  We keep the tokens
in the order the next attention needs: window by window, with the windows that
share a shift-mask pattern next to each other.  A block then needs no roll, no
window partition and no reverse, only one gather when the order changes
between a plain and a shifted block, and attention runs as a few large batched
calls (one per mask pattern) instead of one call with a per-window mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

# The reference implementation (Swin, MixFuse) masks with -100, not -inf.
SHIFT_MASK_VALUE = -100.0


@dataclass(frozen=True)
class WindowGroup:
    """A run of consecutive windows in a layout that share one shift mask."""

    start: int
    stop: int
    pattern: int


@dataclass(frozen=True)
class WindowLayout:
    """Token order for windows of ``window`` pixels shifted by ``shift``.

    ``order[p]`` is the raster index (row * width + col) of the token held at
    position ``p``; positions run window by window, ``window**2`` tokens each.
    ``masks[g]`` is the additive shift mask (N, N) of pattern ``g``.
    """

    height: int
    width: int
    window: int
    shift: int
    order: torch.Tensor
    groups: tuple[WindowGroup, ...]
    masks: torch.Tensor

    @property
    def tokens_per_window(self) -> int:
        return self.window * self.window

    @property
    def num_windows(self) -> int:
        return (self.height // self.window) * (self.width // self.window)


def relative_position_index(window: int, table_window: int) -> np.ndarray:
    """Swin's (N, N) index into a ((2 * table_window - 1) ** 2)-row bias table.

    ``window`` may be smaller than ``table_window`` (images smaller than one
    window); the offsets then index the same table.
    """
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :] + (table_window - 1)
    return rel[0] * (2 * table_window - 1) + rel[1]


def _shift_region_labels(height: int, width: int, window: int, shift: int) -> np.ndarray:
    """Swin's region label of each pixel of the rolled image (H, W)."""
    labels = np.zeros((height, width), dtype=np.int64)
    if shift == 0:
        return labels
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for rows in bounds:
        for cols in bounds:
            labels[rows, cols] = count
            count += 1
    return labels


def _partition(image: np.ndarray, window: int) -> np.ndarray:
    """(H, W) -> (windows, window * window), windows in raster order."""
    height, width = image.shape
    blocks = image.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
    return blocks.reshape(-1, window * window)


@lru_cache(maxsize=64)
def _layout_cpu(height: int, width: int, window: int, shift: int) -> WindowLayout:
    if height % window or width % window:
        raise ValueError(f"{height}x{width} is not a multiple of window {window}")
    # Raster index of the pixel seen at each position of the rolled image.
    rows = (np.arange(height) + shift) % height
    cols = (np.arange(width) + shift) % width
    windows = _partition(rows[:, None] * width + cols[None, :], window)
    label_windows = _partition(_shift_region_labels(height, width, window, shift), window)
    # Group windows by mask pattern; keep raster order of windows inside a group.
    patterns, pattern_of_window = np.unique(label_windows, axis=0, return_inverse=True)
    pattern_of_window = pattern_of_window.reshape(-1)
    window_order = np.argsort(pattern_of_window, kind="stable")
    counts = np.bincount(pattern_of_window, minlength=len(patterns)).tolist()
    groups, start = [], 0
    for pattern, count in enumerate(counts):
        groups.append(WindowGroup(start, start + count, pattern))
        start += count
    diff = patterns[:, None, :] - patterns[:, :, None]
    masks = np.where(diff != 0, SHIFT_MASK_VALUE, 0.0).astype(np.float32)
    order = torch.from_numpy(np.ascontiguousarray(windows[window_order].reshape(-1)))
    return WindowLayout(height, width, window, shift, order, tuple(groups), torch.from_numpy(masks))


_DEVICE_CACHE: dict[tuple, object] = {}


def _untraced(make):
    """Run ``make`` outside any torch.jit trace: cached constants are not part of the graph."""
    state = torch._C._get_tracing_state()
    if state is None:
        return make()
    torch._C._set_tracing_state(None)
    try:
        return make()
    finally:
        torch._C._set_tracing_state(state)


def _on_device(key: tuple, device: torch.device, make):
    full_key = key + (str(device),)
    value = _DEVICE_CACHE.get(full_key)
    if value is None:
        if len(_DEVICE_CACHE) > 256:
            _DEVICE_CACHE.clear()
        value = _untraced(make)
        _DEVICE_CACHE[full_key] = value
    return value


def window_layout(
    height: int, width: int, window: int, shift: int, device: torch.device
) -> WindowLayout:
    """The cached layout for this size, its tensors on ``device``."""

    def make() -> WindowLayout:
        cpu = _layout_cpu(height, width, window, shift)
        return WindowLayout(height, width, window, shift, cpu.order.to(device), cpu.groups,
                            cpu.masks.to(device))

    return _on_device(("layout", height, width, window, shift), device, make)


def _storage_index(layout: WindowLayout | None, height: int, width: int, batch: int) -> np.ndarray:
    """(B, L): where token (b, raster r) sits in a flat token tensor.

    Raster storage is image by image (b, r).  Layout storage is window-major
    with the batch inside: (window, b, position in window), so the tokens of
    a run of windows over the whole batch are one contiguous block.
    """
    n_tok = height * width
    if layout is None:
        return np.arange(batch * n_tok).reshape(batch, n_tok)
    n = layout.tokens_per_window
    position = np.empty(n_tok, dtype=np.int64)
    position[_layout_cpu(height, width, layout.window, layout.shift).order.numpy()] = np.arange(n_tok)
    window, inside = position // n, position % n
    b = np.arange(batch)[:, None]
    return window[None] * (batch * n) + b * n + inside[None]


def reorder_index(
    src: WindowLayout | None, dst: WindowLayout | None, batch: int, device: torch.device
) -> torch.Tensor | None:
    """Gather index taking a flat token tensor from ``src`` to ``dst`` storage.

    ``None`` stands for raster storage.  Returns None when they agree.
    """

    def key_of(layout):
        return None if layout is None else (layout.window, layout.shift)

    if key_of(src) == key_of(dst):
        return None
    height, width = (dst or src).height, (dst or src).width

    def make() -> torch.Tensor:
        src_index = _storage_index(src, height, width, batch).reshape(-1)
        dst_index = _storage_index(dst, height, width, batch).reshape(-1)
        index = np.empty_like(src_index)
        index[dst_index] = src_index
        return torch.from_numpy(index).to(device)

    return _on_device(("reorder", height, width, batch, key_of(src), key_of(dst)), device, make)


def relative_index_on(window: int, table_window: int, device: torch.device) -> torch.Tensor:
    """Cached flattened relative position index on ``device``."""
    return _on_device(
        ("relidx", window, table_window),
        device,
        lambda: torch.from_numpy(relative_position_index(window, table_window).reshape(-1)).to(device),
    )
