"""Synthetic MRI + PET/SPECT studies with a known answer (MNI152 templates from nilearn).

For tests, the demo and benchmarks: a known rigid head movement between the
scans, and PET written with full SUV headers from a known dose, weight and
times.
"""

from .phantom import FUNCTIONAL_MODELS, FunctionalModel, brain_points, mni_templates, random_rigid
from .study import SuvTruth, SyntheticStudy, SyntheticVolumes, make_synthetic_study, make_synthetic_volumes

__all__ = [
    "FUNCTIONAL_MODELS",
    "FunctionalModel",
    "SuvTruth",
    "SyntheticStudy",
    "SyntheticVolumes",
    "brain_points",
    "make_synthetic_study",
    "make_synthetic_volumes",
    "mni_templates",
    "random_rigid",
]
