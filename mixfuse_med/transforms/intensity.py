"""Scaling volumes to [0, 1] the way the network saw its training images.

MRI: robust percentiles (optionally after N4 bias-field correction).  PET: a
fixed SUV window (the same SUV gives the same colour in every patient) or
percentiles when the volume is not in SUV.  SPECT (counts, no absolute scale):
percentiles.  The window used, in the volume's own units, goes to
``meta['intensity_window']`` so viewers and reports can show it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, ScaleIntensityRange, Transform

from ..io.geometry import from_sitk, to_sitk

WINDOW_KEY = "intensity_window"
DEFAULT_SUV_WINDOW = (0.0, 8.0)


def _percentile_window(array: np.ndarray, lower: float, upper: float,
                       foreground_only: bool) -> tuple[float, float]:
    values = array[array > 0] if foreground_only and np.any(array > 0) else array.ravel()
    lo, hi = (float(v) for v in np.percentile(values, [lower, upper]))
    return lo, hi


def _as_meta_tensor(volume) -> MetaTensor:
    if isinstance(volume, MetaTensor):
        return volume
    return MetaTensor(torch.as_tensor(volume, dtype=torch.float32))


def _scale(volume: MetaTensor, window: tuple[float, float], how: str) -> MetaTensor:
    lo, hi = window
    if not hi > lo:  # flat image: everything at the bottom of the range
        hi = lo + 1.0
    out = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(volume)
    out = out if isinstance(out, MetaTensor) else MetaTensor(out, meta=dict(volume.meta))
    out.meta[WINDOW_KEY] = {"low": lo, "high": hi, "units": volume.meta.get("units", ""), "method": how}
    return out.to(torch.float32)


def n4_bias_correct(volume: MetaTensor, shrink: int = 4, iterations: tuple[int, ...] = (50, 50, 30)
                    ) -> MetaTensor:
    """N4 bias-field correction (SimpleITK), fitted on a shrunk copy and applied at full resolution."""
    image = sitk.Cast(to_sitk(volume), sitk.sitkFloat32)
    mask = sitk.OtsuThreshold(image, 0, 1)
    small = sitk.Shrink(image, [shrink] * 3)
    small_mask = sitk.Shrink(mask, [shrink] * 3)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.Execute(small, small_mask)
    log_bias = corrector.GetLogBiasFieldAsImage(image)
    corrected = image / sitk.Exp(log_bias)
    out = from_sitk(corrected, {k: v for k, v in volume.meta.items()
                                if k not in ("affine", "original_affine", "spatial_shape", "space")})
    out.meta["n4_bias_corrected"] = True
    return out


class NormalizeMRI(Transform):
    """MRI -> [0, 1] by robust percentiles of the head (voxels > 0), optionally after N4."""

    def __init__(self, lower: float = 0.5, upper: float = 99.5, n4: bool = False,
                 foreground_only: bool = True) -> None:
        self.lower, self.upper, self.n4, self.foreground_only = lower, upper, n4, foreground_only

    def __call__(self, volume: MetaTensor) -> MetaTensor:
        volume = _as_meta_tensor(volume)
        if self.n4:
            volume = n4_bias_correct(volume)
        window = _percentile_window(np.asarray(volume.detach().cpu()), self.lower, self.upper,
                                    self.foreground_only)
        how = f"percentiles {self.lower}-{self.upper}" + (" after N4" if self.n4 else "")
        return _scale(volume, window, how)


class NormalizeFunctional(Transform):
    """PET/SPECT -> [0, 1]: SUV window for PET in SUV, percentiles otherwise.

    ``mode``: "auto" (SUV window when ``meta['units']`` is SUVbw, else
    percentiles), "suv" (window required to make sense: values must be SUV)
    or "percentile".  The lower end of the percentile window is 0 activity
    (``lower=None``) unless a lower percentile is given, so background stays
    black as in the training images.
    """

    def __init__(self, mode: str = "auto", suv_window: tuple[float, float] = DEFAULT_SUV_WINDOW,
                 lower: float | None = None, upper: float = 99.5) -> None:
        if mode not in ("auto", "suv", "percentile"):
            raise ValueError(f"mode must be 'auto', 'suv' or 'percentile', not {mode!r}")
        if not suv_window[1] > suv_window[0]:
            raise ValueError(f"suv_window must be (low, high) with high > low, got {suv_window}")
        self.mode, self.suv_window, self.lower, self.upper = mode, tuple(suv_window), lower, upper

    def __call__(self, volume: MetaTensor) -> MetaTensor:
        volume = _as_meta_tensor(volume)
        units = str(volume.meta.get("units", ""))
        use_suv = self.mode == "suv" or (self.mode == "auto" and units.upper() == "SUVBW")
        if use_suv:
            if units.upper() != "SUVBW":
                raise ValueError(f"SUV window asked for, but the volume's units are {units or 'unknown'!r}; "
                                 "load PET with SUV or use mode='percentile'")
            return _scale(volume, (float(self.suv_window[0]), float(self.suv_window[1])), "SUV window")
        array = np.asarray(volume.detach().cpu())
        _, hi = _percentile_window(array, 0.0, self.upper, foreground_only=True)
        lo = 0.0 if self.lower is None else _percentile_window(array, self.lower, self.upper, True)[0]
        return _scale(volume, (lo, hi), f"percentiles {self.lower or 0}-{self.upper}")


class NormalizeMRId(MapTransform):
    """Dictionary twin of ``NormalizeMRI``."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalize = NormalizeMRI(**kwargs)

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalize(d[key])
        return d


class NormalizeFunctionald(MapTransform):
    """Dictionary twin of ``NormalizeFunctional``."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalize = NormalizeFunctional(**kwargs)

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalize(d[key])
        return d
