"""2D fusion pairs for training and evaluation (MRI grey + PET/SPECT colour PNGs).

A pair folder holds ``MRI/`` and ``PET/`` (or ``SPECT/``) with the same file
names, as in the Harvard Whole Brain Atlas sets.  Names like ``25047.png``
(subject 25, slice 47) allow a leakage-free split: whole SPECT subjects and,
where there are too few subjects (PET), whole runs of neighbouring slices.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..color import rgb_to_luma
from ..errors import InputError
from ..io.png import read_grey, read_rgb

FUNCTIONAL_MODALITIES = ("PET", "SPECT")
_NAME = re.compile(r"^(\d+?)(\d{3})$")

# Validation split of the shared Harvard sets (issue: whole SPECT subjects,
# whole runs of PET slices).  Chosen once, kept fixed so results compare.
SPECT_VALIDATION_SUBJECTS = (9, 22, 29)
PET_VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class PairRecord:
    """One registered 2D pair on disk."""

    mri: Path
    functional: Path
    modality: str
    subject: int | None
    slice_index: int | None

    @property
    def name(self) -> str:
        return f"{self.modality}_{self.functional.stem}"


def find_pairs(root: str | Path) -> list[PairRecord]:
    """All pairs under ``root``: itself a pair folder, or a folder of them.

    Raises a ValueError naming the folder when no pair is found or a
    functional image has no MRI of the same name.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder of fusion pairs")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    pairs: list[PairRecord] = []
    for folder in folders:
        mri_dir = folder / "MRI"
        for modality in FUNCTIONAL_MODALITIES:
            func_dir = folder / modality
            if not (mri_dir.is_dir() and func_dir.is_dir()):
                continue
            for func in sorted(func_dir.glob("*.png")):
                mri = mri_dir / func.name
                if not mri.is_file():
                    raise InputError(func, f"no MRI of the same name in {mri_dir}")
                match = _NAME.match(func.stem)
                subject, slice_index = (int(match[1]), int(match[2])) if match else (None, None)
                pairs.append(PairRecord(mri, func, modality, subject, slice_index))
    if not pairs:
        raise InputError(root, "no MRI/ + PET/ or SPECT/ pair folders with PNG files")
    return pairs


def split_pairs(pairs: list[PairRecord]) -> tuple[list[PairRecord], list[PairRecord]]:
    """(train, validation) with no subject or slice run on both sides.

    SPECT: the subjects in ``SPECT_VALIDATION_SUBJECTS`` are held out whole.
    PET (three subjects only): for each subject, one contiguous run of
    ``PET_VALIDATION_FRACTION`` of its slices, from the middle of the brain.
    """
    train, val = [], []
    by_subject: dict[tuple[str, int | None], list[PairRecord]] = defaultdict(list)
    for pair in pairs:
        by_subject[(pair.modality, pair.subject)].append(pair)
    for (modality, subject), items in sorted(by_subject.items(), key=lambda kv: str(kv[0])):
        items = sorted(items, key=lambda p: (p.slice_index is None, p.slice_index, p.functional.name))
        if modality == "SPECT" or subject is None:
            (val if subject in SPECT_VALIDATION_SUBJECTS else train).extend(items)
            continue
        n_val = max(1, round(len(items) * PET_VALIDATION_FRACTION))
        start = (len(items) - n_val) // 2
        val.extend(items[start : start + n_val])
        train.extend(items[:start] + items[start + n_val :])
    return train, val


def select_split(pairs: list[PairRecord], split: str) -> list[PairRecord]:
    """"all", "train" or "validation" side of :func:`split_pairs`."""
    if split == "all":
        return list(pairs)
    if split not in ("train", "validation"):
        raise ValueError(f"unknown split {split!r}: use all, train or validation")
    return split_pairs(pairs)[0 if split == "train" else 1]


def load_pair(pair: PairRecord) -> dict:
    """{"mri": (1, H, W), "functional": (1, H, W) luma, "functional_rgb": (H, W, 3)}."""
    mri = read_grey(pair.mri)
    rgb = read_rgb(pair.functional)
    if mri.shape != rgb.shape[:2]:
        raise InputError(pair.functional, f"size {rgb.shape[:2]} differs from its MRI {pair.mri} {mri.shape}")
    return {
        "mri": mri[None],
        "functional": rgb_to_luma(rgb)[None],
        "functional_rgb": rgb,
        "name": pair.name,
        "modality": pair.modality,
    }
