"""``mixfuse fuse2d``: one 2D pair (grey MRI + colour or grey PET/SPECT image) to one image."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fuse2d", help="fuse one 2D image pair (PNG) into one image",
        description="Fuse a grey MRI slice with a PET/SPECT slice (pseudo-colour or grey). "
                    "A colour functional image gives a colour result: its luma is fused, "
                    "its colour kept.")
    p.add_argument("--mri", required=True, type=Path, help="grey MRI image (PNG, ...)")
    p.add_argument("--functional", required=True, type=Path, help="PET/SPECT image, colour or grey")
    p.add_argument("--out", required=True, type=Path, help="fused image to write (PNG)")
    p.add_argument("--weights", type=Path, help="checkpoint to use instead of the shipped weights")
    p.add_argument("--device", help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..inference import fuse_2d, load_pretrained
    from ..io.png import read_grey, read_rgb, write_image

    mri = read_grey(args.mri)
    with Image.open(args.functional) as im:
        colour = im.mode not in ("L", "I;16", "I;16B", "I;16L", "I", "F")
    functional = read_rgb(args.functional) if colour else read_grey(args.functional)
    if functional.shape[:2] != mri.shape:
        raise ValueError(f"{args.functional}: size {functional.shape[:2]} differs from the MRI's "
                         f"{mri.shape} ({args.mri}); register and resample first")
    model = load_pretrained(args.device, args.weights)
    fused = fuse_2d(mri, functional, model)
    write_image(fused, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}")
    return 0
