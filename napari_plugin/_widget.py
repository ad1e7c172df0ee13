"""The fusion dock widget: pick the MRI and the PET/SPECT layer, set options, Fuse, look, export.

Everything runs through ``mixfuse_med``: layers become MetaTensors
(:func:`layer_to_volume`), ``mixfuse_med.pipeline.fuse_volumes`` registers,
resamples, normalises, colours and fuses them in a napari worker thread (the
GUI stays live; Cancel stops at the next progress report), the
``FusedStudy`` comes back as layers, and ``mixfuse_med.export.export_study``
writes NIfTI and DICOM.

Weights: by default the shipped ones (``mixfuse_med.inference.load_pretrained``);
the *weights* field takes another checkpoint of the default configuration,
and ``model_factory`` (Python only: a callable ``device -> MixFuse``) any
model, e.g. a small one for tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    RadioButtons,
)
from napari.layers import Image, Layer
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Signal

from mixfuse_med.colormaps import COLORMAPS
from mixfuse_med.export import export_study
from mixfuse_med.pipeline import FUNCTIONAL_MODALITIES, FusionOptions, functional_modality, fuse_volumes
from mixfuse_med.study import FusedStudy

from ._choices import LayerChoiceError, check_layers, guess_layers
from ._colourbar import ColourBar
from ._display import study_layer_data, units_label
from ._layers import layer_to_volume
from ._progress import FusionCancelled, StageProgress

ModelFactory = Callable[[str], torch.nn.Module]
SHOW_CHOICES = ("fused colour", "fused luma", "PET/SPECT over MRI")
_SHOWN_ROLE = {"fused colour": "fused_rgb", "fused luma": "fused_luma", "PET/SPECT over MRI": "registered"}


def device_choices() -> list[str]:
    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        choices.append("mps")
    return choices


def registration_summary(registration: dict | None) -> str:
    """MI before and after, and the movement found, in one line."""
    if not registration:
        return "Registration: off (the scanners' world coordinates are trusted)"
    from mixfuse_med.transforms import transform_from_meta

    transform = transform_from_meta(registration)
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
    angle = np.degrees(np.arccos(np.clip((np.trace(matrix) - 1.0) / 2.0, -1.0, 1.0)))
    shift = float(np.linalg.norm(transform.GetTranslation()))
    return (f"Registration MI {registration['mi_before']:.3f} \u2192 {registration['mi_after']:.3f} "
            f"(rotation {angle:.1f}\u00b0, shift {shift:.1f} mm)")


def run_fusion(mri, functional, *, modality: str, options: FusionOptions, model_factory: ModelFactory | None,
               progress: StageProgress) -> FusedStudy:
    """The worker thread's job: make the model (if asked) and fuse."""
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    progress("load", 0.0)  # a cancel before any work is honoured here
    model = model_factory(device) if model_factory is not None else None
    return fuse_volumes(mri, functional, modality=modality, model=model, progress=progress, options=options)


def _heading(text: str) -> Label:
    return Label(value=f"<b>{text}</b>")


def _group(*widgets, layout: str = "vertical") -> Container:
    group = Container(widgets=widgets, layout=layout, labels=layout == "vertical")
    group.margins = (0, 0, 0, 0)
    return group


def _compact(container: FusionWidget) -> None:
    """Let the dock stay narrow: long layer names elide instead of widening the widget; text wraps."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QComboBox, QSizePolicy

    for combo in container.native.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
    for label in (container.status, container.quality):
        label.native.setWordWrap(True)
        label.native.setAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        label.native.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
    container.native.setMinimumWidth(300)


class _RunState:
    """Cancel flag and dock state, shared with the worker thread and Qt callbacks (not the widget)."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.closed = False

    def docked(self, docked: bool) -> None:
        """Closing the dock (napari unparents the widget) cancels a run; late signals then change nothing."""
        self.closed = not docked
        if self.closed:
            self.cancel.set()


