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
    RandWeightedCropd,
)
from scipy import ndimage

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


class EdgeWeightd(MapTransform):
    """Adds ``weight_key``: a crop-centre sampling weight that favours edges.

    The gradient term of the loss (spec section 3) is where the network
    falls short: it softens fine MRI edges.  ``edge_fraction`` of the weight
    is spread in proportion to the edge strength that term asks for,
    max(grad A, grad B) with the loss's Sobel operator, so crops full of fine
    structure come up more often; the rest is uniform, so flat tissue and
    background are still seen.
    """

    def __init__(self, keys: Sequence[str] = IMAGE_KEYS, weight_key: str = "edge_weight",
                 edge_fraction: float = 0.75) -> None:
        super().__init__(keys)
        if not 0.0 <= edge_fraction <= 1.0:
            raise ValueError(f"edge_fraction must lie in [0, 1], got {edge_fraction}")
        self.weight_key = weight_key
        self.edge_fraction = edge_fraction

    @staticmethod
    def sobel_magnitude(image: np.ndarray) -> np.ndarray:
        """|Sobel_x| + |Sobel_y| per channel, as ``mixfuse_med.losses.sobel_gradient``."""
        image = np.asarray(image, dtype=np.float32)
        return np.stack([np.abs(ndimage.sobel(c, axis=0, mode="nearest"))
                         + np.abs(ndimage.sobel(c, axis=1, mode="nearest")) for c in image])

    def __call__(self, data):
        d = dict(data)
        edges = np.maximum.reduce([self.sobel_magnitude(d[key]) for key in self.keys])
        uniform = np.full_like(edges, 1.0 / edges.size)
        total = float(edges.sum())
        if total > 0:
            weight = self.edge_fraction * edges / total + (1.0 - self.edge_fraction) * uniform
        else:
            weight = uniform
        d[self.weight_key] = weight.astype(np.float32)
        return d


CROP_SAMPLINGS = ("foreground", "edges")


def train_transforms(crop_size: int = 96, foreground_fraction: float = 0.75,
                     crop_sampling: str = "foreground") -> Compose:
    """Random crops, flips and 90-degree rotations.

    ``crop_sampling="foreground"``: ``foreground_fraction`` of the crops are
    centred on tissue, the rest on background, so the network also learns
    that black stays black (atlas slices are half background, and a grey veil
    over it costs contrast).  ``"edges"``: that fraction of crop centres is
    drawn in proportion to source edge strength (:class:`EdgeWeightd`), the
    rest uniformly over the slice.
    """
    if crop_sampling == "foreground":
        sample = [
            ForegroundLabeld(IMAGE_KEYS),
            RandCropByPosNegLabeld(list(IMAGE_KEYS), label_key="foreground",
                                   spatial_size=(crop_size, crop_size), pos=foreground_fraction,
                                   neg=1.0 - foreground_fraction, num_samples=1,
                                   allow_smaller=True),
        ]
    elif crop_sampling == "edges":
        sample = [
            EdgeWeightd(IMAGE_KEYS, edge_fraction=foreground_fraction),
            RandWeightedCropd(list(IMAGE_KEYS), w_key="edge_weight",
                              spatial_size=(crop_size, crop_size), num_samples=1),
        ]
    else:
        raise ValueError(f"crop_sampling must be one of {CROP_SAMPLINGS}, got {crop_sampling!r}")
    return Compose([
        *sample,
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
