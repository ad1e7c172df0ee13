"""Does napari stay responsive while the fusion widget works?  Event-loop gaps during a run.

A 20 ms QTimer ticks in the GUI thread while the *MixFuse fusion* widget
fuses the synthetic sample in its worker thread; the gaps between ticks show
how long the GUI could not react (registration, resampling, network, and
adding the result layers at the end, which happens in the GUI thread).

    xvfb-run -a python benchmarks/bench_napari_responsiveness.py [--downsample 1] [--weights PATH | --tiny]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=["PET", "SPECT"], default="PET")
    parser.add_argument("--downsample", type=int, default=2, help="sample voxel size factor (default 2)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", type=Path, help="checkpoint of the default MixFuse configuration")
    group.add_argument("--tiny", action="store_true", help="a small random MixFuse (measures the plumbing)")
    args = parser.parse_args(argv)

    import napari
    import torch
    from napari.layers import Layer
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from mixfuse_med.networks import MixFuse
    from napari_plugin._sample_data import sample_layers
    from napari_plugin._widget import FusionWidget

    factory = None
    if args.tiny:
        torch.manual_seed(0)
        tiny = MixFuse(embed_dim=8, iterations=1, cross_depth=2, self_depth=2, num_heads=2,
                       window_size=4).eval()
        factory = lambda device: tiny  # noqa: E731
    viewer = napari.Viewer(show=True)
    for data in sample_layers(args.modality, downsample=args.downsample):
        viewer.add_layer(Layer.create(*data))
    widget = FusionWidget(viewer, model_factory=factory)
    if args.weights is not None:
        widget.weights.value = args.weights
    viewer.window.add_dock_widget(widget)
    app = QApplication.instance()
    ticks: list[tuple[float, str]] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append((time.perf_counter(), widget.status.value)))
    timer.start()
    start = time.perf_counter()
    if widget.fuse() is None:
        return 2
    while widget.busy:
        app.processEvents()
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    timer.stop()
    viewer.close()
    if widget.study is None:
        print("fusion failed", file=sys.stderr)
        return 1
    times = np.array([t for t, _ in ticks])
    gaps = np.diff(times) * 1000
    worst = int(np.argmax(gaps))
    shape = tuple(widget.study.mri.shape[1:])
    print(f"{args.modality} sample, MRI {shape}, fused in {seconds:.1f} s; timer 20 ms: "
          f"gap median {np.median(gaps):.0f} ms, p99 {np.percentile(gaps, 99):.0f} ms, "
          f"max {gaps.max():.0f} ms (from '{ticks[worst][1]}' to '{ticks[worst + 1][1]}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
