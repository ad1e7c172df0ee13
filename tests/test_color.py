"""Spec section 1: Y/Cb/Cr conversions and fusing through the luma."""

import numpy as np
import torch

from mixfuse_med.color import fuse_colour, rgb_to_luma, rgb_to_ycbcr, ycbcr_to_rgb


def test_known_values():
    rgb = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5]])
    ycbcr = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycbcr[:, 0], [0.299, 0.587, 0.114, 0.5], atol=1e-7)
    # Cr = (R - Y) * 0.713 + 0.5 and Cb = (B - Y) * 0.564 + 0.5, clamped
    np.testing.assert_allclose(ycbcr[0, 2], (1 - 0.299) * 0.713 + 0.5, atol=1e-7)
    np.testing.assert_allclose(ycbcr[2, 1], min(1.0, (1 - 0.114) * 0.564 + 0.5), atol=1e-7)
    np.testing.assert_allclose(ycbcr[3], [0.5, 0.5, 0.5], atol=1e-7)


def test_round_trip_of_colours_inside_the_gamut():
    rng = np.random.default_rng(0)
    rgb = 0.25 + 0.5 * rng.random((1000, 3))  # chroma well inside [0, 1]: no clamping
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=3e-3)
    t = torch.as_tensor(rgb)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(t)), t, atol=3e-3, rtol=0)


def test_fusing_through_luma_keeps_the_chroma():
    rng = np.random.default_rng(1)
    mri, pet = 0.6 * rng.random((8, 8)), 0.4 + 0.2 * rng.random((8, 8, 3))  # no RGB clamping
    fused = fuse_colour(mri, pet, lambda a, y: np.maximum(a, y))
    assert fused.shape == (8, 8, 3)
    np.testing.assert_allclose(rgb_to_ycbcr(fused)[..., 1:], rgb_to_ycbcr(pet)[..., 1:], atol=2e-2)
    np.testing.assert_allclose(rgb_to_luma(fused), np.maximum(mri, rgb_to_luma(pet)), atol=2e-2)


def test_scalar_functional_goes_through_a_colour_map():
    scalar = np.linspace(0, 1, 64).reshape(8, 8)
    mri = np.zeros((8, 8))
    fused = fuse_colour(mri, scalar, lambda a, y: y, colormap="spect")
    from mixfuse_med.colormaps import apply_colormap

    np.testing.assert_allclose(fused, ycbcr_to_rgb(rgb_to_ycbcr(apply_colormap(scalar, "spect"))), atol=1e-6)
