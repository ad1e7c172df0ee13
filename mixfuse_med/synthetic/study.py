"""A synthetic MRI + PET/SPECT study on disk (NIfTI and DICOM), with its ground truth."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from ..atomic import atomic_path
from ..errors import OutputExistsError
from ..export.nifti import nifti_image, save_nifti
from ..io.geometry import from_sitk
from .dicom_writer import (
    deterministic_uid,
    ds,
    pet_quantise,
    pet_stored_values,
    write_nm_tomo,
    write_single_frame_series,
)
from .phantom import FUNCTIONAL_MODELS, make_functional, make_mri, random_rigid

F18_HALF_LIFE_S = 6586.2  # the value scanners write for fluorine-18
FORMATS = ("nifti", "dicom")


@dataclass(frozen=True)
class SuvTruth:
    """The PET acquisition as the generator set it: enough to compute SUV by hand."""

    injected_dose_bq: float
    half_life_s: float
    patient_weight_kg: float
    injection_time: datetime
    scan_time: datetime  # SeriesDate/SeriesTime = AcquisitionDate/AcquisitionTime

    @property
    def decay_time_s(self) -> float:
        return (self.scan_time - self.injection_time).total_seconds()

    @property
    def factor(self) -> float:
        """SUVbw = Bq/ml * factor."""
        return self.patient_weight_kg * 1000.0 / (
            self.injected_dose_bq * 2.0 ** (-self.decay_time_s / self.half_life_s))


@dataclass
class SyntheticVolumes:
    """The study in memory: SimpleITK images (LPS) and the truth."""

    mri: sitk.Image
    functional: sitk.Image  # PET in SUVbw, SPECT in counts
    modality: str
    true_transform: sitk.Euler3DTransform  # MRI points -> functional points (SimpleITK convention)


@dataclass
class SyntheticStudy:
    """Paths written and the answers a test or benchmark checks against.

    The functional files hold PET in Bq/ml (``suv.factor`` converts to SUVbw)
    or SPECT in counts.  ``true_transform`` maps MRI (fixed) points to
    functional (moving) points, as ``register_rigid`` should find.
    """

    out_dir: Path
    modality: str
    seed: int
    downsample: int
    oblique: bool
    true_transform: sitk.Euler3DTransform
    rotation_deg: float
    translation_mm: float
    patient: dict
    study: dict
    suv: SuvTruth | None = None
    mri_nifti: Path | None = None
    functional_nifti: Path | None = None
    mri_dicom: Path | None = None  # folder of MR slices
    functional_dicom: Path | None = None  # folder: PT slices, or one NM multi-frame file
    transform_file: Path | None = None  # the true transform as a SimpleITK .tfm
    truth_json: Path | None = None
    notes: dict = field(default_factory=dict)


def make_synthetic_volumes(modality: str = "PET", seed: int = 0, downsample: int = 1,
                           oblique: bool = False, motion_at_maximum: bool = False) -> SyntheticVolumes:
    """MRI and moved functional volume in memory (no files): the benchmark's input.

    The head moves by up to 10 degrees and 15 mm (exactly that with ``motion_at_maximum``).
    """
    modality = _check_modality(modality)
    transform = random_rigid(seed, at_maximum=motion_at_maximum)
    return SyntheticVolumes(mri=make_mri(seed, downsample, oblique),
                            functional=make_functional(modality, transform, seed, downsample),
                            modality=modality, true_transform=transform)


def make_synthetic_study(out_dir: str | Path, modality: str = "PET", seed: int = 0, downsample: int = 1,
                         formats: tuple[str, ...] = FORMATS, oblique: bool = False,
                         overwrite: bool = False) -> SyntheticStudy:
    """Write a synthetic study to ``out_dir`` and return where everything is and the truth.

    ``downsample`` multiplies every voxel size (1: MRI 1 mm, PET 2 mm, SPECT
    4 mm); 3 or 4 makes test-sized volumes.  ``oblique`` tilts the MRI grid.
    Files: ``mri.nii.gz``, ``pet.nii.gz``/``spect.nii.gz``, ``dicom/MR/``,
    ``dicom/PT/`` or ``dicom/NM/``, ``true_transform.tfm``, ``truth.json``;
    existing ones are replaced only with ``overwrite``.
    """
    modality = _check_modality(modality)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    if int(downsample) < 1:
        raise ValueError(f"downsample must be a positive integer, got {downsample}")
    out_dir = Path(out_dir)
    if not overwrite:
        for name in _outputs(modality, formats):
            if (out_dir / name).exists():
                raise OutputExistsError(out_dir / name)
    out_dir.mkdir(parents=True, exist_ok=True)
    volumes = make_synthetic_volumes(modality, seed, int(downsample), oblique)
    rng = np.random.default_rng([seed, 999331])
    identity = _identity(seed)
    suv = _pet_acquisition(rng) if modality == "PET" else None

    mri = from_sitk(volumes.mri)
    mri_array, mri_affine = mri[0].numpy(), np.asarray(mri.affine)
    functional = from_sitk(volumes.functional)
    func_affine = np.asarray(functional.affine)
    if suv is not None:
        stored, slopes = pet_quantise(functional[0].numpy() / suv.factor)  # SUV -> Bq/ml
        func_values = pet_stored_values(stored, slopes)
    else:
        stored = np.clip(np.rint(functional[0].numpy()), 0, 65535).astype(np.uint16)
        slopes, func_values = None, stored.astype(np.float32)

    study = SyntheticStudy(
        out_dir=out_dir, modality=modality, seed=seed, downsample=int(downsample), oblique=oblique,
        true_transform=volumes.true_transform,
        rotation_deg=float(np.rad2deg(np.linalg.norm(_rotation_vector(volumes.true_transform)))),
        translation_mm=float(np.linalg.norm(volumes.true_transform.GetTranslation())),
        patient=identity["patient"], study=identity["study"], suv=suv,
        notes={"functional_units": "BQML" if modality == "PET" else "CNTS",
               "model": FUNCTIONAL_MODELS[modality].__dict__},
    )
    name = modality.lower()
    if "nifti" in formats:
        study.mri_nifti = _write_nifti(mri_array, mri_affine, out_dir / "mri.nii.gz")
        study.functional_nifti = _write_nifti(func_values, func_affine, out_dir / f"{name}.nii.gz")
    if "dicom" in formats:
        study.mri_dicom = out_dir / "dicom" / "MR"
        write_single_frame_series(np.clip(mri_array, 0, 65535).astype(np.uint16), mri_affine,
                                  study.mri_dicom, _mr_dataset(identity, seed))
        if suv is not None:
            study.functional_dicom = out_dir / "dicom" / "PT"
            write_single_frame_series(stored, func_affine, study.functional_dicom,
                                      _pt_dataset(identity, seed, suv, stored.shape[2]),
                                      [{"RescaleSlope": s, "RescaleIntercept": "0", "ImageIndex": k + 1}
                                       for k, s in enumerate(slopes)])
        else:
            study.functional_dicom = out_dir / "dicom" / "NM"
            write_nm_tomo(stored, func_affine, study.functional_dicom / "spect.dcm",
                          _nm_dataset(identity, seed))
    study.transform_file = out_dir / "true_transform.tfm"
    _atomic(study.transform_file, lambda tmp: sitk.WriteTransform(volumes.true_transform, str(tmp)))
    study.truth_json = out_dir / "truth.json"
    _atomic(study.truth_json, lambda tmp: tmp.write_text(json.dumps(_truth_record(study), indent=2)))
    return study


def _outputs(modality: str, formats: tuple[str, ...]) -> list[str]:
    code = "PT" if modality == "PET" else "NM"
    names = ["true_transform.tfm", "truth.json"]
    if "nifti" in formats:
        names += ["mri.nii.gz", f"{modality.lower()}.nii.gz"]
    if "dicom" in formats:
        names += ["dicom/MR", f"dicom/{code}"]
    return names


def _check_modality(modality: str) -> str:
    value = {"PT": "PET", "NM": "SPECT"}.get(modality.upper(), modality.upper())
    if value not in FUNCTIONAL_MODELS:
        raise ValueError(f"modality must be PET or SPECT, got {modality!r}")
    return value


def _rotation_vector(transform: sitk.Euler3DTransform) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(np.asarray(transform.GetMatrix()).reshape(3, 3)).as_rotvec()


def _pet_acquisition(rng: np.random.Generator) -> SuvTruth:
    injection = datetime(2024, 3, 15, 9, 12, 30) + timedelta(minutes=int(rng.integers(0, 120)))
    uptake = timedelta(seconds=int(rng.integers(45 * 60, 75 * 60)))
    return SuvTruth(injected_dose_bq=float(round(rng.uniform(250e6, 400e6), -3)),
                    half_life_s=F18_HALF_LIFE_S,
                    patient_weight_kg=float(round(rng.uniform(50.0, 100.0), 1)),
                    injection_time=injection, scan_time=injection + uptake)


def _identity(seed: int) -> dict:
    patient = {"PatientID": f"MIXFUSE-SYN-{seed:04d}", "PatientName": "Synthetic^Brain",
               "PatientBirthDate": "19600101", "PatientSex": "O"}
    study = {"StudyInstanceUID": deterministic_uid("study", seed), "StudyDate": "20240315",
             "StudyTime": "090000", "AccessionNumber": f"SYN{seed:06d}", "StudyID": "1",
             "StudyDescription": "mixfuse-med synthetic brain study", "ReferringPhysicianName": ""}
    return {"patient": patient, "study": study}


def _common(identity: dict, seed: int, modality: str, number: int, description: str) -> Dataset:
    d = Dataset()
    for key, value in {**identity["patient"], **identity["study"]}.items():
        setattr(d, key, value)
    d.SpecificCharacterSet = "ISO_IR 100"
    d.Modality = modality
    d.SeriesInstanceUID = deterministic_uid("series", seed, modality)
    d.SeriesNumber = number
    d.SeriesDescription = description
    d.FrameOfReferenceUID = deterministic_uid("frame", seed, modality)  # each scanner its own frame
    d.PositionReferenceIndicator = ""
    d.PatientPosition = "HFS"
    d.BodyPartExamined = "BRAIN"
    d.Manufacturer = "mixfuse-med synthetic"
    d.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    return d


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = scheme
    code.CodeMeaning = meaning
    return code


def _nuclear(d: Dataset) -> None:
    """Patient orientation and collimation, shared by the PET and NM image modules."""
    d.PatientOrientationCodeSequence = [_code("102538003", "SCT", "recumbent")]
    d.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = [
        _code("40199007", "SCT", "supine")]
    d.PatientGantryRelationshipCodeSequence = [_code("102540008", "SCT", "headfirst")]
    del d.PatientPosition  # the code sequences replace it in PET and NM


def _mr_dataset(identity: dict, seed: int) -> Dataset:
    d = _common(identity, seed, "MR", 1, "T1w 3D (synthetic, MNI152)")
    d.SeriesDate = d.ContentDate = d.AcquisitionDate = "20240315"
    d.SeriesTime = d.ContentTime = d.AcquisitionTime = "083000"
    d.ScanningSequence = "GR"
    d.SequenceVariant = "SP"
    d.ScanOptions = ""
    d.MRAcquisitionType = "3D"
    d.RepetitionTime = "7.5"
    d.EchoTime = "2.5"
    d.EchoTrainLength = 1
    d.MagneticFieldStrength = "3"
    d.ImagedNucleus = "1H"
    return d


def _dicom_datetime(value: datetime) -> tuple[str, str]:
    return value.strftime("%Y%m%d"), value.strftime("%H%M%S")


def _pt_dataset(identity: dict, seed: int, suv: SuvTruth, slices: int) -> Dataset:
    d = _common(identity, seed, "PT", 2, "FDG brain, AC (synthetic)")
    d.ImageType = ["ORIGINAL", "PRIMARY"]
    date, time = _dicom_datetime(suv.scan_time)
    d.SeriesDate = d.AcquisitionDate = d.ContentDate = date
    d.SeriesTime = d.AcquisitionTime = d.ContentTime = time
    d.PatientWeight = ds(suv.patient_weight_kg)
    d.Units = "BQML"
    d.CountsSource = "EMISSION"
    d.SeriesType = ["STATIC", "IMAGE"]
    d.CollimatorType = "NONE"
    _nuclear(d)
    d.CorrectedImage = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
    d.DecayCorrection = "START"
    d.RandomsCorrectionMethod = "DLYD"
    d.AttenuationCorrectionMethod = "measured"
    d.ReconstructionMethod = "OSEM"
    d.NumberOfSlices = slices
    d.FrameReferenceTime = "0"
    d.ActualFrameDuration = 600000
    d.DecayFactor = "1"
    d.LossyImageCompression = "00"
    drug = Dataset()
    drug.Radiopharmaceutical = "Fluorodeoxyglucose"
    inj_date, inj_time = _dicom_datetime(suv.injection_time)
    drug.RadiopharmaceuticalStartTime = inj_time
    drug.RadiopharmaceuticalStartDateTime = inj_date + inj_time
    drug.RadionuclideTotalDose = ds(suv.injected_dose_bq)
    drug.RadionuclideHalfLife = ds(suv.half_life_s)
    drug.RadionuclidePositronFraction = "0.9673"
    drug.RadionuclideCodeSequence = [_code("77004003", "SCT", "^18^Fluorine")]
    d.RadiopharmaceuticalInformationSequence = [drug]
    return d


def _nm_dataset(identity: dict, seed: int) -> Dataset:
    d = _common(identity, seed, "NM", 3, "Brain perfusion SPECT, reconstructed (synthetic)")
    d.SeriesDate = d.AcquisitionDate = d.ContentDate = "20240315"
    d.SeriesTime = d.AcquisitionTime = d.ContentTime = "100000"
    _nuclear(d)
    window = Dataset()
    energy = Dataset()
    energy.EnergyWindowLowerLimit = "126.45"
    energy.EnergyWindowUpperLimit = "154.55"
    window.EnergyWindowRangeSequence = [energy]
    window.EnergyWindowName = "Tc99m"
    d.EnergyWindowInformationSequence = [window]
    d.NumberOfEnergyWindows = 1
    drug = Dataset()
    drug.Radiopharmaceutical = "Tc-99m HMPAO"
    drug.RadionuclideCodeSequence = [_code("17944001", "SCT", "^99m^Technetium")]
    d.RadiopharmaceuticalInformationSequence = [drug]
    d.CountsAccumulated = None
    return d


def _atomic(path: Path, write) -> Path:
    """Write through a temporary sibling (same suffix, so writers pick the format), then rename."""
    with atomic_path(path, overwrite=True) as tmp:
        write(tmp)
    return path


def _write_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    image = nifti_image(np.asarray(array, dtype=np.float32), affine, description="mixfuse-med synthetic")
    return save_nifti(image, path, overwrite=True)


def _truth_record(study: SyntheticStudy) -> dict:
    tx = study.true_transform
    record = {
        "modality": study.modality, "seed": study.seed, "downsample": study.downsample,
        "oblique": study.oblique,
        "true_transform": {"type": tx.GetName(), "parameters": list(tx.GetParameters()),
                           "fixed_parameters": list(tx.GetFixedParameters()),
                           "convention": "maps MRI (fixed) LPS points to functional (moving) LPS points",
                           "rotation_deg": study.rotation_deg, "translation_mm": study.translation_mm},
        "patient": study.patient, "study": study.study, "functional_units": study.notes["functional_units"],
    }
    if study.suv is not None:
        record["suv"] = {"injected_dose_bq": study.suv.injected_dose_bq, "half_life_s": study.suv.half_life_s,
                         "patient_weight_kg": study.suv.patient_weight_kg,
                         "injection_time": study.suv.injection_time.isoformat(),
                         "scan_time": study.suv.scan_time.isoformat(),
                         "decay_time_s": study.suv.decay_time_s, "factor": study.suv.factor}
    return record