class _DockWatcher(QObject):
    """Tells the widget when napari docks it (a parent) or closes its dock (no parent)."""

    def __init__(self, callback: Callable[[bool], None]) -> None:
        super().__init__()
        self._callback = callback

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.ParentChange:
            self._callback(watched.parent() is not None)
        return False


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (a queued Qt signal)."""

    progressed = Signal(str, float)


class FusionWidget(Container):
    """Dock widget fusing an MRI layer with a PET or SPECT layer (MixFuse), then showing and exporting it."""

    def __init__(self, napari_viewer, *, model_factory: ModelFactory | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.model_factory = model_factory
        self.study: FusedStudy | None = None
        self.result_layers: list[Layer] = []
        self.exported: dict[str, Path] = {}
        self._worker = None
        self._pbar = None
        self._run = _RunState()
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        self._watcher = _DockWatcher(self._run.docked)
        self.native.installEventFilter(self._watcher)
        self.native.destroyed.connect(lambda *_, run=self._run: run.docked(False))

        self.mri_layer = ComboBox(label="MRI", choices=self._image_layers, nullable=True)
        self.functional_layer = ComboBox(label="PET / SPECT", choices=self._image_layers, nullable=True)
        self.modality = ComboBox(label="modality", choices=["auto", "PET", "SPECT"], value="auto",
                                 tooltip="auto: from the layer's DICOM modality (or NIfTI file name)")
        self.register = CheckBox(text="register (rigid, mutual information)", value=True)
        self.colormap = ComboBox(label="colour map", choices=["auto", *sorted(COLORMAPS)], value="auto",
                                 tooltip="auto: the atlas-like map of the modality, as in training")
        self.scaling = ComboBox(label="scaling", value="auto", choices=["auto", "suv", "percentile"],
                                tooltip="auto: the SUV window for PET in SUV, else 0 to the upper percentile")
        self.suv_low = FloatSpinBox(label="SUV window low", value=0.0, min=0.0, max=100.0, step=0.5)
        self.suv_high = FloatSpinBox(label="SUV window high", value=8.0, min=0.1, max=100.0, step=0.5)
        self.percentile = FloatSpinBox(label="upper percentile", value=99.5, min=50.0, max=100.0, step=0.1)
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        self.weights = FileEdit(label="weights", mode="r", filter="*.pt *.pth", value="",
                                tooltip="empty: the shipped MixFuse weights")
        self.fuse_button = PushButton(text="Fuse")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(label="progress", min=0, max=100, value=0)
        self.status = Label(value="")
        self.quality = Label(value="")
        self.show_choice = RadioButtons(label="show", choices=list(SHOW_CHOICES), value=SHOW_CHOICES[0],
                                        orientation="vertical", enabled=False)
        self.opacity = FloatSlider(label="opacity", min=0.0, max=1.0, step=0.05, value=1.0, enabled=False)
        self.export_dir = FileEdit(label="export to", mode="d", value="")
        self.export_nifti = CheckBox(text="NIfTI", value=True)
        self.export_dicom = CheckBox(text="DICOM", value=True)
        self.overwrite = CheckBox(text="overwrite", value=False)
        self.export_button = PushButton(text="Export", enabled=False)

        self.colourbar = ColourBar()
        colourbar = Container(labels=False)
        colourbar.native.layout().addWidget(self.colourbar)
        self.extend([
            _heading("Scans"),
            _group(self.mri_layer, self.functional_layer, self.modality),
            _heading("Options"),
            _group(self.register, self.colormap, self.scaling, self.suv_low, self.suv_high, self.percentile,
                   self.device, self.weights),
            _group(self.fuse_button, self.cancel_button, layout="horizontal"),
            _group(self.progress_bar),
            self.status,
            _heading("Result"),
            self.quality, colourbar,
            _group(self.show_choice, self.opacity),
            _heading("Export"),
            _group(self.export_dir),
            _group(self.export_nifti, self.export_dicom, self.overwrite, layout="horizontal"),
            self.export_button,
        ])
        _compact(self)

        self.fuse_button.changed.connect(self.fuse)
        self.cancel_button.changed.connect(self.cancel)
        self.export_button.changed.connect(self.export)
        self.show_choice.changed.connect(self._show)
        self.opacity.changed.connect(self._set_opacity)
        self.reset_choices()

    # layer choices ------------------------------------------------------------------------------

    def _image_layers(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def reset_choices(self, *_) -> None:
        """Refresh the layer lists (napari calls this when layers change); guess MRI and PET/SPECT."""
        super().reset_choices()
        mri, functional = guess_layers(layer for _, layer in self._image_layers())
        if self.mri_layer.value is None and mri is not None:
            self.mri_layer.value = mri
        if self.functional_layer.value is None and functional is not None:
            self.functional_layer.value = functional

    # fusing -------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def options(self) -> FusionOptions:
        """The fusion options as chosen in the widget."""
        if self.suv_high.value <= self.suv_low.value:
            raise ValueError(f"SUV window: the high end ({self.suv_high.value:g}) must be above the low end "
                             f"({self.suv_low.value:g})")
        return FusionOptions(
            register=bool(self.register.value),
            colormap=None if self.colormap.value == "auto" else self.colormap.value,
            functional_scaling=self.scaling.value,
            suv_window=(float(self.suv_low.value), float(self.suv_high.value)),
            functional_upper_percentile=float(self.percentile.value),
            device=None if self.device.value == "auto" else self.device.value)

    def _factory(self) -> ModelFactory | None:
        if self.model_factory is not None:
            return self.model_factory
        weights = self.weights.value
        if weights is None or str(weights) in ("", "."):
            return None  # fuse_volumes loads the shipped weights (cached)
        from mixfuse_med.inference import load_pretrained

        return lambda device: load_pretrained(device, weights=Path(weights))

    def fuse(self, *_):
        """Check the choices and start fusing in a worker thread; returns the worker (None if refused)."""
        if self.busy:
            show_warning("MixFuse is already running: wait, or press Cancel")
            return None
        try:
            warnings = check_layers(self.mri_layer.value, self.functional_layer.value)
            mri = layer_to_volume(self.mri_layer.value)
            functional = layer_to_volume(self.functional_layer.value)
            chosen = None if self.modality.value == "auto" else self.modality.value
            found = str(functional.meta.get("modality", "") or "").upper()
            if chosen is None and found not in FUNCTIONAL_MODALITIES:
                name = self.functional_layer.value.name
                raise LayerChoiceError(f"{name!r} does not say whether it is PET or SPECT (modality "
                                       f"{found or 'unknown'}): choose the modality")
            modality = functional_modality(chosen, functional)
            options = self.options()
            units = str(functional.meta.get("units", "") or "")
            if options.functional_scaling == "suv" and units.upper() != "SUVBW":
                raise ValueError(f"SUV window chosen, but {self.functional_layer.value.name!r} is in "
                                 f"{units or 'unknown units'}, not SUV: choose percentile scaling")
        except (LayerChoiceError, ValueError) as error:
            show_error(str(error))
            return None
        for warning in warnings:
            show_warning(warning)

        self._run.cancel.clear()
        stages = StageProgress(options.register, self._relay.progressed.emit, self._cancelled)
        worker = create_worker(run_fusion, mri, functional, modality=modality, options=options,
                               model_factory=self._factory(), progress=stages,
                               _ignore_errors=True, _start_thread=False)
        worker.returned.connect(self._on_fused)
        worker.errored.connect(self._on_fusion_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True, f"Fusing {modality} with MRI")
        worker.start()
        return worker

    def _cancelled(self) -> bool:
        worker = self._worker
        return self._run.cancel.is_set() or bool(worker is not None and worker.abort_requested)

    def cancel(self, *_) -> None:
        """Stop the running fusion at its next progress report; nothing is added."""
        if self._worker is not None:
            self._run.cancel.set()
            self.status.value = "Cancelling\u2026"
            self._worker.quit()

    def _set_running(self, running: bool, text: str = "") -> None:
        self.fuse_button.enabled = not running
        self.export_button.enabled = not running and self.study is not None
        self.cancel_button.enabled = running
        self.status.value = text
        if running:
            self.progress_bar.value = 0
            self._pbar = progress(total=100, desc=text)
        elif self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _on_progress(self, stage: str, fraction: float) -> None:
        if self._run.closed:
            return
        value = int(round(100 * fraction))
        self.progress_bar.value = value
        if not self._run.cancel.is_set():
            self.status.value = f"{stage}\u2026"
        pbar = self._pbar  # napari's bar may close while it redraws (the run can end meanwhile)
        if pbar is not None and not self._run.cancel.is_set():
            if pbar.desc != f"MixFuse: {stage}":
                pbar.set_description(f"MixFuse: {stage}")
            pbar.update(max(0, value - pbar.n))

    def _on_fusion_error(self, error: Exception) -> None:
        if isinstance(error, FusionCancelled):
            show_info("MixFuse: fusion cancelled, no layers added")
        else:
            show_error(f"MixFuse: fusion failed: {error}")

    def _on_finished(self) -> None:
        self._worker = None
        if self._run.closed:
            if self._pbar is not None:
                self._pbar.close()
            return
        cancelled = self._run.cancel.is_set()
        self._set_running(False, "Cancelled" if cancelled else self.status.value)
        if not cancelled and self.study is not None:
            self.progress_bar.value = 100

    def _on_fused(self, study: FusedStudy) -> None:
        if self._run.closed or self._run.cancel.is_set():
            return
        for layer in self.result_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.study = study
        self.result_layers = [self.viewer.add_layer(Layer.create(*data)) for data in study_layer_data(study)]
        registered = self._result("registered")
        registered.colorbar.visible = True
        if self.functional_layer.value is not None:
            self.functional_layer.value.visible = False  # on its own grid; the registered copy replaces it
        method = str(study.notes.get("functional_scaling", ""))
        self.colourbar.set_map(study.colormap, study.window, units_label(study), method)
        self.quality.value = registration_summary(study.registration)
        self.show_choice.enabled = self.opacity.enabled = True
        self.show_choice.value = SHOW_CHOICES[0]
        self._show(SHOW_CHOICES[0])
        self.status.value = f"Fused {study.modality} ({study.colormap}, {method})"

    # looking at the result ----------------------------------------------------------------------

    def _result(self, role: str) -> Layer | None:
        from ._layers import ROLE_KEY

        return next((layer for layer in self.result_layers
                     if layer.metadata.get(ROLE_KEY) == role and layer in self.viewer.layers), None)

    def _show(self, choice: str) -> None:
        shown = _SHOWN_ROLE[choice]
        for role in _SHOWN_ROLE.values():
            layer = self._result(role)
            if layer is not None:
                layer.visible = role == shown
        if shown == "registered" and self.mri_layer.value is not None:
            self.mri_layer.value.visible = True
        layer = self._result(shown)
        if layer is not None:
            self.opacity.value = layer.opacity

    def _set_opacity(self, value: float) -> None:
        layer = self._result(_SHOWN_ROLE[self.show_choice.value])
        if layer is not None:
            layer.opacity = float(value)

    # export -------------------------------------------------------------------------------------

    def export(self, *_):
        """Write the fused study (NIfTI and/or DICOM) in a worker thread; returns the worker."""
        if self.study is None:
            show_error("Nothing to export yet: fuse an MRI with a PET/SPECT layer first")
            return None
        folder = self.export_dir.value
        if folder is None or str(folder) in ("", "."):
            show_error("Choose a folder to export to")
            return None
        formats = [name for name, box in (("nifti", self.export_nifti), ("dicom", self.export_dicom))
                   if box.value]
        if not formats:
            show_error("Choose NIfTI, DICOM or both")
            return None
        worker = create_worker(export_study, self.study, Path(folder), formats=formats,
                               overwrite=bool(self.overwrite.value), _ignore_errors=True, _start_thread=False)
        worker.returned.connect(self._on_exported)
        worker.errored.connect(lambda error: show_error(f"MixFuse: export failed: {error}"))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._run.cancel.clear()
        self._set_running(True, f"Exporting to {folder}")
        self.cancel_button.enabled = False  # files are published one by one, each whole: let it finish
        worker.start()
        return worker

    def _on_exported(self, paths: dict) -> None:
        if self._run.closed:
            return
        self.exported = paths
        folder = Path(self.export_dir.value)
        self.status.value = f"Exported {len(paths)} outputs to {folder.name}"
        show_info(f"MixFuse: wrote {', '.join(sorted(Path(p).name for p in paths.values()))} to {folder}")
