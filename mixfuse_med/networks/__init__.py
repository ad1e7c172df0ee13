"""The MixFuse fusion network."""

from .mixfuse import MixFuse, MixFuseConfig, StackedMixFuse, pad_to_multiple

__all__ = ["MixFuse", "MixFuseConfig", "StackedMixFuse", "pad_to_multiple"]
