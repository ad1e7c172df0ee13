"""mixfuse-med: MRI + PET/SPECT fusion with the MixFuse transformer.

The public entry points are imported lazily so that ``import mixfuse_med``
stays light (napari start-up, Dask workers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "load_pretrained": "mixfuse_med.inference",
    "fuse_2d": "mixfuse_med.inference",
    "register_rigid": "mixfuse_med.transforms",
    "fuse_study": "mixfuse_med.pipeline",
}

__all__ = ["__version__", "fuse_2d", "fuse_study", "load_pretrained", "register_rigid"]

if TYPE_CHECKING:  # pragma: no cover
    from .inference import fuse_2d, load_pretrained
    from .pipeline import fuse_study
    from .transforms import register_rigid


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:  # a submodule, e.g. for ``getattr(mixfuse_med, "pipeline")`` as MONAI configs do
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value
