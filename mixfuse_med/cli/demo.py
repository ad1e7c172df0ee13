"""``mixfuse demo``: the built-in synthetic study, end to end, with nothing downloaded.

The study is built from the MNI152 templates inside nilearn's package
(DICOM and NIfTI, a known head movement, PET with real SUV headers), then
fused from its DICOM series exactly as ``mixfuse fuse`` would, and the
registration is checked against the known answer.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .options import StageProgress, add_model_options, model_from_options, print_outputs

DEFAULT_OUT = Path("mixfuse-demo")
DEFAULT_DOWNSAMPLE = 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="build the synthetic sample study and fuse it end to end",
        description="Build a synthetic brain study (MNI152 MRI from nilearn's package files, a PET or "
                    "SPECT of the same head moved by a known rigid transform, as DICOM series and NIfTI "
                    "files), fuse it from DICOM with the shipped MixFuse weights, and say where "
                    "everything went. Nothing is downloaded.")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"output folder: the study goes to OUT/input, the results to OUT/fused "
                        f"(default: ./{DEFAULT_OUT})")
    p.add_argument("--modality", type=str.upper, choices=("PET", "SPECT"), default="PET",
                   help="functional scan to simulate (default PET)")
    p.add_argument("--downsample", type=int, default=DEFAULT_DOWNSAMPLE, metavar="N",
                   help=f"voxel size multiplier (default {DEFAULT_DOWNSAMPLE}: a 2 mm MRI, one to two "
                        "minutes on two free CPU cores; 1 is the full 1 mm study, 197 x 233 x 189 voxels, "
                        "six to nine minutes on two CPU cores, much less on a GPU)")
    p.add_argument("--seed", type=int, default=0, help="which synthetic patient (head movement, dose)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in OUT")
    add_model_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import fuse_study
    from ..synthetic import make_synthetic_study

    if args.downsample < 1:
        raise ValueError(f"--downsample must be 1 or more, got {args.downsample}")
    out = args.out
    start = time.perf_counter()
    print(f"building the synthetic {args.modality} study (MNI152 templates, {args.downsample} mm MRI) "
          f"in {out / 'input'} ...", flush=True)
    study = make_synthetic_study(out / "input", modality=args.modality, seed=args.seed,
                                 downsample=args.downsample, overwrite=args.overwrite)
    model = model_from_options(args)
    with StageProgress() as progress:
        paths = fuse_study(study.mri_dicom, study.functional_dicom, out / "fused", modality=args.modality,
                           overwrite=args.overwrite, model=model, progress=progress, device=args.device,
                           batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    print(f"synthetic study (input, never modified): {study.out_dir}")
    print(f"  MRI DICOM {study.mri_dicom}, {args.modality} DICOM {study.functional_dicom}, NIfTI copies "
          f"{study.mri_nifti.name} and {study.functional_nifti.name}, truth {study.truth_json.name}")
    print(f"fused outputs in {out / 'fused'}:")
    print_outputs(paths)
    print(registration_check(paths["report_json"], study))
    print(f"done in {seconds:.0f} s. Open the fused RGB NIfTI over the MRI in any viewer, e.g. "
          f"{paths.get('fused_rgb_nifti', paths['report_json'])}")
    return 0


def registration_check(report_json: Path, study) -> str:
    """How far the registration found lies from the known head movement, at points of the brain."""
    import json

    import numpy as np

    from ..synthetic import brain_points
    from ..transforms.registration import transform_from_meta

    record = json.loads(Path(report_json).read_text()).get("registration")
    if not record:
        return "registration: not run"
    found = transform_from_meta(record)
    points = brain_points(500, seed=0)
    errors = [np.linalg.norm(np.subtract(found.TransformPoint(p), study.true_transform.TransformPoint(p)))
              for p in points]
    return (f"registration vs the known head movement ({study.rotation_deg:.1f} deg, "
            f"{study.translation_mm:.1f} mm): mean error {np.mean(errors):.2f} mm, "
            f"max {np.max(errors):.2f} mm over 500 brain points")
