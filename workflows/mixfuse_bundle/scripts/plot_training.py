"""Loss curve of a training run (its loss_terms.jsonl), for the bundle docs.

    python workflows/mixfuse_bundle/scripts/plot_training.py RUN_DIR/loss_terms.jsonl OUT.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--smooth", type=int, default=8, help="moving average over this many log records")
    args = parser.parse_args()
    records = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    iterations = np.array([r["iteration"] for r in records])
    hours = np.array([r["seconds"] for r in records]) / 3600
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("total", "gradient", "intensity", "ssim"):
        values = smooth(np.array([r["loss"][name] for r in records]), args.smooth)
        axes[0].plot(iterations[len(iterations) - len(values):], values, label=name)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("weighted loss term")
    axes[0].set_title("training loss (moving average)")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    lr = [r.get("lr", np.nan) for r in records]
    axes[1].plot(iterations, lr)
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("learning rate")
    top = axes[1].secondary_xaxis("top", functions=(
        lambda it: np.interp(it, iterations, hours), lambda h: np.interp(h, hours, iterations)))
    top.set_xlabel("wall time (hours, 2 CPU cores)")
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
