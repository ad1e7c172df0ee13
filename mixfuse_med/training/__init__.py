"""Training MixFuse on registered 2D pairs: data, transforms, MONAI engine pieces."""

from . import data, engine, pipeline

__all__ = ["data", "engine", "pipeline"]
