"""``mixfuse batch``: a root folder of patient folders, on Dask, resumable."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from .options import add_fusion_options, fusion_keywords


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="fuse every patient folder under ROOT (Dask cluster, resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Fuse every patient of ROOT, one subfolder per patient. In each, the MRI and the PET/SPECT "
            "scan are found by DICOM Modality (MR; PT or NM) or by NIfTI file name (mri/mr/t1/t2/flair/"
            "anat; pet/fdg; spect); none or several candidates is an error for that patient, never a "
            "guess.",
            "Each patient's outputs go to DIR/<PatientID> (made safe as a file name; the folder name for "
            "NIfTI input), written whole or not at all. DIR/manifest.json records per patient the status "
            "(done, failed, skipped), input checksums, outputs, timings and errors. Running the same "
            "command again skips patients done with unchanged inputs and settings and retries the "
            "others, also after a crash or kill.",
            "Runs on a local Dask cluster (one process per worker) or on the cluster of --scheduler. "
            "Without Dask installed (pip install \"mixfuse-med[cluster]\"), or with --workers 0, the "
            "patients run one by one in this process. Exit status 1 when any patient failed."))
    p.add_argument("root", type=Path, help="folder holding one folder per patient")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output root (not inside ROOT)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="existing Dask scheduler, e.g. tcp://host:8786 (workers must see ROOT, --out and "
                        "--weights at the same paths); default: a local cluster")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local cluster workers (default: one per 2 CPUs); 0: no cluster, in this process")
    p.add_argument("--threads-per-worker", type=int, metavar="N",
                   help="torch/SimpleITK threads per worker (default: CPUs / workers locally; CPUs / the "
                        "worker's own threads on a --scheduler cluster)")
    p.add_argument("--modality", type=str.upper, choices=("PET", "SPECT"),
                   help="fuse only this functional modality (needed when a folder holds both)")
    add_fusion_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(textwrap.fill(t, 88) for t in texts)


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchSettings, run_batch
    from ..batch.checksums import file_sha256
    from ..errors import InputError
    from ..inference import DEFAULT_WEIGHTS

    if args.workers is not None and args.workers < 0:
        raise InputError(None, "--workers must be 0 (in this process) or more")
    weights = args.weights.resolve() if args.weights is not None else None
    if weights is not None and not weights.is_file():
        raise InputError(weights, "MixFuse weights not found")
    keywords = fusion_keywords(args)
    settings = BatchSettings(
        weights=str(weights) if weights else None,
        weights_sha256=file_sha256(weights or DEFAULT_WEIGHTS),
        device=keywords.pop("device"), formats=keywords.pop("formats"), register=keywords.pop("register"),
        allow_raw_activity=keywords.pop("allow_raw_activity"), deidentify=keywords.pop("deidentify"),
        options=keywords)
    report = run_batch(args.root, args.out, settings, scheduler=args.scheduler, workers=args.workers,
                       threads_per_worker=args.threads_per_worker, modality=args.modality,
                       allow_id_mismatch=args.allow_id_mismatch, show_progress=not args.quiet)
    print(report.summary())
    return report.exit_status
