"""Sample data: a synthetic brain MRI with FDG PET or perfusion SPECT (File > Open Sample).

The study comes from ``mixfuse_med.synthetic.make_synthetic_study``, the
generator the tests use: MNI152 anatomy, a known head movement between the
scans, and PET written as DICOM with full SUV headers.  It is written once
into the user's cache folder and read back through ``mixfuse_med.io`` like
any other study (PET in SUV), so the DICOM export has source files to cite.
"""

from __future__ import annotations

from pathlib import Path

from ._layers import LayerDataTuple

SAMPLE_DOWNSAMPLE = 2  # 2 mm MRI voxels: fuses in seconds, still readable anatomy
SAMPLE_SEED = 0


def sample_folder() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mixfuse-med")) / "samples"


def sample_study(modality: str = "PET", *, downsample: int = SAMPLE_DOWNSAMPLE, seed: int = SAMPLE_SEED,
                 folder: str | Path | None = None) -> tuple[Path, Path]:
    """DICOM folders (MRI, PET/SPECT) of the synthetic study: made on first use, reused after."""
    from mixfuse_med import __version__
    from mixfuse_med.synthetic import make_synthetic_study

    modality = "PET" if modality.upper() in ("PET", "PT") else "SPECT"
    root = Path(folder) if folder is not None else sample_folder()
    out_dir = root / f"{modality.lower()}-seed{seed}-downsample{downsample}-v{__version__}"
    mri_dir = out_dir / "dicom" / "MR"
    functional_dir = out_dir / "dicom" / ("PT" if modality == "PET" else "NM")
    if not ((out_dir / "truth.json").is_file() and mri_dir.is_dir() and functional_dir.is_dir()):
        (out_dir / "truth.json").unlink(missing_ok=True)  # written last: its presence marks a whole study
        made = make_synthetic_study(out_dir, modality=modality, seed=seed, downsample=downsample,
                                    overwrite=True)
        mri_dir, functional_dir = made.mri_dicom, made.functional_dicom
    return mri_dir, functional_dir


def sample_layers(modality: str = "PET", *, downsample: int = SAMPLE_DOWNSAMPLE, seed: int = SAMPLE_SEED,
                  folder: str | Path | None = None) -> list[LayerDataTuple]:
    """MRI and PET/SPECT layers of the synthetic study, read from its DICOM series."""
    from mixfuse_med.pipeline import load_study

    from ._display import scan_layer_data

    mri_dir, functional_dir = sample_study(modality, downsample=downsample, seed=seed, folder=folder)
    mri, functional = load_study(mri_dir, functional_dir, modality)
    return [scan_layer_data(mri), scan_layer_data(functional)]


def make_pet_sample() -> list[LayerDataTuple]:
    """File > Open Sample: synthetic brain MRI + FDG PET (in SUV)."""
    return sample_layers("PET")


def make_spect_sample() -> list[LayerDataTuple]:
    """File > Open Sample: synthetic brain MRI + perfusion SPECT (counts)."""
    return sample_layers("SPECT")
