"""Spec section 1: Y/Cb/Cr conversions and fusing through the luma."""

import numpy as np
import torch

from mixfuse_med.color import fuse_colour, rgb_to_luma, rgb_to_ycbcr, ycbcr_to_rgb, ycbcr_to_rgb_in_gamut


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

    np.testing.assert_allclose(fused, apply_colormap(scalar, "spect"), atol=3e-3)


def test_bright_luma_under_a_saturated_colour_loses_saturation_not_luma():
    # white-matter-bright MRI luma under the PET map's saturated red and magenta
    red, magenta = [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]
    chroma = rgb_to_ycbcr(np.array([red, magenta, red, magenta]))[:, 1:]
    luma = np.array([0.85, 0.85, 0.5, 0.95])
    ycbcr = np.concatenate([luma[:, None], chroma], axis=1)
    rgb = ycbcr_to_rgb_in_gamut(ycbcr)
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    np.testing.assert_allclose(rgb_to_luma(rgb), luma, atol=1e-3)  # the fused luma survives
    clipped = ycbcr_to_rgb(ycbcr)
    assert np.abs(rgb_to_luma(clipped) - luma).max() > 0.1  # channel clipping would have lost it
    back = rgb_to_ycbcr(rgb)[:, 1:] - 0.5
    offsets = chroma - 0.5
    scale = back / offsets  # same hue: chroma shrunk by one factor per pixel
    np.testing.assert_allclose(scale[:, 0], scale[:, 1], atol=2e-2)
    assert np.all((scale > 0.0) & (scale < 1.0))
    assert np.all(rgb.max(axis=1) > 1.0 - 1e-6)  # as saturated as the gamut allows


def test_in_gamut_reconstruction_leaves_reachable_colours_alone():
    rng = np.random.default_rng(2)
    rgb = 0.25 + 0.5 * rng.random((1000, 3))
    ycbcr = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ycbcr_to_rgb_in_gamut(ycbcr), ycbcr_to_rgb(ycbcr), atol=1e-6)
    extreme = np.concatenate([rng.random((1000, 1)), rng.random((1000, 2))], axis=1)
    torch.testing.assert_close(ycbcr_to_rgb_in_gamut(torch.as_tensor(extreme)),
                               torch.as_tensor(ycbcr_to_rgb_in_gamut(extreme)), atol=1e-6, rtol=0)
