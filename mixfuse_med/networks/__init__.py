"""The MixFuse fusion network."""

from .mixfuse import MixFuse, MixFuseConfig, pad_to_multiple

__all__ = ["MixFuse", "MixFuseConfig", "pad_to_multiple"]
