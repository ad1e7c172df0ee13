"""Source MRI, source PET/SPECT and fused result for validation pairs, for the bundle docs.

    python workflows/mixfuse_bundle/scripts/example_figure.py DATA_DIR OUT.png [--weights W]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mixfuse_med.inference import fuse_2d, load_pretrained  # noqa: E402
from mixfuse_med.io.png import read_grey, read_rgb  # noqa: E402
from mixfuse_med.training.data import find_pairs, select_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--names", nargs="*", default=None,
                        help="functional file stems to show (default: three spread over the split)")
    args = parser.parse_args()
    pairs = select_split(find_pairs(args.data), "validation")
    if args.names:
        pairs = [p for p in pairs if p.functional.stem in args.names]
    else:
        pet = [p for p in pairs if p.modality == "PET"]
        spect = [p for p in pairs if p.modality == "SPECT"]
        pairs = [pet[len(pet) // 2], spect[len(spect) // 3], spect[2 * len(spect) // 3]]
    model = load_pretrained(weights=args.weights)
    fig, axes = plt.subplots(len(pairs), 3, figsize=(9, 3 * len(pairs)))
    for row, pair in zip(axes, pairs, strict=True):
        mri, rgb = read_grey(pair.mri), read_rgb(pair.functional)
        for ax, image, title in zip(row, (mri, rgb, fuse_2d(mri, rgb, model)),
                                    ("MRI", pair.modality, "MixFuse fused"), strict=True):
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(f"{title} ({pair.functional.stem})" if title == "MRI" else title)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
