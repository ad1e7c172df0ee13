"""Synthetic brain volumes with a known answer, from the MNI152 templates shipped in nilearn.

The MRI is the T1 template (optionally on an oblique grid).  The functional
scan is grey-matter weighted uptake, blurred to the scanner's resolution,
sampled on its own axis-aligned grid after the head moved by a known rigid
transform, plus noise.  World coordinates are MNI millimetres; SimpleITK
images and transforms are LPS, as everywhere in mixfuse-med.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from ..io.geometry import to_sitk

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


@dataclass(frozen=True)
class FunctionalModel:
    """How a functional scanner sees the brain."""

    modality: str  # "PET" or "SPECT"
    fwhm_mm: float
    voxel_mm: float
    uptake: tuple[float, float, float]  # grey matter, white matter, CSF (SUV for PET, counts/voxel SPECT)
    noise: float  # Gaussian noise sd, as a fraction of the mean brain uptake
    margin_mm: float = 20.0  # field of view beyond the template box, room for head motion


FUNCTIONAL_MODELS = {
    "PET": FunctionalModel("PET", fwhm_mm=6.0, voxel_mm=2.0, uptake=(8.0, 2.5, 0.4), noise=0.05),
    "SPECT": FunctionalModel("SPECT", fwhm_mm=12.0, voxel_mm=4.0, uptake=(600.0, 250.0, 40.0), noise=0.08),
}


@lru_cache(maxsize=1)
def mni_templates() -> dict[str, sitk.Image]:
    """T1, grey matter, white matter, CSF and brain mask (1 mm, LPS) from nilearn's package files.

    nilearn ships the 2009 symmetric templates inside its wheel; nothing is
    downloaded.  CSF is what the brain mask holds beyond grey and white matter.
    """
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    affine = np.asarray(t1_img.affine, dtype=np.float64)
    t1 = np.asarray(t1_img.dataobj, dtype=np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    brain = (t1 > 0).astype(np.float32)
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    return {name: to_sitk(array, affine) for name, array in
            {"t1": t1, "gm": gm, "wm": wm, "csf": csf, "brain": brain}.items()}


def brain_centre_lps() -> np.ndarray:
    """Centre of mass of the brain mask, LPS mm: the natural centre for head rotations."""
    return np.asarray(_brain_centre())


@lru_cache(maxsize=1)
def _brain_centre() -> tuple[float, float, float]:
    brain = mni_templates()["brain"]
    zyx = np.argwhere(sitk.GetArrayViewFromImage(brain) > 0).mean(axis=0)
    return tuple(brain.TransformContinuousIndexToPhysicalPoint(zyx[::-1].tolist()))


def brain_points(count: int = 5000, seed: int = 0) -> np.ndarray:
    """``count`` random points inside the brain (LPS mm), for target registration errors."""
    brain = mni_templates()["brain"]
    zyx = np.argwhere(sitk.GetArrayViewFromImage(brain) > 0)
    rng = np.random.default_rng(seed)
    chosen = zyx[rng.choice(len(zyx), size=min(count, len(zyx)), replace=False)]
    return np.asarray([brain.TransformIndexToPhysicalPoint([int(i) for i in p[::-1]]) for p in chosen])


def random_rigid(seed: int, max_rotation_deg: float = 10.0, max_translation_mm: float = 15.0,
                 centre_lps: np.ndarray | None = None, at_maximum: bool = False) -> sitk.Euler3DTransform:
    """A head movement: rotation about a random axis by up to ``max_rotation_deg`` about the brain
    centre, then a shift of up to ``max_translation_mm`` in a random direction (exactly those
    magnitudes when ``at_maximum``)."""
    rng = np.random.default_rng([seed, 7919])
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.0, max_rotation_deg))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    shift = direction * rng.uniform(0.0, max_translation_mm)
    if at_maximum:
        angle, shift = np.deg2rad(max_rotation_deg), direction * max_translation_mm
    transform = sitk.Euler3DTransform()
    transform.SetCenter([float(v) for v in (brain_centre_lps() if centre_lps is None else centre_lps)])
    transform.SetMatrix(Rotation.from_rotvec(axis * angle).as_matrix().flatten().tolist())
    transform.SetTranslation([float(v) for v in shift])
    return transform


def grid(centre_lps: np.ndarray, extent_mm: np.ndarray, spacing_mm: float,
         direction: np.ndarray) -> sitk.Image:
    """An empty float32 image of ``spacing_mm`` voxels covering ``extent_mm`` around ``centre_lps``."""
    size = [int(np.ceil(e / spacing_mm)) for e in extent_mm]
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing([float(spacing_mm)] * 3)
    image.SetDirection([float(v) for v in np.asarray(direction).flatten()])
    half = direction @ (np.asarray(size, dtype=np.float64) - 1) * spacing_mm / 2.0
    image.SetOrigin([float(v) for v in centre_lps - half])
    return image


def _template_box() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre LPS, extent mm, direction) of the template's own grid."""
    t1 = mni_templates()["t1"]
    size = np.asarray(t1.GetSize(), dtype=np.float64)
    centre = np.asarray(t1.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    direction = np.asarray(t1.GetDirection()).reshape(3, 3)
    return centre, size * np.asarray(t1.GetSpacing()), direction


def oblique_direction(seed: int, max_deg: float = 20.0) -> np.ndarray:
    rng = np.random.default_rng([seed, 104729])
    return Rotation.from_euler("xyz", rng.uniform(-max_deg, max_deg, 3), degrees=True).as_matrix()


def make_mri(seed: int, downsample: int = 1, oblique: bool = False, noise: float = 0.01) -> sitk.Image:
    """T1-like MRI (integer values 0..1000 + noise) on a ``downsample`` mm grid, oblique if asked."""
    templates = mni_templates()
    centre, extent, direction = _template_box()
    if oblique:
        direction = oblique_direction(seed) @ direction
    reference = grid(centre, extent, float(downsample), direction)
    t1 = templates["t1"]
    if downsample > 1:
        t1 = sitk.SmoothingRecursiveGaussian(t1, 0.5 * downsample)
    mri = sitk.Resample(t1, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(mri) * 1000.0
    rng = np.random.default_rng([seed, 15485863])
    array += rng.normal(0.0, noise * 1000.0, array.shape) * (array > 0)
    out = sitk.GetImageFromArray(np.clip(np.rint(array), 0, 65535).astype(np.float32))
    out.CopyInformation(reference)
    return out


@lru_cache(maxsize=2)
def _blurred_uptake(modality: str) -> sitk.Image:
    model = FUNCTIONAL_MODELS[modality]
    t = mni_templates()
    gm, wm, csf = model.uptake
    uptake = t["gm"] * gm + t["wm"] * wm + t["csf"] * csf
    return sitk.SmoothingRecursiveGaussian(uptake, model.fwhm_mm * FWHM_TO_SIGMA)


def make_functional(modality: str, true_transform: sitk.Transform, seed: int,
                    downsample: int = 1) -> sitk.Image:
    """PET (SUV) or SPECT (counts) of the moved head on the scanner's axis-aligned grid.

    ``true_transform`` maps MRI points to functional points, so the value at
    scanner point y is the uptake at MRI point T^-1(y).
    """
    model = FUNCTIONAL_MODELS[modality]
    centre, extent, _ = _template_box()
    reference = grid(centre, extent + 2 * model.margin_mm, model.voxel_mm * downsample, np.eye(3))
    uptake = _blurred_uptake(modality)
    if downsample > 1:  # the coarser grid needs more blur or it aliases
        uptake = sitk.SmoothingRecursiveGaussian(uptake, 0.5 * model.voxel_mm * downsample)
    moved = sitk.Resample(uptake, reference, true_transform.GetInverse(), sitk.sitkLinear, 0.0,
                          sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(moved)
    rng = np.random.default_rng([seed, 32452843])
    brain_mean = float(array[array > 0.25 * array.max()].mean())
    array = np.clip(array + rng.normal(0.0, model.noise * brain_mean, array.shape), 0.0, None)
    out = sitk.GetImageFromArray(array.astype(np.float32))
    out.CopyInformation(reference)
    return out
