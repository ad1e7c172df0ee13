"""The whole job for one patient: load, register, resample, normalise, colour, fuse, export.

:func:`fuse_study` works from files, :func:`fuse_volumes` from volumes in
memory (napari layers); both run the same MONAI transform chain
(:func:`preprocessing`) and the same slice-wise fusion, so the bundle, the
plugin, the CLI and the batch runner give the same result for the same input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from .atomic import refuse_existing, write_text_atomic
from .errors import InputError
from .io.geometry import axis_closest_to
from .study import FusedStudy
from .transforms import (
    DEFAULT_SUV_WINDOW,
    ApplyColormapd,
    NormalizeFunctionald,
    NormalizeMRId,
    ResampleToReferenced,
    RigidRegisterd,
)

STAGES = ("load", "register", "resample", "normalise", "fuse", "export")
Progress = Callable[[str, float], None]  # (stage, fraction of the stage done), may raise to cancel

FUNCTIONAL_MODALITIES = {"PET": "PET", "PT": "PET", "SPECT": "SPECT", "NM": "SPECT"}
REPORT_NAME = "fusion_report.json"  # provenance record fuse_study writes beside the exported outputs


@dataclass
class FusionOptions:
    """Every choice of the fusion job; defaults suit brain MRI with FDG PET or perfusion SPECT."""

    register: bool = True  # rigid MI registration; False trusts the scanners' world coordinates
    registration: dict = field(default_factory=dict)  # RigidOptions overrides (bins, sampling, ...)
    colormap: str | None = None  # None: the modality's atlas-like map ("pet" / "spect")
    functional_scaling: str = "auto"  # "auto" (SUV window for SUV PET), "suv", "percentile"
    suv_window: tuple[float, float] = DEFAULT_SUV_WINDOW
    functional_upper_percentile: float = 99.5
    mri_percentiles: tuple[float, float] = (0.5, 99.5)
    n4: bool = False  # N4 bias-field correction of the MRI before scaling
    batch_size: int = 8  # slices per network call
    device: str | None = None  # torch device; None = CUDA when present, else CPU

    @classmethod
    def from_kwargs(cls, **options) -> FusionOptions:
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"unknown fusion option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**options)


def functional_modality(modality: str | None, volume: MetaTensor | None = None) -> str:
    """"PET" or "SPECT" from a user's word or the volume's DICOM modality."""
    if modality:
        if str(modality).upper() not in FUNCTIONAL_MODALITIES:
            raise ValueError(f"modality must be PET or SPECT, not {modality!r}")
        return FUNCTIONAL_MODALITIES[str(modality).upper()]
    found = str(volume.meta.get("modality", "")).upper() if isinstance(volume, MetaTensor) else ""
    if found in FUNCTIONAL_MODALITIES:
        return FUNCTIONAL_MODALITIES[found]
    raise ValueError("cannot tell PET from SPECT: pass modality='PET' or 'SPECT'")


def preprocessing_stages(options: FusionOptions, modality: str) -> list[tuple[str, Compose]]:
    """The MONAI chain from loaded volumes to fusion inputs, stage by stage.

    Works on dict keys "mri" and "functional".  Adds "functional_scaled" (the
    functional volume in [0, 1] on the MRI grid), "functional_scaled_rgb" and
    "functional_scaled_luma", and "mri_scaled" (the MRI in [0, 1]);
    "functional" ends on the MRI grid in its own units.
    """
    from monai.transforms import CopyItemsd

    stages = []
    if options.register:
        stages.append(("register", Compose([
            RigidRegisterd(keys="functional", fixed_key="mri", **options.registration)])))
    stages.append(("resample", Compose([ResampleToReferenced(keys="functional", ref_key="mri")])))
    stages.append(("normalise", Compose([
        CopyItemsd(keys=("mri", "functional"), names=("mri_scaled", "functional_scaled")),
        NormalizeMRId(keys="mri_scaled", lower=options.mri_percentiles[0],
                      upper=options.mri_percentiles[1], n4=options.n4),
        NormalizeFunctionald(keys="functional_scaled", mode=options.functional_scaling,
                             suv_window=options.suv_window, upper=options.functional_upper_percentile),
        ApplyColormapd(keys="functional_scaled",
                       name=options.colormap or ("pet" if modality == "PET" else "spect")),
    ])))
    return stages


def preprocessing(options: FusionOptions, modality: str) -> Compose:
    """All of :func:`preprocessing_stages` as one MONAI ``Compose``."""
    return Compose([step for _, step in preprocessing_stages(options, modality)])


def _check_volume(volume: MetaTensor, what: str) -> None:
    source = volume.meta.get("filename_or_obj") if isinstance(volume, MetaTensor) else None
    if not isinstance(volume, MetaTensor) or volume.dim() != 4 or volume.shape[0] != 1:
        shape = tuple(volume.shape) if hasattr(volume, "shape") else type(volume).__name__
        raise InputError(source, f"{what}: expected a 3D volume as a (1, X, Y, Z) MetaTensor, got {shape}")
    if min(volume.shape[1:]) < 2:
        raise InputError(source, f"{what}: volume of shape {tuple(volume.shape[1:])} is not 3D")
    if not torch.isfinite(volume).all():
        raise InputError(source, f"{what}: contains NaN or infinite voxels")


def _as_result_volume(array: np.ndarray | torch.Tensor, reference: MetaTensor, **meta) -> MetaTensor:
    keep = {k: reference.meta[k] for k in ("affine", "original_affine", "spatial_shape", "space",
                                           "patient", "study", "series", "source_format",
                                           "source_files", "filename_or_obj") if k in reference.meta}
    return MetaTensor(torch.as_tensor(np.asarray(array)), meta={**keep, **meta})


def fuse_volumes(mri: MetaTensor, functional: MetaTensor, *, modality: str | None = None, model=None,
                 progress: Progress | None = None, options: FusionOptions | None = None,
                 **option_values) -> FusedStudy:
    """Register, resample, normalise, colour and fuse two loaded volumes.

    Everything returned lies on the MRI grid.  Options come as a
    :class:`FusionOptions` or as its fields by name; ``model`` defaults to the
    shipped weights.  ``progress(stage, fraction)`` reports each stage;
    raising from it cancels.
    """
    if options is not None and option_values:
        raise TypeError("give options either as FusionOptions or by name, not both")
    opts = options or FusionOptions.from_kwargs(**option_values)
    modality = functional_modality(modality, functional)
    _check_volume(mri, "MRI")
    _check_volume(functional, modality)
    report = progress or (lambda stage, fraction: None)
    timings: dict[str, float] = {}
    data = {"mri": mri, "functional": functional}
    for stage, transform in preprocessing_stages(opts, modality):
        report(stage, 0.0)
        start = time.perf_counter()
        data = transform(data)
        timings[stage] = time.perf_counter() - start
        report(stage, 1.0)

    if model is None:
        from .inference import _cached_pretrained, default_device

        model = _cached_pretrained(str(torch.device(opts.device) if opts.device else default_device()))
    elif opts.device is not None:
        model = model.to(opts.device)
    from .inference import fuse_volume

    report("fuse", 0.0)
    start = time.perf_counter()
    axis = axis_closest_to(np.asarray(mri.affine))
    luma, rgb = fuse_volume(data["mri_scaled"][0].numpy(), data["functional_scaled_rgb"].numpy(), model,
                            axis=axis, batch_size=opts.batch_size,
                            progress=lambda done, total: report("fuse", done / total))
    timings["fuse"] = time.perf_counter() - start

    scaled = data["functional_scaled"]
    window = scaled.meta.get("intensity_window", {})
    colormap = data["functional_scaled_rgb"].meta.get("colormap", opts.colormap)
    registered = data["functional"]
    study = FusedStudy(
        mri=mri,
        functional=registered,
        fused_luma=_as_result_volume(luma[None].astype(np.float32), mri, kind="fused luma"),
        fused_rgb=_as_result_volume(np.rint(rgb * 255).astype(np.uint8), mri, kind="fused RGB overlay"),
        modality=modality,
        colormap=colormap,
        window=(float(window.get("low", 0.0)), float(window.get("high", 1.0))),
        registration=registered.meta.get("registration"),
        notes={"timings": timings, "slice_axis": axis, "options": asdict(opts),
               "functional_scaling": window.get("method", "")},
        mri_scaled=data["mri_scaled"],
        functional_rgb=data["functional_scaled_rgb"],
    )
    return study


def load_study(mri: str | Path, functional: str | Path, modality: str = "PET", *,
               allow_raw_activity: bool = False) -> tuple[MetaTensor, MetaTensor]:
    """The two volumes of a study; PET from DICOM in SUV (body weight).

    A DICOM PET whose headers do not allow SUV is refused (naming the tag)
    unless ``allow_raw_activity``.  A NIfTI PET has no such headers: its
    values are taken as stored and scaled by percentiles.
    """
    from .io import load_volume
    from .io.load import is_nifti

    modality = functional_modality(modality)
    mri_volume = load_volume(mri, modality="MR")
    functional_path = Path(functional)
    suv = modality == "PET" and not (functional_path.is_file() and is_nifti(functional_path))
    functional_volume = load_volume(functional_path, modality="PT" if modality == "PET" else "NM",
                                    suv=suv, allow_raw_activity=allow_raw_activity)
    return mri_volume, functional_volume


def fuse_study(mri: str | Path, functional: str | Path, out_dir: str | Path, *, modality: str = "PET",
               register: bool = True, formats: Sequence[str] = ("nifti", "dicom"),
               overwrite: bool = False, deidentify: bool = False, identity: dict | None = None,
               allow_raw_activity: bool = False, model=None, progress: Progress | None = None,
               options: FusionOptions | None = None, **option_values) -> dict[str, Path]:
    """The whole job for one patient, files in and files out.

    ``mri`` and ``functional`` are NIfTI files or DICOM folders.  Returns the
    paths written, keyed by what they are.  Options come as a
    :class:`FusionOptions` (whose ``register`` then wins) or as its fields by
    name (colour map, SUV window, batch size, ...).  Existing outputs are
    refused before anything is loaded (not minutes later) unless ``overwrite``.
    """
    from .export import export_study, output_paths

    report = progress or (lambda stage, fraction: None)
    if options is not None and option_values:
        raise TypeError("give options either as FusionOptions or by name, not both")
    opts = options or FusionOptions.from_kwargs(register=register, **option_values)
    modality = functional_modality(modality)
    report_path = Path(out_dir) / REPORT_NAME
    planned = [*output_paths(out_dir, modality=modality, formats=formats).values(), report_path]
    refuse_existing(planned, overwrite)  # export_study checks again when it writes (another run may race)
    report("load", 0.0)
    start = time.perf_counter()
    mri_volume, functional_volume = load_study(mri, functional, modality,
                                               allow_raw_activity=allow_raw_activity)
    load_seconds = time.perf_counter() - start
    report("load", 1.0)
    study = fuse_volumes(mri_volume, functional_volume, modality=modality, model=model,
                         progress=progress, options=opts)
    study.notes["timings"] = {"load": load_seconds, **study.notes["timings"]}
    report("export", 0.0)
    start = time.perf_counter()
    paths = export_study(study, out_dir, formats=formats, overwrite=overwrite, deidentify=deidentify,
                         identity=identity)
    study.notes["timings"]["export"] = time.perf_counter() - start
    record = json.dumps(study_report(study, mri, functional), indent=2, default=str)
    paths["report_json"] = write_text_atomic(report_path, record, overwrite=overwrite)
    report("export", 1.0)
    return paths


def fuse_datalist(datalist: Sequence[dict], out_root: str | Path, **kwargs) -> list[dict[str, Path]]:
    """:func:`fuse_study` for each {"mri", "functional"[, "modality", "name"]} item, one after another.

    Each study goes to ``out_root/<name>`` (default: the MRI file or folder
    name).  Keyword arguments go to :func:`fuse_study`.  For many patients,
    with a manifest, resumption and a cluster, use ``mixfuse batch``.
    """
    results = []
    default_modality = kwargs.pop("modality", "PET")
    for item in datalist:
        name = item.get("name") or Path(item["mri"]).name.split(".")[0]
        results.append(fuse_study(item["mri"], item["functional"], Path(out_root) / name,
                                  modality=item.get("modality") or default_modality, **kwargs))
    return results


def study_report(study: FusedStudy, mri_source=None, functional_source=None) -> dict:
    """What was done to one study, for provenance: inputs, registration, scaling, timings."""
    from . import __version__

    return {
        "mixfuse_med_version": __version__,
        "inputs": {"mri": str(mri_source or study.mri.meta.get("filename_or_obj", "")),
                   "functional": str(functional_source or study.functional.meta.get("filename_or_obj", ""))},
        "modality": study.modality,
        "functional_units": study.functional.meta.get("units", ""),
        "suv": study.functional.meta.get("suv"),
        "colormap": study.colormap,
        "functional_window": {"low": study.window[0], "high": study.window[1],
                              "method": study.notes.get("functional_scaling", "")},
        "registration": study.registration,
        "slice_axis": study.notes.get("slice_axis"),
        "options": study.notes.get("options"),
        "timings_seconds": {k: round(v, 3) for k, v in study.notes.get("timings", {}).items()},
    }
