"""Rigid mutual-information registration of a PET/SPECT volume to the MRI (SimpleITK).

Convention (SimpleITK's): the transform maps fixed (MRI) points to moving
(functional) points, LPS millimetres, so ``sitk.Resample(moving, fixed, tx)``
puts the functional volume on the MRI grid.  The dictionary transform keeps
the result in the functional volume's metadata, from which it can be saved to
a ``.tfm`` file and re-applied.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import SimpleITK as sitk
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from ..atomic import atomic_path
from ..errors import InputError
from ..io.geometry import to_sitk

REGISTRATION_KEY = "registration"  # where the result lives in a volume's meta
CONVENTION = "maps fixed (MRI) LPS mm to moving (functional) LPS mm; SimpleITK Resample convention"


@dataclass(frozen=True)
class RigidOptions:
    """Settings of the rigid registration; the defaults meet the benchmark targets.

    ``shrink_factors`` / ``smoothing_sigmas`` (voxels) give the resolution
    pyramid.  ``sampling_percentage`` of the fixed voxels (inside the MRI's
    foreground with ``foreground_mask``) feed the Mattes metric at each
    level: cheap coarse levels get many samples, the costly full resolution few.
    """

    initialization: str = "moments"  # "moments" (centres of mass) or "geometry" (image centres)
    transform: str = "versor"  # "versor" (VersorRigid3D) or "euler" (Euler3D)
    bins: int = 32
    sampling_percentage: float | tuple[float, ...] = (0.25, 0.08, 0.02)  # one value, or one per level
    sampling_seed: int = 1  # fixed: same input, same result (0 = SimpleITK wall-clock seed)
    learning_rate: float = 1.0
    min_step: float = 1e-3
    iterations: int = 200
    relaxation: float = 0.5
    gradient_tolerance: float = 1e-8
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2.0, 1.0, 0.0)
    foreground_mask: bool = True  # sample the fixed image only where it shows the head
    threads: int | None = None  # SimpleITK threads; None = its default

    def __post_init__(self) -> None:
        if self.initialization not in ("moments", "geometry"):
            raise ValueError(f"initialization must be 'moments' or 'geometry', not {self.initialization!r}")
        if self.transform not in ("versor", "euler"):
            raise ValueError(f"transform must be 'versor' or 'euler', not {self.transform!r}")
        if len(self.shrink_factors) != len(self.smoothing_sigmas):
            raise ValueError("shrink_factors and smoothing_sigmas need one entry per level")
        if not all(0 < p <= 1 for p in self.percentages()):
            raise ValueError(f"sampling_percentage must be in (0, 1], got {self.sampling_percentage}")
        if len(self.percentages()) != len(self.shrink_factors):
            raise ValueError("sampling_percentage needs one value, or one per level")

    def percentages(self) -> tuple[float, ...]:
        value = self.sampling_percentage
        if isinstance(value, (int, float)):
            return (float(value),) * len(self.shrink_factors)
        return tuple(float(v) for v in value)


@dataclass
class RegistrationResult:
    """The transform found and how well it fits (MI in nats, higher is better)."""

    transform: sitk.Transform
    mi_before: float  # with the scanners' own geometry (identity transform)
    mi_after: float
    iterations: int
    stop_condition: str
    seconds: float
    options: RigidOptions = field(default_factory=RigidOptions)

    def as_meta(self) -> dict:
        """Plain values for ``meta['registration']`` (JSON-able; rebuilt by ``transform_from_meta``)."""
        return {
            "type": self.transform.GetName(),
            "parameters": [float(v) for v in self.transform.GetParameters()],
            "fixed_parameters": [float(v) for v in self.transform.GetFixedParameters()],
            "convention": CONVENTION,
            "metric": "MattesMutualInformation",
            "mi_before": self.mi_before,
            "mi_after": self.mi_after,
            "iterations": self.iterations,
            "stop_condition": self.stop_condition,
            "seconds": self.seconds,
            "options": asdict(self.options),
        }


def _float_image(image: sitk.Image) -> sitk.Image:
    return image if image.GetPixelID() == sitk.sitkFloat32 else sitk.Cast(image, sitk.sitkFloat32)


def _foreground(image: sitk.Image) -> sitk.Image:
    """Where the image shows something (Otsu threshold, dilated): the metric's sampling region."""
    shrink = [max(1, int(round(4.0 / s))) for s in image.GetSpacing()]
    small = sitk.Shrink(image, shrink) if any(f > 1 for f in shrink) else image
    mask = sitk.OtsuThreshold(small, 0, 1)
    mask = sitk.BinaryDilate(mask, [2, 2, 2])
    return sitk.Resample(mask, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def _crop_to(image: sitk.Image, mask: sitk.Image, margin: int = 4) -> tuple[sitk.Image, sitk.Image]:
    """Image and mask cut to the mask's bounding box (+ margin): same world, fewer voxels to smooth."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if not stats.HasLabel(1):
        return image, mask
    box = stats.GetBoundingBox(1)  # (x, y, z, size_x, size_y, size_z)
    start = [max(0, box[i] - margin) for i in range(3)]
    stop = [min(image.GetSize()[i], box[i] + box[i + 3] + margin) for i in range(3)]
    size = [b - a for a, b in zip(start, stop, strict=True)]
    return sitk.RegionOfInterest(image, size, start), sitk.RegionOfInterest(mask, size, start)


def _initial_transform(fixed: sitk.Image, moving: sitk.Image, options: RigidOptions) -> sitk.Transform:
    base = sitk.VersorRigid3DTransform() if options.transform == "versor" else sitk.Euler3DTransform()
    mode = (sitk.CenteredTransformInitializerFilter.MOMENTS if options.initialization == "moments"
            else sitk.CenteredTransformInitializerFilter.GEOMETRY)
    return sitk.CenteredTransformInitializer(fixed, moving, base, mode)


def _method(options: RigidOptions, fixed_mask: sitk.Image | None) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=options.bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentagePerLevel(list(options.percentages()), options.sampling_seed)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    method.SetInterpolator(sitk.sitkLinear)
    if options.threads:
        method.SetNumberOfThreads(options.threads)
    return method


def _mutual_information(fixed, moving, transform, options, fixed_mask) -> float:
    method = _method(options, fixed_mask)
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInitialTransform(transform, inPlace=False)
    return -float(method.MetricEvaluate(fixed, moving))


def register_rigid_with_result(fixed: sitk.Image, moving: sitk.Image, *, evaluate: bool = True,
                               **options) -> RegistrationResult:
    """``register_rigid``, plus iterations, timing and (``evaluate``) MI before/after.

    MI is evaluated on every fixed voxel of the sampling region, with the
    scanners' own geometry (before) and with the transform found (after).
    """
    opts = RigidOptions(**options)
    start = time.perf_counter()
    fixed, moving = _float_image(fixed), _float_image(moving)
    mask = None
    if opts.foreground_mask:
        mask = _foreground(fixed)
        fixed, mask = _crop_to(fixed, mask)
    initial = _initial_transform(fixed, moving, opts)
    method = _method(opts, mask)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=opts.learning_rate, minStep=opts.min_step, numberOfIterations=opts.iterations,
        relaxationFactor=opts.relaxation, gradientMagnitudeTolerance=opts.gradient_tolerance)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(opts.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(opts.smoothing_sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)
    try:
        found = method.Execute(fixed, moving)
    except RuntimeError as err:
        raise RuntimeError(f"rigid registration failed: {str(err).strip().splitlines()[-1]}") from None
    transform = _flatten(found)
    seconds = time.perf_counter() - start

    def mi(tx: sitk.Transform) -> float:
        return _mutual_information(fixed, moving, tx, opts, mask) if evaluate else float("nan")

    return RegistrationResult(
        transform=transform,
        mi_before=mi(sitk.Euler3DTransform()),
        mi_after=mi(transform),
        iterations=int(method.GetOptimizerIteration()),
        stop_condition=method.GetOptimizerStopConditionDescription(),
        seconds=seconds,
        options=opts,
    )


def register_rigid(fixed: sitk.Image, moving: sitk.Image, **options) -> sitk.Transform:
    """Rigid Mattes-MI registration; the transform maps fixed (MRI) points to moving points.

    Centred initialisation, shrink 4/2/1 with smoothing 2/1/0 voxels, regular
    step gradient descent.  ``options`` are the fields of ``RigidOptions``.
    """
    return register_rigid_with_result(fixed, moving, evaluate=False, **options).transform


def _flatten(transform: sitk.Transform) -> sitk.Transform:
    """The single rigid transform inside what Execute returns (it may wrap it in a composite)."""
    if isinstance(transform, sitk.CompositeTransform) or transform.GetName() == "CompositeTransform":
        composite = sitk.CompositeTransform(transform)
        if composite.GetNumberOfTransforms() == 1:
            transform = composite.GetNthTransform(0)
        else:
            composite.FlattenTransform()
            return composite
    return transform.Downcast() if hasattr(transform, "Downcast") else transform


# Keeping and re-applying a transform ---------------------------------------------------------------

_TRANSFORM_TYPES = {
    "Euler3DTransform": sitk.Euler3DTransform,
    "VersorRigid3DTransform": sitk.VersorRigid3DTransform,
    "AffineTransform": lambda: sitk.AffineTransform(3),
    "TranslationTransform": lambda: sitk.TranslationTransform(3),
}


def transform_from_meta(record: Mapping) -> sitk.Transform:
    """Rebuild the SimpleITK transform stored by ``RegistrationResult.as_meta``."""
    kind = str(record["type"])
    if kind not in _TRANSFORM_TYPES:
        raise ValueError(f"unsupported transform type {kind!r} in registration metadata")
    transform = _TRANSFORM_TYPES[kind]()
    transform.SetFixedParameters([float(v) for v in record["fixed_parameters"]])
    transform.SetParameters([float(v) for v in record["parameters"]])
    return transform


def save_transform(transform: sitk.Transform | Mapping, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a transform (or a ``meta['registration']`` record) as a SimpleITK .tfm file.

    All-or-nothing like every output (``mixfuse_med.atomic``: the temporary
    keeps the extension, which SimpleITK reads the format from); an existing
    file is refused with ``OutputExistsError`` unless ``overwrite``.
    """
    if isinstance(transform, Mapping):
        transform = transform_from_meta(transform)
    with atomic_path(path, overwrite=overwrite) as temp:
        sitk.WriteTransform(transform, str(temp))
    return Path(path)


def load_transform(path: str | Path) -> sitk.Transform:
    """Read a .tfm written by ``save_transform`` (or any single SimpleITK transform file)."""
    try:
        transform = sitk.ReadTransform(str(path))
    except RuntimeError as err:
        raise InputError(path, f"cannot read transform ({str(err).strip().splitlines()[-1]})") from None
    return _flatten(transform)


# MONAI transforms ----------------------------------------------------------------------------------


class RigidRegister(Transform):
    """Registers a functional volume to a fixed MRI; returns it unchanged with ``meta['registration']``.

    The voxels stay on the functional grid: resampling is ``ResampleToReference``'s job.
    """

    def __init__(self, **options) -> None:
        self.options = RigidOptions(**options)

    def __call__(self, moving: MetaTensor, fixed: MetaTensor) -> MetaTensor:
        result = register_rigid_with_result(to_sitk(fixed), to_sitk(moving), **asdict(self.options))
        out = moving.clone() if isinstance(moving, MetaTensor) else MetaTensor(moving)
        out.meta[REGISTRATION_KEY] = {**result.as_meta(), "fixed": str(fixed.meta.get("filename_or_obj", ""))}
        return out


class RigidRegisterd(MapTransform):
    """Dictionary twin of ``RigidRegister``: ``keys`` are registered to ``fixed_key``."""

    def __init__(self, keys: KeysCollection, fixed_key: str = "mri", allow_missing_keys: bool = False,
                 **options) -> None:
        super().__init__(keys, allow_missing_keys)
        self.fixed_key = fixed_key
        self.register = RigidRegister(**options)

    def __call__(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.register(d[key], d[self.fixed_key])
        return d


