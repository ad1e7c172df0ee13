"""Recover the PET and SPECT colour maps of the training images; print them as Python tables.

Usage: python scripts/derive_colormaps.py DATA_DIR > /tmp/tables.py
(DATA_DIR holds MRI_PET/PET/*.png and MRI_SPECT/SPECT/*.png, e.g. the shared
Harvard Whole Brain Atlas pairs).  The output replaces the ``_PET_HEX`` and
``_SPECT_HEX`` tables in ``mixfuse_med/colormaps.py``.

Why this works: the atlas images are rendered straight through a colour
look-up table, so each modality uses only a few hundred distinct colours,
all on one curve in RGB space from black to the hottest colour.  Ordering the
colours along that curve recovers the table:

1. collect the distinct colours of every image (with pixel counts);
2. minimum spanning tree of the colours (Euclidean RGB distance); its
   longest path from black is the curve's backbone;
3. colours off the backbone (the tree's small side branches) are inserted
   where they lengthen the path least;
4. position along the path = normalised rank (0 = black, 1 = hottest end),
   resampled to 256 entries by linear interpolation.

Luma is not forced to be monotone: the atlas maps themselves are not (the
jet-like PET map is darker in red than in yellow; the SPECT map dips from
grey-green into purple), and the network learned from exactly those colours.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path
from scipy.spatial.distance import cdist

SOURCES = {"pet": "MRI_PET/PET", "spect": "MRI_SPECT/SPECT"}
ENTRIES = 256


def distinct_colours(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(colours (N, 3) int, pixel counts (N,)) over every PNG in ``folder``."""
    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"{folder}: no PNG files")
    pixels = np.concatenate([np.asarray(Image.open(f).convert("RGB")).reshape(-1, 3) for f in files])
    colours, counts = np.unique(pixels.astype(np.int64), axis=0, return_counts=True)
    return colours, counts


def order_along_curve(colours: np.ndarray) -> list[int]:
    """Indices of ``colours`` ordered from the darkest colour along the curve they lie on."""
    distances = cdist(colours, colours)
    tree = minimum_spanning_tree(distances).toarray()
    tree = (tree + tree.T) > 0
    start = int(np.argmin(colours.sum(axis=1)))
    hops, previous = shortest_path(tree, directed=False, unweighted=True, return_predecessors=True,
                                   indices=start)
    end = int(np.argmax(np.where(np.isfinite(hops), hops, -1)))
    path = [end]
    while path[-1] != start:
        path.append(int(previous[path[-1]]))
    path.reverse()
    for extra in (i for i in range(len(colours)) if i not in set(path)):
        # cheapest insertion: between neighbours a, b where d(a, x) + d(x, b) - d(a, b) is least
        costs = [distances[path[i], extra] + distances[extra, path[i + 1]] - distances[path[i], path[i + 1]]
                 for i in range(len(path) - 1)]
        tail = distances[path[-1], extra]
        best = int(np.argmin(costs))
        if tail < costs[best]:
            path.append(extra)
        else:
            path.insert(best + 1, extra)
    return path


def lookup_table(colours: np.ndarray, order: list[int], entries: int = ENTRIES) -> np.ndarray:
    """``entries`` x 3 uint8: the ordered colours resampled evenly by rank."""
    ordered = colours[order].astype(np.float64)
    rank = np.linspace(0.0, 1.0, len(ordered))
    x = np.linspace(0.0, 1.0, entries)
    table = np.stack([np.interp(x, rank, ordered[:, c]) for c in range(3)], axis=1)
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


def as_python(name: str, table: np.ndarray, per_line: int = 16) -> str:
    hex_colours = ["".join(f"{v:02x}" for v in rgb) for rgb in table]
    lines = ["".join(hex_colours[i:i + per_line]) for i in range(0, len(hex_colours), per_line)]
    body = "\n".join(f'    "{line}"' for line in lines)
    return f"{name} = (\n{body}\n)\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder with MRI_PET/PET and MRI_SPECT/SPECT PNGs")
    args = parser.parse_args(argv)
    for key, sub in SOURCES.items():
        colours, counts = distinct_colours(args.data_dir / sub)
        order = order_along_curve(colours)
        table = lookup_table(colours, order)
        luma = table @ np.array([0.299, 0.587, 0.114])
        # every atlas colour should be (nearly) an entry of the table
        misfit = cdist(colours, table.astype(np.float64)).min(axis=1)
        print(f"# {key}: {len(colours)} distinct colours in {sub}; darkest {colours[order[0]].tolist()} "
              f"({int(counts[order[0]])} pixels), hottest {colours[order[-1]].tolist()}; "
              f"table luma {luma.min():.1f}..{luma.max():.1f}; atlas colour to nearest entry: "
              f"max {misfit.max():.2f}, mean {misfit.mean():.2f} (0..255 units)")
        print(as_python(f"_{key.upper()}_HEX", table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
