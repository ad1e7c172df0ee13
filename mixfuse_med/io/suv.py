"""PET standardised uptake value (body weight) from DICOM headers, by the QIBA rules.

SUVbw = activity concentration (Bq/ml) * weight (g) / injected dose decayed
to the scan reference time (Bq).  The rules follow the QIBA vendor-neutral
pseudo-code ("SUV calculation", QIBA FDG-PET/CT profile wiki): the image must
be attenuation and decay corrected (CorrectedImage ATTN, DECY) to the series
start (DecayCorrection START) and stored in Bq/ml (Units BQML); the reference
time is SeriesDate/SeriesTime unless that lies after the earliest acquisition
(a re-processed series), then the earliest AcquisitionDate/Time.  Any tag that
is missing or inconsistent is named in the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

from ..errors import InputError


class SuvError(InputError):
    """A PET series whose headers do not allow SUV; ``tag`` names the culprit."""

    def __init__(self, path: str | Path | None, tag: str, problem: str) -> None:
        self.tag = tag
        super().__init__(path, f"cannot compute SUV: {tag} {problem}")


@dataclass(frozen=True)
class SuvParameters:
    """What went into the SUV factor (kept in ``meta['suv']`` for the record)."""

    factor: float  # SUVbw = stored Bq/ml * factor
    patient_weight_kg: float
    injected_dose_bq: float
    half_life_s: float
    injection_time: str  # ISO 8601
    reference_time: str  # ISO 8601, the scan time the dose is decayed to
    reference_source: str  # "SeriesDateTime" or "AcquisitionDateTime"
    decay_time_s: float
    decayed_dose_bq: float
    notes: tuple[str, ...] = ()

    def as_meta(self) -> dict:
        return {"applied": True, "method": "SUVbw (QIBA)", **asdict(self), "notes": list(self.notes)}


def _combine(date, time, path: Path | None, tags: str) -> datetime | None:
    if date in (None, "") or time in (None, ""):
        return None
    try:
        return datetime.combine(DA(date), TM(time))
    except (TypeError, ValueError):
        raise SuvError(path, tags, f"is not a valid date/time ({date!r}, {time!r})") from None


def _positive(value, path: Path | None, tag: str) -> float:
    if value in (None, ""):
        raise SuvError(path, tag, "is missing")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SuvError(path, tag, f"is not a number ({value!r})") from None
    if not number > 0:
        raise SuvError(path, tag, f"must be positive, is {number}")
    return number


def _reference_time(headers: Sequence[Dataset], path: Path | None) -> tuple[datetime, str, list[str]]:
    first = headers[0]
    series_dt = _combine(first.get("SeriesDate"), first.get("SeriesTime"), path, "SeriesDate/SeriesTime")
    if series_dt is None:
        missing = "SeriesDate" if not first.get("SeriesDate") else "SeriesTime"
        raise SuvError(path, missing, "is missing (the scan reference time)")
    acquisitions = [a for a in (_combine(h.get("AcquisitionDate") or first.get("SeriesDate"),
                                         h.get("AcquisitionTime"), path, "AcquisitionDate/AcquisitionTime")
                                for h in headers) if a is not None]
    if acquisitions and series_dt > min(acquisitions):
        return (min(acquisitions), "AcquisitionDateTime",
                ["SeriesDate/SeriesTime is after the earliest AcquisitionDate/AcquisitionTime "
                 "(re-processed series): the earliest acquisition is the reference, as QIBA says"])
    return series_dt, "SeriesDateTime", []


def _injection_time(drug: Dataset, reference: datetime, path: Path | None) -> tuple[datetime, list[str]]:
    start_dt = drug.get("RadiopharmaceuticalStartDateTime")
    if start_dt:
        try:
            return DT(start_dt).replace(tzinfo=None), []
        except (TypeError, ValueError):
            raise SuvError(path, "RadiopharmaceuticalStartDateTime",
                           f"is not a valid date-time ({start_dt!r})") from None
    start_time = drug.get("RadiopharmaceuticalStartTime")
    if not start_time:
        raise SuvError(path, "RadiopharmaceuticalStartDateTime / RadiopharmaceuticalStartTime",
                       "is missing (injection time)")
    try:
        injection = datetime.combine(reference.date(), TM(start_time))
    except (TypeError, ValueError):
        raise SuvError(path, "RadiopharmaceuticalStartTime",
                       f"is not a valid time ({start_time!r})") from None
    if injection > reference:  # injected before midnight, scanned after it
        return injection - timedelta(days=1), ["injection time only (no date) and later in the day than "
                                               "the scan: taken as the previous day"]
    return injection, []


def suv_parameters(headers: Sequence[Dataset], path: str | Path | None = None) -> SuvParameters:
    """SUVbw factor of a PET series from its instances' headers (sorted or not).

    Raises ``SuvError`` (an ``InputError``) naming the tag when a rule fails.
    """
    path = None if path is None else Path(path)
    if not headers:
        raise InputError(path, "no DICOM headers to compute SUV from")
    first = headers[0]
    modality = str(first.get("Modality", ""))
    if modality != "PT":
        raise SuvError(path, "Modality", f"is '{modality}'; SUV needs a PET (PT) series")
    units = str(first.get("Units", "") or "")
    if not units:
        raise SuvError(path, "Units", "is missing; SUV needs BQML")
    if units.upper() != "BQML":
        raise SuvError(path, "Units", f"is '{units}'; SUV needs activity concentration in BQML")
    corrected = {str(v).upper() for v in (first.get("CorrectedImage") or [])}
    for needed in ("ATTN", "DECY"):
        if needed not in corrected:
            raise SuvError(path, "CorrectedImage", f"lacks {needed} (has {sorted(corrected) or 'nothing'})")
    decay_correction = str(first.get("DecayCorrection", "") or "")
    if decay_correction.upper() != "START":
        raise SuvError(path, "DecayCorrection", f"is '{decay_correction or 'missing'}'; QIBA SUV needs START")
    sequence = first.get("RadiopharmaceuticalInformationSequence")
    if not sequence:
        raise SuvError(path, "RadiopharmaceuticalInformationSequence", "is missing (dose, half-life, time)")
    drug = sequence[0]
    dose = _positive(drug.get("RadionuclideTotalDose"), path, "RadionuclideTotalDose")
    half_life = _positive(drug.get("RadionuclideHalfLife"), path, "RadionuclideHalfLife")
    weight = _positive(first.get("PatientWeight"), path, "PatientWeight")
    if weight > 500:
        raise SuvError(path, "PatientWeight", f"is {weight}; expected kilograms")

    reference, source, notes = _reference_time(headers, path)
    injection, more_notes = _injection_time(drug, reference, path)
    decay_time = (reference - injection).total_seconds()
    if decay_time < 0:
        raise SuvError(path, "RadiopharmaceuticalStartDateTime",
                       f"({injection.isoformat()}) is after the scan reference time "
                       f"({reference.isoformat()}, {source})")
    decayed = dose * 2.0 ** (-decay_time / half_life)
    return SuvParameters(
        factor=weight * 1000.0 / decayed,
        patient_weight_kg=weight,
        injected_dose_bq=dose,
        half_life_s=half_life,
        injection_time=injection.isoformat(),
        reference_time=reference.isoformat(),
        reference_source=source,
        decay_time_s=decay_time,
        decayed_dose_bq=decayed,
        notes=tuple(notes + more_notes),
    )
