"""Screenshots of the napari plugin for the README: a sample study fused, the widget docked beside it.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/napari_screenshots.py [--weights PATH]

Opens the synthetic MRI + PET and MRI + SPECT samples, docks the *MixFuse
fusion* widget through napari's plugin menu machinery, fuses with the shipped
weights (or ``--weights``, a checkpoint of the default configuration), shows
an axial slice through the lateral ventricles and saves the whole window as
``docs/napari_fused_pet.png`` and ``docs/napari_fused_spect.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parents[1] / "docs"
WINDOW = (1400, 900)


def _wait(widget, app, timeout_s: float = 3600.0) -> None:
    start = time.monotonic()
    while widget.busy:
        app.processEvents()
        time.sleep(0.02)
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("fusion did not finish")


def _save(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    picture = Image.fromarray(image[..., :3])
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True)
    return path


def screenshot(modality: str, out: Path, weights: Path | None, downsample: int) -> Path:
    import warnings

    import napari
    import napari._qt.qt_main_window as qt_main_window

    # napari's notices about the Qt5 backend would show as toasts over the image (napari's own test
    # fixture silences the first the same way)
    qt_main_window.SHOW_QT_WARNING = False
    warnings.filterwarnings("ignore", message="System theme detection requires a Qt6 backend")
    from napari.layers import Layer
    from qtpy.QtWidgets import QApplication

    from napari_plugin._sample_data import sample_layers

    viewer = napari.Viewer(show=True, title=f"mixfuse-med: MRI + {modality}")
    try:
        viewer.window.resize(*WINDOW)
        for data in sample_layers(modality, downsample=downsample):
            viewer.add_layer(Layer.create(*data))
        _, widget = viewer.window.add_plugin_dock_widget("mixfuse-med", "MixFuse fusion")
        if weights is not None:
            widget.weights.value = weights
        app = QApplication.instance()
        errors = []
        start = time.perf_counter()
        worker = widget.fuse()
        if worker is None:
            raise RuntimeError("the widget refused to fuse the sample (see the message above)")
        worker.errored.connect(errors.append)
        _wait(widget, app)
        if errors or widget.study is None:
            raise RuntimeError(f"fusion failed: {errors[0] if errors else 'no result'}")
        timings = {k: round(v, 1) for k, v in widget.study.notes["timings"].items()}
        print(f"{modality}: fused in {time.perf_counter() - start:.1f} s {timings}; {widget.quality.value}")

        mri = widget.mri_layer.value.data  # axis 0 runs inferior -> superior in the plugin's layers
        head = (mri > 0.2 * mri.max()).reshape(mri.shape[0], -1).sum(axis=1)
        rows = np.flatnonzero(head)
        # 60 % of the way up the head: the axial level of the lateral ventricles, where a reader
        # finds the anatomy at a glance (the widest section runs through the skull base)
        viewer.dims.set_current_step(0, int(rows[0] + 0.6 * (rows[-1] - rows[0])))
        viewer.reset_view()
        for _ in range(5):
            app.processEvents()
        shot = viewer.screenshot(canvas_only=False, flash=False)
        return _save(shot, out / f"napari_fused_{modality.lower()}.png")
    finally:
        viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None,
                        help="MixFuse checkpoint of the default configuration (default: the shipped weights)")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNG files (default: docs/)")
    parser.add_argument("--downsample", type=int, default=2, help="sample voxel size factor (default 2)")
    parser.add_argument("--modality", choices=["PET", "SPECT"], action="append",
                        help="which sample(s) to show (default both)")
    args = parser.parse_args(argv)
    if args.weights is None:
        from mixfuse_med.inference import DEFAULT_WEIGHTS

        if not DEFAULT_WEIGHTS.is_file():
            print(f"{DEFAULT_WEIGHTS}: shipped weights not found; pass --weights", file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for modality in args.modality or ["PET", "SPECT"]:
        path = screenshot(modality, args.out, args.weights, args.downsample)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
