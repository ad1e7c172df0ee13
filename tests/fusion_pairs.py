"""Tiny synthetic 2D fusion pairs on disk, laid out like the Harvard atlas sets.

An MRI-like grey slice (bright ring, textured interior) and a PET-like
pseudo-colour slice (hot blobs), named ``<subject><slice, 3 digits>.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mixfuse_med.colormaps import apply_colormap


def mri_like(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    r = np.hypot(xx / 0.8, yy / 0.9)
    image = np.where(r < 1.0, 0.35 + 0.15 * np.sin(9 * xx) * np.cos(7 * yy), 0.0)
    image = np.where((r > 0.85) & (r < 1.0), 0.9, image)
    return np.clip(image + 0.02 * rng.standard_normal(image.shape), 0, 1)


def pet_like(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    uptake = np.zeros((size, size))
    for _ in range(3):
        cx, cy = rng.uniform(-0.5, 0.5, 2)
        uptake += rng.uniform(0.5, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
    return np.clip(uptake / uptake.max(), 0, 1)


def write_pairs(root: Path, modality: str = "PET", subjects=(25,), slices=range(10, 15),
                size: int = 40, seed: int = 0) -> Path:
    """Write MRI/ and PET/ (or SPECT/) folders under ``root / f"MRI_{modality}"``."""
    rng = np.random.default_rng(seed)
    folder = root / f"MRI_{modality}"
    (folder / "MRI").mkdir(parents=True, exist_ok=True)
    (folder / modality).mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        for index in slices:
            name = f"{subject}{index:03d}.png"
            mri = (mri_like(size, rng) * 255).astype(np.uint8)
            pet = (apply_colormap(pet_like(size, rng), modality.lower()) * 255).astype(np.uint8)
            Image.fromarray(mri).save(folder / "MRI" / name)
            Image.fromarray(pet).save(folder / modality / name)
    return folder
