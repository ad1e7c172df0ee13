"""Options and progress display shared by ``fuse``, ``batch`` and ``demo``: one spelling, one meaning."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path,
                   help="MixFuse checkpoint to use instead of the shipped weights "
                        "(any network size the file records)")
    p.add_argument("--device", help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="slices per network call (default 8)")


def model_from_options(args: argparse.Namespace):
    """The network --weights asks for, or None: fuse_study then uses the shipped weights (cached)."""
    if args.weights is None:
        return None
    from ..inference import load_pretrained

    return load_pretrained(args.device, args.weights)


def add_fusion_options(p: argparse.ArgumentParser) -> None:
    """The choices of one fusion job (fuse_study's keywords), for ``fuse`` and ``batch``."""
    add_model_options(p)
    p.add_argument("--formats", nargs="+", choices=("nifti", "dicom"), default=["nifti", "dicom"],
                   help="outputs to write (default: both)")
    p.add_argument("--no-register", action="store_true",
                   help="skip the rigid registration and trust the scanners' world coordinates")
    p.add_argument("--allow-raw-activity", action="store_true",
                   help="fuse a DICOM PET whose headers do not allow SUV in its stored units instead of "
                        "refusing it")
    p.add_argument("--allow-id-mismatch", action="store_true",
                   help="fuse even when the MRI's and the PET/SPECT's DICOM PatientID differ")
    p.add_argument("--deidentify", action="store_true",
                   help="DICOM outputs with keyed pseudonyms (key from $MIXFUSE_DEID_KEY or the "
                        "user's key file)")


def fusion_keywords(args: argparse.Namespace) -> dict:
    """``fuse_study`` keywords from the parsed options (the model aside)."""
    return {"formats": tuple(args.formats), "register": not args.no_register,
            "allow_raw_activity": args.allow_raw_activity, "deidentify": args.deidentify,
            "device": args.device, "batch_size": args.batch_size}


class StageProgress:
    """A tqdm bar over fuse_study's stages, as its ``progress`` callback."""

    def __init__(self, desc: str = "fusing") -> None:
        from tqdm import tqdm

        from ..pipeline import STAGES

        self.stages = STAGES
        self.bar = tqdm(total=len(STAGES), desc=desc, unit="stage",
                        bar_format="{desc:<18}{percentage:3.0f}%|{bar}| {elapsed}")

    def __call__(self, stage: str, fraction: float) -> None:
        self.bar.n = round(self.stages.index(stage) + fraction, 3)
        self.bar.set_description(stage, refresh=True)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def print_outputs(paths: dict[str, Path]) -> None:
    """One line per output: what it is and where."""
    width = max((len(k) for k in paths), default=0)
    for key, path in paths.items():
        print(f"  {key:<{width}}  {path}")
