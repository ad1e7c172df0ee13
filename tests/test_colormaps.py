"""Colour maps: the stored atlas tables, their application, and the derivation method itself."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixfuse_med.colormaps import COLORMAPS, apply_colormap

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    path = ROOT / "scripts" / "derive_colormaps.py"
    spec = importlib.util.spec_from_file_location("derive_colormaps", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tables_are_256_colours_from_black():
    assert set(COLORMAPS) >= {"pet", "spect", "hot", "gray"}
    for name, table in COLORMAPS.items():
        assert table.shape == (256, 3) and table.dtype == np.float32, name
        assert np.all(table[0] == 0) and 0 <= table.min() and table.max() <= 1
        steps = np.linalg.norm(np.diff(table, axis=0), axis=1)
        assert steps.max() < 0.08, name  # one continuous curve, no jumps


def test_atlas_maps_have_their_known_character():
    pet, spect = COLORMAPS["pet"] * 255, COLORMAPS["spect"] * 255
    # PET: black, then blue rises first; yellow in the upper middle; magenta at the top
    assert pet[40, 2] > pet[40, 0] + 100
    assert np.all(pet[128, :2] > 240) and pet[128, 2] < 20
    np.testing.assert_allclose(pet[-1], [255, 0, 255], atol=1)
    # SPECT: grey-green, purple, orange, then near white
    assert spect[60, 2] > spect[60, 0] and spect[90, 1] < 10
    assert spect[200, 0] > 240 and spect[200, 1] > 100 and spect[200, 2] < 60
    assert spect[-1].min() > 220


def test_apply_colormap_interpolates_and_clips():
    x = np.array([-0.5, 0.0, 1.0, 2.0, 0.5 / 255])
    rgb = apply_colormap(x, "gray")
    np.testing.assert_allclose(rgb[:, 0], [0, 0, 1, 1, 0.5 / 255], atol=1e-6)
    table = COLORMAPS["pet"]
    np.testing.assert_allclose(apply_colormap(np.array([100 / 255]), "pet")[0], table[100], atol=1e-6)
    halfway = apply_colormap(np.array([100.5 / 255]), "pet")[0]
    np.testing.assert_allclose(halfway, (table[100] + table[101]) / 2, atol=1e-6)


def test_numpy_and_torch_agree():
    x = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    for name in COLORMAPS:
        out = apply_colormap(torch.from_numpy(x), name)
        assert isinstance(out, torch.Tensor) and out.shape == (4, 5, 6, 3)
        np.testing.assert_allclose(out.numpy(), apply_colormap(x, name), atol=1e-6)


def test_hot_is_black_red_yellow_white():
    hot = COLORMAPS["hot"]
    assert hot[60, 0] > 0.5 and hot[60, 1] == 0
    np.testing.assert_allclose(hot[-1], [1, 1, 1])


def test_unknown_map():
    with pytest.raises(ValueError, match="unknown colour map"):
        apply_colormap(np.zeros(3), "viridis")


def test_derivation_recovers_a_table_from_rendered_images(tmp_path):
    """Render smooth blobs through a known 100-entry map, as the atlas did; the script must recover it."""
    script = load_script()
    x = np.linspace(0, 1, 100)
    truth = np.clip(np.stack([np.sin(np.pi * x) * 0.9, x, 1 - x * 0.7], axis=1) * 255, 0, 255).round()
    truth[0] = 0
    folder = tmp_path / "MRI_PET" / "PET"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for i in range(6):
        cy, cx = rng.uniform(16, 48, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(6, 12) ** 2))
        index = np.clip(np.rint(blob * 99), 0, 99).astype(int)
        Image.fromarray(truth[index].astype(np.uint8)).save(folder / f"{i}.png")
    colours, _ = script.distinct_colours(folder)
    order = script.order_along_curve(colours)
    table = script.lookup_table(colours, order, entries=len(colours))
    assert len(colours) > 80  # most of the map shows up in the images
    # ordered from black to the hot end, every used colour in the right order
    assert np.all(table[0] == 0) and np.allclose(table[-1], truth[-1])
    expected = np.array([c for c in truth if any(np.all(c == colours, axis=1))])
    np.testing.assert_array_equal(table, expected.astype(np.uint8))
