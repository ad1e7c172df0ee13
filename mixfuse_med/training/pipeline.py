"""MONAI transform chains and datasets for training MixFuse on 2D pairs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.data import CacheDataset, Dataset
from monai.transforms import (
    Compose,
    EnsureTyped,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
)

from .data import PairRecord, load_pair

IMAGE_KEYS = ("mri", "functional")


class LoadPaird(MapTransform):
    """Record -> {"mri", "functional"} arrays (1, H, W) in [0, 1]."""

    def __init__(self, keys: Sequence[str] = ("pair",)) -> None:
        super().__init__(keys)

    def __call__(self, data):
        d = dict(data)
        for key in self.keys:
            loaded = load_pair(d.pop(key))
            d.update({k: loaded[k] for k in ("mri", "functional", "name", "modality")})
        return d


class ForegroundLabeld(MapTransform):
    """Adds ``label_key``: pixels where either source shows tissue.

    Crops are centred on it so training does not spend its steps on the
    black background that fills half of every atlas slice.
    """

    def __init__(self, keys: Sequence[str] = IMAGE_KEYS, label_key: str = "foreground",
                 threshold: float = 0.05) -> None:
        super().__init__(keys)
        self.label_key = label_key
        self.threshold = threshold

    def __call__(self, data):
        d = dict(data)
        mask = np.zeros_like(np.asarray(d[self.keys[0]]), dtype=bool)
        for key in self.keys:
            mask |= np.asarray(d[key]) > self.threshold
        d[self.label_key] = mask.astype(np.float32)
        return d


def train_transforms(crop_size: int = 96, foreground_fraction: float = 0.75) -> Compose:
    """Random crops, flips and 90-degree rotations.

    ``foreground_fraction`` of the crops are centred on tissue, the rest on
    background, so the network also learns that black stays black (atlas
    slices are half background, and a grey veil over it costs contrast).
    """
    return Compose([
        ForegroundLabeld(IMAGE_KEYS),
        RandCropByPosNegLabeld(list(IMAGE_KEYS), label_key="foreground",
                               spatial_size=(crop_size, crop_size), pos=foreground_fraction,
                               neg=1.0 - foreground_fraction, num_samples=1, allow_smaller=True),
        RandFlipd(list(IMAGE_KEYS), prob=0.5, spatial_axis=0),
        RandFlipd(list(IMAGE_KEYS), prob=0.5, spatial_axis=1),
        RandRotate90d(list(IMAGE_KEYS), prob=0.5),
        EnsureTyped(list(IMAGE_KEYS), track_meta=False),
    ])


def eval_transforms() -> Compose:
    return Compose([EnsureTyped(list(IMAGE_KEYS), track_meta=False)])


def pair_dataset(pairs: Sequence[PairRecord], transform: Compose, cache: bool = True) -> Dataset:
    """Pairs decoded once (cached), then randomly transformed per epoch."""
    records = [{"pair": p} for p in pairs]
    if cache:
        return CacheDataset(records, Compose([LoadPaird(), transform]), progress=False)
    return Dataset(records, Compose([LoadPaird(), transform]))
