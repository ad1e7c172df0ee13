"""``mixfuse fuse``: one MRI and one PET/SPECT scan (NIfTI or DICOM) to an output folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import StageProgress, add_fusion_options, fusion_keywords, model_from_options, print_outputs


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fuse", help="fuse one MRI with one PET or SPECT scan (NIfTI or DICOM) into an output folder",
        description="Register the PET/SPECT scan to the MRI, resample it onto the MRI grid and fuse them "
                    "slice by slice with MixFuse. Writes NIfTI (fused luma, RGB overlay, registered "
                    "PET/SPECT) and DICOM (RGB overlay and registered PET/SPECT series in the MRI's "
                    "study) into --out, plus fusion_report.json. Each output appears whole or not at "
                    "all; existing outputs are kept unless --overwrite.")
    p.add_argument("--mri", required=True, type=Path, help="MRI: NIfTI file or DICOM folder")
    p.add_argument("--functional", required=True, type=Path, help="PET or SPECT: NIfTI file or DICOM folder")
    p.add_argument("--modality", type=str.upper, choices=("PET", "SPECT"),
                   help="what --functional is (default: from its DICOM Modality, PT or NM, or its NIfTI "
                        "file name)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    add_fusion_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..batch.discovery import check_same_patient, describe_scan, functional_kind
    from ..batch.resources import check_memory, estimate_fusion_bytes
    from ..errors import InputError
    from ..pipeline import fuse_study

    modality = args.modality or functional_kind(args.functional)
    mri, functional = describe_scan(args.mri, "MRI"), describe_scan(args.functional, modality)
    for note in check_same_patient(mri, functional, args.allow_id_mismatch):
        print(f"note: {note}")
    out = args.out.resolve()
    for scan in (mri, functional):
        if scan.format == "dicom" and out.is_relative_to(scan.path.resolve()):
            raise InputError(out, f"the output folder lies inside the input folder {scan.path}; inputs are "
                                  "never written to: choose another --out")
    check_memory(estimate_fusion_bytes(mri.shape, functional.shape, args.batch_size), str(args.mri))
    model = model_from_options(args)
    with StageProgress() as progress:
        paths = fuse_study(args.mri, args.functional, args.out, modality=modality, overwrite=args.overwrite,
                           model=model, progress=progress, **fusion_keywords(args))
    print(f"fused {args.mri} + {args.functional} ({modality}); wrote:")
    print_outputs(paths)
    return 0
