"""``mixfuse evaluate``: fusion metrics beside the trivial baselines."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="fusion metrics for fused results, next to trivial baselines",
        description="Score fused results with the fusion metrics (EN, SD, SF, AG, MI, SCD, VIF, "
                    "Qabf, SSIM, MEF-SSIM, CC, PSNR, MS-SSIM) beside the pixel mean, pixel max "
                    "and each source alone. PAIRS is a folder with MRI/ and PET/ or SPECT/ "
                    "subfolders of same-named images (or a folder of such folders).")
    p.add_argument("pairs", type=Path, help="folder of source pairs")
    p.add_argument("--fused", type=Path,
                   help="folder of fused images named like the sources (default: fuse them now)")
    p.add_argument("--out", required=True, type=Path, help="folder for per_case.csv, summary.csv/json")
    p.add_argument("--split", choices=("all", "train", "validation"), default="all",
                   help="score only one side of the fixed training split")
    p.add_argument("--weights", type=Path, help="checkpoint to use instead of the shipped weights")
    p.add_argument("--overwrite", action="store_true", help="replace existing reports")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluation import evaluate_pairs, format_summary
    from ..training.data import find_pairs, select_split

    pairs = select_split(find_pairs(args.pairs), args.split)
    model = None
    if args.fused is None:
        from ..inference import load_pretrained

        model = load_pretrained(weights=args.weights)
    with tqdm(total=len(pairs), unit="pair", desc="evaluate") as bar:
        report = evaluate_pairs(pairs, args.out, model=model, fused_dir=args.fused,
                                overwrite=args.overwrite,
                                progress=lambda done, total: bar.update(done - bar.n))
    print(format_summary(report["summary"]))
    for path in report["paths"].values():
        print(f"wrote {path}")
    return 0
