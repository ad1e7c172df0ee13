"""FusionLoss against spec section 3, each term recomputed by hand with numpy and scikit-image.

L = 5 L_int + 10 L_grad + 4 L_ssim.  SSIM border convention: MONAI convolves
its 11x11 Gaussian (sigma 1.5, sampled, normalised) without padding, so its
mean runs over the (H - 10) x (W - 10) pixels whose window lies inside the
image.  scikit-image with ``gaussian_weights=True`` filters with the same
sampled 11-tap Gaussian (truncate 3.5) and crops (11 - 1) / 2 = 5 pixels per
side before the mean: the same pixels, with windows that never reach the
padding.  The same formula in float64 matches scikit-image to 1e-15; MONAI
computes in float32, which moves each SSIM by up to a few 1e-6 (measured),
hence the SSIM term's absolute tolerance of 2e-5.  A wrong border convention
(the full reflect-padded map) would move SSIM by about 5e-3 on these images.
"""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from mixfuse_med.losses import FusionLoss

SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(image: np.ndarray) -> np.ndarray:
    """|Sobel_x| + |Sobel_y|, unnormalised, the border replicated (as the implementation pads)."""
    padded = np.pad(image, 1, mode="edge")
    h, w = image.shape
    gx, gy = np.zeros_like(image), np.zeros_like(image)
    for i in range(3):
        for j in range(3):
            window = padded[i:i + h, j:j + w]
            gx += SOBEL_X[i, j] * window
            gy += SOBEL_X.T[i, j] * window
    return np.abs(gx) + np.abs(gy)


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    return structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0)


def images(seed: int, n: int = 2, shape=(24, 30)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources with some structure and a fused image related to both (so SSIM is far from 0 and 1)."""
    rng = np.random.default_rng(seed)
    a = np.clip(gaussian_filter(rng.random((n, *shape)), (0, 1.5, 1.5)) * 2 - 0.5, 0, 1)
    b = np.clip(gaussian_filter(rng.random((n, *shape)), (0, 2.5, 2.5)) * 3 - 1.0, 0, 1)
    fused = np.clip(0.6 * np.maximum(a, b) + 0.3 * a + 0.1 * rng.random((n, *shape)), 0, 1)
    return a, b, fused


@pytest.mark.parametrize("seed", [0, 1])
def test_fusion_loss_terms_equal_the_spec_computed_by_hand(seed):
    a, b, fused = images(seed)
    l_int = np.mean(np.abs(fused - np.maximum(a, b)))
    l_grad = np.mean([np.abs(sobel_magnitude(f) - np.maximum(sobel_magnitude(x), sobel_magnitude(y)))
                      for x, y, f in zip(a, b, fused, strict=True)])
    ssim_a = np.array([ssim(x, f) for x, f in zip(a, fused, strict=True)])
    ssim_b = np.array([ssim(y, f) for y, f in zip(b, fused, strict=True)])
    assert 0.1 < ssim_a.min() and ssim_b.max() < 0.9  # neither trivial nor identical images
    l_ssim = np.mean(0.5 * (1 - ssim_a) / 2 + 0.5 * (1 - ssim_b) / 2)  # batch mean, as for the other terms

    as_tensor = [torch.as_tensor(x[:, None], dtype=torch.float32) for x in (a, b, fused)]
    loss = FusionLoss()
    terms = loss.terms(*as_tensor)
    np.testing.assert_allclose(float(terms.intensity), 5 * l_int, rtol=1e-6)
    np.testing.assert_allclose(float(terms.gradient), 10 * l_grad, rtol=1e-6)
    np.testing.assert_allclose(float(terms.ssim), 4 * l_ssim, rtol=0, atol=2e-5)  # float32 SSIM
    total = 5 * l_int + 10 * l_grad + 4 * l_ssim
    np.testing.assert_allclose(float(terms.total), total, rtol=0, atol=2e-5)
    assert float(loss(*as_tensor)) == float(terms.total)

