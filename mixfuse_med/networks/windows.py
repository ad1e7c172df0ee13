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


def relative_position_index(window: int, table_window: int) -> torch.Tensor:
    """Swin's (N, N) index into a ((2 * table_window - 1) ** 2)-row bias table.

    ``window`` may be smaller than ``table_window`` (images smaller than one
    window); the offsets then index the same table.
    """
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    rel = rel + (table_window - 1)
    return rel[0] * (2 * table_window - 1) + rel[1]


def _shift_region_labels(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """Swin's region label of each pixel of the rolled image (H, W)."""
    labels = torch.zeros(height, width, dtype=torch.long)
    if shift == 0:
        return labels
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for rows in bounds:
        for cols in bounds:
            labels[rows, cols] = count
            count += 1
    return labels


@lru_cache(maxsize=64)
def _layout_cpu(height: int, width: int, window: int, shift: int) -> WindowLayout:
    if height % window or width % window:
        raise ValueError(f"{height}x{width} is not a multiple of window {window}")
    nh, nw = height // window, width // window
    n = window * window
    # Raster index of the pixel seen at each position of the rolled image.
    rows = (torch.arange(height) + shift) % height
    cols = (torch.arange(width) + shift) % width
    raster = (rows[:, None] * width + cols[None, :])
    # Partition the rolled image into windows: (nW, N).
    windows = raster.view(nh, window, nw, window).permute(0, 2, 1, 3).reshape(nh * nw, n)
    labels = _shift_region_labels(height, width, window, shift)
    label_windows = labels.view(nh, window, nw, window).permute(0, 2, 1, 3).reshape(nh * nw, n)
    # Group windows by mask pattern; keep raster order of windows inside a group.
    patterns, pattern_of_window = torch.unique(label_windows, dim=0, return_inverse=True)
    window_order = torch.argsort(pattern_of_window, stable=True)
    counts = torch.bincount(pattern_of_window, minlength=len(patterns)).tolist()
    groups, start = [], 0
    for pattern, count in enumerate(counts):
        groups.append(WindowGroup(start, start + count, pattern))
        start += count
    diff = patterns[:, None, :] - patterns[:, :, None]
    masks = torch.zeros(diff.shape, dtype=torch.float32).masked_fill(diff != 0, SHIFT_MASK_VALUE)
    return WindowLayout(
        height, width, window, shift, windows[window_order].reshape(-1), tuple(groups), masks
    )


_DEVICE_CACHE: dict[tuple, object] = {}


def _on_device(key: tuple, device: torch.device, make):
    full_key = key + (str(device),)
    value = _DEVICE_CACHE.get(full_key)
    if value is None:
        if len(_DEVICE_CACHE) > 256:
            _DEVICE_CACHE.clear()
        value = make()
        _DEVICE_CACHE[full_key] = value
    return value


def window_layout(
    height: int, width: int, window: int, shift: int, device: torch.device
) -> WindowLayout:
    """The cached layout for this size, its tensors on ``device``."""

    def make() -> WindowLayout:
        cpu = _layout_cpu(height, width, window, shift)
        return WindowLayout(
            height, width, window, shift, cpu.order.to(device), cpu.groups, cpu.masks.to(device)
        )

    return _on_device(("layout", height, width, window, shift), device, make)


def _storage_index(layout: WindowLayout | None, height: int, width: int, batch: int) -> torch.Tensor:
    """(B, L): where token (b, raster r) sits in a flat token tensor.

    Raster storage is image by image (b, r).  Layout storage is window-major
    with the batch inside: (window, b, position in window), so the tokens of
    a run of windows over the whole batch are one contiguous block.
    """
    n_tok = height * width
    if layout is None:
        return torch.arange(batch * n_tok).view(batch, n_tok)
    n = layout.tokens_per_window
    position = torch.empty(n_tok, dtype=torch.long)
    position[layout.order.cpu()] = torch.arange(n_tok)
    window, inside = position // n, position % n
    b = torch.arange(batch)[:, None]
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
        src_index = _storage_index(src, height, width, batch).flatten()
        dst_index = _storage_index(dst, height, width, batch).flatten()
        index = torch.empty_like(src_index)
        index[dst_index] = src_index
        return index.to(device)

    return _on_device(("reorder", height, width, batch, key_of(src), key_of(dst)), device, make)


def relative_index_on(window: int, table_window: int, device: torch.device) -> torch.Tensor:
    """Cached flattened relative position index on ``device``."""
    return _on_device(
        ("relidx", window, table_window),
        device,
        lambda: relative_position_index(window, table_window).reshape(-1).to(device),
    )
