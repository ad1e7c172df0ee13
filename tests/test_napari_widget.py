"""The plugin in a real napari viewer; run under Xvfb: ``xvfb-run -a python -m pytest tests/test_napari_*``.

Opening files through napari's own reader machinery, the sample menu entry,
the fusion widget end to end on the synthetic study (a small MixFuse passed
through the widget's ``model_factory`` for speed), cancelling, the messages
for bad choices, and exports that read back with the MRI's geometry.
"""

import os
import sys
import threading

import nibabel as nib
import numpy as np
import pytest
import torch
from napari.layers import Image, Layer
from napari.utils.notifications import NotificationSeverity, notification_manager

from mixfuse_med.io import load_volume
from mixfuse_med.networks import MixFuse
from mixfuse_med.synthetic import make_synthetic_study
from napari_plugin._layers import ROLE_KEY, layer_to_volume, world_from_ras
from napari_plugin._sample_data import sample_layers
from napari_plugin._widget import FusionWidget

TINY = dict(embed_dim=8, iterations=1, cross_depth=2, self_depth=2, num_heads=2, window_size=4)


def _display_available() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "") == "offscreen":
        return True
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not _display_available(),
                       reason="napari needs a display: run under `xvfb-run -a python -m pytest`"),
    pytest.mark.filterwarnings("ignore:System theme detection requires a Qt6 backend:UserWarning"),
]


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return MixFuse(**TINY).eval()


@pytest.fixture(scope="module")
def pet_study(tmp_path_factory):
    return make_synthetic_study(tmp_path_factory.mktemp("pet"), "PET", seed=5, downsample=4)


@pytest.fixture(scope="module")
def sample_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("samples")


