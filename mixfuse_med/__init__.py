"""mixfuse-med: MRI + PET/SPECT fusion with the MixFuse transformer."""

__version__ = "0.1.0"
