"""The result of fusing one study, as handed to the exporters and viewers."""

from __future__ import annotations

from dataclasses import dataclass, field

from monai.data import MetaTensor


@dataclass
class FusedStudy:
    """Everything fusion made for one patient, all on the MRI grid.

    Every volume shares ``mri.affine`` (RAS, mm).  ``functional`` keeps its
    physical units (SUV, Bq/ml or counts: ``functional.meta["units"]``); the
    fused volumes are display values.
    """

    mri: MetaTensor  # (1, X, Y, Z) reference MRI, its own units, source metadata
    functional: MetaTensor  # (1, X, Y, Z) registered and resampled onto the MRI grid
    fused_luma: MetaTensor  # (1, X, Y, Z) float32 in [0, 1]
    fused_rgb: MetaTensor  # (3, X, Y, Z) uint8 colour overlay
    modality: str  # "PET" or "SPECT"
    colormap: str  # colour map the functional volume went through
    window: tuple[float, float]  # functional values mapped to colour-map ends, in its units
    registration: dict | None = None  # rigid transform and quality, None when not registered
    notes: dict = field(default_factory=dict)  # timings and other facts for reports
    mri_scaled: MetaTensor | None = None  # (1, X, Y, Z) the network's MRI input, [0, 1]
    functional_rgb: MetaTensor | None = None  # (3, X, Y, Z) colour-mapped functional input, [0, 1]