@pytest.fixture
def notifications():
    """Messages napari shows (error, warning, info) while the test runs."""
    seen = []

    def record(notification):
        seen.append((notification.severity, str(notification.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def errors(seen) -> list[str]:
    return [message for severity, message in seen if severity == NotificationSeverity.ERROR]


def add(viewer, data_tuples) -> list[Layer]:
    return [viewer.add_layer(Layer.create(*t)) for t in data_tuples]


def docked_widget(viewer, **kwargs) -> FusionWidget:
    widget = FusionWidget(viewer, **kwargs)
    viewer.window.add_dock_widget(widget, name="MixFuse fusion", area="right")
    return widget


def wait_until_idle(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


# Reading through napari ------------------------------------------------------------------------------


def test_napari_opens_nifti_and_dicom_folders_with_this_plugin(make_napari_viewer, pet_study):
    viewer = make_napari_viewer()
    [mri_nifti] = viewer.open(str(pet_study.mri_nifti), plugin="mixfuse-med")
    mri_dicom, pet = viewer.open(str(pet_study.mri_dicom.parent), plugin="mixfuse-med")
    assert [layer.metadata["modality"] for layer in (mri_nifti, mri_dicom, pet)] == ["MR", "MR", "PT"]
    assert pet.metadata["units"] == "SUVbw" and pet.name.endswith("[SUVbw]")
    image = nib.load(pet_study.mri_nifti)
    source = np.asarray(image.dataobj, dtype=np.float32)
    for index in [(0, 0, 0), (10, 20, 30), tuple(s - 1 for s in source.shape)]:
        world = world_from_ras(image.affine[:3, :3] @ index + image.affine[:3, 3])
        for layer in (mri_nifti, mri_dicom):  # the NIfTI and the DICOM MRI share the world
            display = np.round(layer.world_to_data(world)).astype(int)
            assert layer.data[tuple(display)] == pytest.approx(source[index], rel=1e-5)
    # the viewer's world is shared: the PET sits where its own geometry says
    volume = load_volume(pet_study.functional_dicom)
    affine = np.asarray(volume.affine)
    np.testing.assert_allclose(pet.data_to_world(np.round(pet.world_to_data(
        world_from_ras(affine[:3, 3]))).astype(int)), world_from_ras(affine[:3, 3]), atol=1e-6)


def test_open_sample_menu_entry_gives_mri_and_pet(make_napari_viewer, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the sample study is written to the user cache
    viewer = make_napari_viewer()
    layers = viewer.open_sample("mixfuse-med", "pet")
    assert [layer.metadata["modality"] for layer in layers] == ["MR", "PT"]
    assert layers[1].metadata["units"] == "SUVbw" and layers[1].colormap.name == "mixfuse-pet"
    assert any(tmp_path.rglob("truth.json"))


# Fusing ----------------------------------------------------------------------------------------------


def test_widget_fuses_the_sample_study_and_shows_the_result(make_napari_viewer, qtbot, tiny_model,
                                                             sample_folder, notifications, tmp_path):
    viewer = make_napari_viewer()
    mri_layer, pet_layer = add(viewer, sample_layers("PET", downsample=4, folder=sample_folder))
    threads = []

    def factory(device):
        threads.append(threading.current_thread())
        return tiny_model

    widget = docked_widget(viewer, model_factory=factory)
    assert widget.mri_layer.value is mri_layer and widget.functional_layer.value is pet_layer  # guessed
    reports = []
    widget._relay.progressed.connect(lambda stage, fraction: reports.append((stage, fraction)))
    widget.fuse_button.native.click()
    assert widget.busy and not widget.fuse_button.enabled and widget.cancel_button.enabled
    wait_until_idle(qtbot, widget)

    assert errors(notifications) == []
    assert threads and threads[0] is not threading.main_thread()  # the work ran off the GUI thread
    assert [stage for stage, _ in reports][-1] == "fuse" and reports[-1][1] == pytest.approx(1.0)
    assert widget.progress_bar.value == 100
    study = widget.study
    registered, luma, rgb = widget.result_layers
    assert [layer.metadata[ROLE_KEY] for layer in widget.result_layers] == ["registered", "fused_luma",
                                                                           "fused_rgb"]
    assert all(layer in viewer.layers for layer in widget.result_layers)
    # every result sits on the MRI's grid, in the MRI's place
    for layer in widget.result_layers:
        np.testing.assert_allclose(layer.affine.affine_matrix, mri_layer.affine.affine_matrix, atol=1e-9)
        assert layer.data.shape[:3] == mri_layer.data.shape
    assert rgb.rgb and rgb.data.dtype == np.uint8 and rgb.visible and not luma.visible
    # the registered PET keeps SUV, shown through the overlay's colour map and window, with a colour bar
    assert registered.metadata["units"] == "SUVbw" and "[SUVbw]" in registered.name
    assert registered.colormap.name == "mixfuse-pet" and tuple(registered.contrast_limits) == study.window
    assert registered.colorbar.visible
    np.testing.assert_allclose(layer_to_volume(registered).numpy(), study.functional.numpy())
    assert widget.colourbar.ticks == ["0", "4", "8"] and widget.colourbar.caption.startswith("SUVbw")
    # registration quality, as the pipeline measured it
    reg = study.registration
    assert reg["mi_after"] > reg["mi_before"]
    assert f"MI {reg['mi_before']:.3f} \u2192 {reg['mi_after']:.3f}" in widget.quality.value
    assert not pet_layer.visible  # the unregistered input is hidden under the result

    # flipping between results and adjusting opacity
    widget.show_choice.value = "fused luma"
    assert luma.visible and not rgb.visible and not registered.visible
    widget.opacity.value = 0.4
    assert luma.opacity == pytest.approx(0.4)
    widget.show_choice.value = "PET/SPECT over MRI"
    assert registered.visible and mri_layer.visible and not luma.visible

    # fusing again replaces the previous result instead of piling layers up
    count = len(viewer.layers)
    widget.colormap.value = "hot"
    widget.fuse()
    wait_until_idle(qtbot, widget)
    assert len(viewer.layers) == count and widget.result_layers[0].colormap.name == "mixfuse-hot"


def test_export_writes_nifti_and_dicom_that_read_back_on_the_mri_grid(make_napari_viewer, qtbot, tiny_model,
                                                                      pet_study, notifications, tmp_path):
    viewer = make_napari_viewer()
    mri_layer, pet_layer = viewer.open(str(pet_study.mri_dicom.parent), plugin="mixfuse-med")
    widget = docked_widget(viewer, model_factory=lambda device: tiny_model)
    widget.register.value = False  # the grid, not the registration, is under test here
    widget.fuse()
    wait_until_idle(qtbot, widget)
    assert widget.export_button.enabled
    widget.export_dir.value = tmp_path / "out"
    widget.export_button.native.click()
    wait_until_idle(qtbot, widget)
    assert errors(notifications) == []
    paths = widget.exported
    mri = load_volume(pet_study.mri_dicom)
    for key in ("fused_luma_nifti", "functional_nifti"):
        back = load_volume(paths[key])
        np.testing.assert_allclose(np.asarray(back.affine), np.asarray(mri.affine), atol=1e-4)
        assert back.shape == mri.shape
    assert nib.load(paths["fused_rgb_nifti"]).shape == mri.shape[1:]
    pet_back = load_volume(paths["functional_dicom"])  # written in SUV already (Units GML)
    assert pet_back.meta["units"] == "SUVbw"
    np.testing.assert_allclose(np.asarray(pet_back.affine), np.asarray(mri.affine), atol=1e-3)
    assert pet_back.meta["patient"]["PatientID"] == pet_study.patient["PatientID"]
    np.testing.assert_allclose(pet_back[0].numpy(), widget.study.functional[0].numpy(), rtol=1e-3, atol=1e-2)
    # exporting again without "overwrite" is refused with the file named; nothing is half-written
    widget.export()
    wait_until_idle(qtbot, widget)
    assert any("already exists" in message for message in errors(notifications))

    # napari's own "save layer" goes through the plugin's NIfTI writer
    viewer.layers.selection = {widget.result_layers[2]}
    [saved] = viewer.layers.save(str(tmp_path / "overlay.nii.gz"), selected=True, plugin="mixfuse-med")
    image = nib.load(saved)
    np.testing.assert_allclose(image.affine, np.asarray(mri.affine), atol=1e-4)
    assert image.get_data_dtype().names == ("R", "G", "B")
    viewer.layers.selection = {widget.result_layers[0], widget.result_layers[1]}
    saved = viewer.layers.save(str(tmp_path / "layers"), selected=True, plugin="mixfuse-med")
    assert len(saved) == 2
    for path in saved:
        np.testing.assert_allclose(load_volume(path).affine, np.asarray(mri.affine), atol=1e-4)


def test_cancel_stops_the_run_and_adds_nothing(make_napari_viewer, qtbot, tiny_model, sample_folder,
                                               notifications):
    viewer = make_napari_viewer()
    add(viewer, sample_layers("PET", downsample=4, folder=sample_folder))
    release = threading.Event()

    def slow_factory(device):
        release.wait(timeout=60)  # the worker waits here until the test has pressed Cancel
        return tiny_model

    widget = docked_widget(viewer, model_factory=slow_factory)
    count = len(viewer.layers)
    widget.fuse_button.native.click()
    qtbot.wait(50)  # the GUI keeps handling events while the worker runs
    widget.cancel_button.native.click()
    release.set()
    wait_until_idle(qtbot, widget)
    assert len(viewer.layers) == count and widget.study is None
    assert widget.status.value == "Cancelled" and widget.fuse_button.enabled
    assert any("cancelled" in message for _, message in notifications)
    assert errors(notifications) == []


def test_a_weights_file_of_the_default_configuration_is_used(make_napari_viewer, tmp_path):
    model = MixFuse()
    torch.save(model.state_dict(), tmp_path / "mine.pt")
    widget = FusionWidget(make_napari_viewer())
    assert widget._factory() is None  # empty field: fuse_volumes loads the shipped weights
    widget.weights.value = tmp_path / "mine.pt"
    loaded = widget._factory()("cpu")
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)


def test_a_wrong_weights_file_is_reported_not_raised(make_napari_viewer, qtbot, tiny_model, sample_folder,
                                                     notifications, tmp_path):
    viewer = make_napari_viewer()
    add(viewer, sample_layers("PET", downsample=4, folder=sample_folder))
    torch.save(tiny_model.state_dict(), tmp_path / "tiny.pt")  # not the default configuration
    widget = docked_widget(viewer)
    widget.weights.value = tmp_path / "tiny.pt"
    widget.fuse()
    wait_until_idle(qtbot, widget)
    [message] = errors(notifications)
    assert "tiny.pt" in message and "not a checkpoint of the default MixFuse configuration" in message
    assert widget.study is None


# Bad choices -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case,expected", [
    ("same layer twice", "same layer"),
    ("2D layer", "is 2D"),
    ("no functional layer", "No PET or SPECT layer"),
    ("mismatched patient", "different patients"),
    ("fused RGB as input", "RGB image"),
    ("unknown modality", "does not say whether it is PET or SPECT"),
    ("SUV window for counts", "not SUV"),
])
def test_bad_choices_give_a_message_not_a_traceback(make_napari_viewer, sample_folder, notifications, case,
                                                    expected):
    viewer = make_napari_viewer()
    mri, pet = add(viewer, sample_layers("PET", downsample=4, folder=sample_folder))
    widget = docked_widget(viewer)
    if case == "same layer twice":
        widget.functional_layer.value = mri
    elif case == "2D layer":
        flat = viewer.add_image(pet.data[pet.data.shape[0] // 2], name="one slice",
                                metadata={"modality": "PT"})
        widget.reset_choices()
        widget.functional_layer.value = flat
    elif case == "no functional layer":
        viewer.layers.remove(pet)
        assert widget.functional_layer.value is None
    elif case == "mismatched patient":
        pet.metadata["patient"] = {**pet.metadata["patient"], "PatientID": "SOMEONE-ELSE"}
    elif case == "fused RGB as input":
        overlay = viewer.add_image(np.zeros((*mri.data.shape, 3), np.uint8), rgb=True, name="overlay")
        widget.reset_choices()
        widget.functional_layer.value = overlay
    elif case == "unknown modality":
        pet.metadata["modality"] = "OT"
    elif case == "SUV window for counts":
        pet.metadata["units"] = "CNTS"
        widget.scaling.value = "suv"
    count = len(viewer.layers)
    assert widget.fuse() is None and not widget.busy
    [message] = errors(notifications)
    assert expected in message
    assert len(viewer.layers) == count


def test_only_image_layers_are_offered(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_points(np.zeros((2, 3)), name="marks")
    image = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="scan")
    widget = docked_widget(viewer)
    assert [choice for choice in widget.mri_layer.choices if choice is not None] == [image]
    assert isinstance(widget.mri_layer.choices[-1], Image)


def test_closing_the_dock_cancels_the_run(make_napari_viewer, qtbot, tiny_model, sample_folder,
                                          notifications):
    viewer = make_napari_viewer()
    add(viewer, sample_layers("PET", downsample=4, folder=sample_folder))
    release = threading.Event()

    def slow_factory(device):
        release.wait(timeout=60)
        return tiny_model

    widget = docked_widget(viewer, model_factory=slow_factory)
    count = len(viewer.layers)
    worker = widget.fuse()
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    viewer.window.remove_dock_widget(widget.native)  # the user closes the dock mid-run
    release.set()
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)
    assert len(viewer.layers) == count and widget.study is None
    assert errors(notifications) == []
    assert any("cancelled" in message for _, message in notifications)
