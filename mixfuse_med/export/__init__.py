"""Outputs of a fused study: NIfTI for research tools, DICOM for viewers and PACS, sending to a PACS.

``export_study`` is the one entry point the bundle, the napari plugin, the CLI
and the batch runner call.  Every output appears whole or not at all (see
``atomic``); existing outputs are refused unless ``overwrite=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mixfuse_med.atomic import clean_stale_temporaries, is_temporary, refuse_existing
from mixfuse_med.errors import ExportError, InputError, MixfuseError
from mixfuse_med.export.deid import Pseudonymizer, deidentify_dataset
from mixfuse_med.export.dicom import functional_datasets, fused_rgb_datasets
from mixfuse_med.export.dicom_series import SeriesWriter, series_number, write_series
from mixfuse_med.export.dicom_sources import read_source_series
from mixfuse_med.export.identity import ExportIdentity, identity_from_mri
from mixfuse_med.export.nifti import (
    affine_of,
    functional_image,
    fused_luma_image,
    fused_rgb_image,
    save_nifti,
)
from mixfuse_med.export.pacs import send_to_pacs

__all__ = ["ExportIdentity", "Pseudonymizer", "export_study", "is_temporary", "output_paths", "send_to_pacs"]

FORMATS = ("nifti", "dicom")


def _checked_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(None, f"unknown export format(s) {unknown}; choose from {list(FORMATS)}")
    return formats


def output_paths(out_dir: str | Path, *, modality: str, formats: str | Sequence[str] = FORMATS
                 ) -> dict[str, Path]:
    """Where ``export_study`` writes each output of a PET or SPECT study, keyed by what it is.

    Needs no study, so a caller can refuse existing outputs (and unknown
    formats) before any loading or fusion: ``fuse_study`` does.
    """
    formats = _checked_formats(formats)
    out_dir = Path(out_dir)
    functional = f"{modality.lower()}_on_mri"
    paths: dict[str, Path] = {}
    if "nifti" in formats:
        paths["fused_luma_nifti"] = out_dir / "fused_luma.nii.gz"
        paths["fused_rgb_nifti"] = out_dir / "fused_rgb.nii.gz"
        paths["functional_nifti"] = out_dir / f"{functional}.nii.gz"
    if "dicom" in formats:
        paths["fused_rgb_dicom"] = out_dir / "dicom" / "fused_rgb"
        paths["functional_dicom"] = out_dir / "dicom" / functional
    return paths


def _check_study(study) -> None:
    shape = tuple(study.mri.shape[1:])
    for name, channels in (("functional", 1), ("fused_luma", 1), ("fused_rgb", 3)):
        volume = getattr(study, name)
        if tuple(volume.shape) != (channels, *shape):
            raise InputError(None, f"FusedStudy.{name} has shape {tuple(volume.shape)}, expected "
                                   f"{(channels, *shape)} (the MRI grid)")
    if hasattr(study.functional, "affine") and not np.allclose(affine_of(study.functional),
                                                               affine_of(study.mri), atol=1e-4):
        raise InputError(None, "FusedStudy.functional is not on the MRI grid (affines differ)")


def export_study(study, out_dir: str | Path, *, formats: Sequence[str] = FORMATS, overwrite: bool = False,
                 deidentify: bool | Pseudonymizer = False, identity: dict | None = None) -> dict[str, Path]:
    """Write the fused study's outputs into ``out_dir``; return their paths keyed by what they are.

    ``identity`` overrides DICOM identity fields (PatientID, PatientName,
    StudyInstanceUID, ...): the source MRI's, or the synthetic one made for
    NIfTI input.  ``deidentify`` (True: key from $MIXFUSE_DEID_KEY or the user's
    key file; or a ``Pseudonymizer``) writes keyed pseudonyms and applies the
    PS3.15 basic profile to every DICOM file.  NIfTI outputs carry no identity.
    """
    formats = _checked_formats(formats)
    _check_study(study)
    paths = output_paths(out_dir, modality=study.modality, formats=formats)
    out_dir = Path(out_dir)
    for folder in (out_dir, out_dir / "dicom"):
        clean_stale_temporaries(folder)
    refuse_existing(paths.values(), overwrite)  # refuse before writing anything
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        if "nifti" in formats:
            save_nifti(fused_luma_image(study), paths["fused_luma_nifti"], overwrite=overwrite)
            save_nifti(fused_rgb_image(study), paths["fused_rgb_nifti"], overwrite=overwrite)
            save_nifti(functional_image(study), paths["functional_nifti"], overwrite=overwrite)
        if "dicom" in formats:
            _export_dicom(study, paths, overwrite, deidentify, identity)
    except MixfuseError:
        raise
    except Exception as error:  # a library failure becomes one clear error naming the folder
        raise ExportError(f"{out_dir}: export failed ({type(error).__name__}: {error})") from error
    return paths


def _export_dicom(study, paths: dict[str, Path], overwrite: bool, deidentify, identity: dict | None) -> None:
    export_identity = identity_from_mri(study.mri.meta, identity)
    pseudonymizer = None
    if deidentify:
        pseudonymizer = (deidentify if isinstance(deidentify, Pseudonymizer)
                         else Pseudonymizer.from_environment())
        export_identity = pseudonymizer.identity(export_identity)

    def transform(ds):
        return deidentify_dataset(ds, pseudonymizer) if pseudonymizer is not None else ds

    mri_source = read_source_series(study.mri.meta)
    functional_source = read_source_series(study.functional.meta)
    units = study.functional.meta.get("units", "") or "unknown units"
    fused = SeriesWriter(study, export_identity, mri_source, [functional_source],
                         description=f"MixFuse MR+{study.modality} fused RGB ({study.colormap})",
                         number=series_number(study.mri.meta, 91))
    write_series(fused_rgb_datasets(fused), paths["fused_rgb_dicom"], overwrite=overwrite,
                 transform=transform)
    functional = SeriesWriter(study, export_identity, mri_source, [functional_source],
                              description=f"{study.modality} {units} on MR grid (registered, MixFuse)",
                              number=series_number(study.mri.meta, 92))
    write_series(functional_datasets(functional, functional_source), paths["functional_dicom"],
                 overwrite=overwrite, transform=transform)
