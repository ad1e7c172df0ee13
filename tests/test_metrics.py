"""Known-answer tests for mixfuse_med.metrics.

Small images whose values are worked out by hand in the comments, identities
(SSIM(x, x) = 1, MI(x, x) = EN(x), ...), and cross-checks against independent
implementations (MONAI, scikit-image, scikit-learn, a per-patch MEF-SSIM loop).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixfuse_med import metrics as M

# Qabf pieces with the published constants, used by several tests:
#   Qg(G) = 0.9994 / (1 + exp(-15 (G - 0.5))),  Qa(A) = 0.9879 / (1 + exp(-22 (A - 0.8)))
#   Qg(1) = 0.9994 / (1 + e^-7.5) = 0.9994 / 1.000553 = 0.998848
#   Qg(.5) = 0.9994 / 2 = 0.4997
#   Qa(1) = 0.9879 / (1 + e^-4.4) = 0.9879 / 1.012277 = 0.975919
QG_1 = 0.9994 / (1 + math.exp(-7.5))
QG_HALF = 0.9994 / 2
QA_1 = 0.9879 / (1 + math.exp(-4.4))
Q_PERFECT = QG_1 * QA_1  # 0.974793


def smooth_image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    """A uint8 'anatomy': smooth blobs plus a little texture, 0..255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = 110 + 80 * np.sin(xx / 7.0 + seed) * np.cos(yy / 11.0) + rng.normal(0, 6, (h, w))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def hotspot_image(h: int = 64, w: int = 64) -> np.ndarray:
    """A uint8 'tracer uptake': one Gaussian hot spot."""
    yy, xx = np.mgrid[:h, :w]
    img = 230 * np.exp(-((xx - 0.6 * w) ** 2 + (yy - 0.4 * h) ** 2) / (0.05 * h * w))
    return np.rint(img).astype(np.uint8)


# ----------------------------------------------------------- conversion ----

def test_to_grey255_scales_float_and_keeps_uint8():
    x = np.array([[0, 51], [102, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(M.to_grey255(x), [[0.0, 51.0], [102.0, 255.0]])
    # float with max <= 1 is on [0, 1]: 0.2 -> 51
    np.testing.assert_allclose(M.to_grey255(x / 255.0), x, rtol=0, atol=1e-12)
    # float with max > 1 is already 0..255
    np.testing.assert_array_equal(M.to_grey255(x.astype(np.float32)), x)
    assert M.to_grey255(x).dtype == np.float64


def test_to_grey255_reduces_colour_with_luma_weights():
    rgb = np.zeros((1, 3, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)      # .299 * 255 = 76.245
    rgb[0, 1] = (0, 255, 0)      # .587 * 255 = 149.685
    rgb[0, 2] = (100, 100, 100)  # grey stays 100
    np.testing.assert_allclose(M.to_grey255(rgb), [[76.245, 149.685, 100.0]], rtol=0, atol=1e-9)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 2)), "shape"),
    (np.zeros(4), "shape"),
    (np.full((2, 2), np.nan), "NaN"),
    (np.array([[0.0, 300.0]]), "0..255"),
    (np.array([[-0.5, 0.5]]), "0..255"),
    (np.zeros((2, 2), dtype=bool), "dtype"),
])
def test_to_grey255_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        M.to_grey255(bad, "fused")


def test_mismatched_shapes_raise_naming_both_shapes():
    a, b, f = np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((5, 6))
    with pytest.raises(ValueError, match=r"\(5, 6\).*\(4, 4\)"):
        M.evaluate(a, b, f)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(3, 4, 3\)"):
        M.evaluate(a, np.zeros((3, 4, 3)), f)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        M.baseline_fusions(a, np.zeros((4, 5)))


# ----------------------------------------------------- single-image metrics ----

def test_entropy_of_uniform_histogram_is_8_bits():
    # every grey level 0..255 exactly once: p = 1/256 -> -256 * (1/256) log2(1/256) = 8
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert M.en(img) == pytest.approx(8.0, abs=1e-12)
    assert M.en(np.tile(img, (2, 3))) == pytest.approx(8.0, abs=1e-12)


def test_entropy_hand_computed():
    # levels 10 (8 px), 20 (4 px), 30 (2 px), 40 (2 px) of 16:
    # p = 1/2, 1/4, 1/8, 1/8 -> 1/2*1 + 1/4*2 + 2 * 1/8*3 = 1.75 bits
    img = np.array([10] * 8 + [20] * 4 + [30] * 2 + [40] * 2, dtype=np.uint8).reshape(4, 4)
    assert M.en(img) == pytest.approx(1.75, abs=1e-12)
    assert M.en(np.full((3, 3), 7, dtype=np.uint8)) == 0.0


def test_sd_hand_computed():
    # mean 5, every pixel 5 away -> population SD 5 (std2's N-1 form would give 5.77)
    assert M.sd(np.array([[0, 0], [10, 10]], dtype=np.uint8)) == pytest.approx(5.0)


RAMP = np.array([[1, 3, 6, 10],
                 [2, 4, 7, 11],
                 [4, 6, 9, 13],
                 [7, 9, 12, 16]], dtype=np.uint8)


def test_sf_hand_computed():
    # horizontal differences, every row: 2, 3, 4 -> squares 4 + 9 + 16 = 29 per row,
    #   4 rows over 12 differences: RF^2 = 116 / 12 = 29/3
    # vertical differences: 1, 2, 3 (each on 4 columns) -> 4 * (1 + 4 + 9) = 56 over 12: CF^2 = 14/3
    # SF = sqrt(29/3 + 14/3) = sqrt(43/3) = 3.78594
    assert M.sf(RAMP) == pytest.approx(math.sqrt(43 / 3), rel=1e-12)


def test_ag_hand_computed():
    # forward differences on the 3x3 top-left pixels: dx = 2, 3, 4 by column, dy = 1, 2, 3 by row;
    # (dx^2 + dy^2) / 2 on the 9 pixels:
    #   dy=1: 2.5, 5, 8.5     dy=2: 4, 6.5, 10     dy=3: 6.5, 9, 12.5
    terms = [2.5, 5, 8.5, 4, 6.5, 10, 6.5, 9, 12.5]
    expected = sum(math.sqrt(t) for t in terms) / 9  # 2.63858
    assert M.ag(RAMP) == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------- MI ----

def test_mi_of_identical_triple_is_twice_entropy():
    a = smooth_image()
    assert M.mi(a, a, a) == pytest.approx(2 * M.en(a), rel=1e-12)


def test_mi_hand_computed():
    # A and F are two-level images, F the negative of A: knowing F gives A exactly,
    #   MI(A, F) = H(A) = 1 bit.
    # B splits left/right, F top/bottom: each of the 4 (B, F) pairs once -> independent, MI 0.
    a = np.array([[0, 0], [255, 255]], dtype=np.uint8)
    b = np.array([[0, 255], [0, 255]], dtype=np.uint8)
    f = 255 - a
    assert M.mutual_information(a, f) == pytest.approx(1.0, abs=1e-12)
    assert M.mutual_information(b, f) == pytest.approx(0.0, abs=1e-12)
    assert M.mi(a, b, f) == pytest.approx(1.0, abs=1e-12)


def test_mi_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    a, f = smooth_image(seed=1), smooth_image(seed=2)
    nats = metrics.mutual_info_score(a.ravel(), f.ravel())
    assert M.mutual_information(a, f) == pytest.approx(nats / math.log(2), rel=1e-9)


# ------------------------------------------------------------- SCD, CC ----

A2 = np.array([[1, 2], [3, 4]], dtype=np.uint8)
B2 = np.array([[4, 1], [2, 3]], dtype=np.uint8)


def test_scd_hand_computed():
    # F = (A + B)/2 = [2.5, 1.5, 2.5, 3.5]
    # F - B = (A - B)/2, A - B = [-3, 1, 1, 1] (mean 0), A - mean A = [-1.5, -.5, .5, 1.5]
    #   corr(A - B, A) = (4.5 - .5 + .5 + 1.5) / sqrt(12 * 5) = 6 / sqrt(60)
    # F - A = (B - A)/2, B - A = [3, -1, -1, -1], B - mean B = [1.5, -1.5, -.5, .5]
    #   corr(B - A, B) = (4.5 + 1.5 + .5 - .5) / sqrt(12 * 5) = 6 / sqrt(60)
    f = (A2 + B2) / 2.0
    assert M.scd(A2, B2, f) == pytest.approx(12 / math.sqrt(60), rel=1e-12)  # 1.54919


def test_scd_of_sum_is_two_and_of_a_source_counts_one_term():
    a, b = smooth_image(seed=3) / 2.0, hotspot_image() / 2.0  # halved so A + B stays in 0..255
    # F = A + B: F - B = A and F - A = B, so SCD = corr(A, A) + corr(B, B) = 2
    assert M.scd(a, b, a + b) == pytest.approx(2.0, rel=1e-12)
    # F = A: F - A is flat and counts 0, leaving corr(A - B, A)
    expected = np.corrcoef((a - b).ravel(), a.ravel())[0, 1]
    assert M.scd(a, b, a) == pytest.approx(expected, rel=1e-12)


def test_cc_hand_computed():
    # F = (A + B)/2 = [2.5, 1.5, 2.5, 3.5], F - mean = [0, -1, 0, 1], |.|^2 = 2
    # corr(A, F) = (0 + .5 + 0 + 1.5) / sqrt(5 * 2) = 2 / sqrt(10)
    # corr(B, F) = (0 + 1.5 + 0 + .5) / sqrt(5 * 2) = 2 / sqrt(10)
    f = (A2 + B2) / 2.0
    assert M.cc(A2, B2, f) == pytest.approx(2 / math.sqrt(10), rel=1e-12)  # 0.63246
    a = smooth_image()
    assert M.cc(a, a, a) == pytest.approx(1.0, rel=1e-12)
    assert M.cc(a, a, 255 - a) == pytest.approx(-1.0, rel=1e-12)


# ------------------------------------------------------------------ PSNR ----

def test_psnr_hand_computed():
    # A = 0, B = 10, F = [0, 10, 20, 30]
    # MSE(A, F) = (0 + 100 + 400 + 900) / 4 = 350, MSE(B, F) = (100 + 0 + 100 + 400) / 4 = 150
    # PSNR = 10 log10(255^2 / ((350 + 150) / 2)) = 10 log10(65025 / 250) = 10 log10(260.1) = 24.1514
    a = np.zeros((2, 2), dtype=np.uint8)
    b = np.full((2, 2), 10, dtype=np.uint8)
    f = np.array([[0, 10], [20, 30]], dtype=np.uint8)
    assert M.psnr(a, b, f) == pytest.approx(10 * math.log10(260.1), rel=1e-12)
    assert M.psnr(a, a, a) == math.inf


# ------------------------------------------------------------------ SSIM ----

def as_batch(torch, x: np.ndarray):
    return torch.from_numpy(x.astype(np.float64))[None, None]


def test_ssim_of_identical_images_sums_to_two():
    a = smooth_image()
    assert M.ssim_index(a, a) == pytest.approx(1.0, abs=1e-12)
    assert M.ssim(a, a, a) == pytest.approx(2.0, abs=1e-12)
    assert M.ssim(a, hotspot_image(), a) < 2.0


def test_ssim_of_flat_images_hand_computed():
    # constant 100 vs constant 50: sigma terms give C2/C2 = 1, luminance
    #   (2*100*50 + C1) / (100^2 + 50^2 + C1), C1 = (0.01 * 255)^2 = 6.5025
    #   = 10006.5025 / 12506.5025 = 0.800104
    x, y = np.full((11, 11), 100, np.uint8), np.full((11, 11), 50, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert M.ssim_index(x, y) == pytest.approx((10000 + c1) / (12500 + c1), rel=1e-12)
    assert math.isnan(M.ssim_index(x[:10, :10], y[:10, :10]))  # window does not fit


def test_ssim_matches_scikit_image_and_monai():
    torch = pytest.importorskip("torch")
    from monai.metrics import SSIMMetric

    x, y = smooth_image(48, 40, seed=4), smooth_image(48, 40, seed=5)
    ours = M.ssim_index(x, y)
    monai_value = SSIMMetric(spatial_dims=2, data_range=255.0)(as_batch(torch, x), as_batch(torch, y))
    assert ours == pytest.approx(float(monai_value), abs=1e-5)
    skm = pytest.importorskip("skimage.metrics")
    reference = skm.structural_similarity(x.astype(float), y.astype(float), gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=255.0)
    assert ours == pytest.approx(reference, abs=1e-12)


def test_ms_ssim_known_answers_and_monai():
    torch = pytest.importorskip("torch")
    from monai.metrics import MultiScaleSSIMMetric

    x = smooth_image(176, 176, seed=6)
    assert M.ms_ssim(x, x, x) == pytest.approx(2.0, abs=1e-12)
    # flat 100 vs flat 50: contrast-structure is 1 at every scale and the images stay flat,
    # so MS-SSIM = luminance^0.1333 = 0.800104^0.1333 = 0.970681
    c1 = (0.01 * 255) ** 2
    expected = ((10000 + c1) / (12500 + c1)) ** 0.1333
    flat_a, flat_f = np.full((176, 176), 100, np.uint8), np.full((176, 176), 50, np.uint8)
    assert M.ms_ssim_index(flat_a, flat_f) == pytest.approx(expected, rel=1e-12)
    assert M.ms_ssim(flat_a, flat_f, flat_f) == pytest.approx(1 + expected, rel=1e-12)
    y = smooth_image(176, 176, seed=7)
    ref = MultiScaleSSIMMetric(spatial_dims=2, data_range=255.0)(as_batch(torch, x), as_batch(torch, y))
    assert M.ms_ssim_index(x, y) == pytest.approx(float(ref), abs=1e-5)
    assert math.isnan(M.ms_ssim_index(x[:160, :160], y[:160, :160]))  # 5 scales need 161 px


# ------------------------------------------------------------------- VIF ----

def test_vif_of_identical_images_is_one_per_source():
    # With dist = ref: g = s1 / (s1 + 1e-10), sv^2 = s1 * 1e-10 / (s1 + 1e-10) is clamped to 1e-10,
    # so each window scores log10(1 + g^2 s1 / (2 + 1e-10)) against log10(1 + s1 / 2):
    # the ratio is 1 to within ~1e-10.
    a = smooth_image()
    assert abs(M.vifp(a, a) - 1.0) < 1e-9
    assert abs(M.vif(a, a, a) - 2.0) < 2e-9
    assert abs(M.vifp(a, a.astype(float) + 20) - 1.0) < 1e-9  # an offset changes no variance


def test_vif_of_flat_fused_image_is_zero():
    # flat F: sigma2^2 = sigma12 = 0 -> g = 0 in every window -> numerator 0
    a = smooth_image()
    assert M.vifp(a, np.full(a.shape, 128, np.uint8)) == 0.0
    assert M.vif(a, hotspot_image(), np.full(a.shape, 128, np.uint8)) == 0.0


def checkerboard(n: int, mean: float, amplitude: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    return mean + amplitude * (-1.0) ** (xx + yy)


def test_vif_on_a_checkerboard_hand_computed():
    # A = 100 +- 50 checkerboard.  Under the 17-tap scale-1 window w_ij = g_i g_j (g: Gaussian,
    # sigma 3.4, normalised) every window has weighted mean 100 +- 50 s^2 and weighted E[A^2]
    # = 100^2 + 50^2 +- 2*100*50 s^2, with s = sum_k g_k (-1)^k, so the variance is the same in
    # every window: sigma1^2 = 2500 (1 - s^4).  Scales 2-4 see a filtered checkerboard sampled
    # at one parity, i.e. a flat image: they add 0 to numerator and denominator.
    # F = 100 +- 25 (gain k = 1/2): sigma2^2 = k^2 sigma1^2, sigma12 = k sigma1^2, g = k,
    # sv^2 = 0 -> 1e-10, so VIF = log10(1 + k^2 sigma1^2 / 2) / log10(1 + sigma1^2 / 2)
    #   ~ log10(313.5) / log10(1251) = 0.80595.
    x = np.arange(17) - 8.0
    g = np.exp(-x ** 2 / (2 * 3.4 ** 2))
    g /= g.sum()
    s = float(np.sum(g * (-1.0) ** np.arange(17)))
    sigma1 = 2500 * (1 - s ** 4)
    a = checkerboard(48, 100, 50)
    for gain in (0.5, 2.0):  # gain 2 = contrast enhancement: VIF above 1
        expected = math.log10(1 + gain ** 2 * sigma1 / 2) / math.log10(1 + sigma1 / 2)
        assert M.vifp(a, checkerboard(48, 100, 50 * gain)) == pytest.approx(expected, rel=1e-9)
    assert M.vifp(a, checkerboard(48, 100, 25)) == pytest.approx(0.80595, abs=1e-5)
    assert M.vifp(a, checkerboard(48, 100, 100)) > 1.0
    # VIF sums the two sources: B = F contributes 1
    f = checkerboard(48, 100, 25)
    assert M.vif(a, f, f) == pytest.approx(1 + M.vifp(a, f), rel=1e-9)


def test_vif_drops_with_noise():
    a = smooth_image()
    rng = np.random.default_rng(1)
    noisy = np.clip(a + rng.normal(0, 25, a.shape), 0, 255)
    assert 0.0 < M.vifp(a, noisy) < 0.6 * M.vifp(a, a)


# ------------------------------------------------------------------ Qabf ----

def test_qabf_perfect_fusion_gives_the_constants_product():
    # F = A = B: strength ratio 1 and orientation agreement 1 at every edge pixel, so every
    # weighted term is Qg(1) Qa(1) = 0.9994/(1+e^-7.5) * 0.9879/(1+e^-4.4) = 0.974793.
    # (The published Gamma constants are 1/(1+e^..) rounded, so a perfect match is not 1.)
    a = smooth_image()
    assert M.qabf(a, a, a) == pytest.approx(Q_PERFECT, rel=1e-12)
    assert Q_PERFECT == pytest.approx(0.974793, abs=1e-6)


def test_qabf_half_contrast_edge_hand_computed():
    # A: vertical step 0 | 100, B flat 0 (no edges, weight 0), F = A / 2.
    # Sobel is linear, so at every pixel with an A-gradient gF = gA / 2 along the same
    # direction (zero padding included): strength 1/2, orientation agreement 1,
    # Qabf = Qg(1/2) Qa(1) = 0.4997 * 0.975919 = 0.487667.
    a = np.zeros((6, 6), dtype=np.uint8)
    a[:, 3:] = 100
    b = np.zeros_like(a)
    assert M.qabf(a, b, a // 2) == pytest.approx(QG_HALF * QA_1, rel=1e-12)
    assert M.qabf(a, b, a) == pytest.approx(Q_PERFECT, rel=1e-12)
    # F with no edge at all: strength 0, Qg(0) = 0.9994/(1+e^7.5) = 0.00055
    assert M.qabf(a, b, np.zeros_like(a)) < 1e-3


def test_qabf_zero_padding_makes_the_border_an_edge():
    # The public code filters with conv2(x, h, 'same'): zero padding, so a flat 100 image has
    # edges along its border.  Flat F = 50 has the same border edges at half strength (Sobel is
    # linear): Qabf = Qg(1/2) Qa(1).  With edge-replicating padding there would be no edge (nan).
    flat = np.full((5, 5), 100, dtype=np.uint8)
    assert M.qabf(flat, flat, flat // 2) == pytest.approx(QG_HALF * QA_1, rel=1e-12)


def test_qabf_two_sources_half_kept():
    # A: bright 4x4 square top-left, B: the same square bottom-right, both on black so no
    # Sobel response touches the border or the other square; equal edge weights sum(gA) = sum(gB).
    # F = A + B/2 keeps A's edges (Q_perfect) and B's at half strength (Qg(1/2) Qa(1)):
    # Qabf = (Q_perfect + Qg(1/2) Qa(1)) / 2 = (0.974793 + 0.487667) / 2 = 0.731230.
    a = np.zeros((16, 16), dtype=np.uint8)
    b = np.zeros_like(a)
    a[2:6, 2:6] = 100
    b[9:13, 9:13] = 100
    assert M.qabf(a, b, a + b) == pytest.approx(Q_PERFECT, rel=1e-12)
    assert M.qabf(a, b, a + b // 2) == pytest.approx((Q_PERFECT + QG_HALF * QA_1) / 2, rel=1e-12)
    assert math.isnan(M.qabf(b * 0, b * 0, a))  # no source edges: undefined


# -------------------------------------------------------------- MEF-SSIM ----

def mef_ssim_per_patch(sources: np.ndarray, f: np.ndarray) -> float:
    """Ma, Zeng & Wang's MEF-SSIM written patch by patch, straight from the paper's steps."""
    eps = np.finfo(float).eps
    x = np.arange(11) - 5.0
    g1 = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    window = np.outer(g1, g1).ravel()
    window /= window.sum()
    c = (0.03 * 255) ** 2
    k, h, w = sources.shape
    scores = []
    for i in range(5, h - 5):
        for j in range(5, w - 5):
            patches = sources[:, i - 5:i + 6, j - 5:j + 6].reshape(k, -1)
            centred = patches - patches.mean(axis=1, keepdims=True)
            contrast = np.linalg.norm(centred, axis=1)
            ed = contrast + 0.001
            consistency = (np.linalg.norm(centred.sum(axis=0)) + eps) / (contrast.sum() + eps)
            if consistency > 1:
                consistency = 1 - eps
            elif consistency < 0:
                consistency = eps
            p = min(math.tan(math.pi / 2 * consistency), 10.0)
            weight = (ed / 11) ** p + eps
            weight /= weight.sum()
            r = (weight / ed) @ centred
            if np.linalg.norm(r) > 0:
                r = r / np.linalg.norm(r) * ed.max()
            fv = f[i - 5:i + 6, j - 5:j + 6].ravel()
            mu1, mu2 = window @ r, window @ fv
            var1, var2 = window @ (r - mu1) ** 2, window @ (fv - mu2) ** 2
            cov = window @ ((r - mu1) * (fv - mu2))
            scores.append((2 * cov + c) / (var1 + var2 + c))
    return float(np.mean(scores))


def test_mef_ssim_matches_the_per_patch_definition():
    a = smooth_image(24, 27, seed=8).astype(float)
    b = hotspot_image(24, 27).astype(float)
    b[:, :6] = 0.0  # flat region: exercises the near-zero-contrast guards
    for f in (np.maximum(a, b), 0.5 * (a + b), a, np.clip(255 - a, 0, 255)):
        assert M.mef_ssim(a, b, f) == pytest.approx(mef_ssim_per_patch(np.stack([a, b]), f), abs=1e-9)


def test_mef_ssim_known_answers():
    x = smooth_image(32, 32)
    # identical sources, F equal to them: the reference patch is F's patch rescaled by
    # 1 + 0.001/||x - mu|| (~1 + 1e-5), so every window scores 1 to ~1e-10
    assert M.mef_ssim(x, x, x) == pytest.approx(1.0, abs=1e-9)
    # one flat source: it gets weight ~0, and F = the textured source is again perfect
    flat = np.full_like(x, 40)
    assert M.mef_ssim(x, flat, x) == pytest.approx(1.0, abs=1e-6)
    # only (co)variances enter: a brighter F with the same structure is still perfect
    assert M.mef_ssim(x, x, x.astype(float) + 30) == pytest.approx(1.0, abs=1e-9)
    # F flat: every window scores C / (sigma_r^2 + C) < 1, far below keeping the structure
    assert M.mef_ssim(x, flat, flat) < 0.5 * M.mef_ssim(x, flat, x)
    assert math.isnan(M.mef_ssim(x[:10, :10], x[:10, :10], x[:10, :10]))


# -------------------------------------------------------------- evaluate ----

def synthetic_triple(n: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = smooth_image(n, n), hotspot_image(n, n)
    return a, b, np.maximum(a, b)


def test_evaluate_keys_and_main_metrics():
    result = M.evaluate(*synthetic_triple(180))
    assert tuple(result) == ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "MEF_SSIM", "CC",
                             "PSNR", "MS_SSIM")
    assert M.MAIN_METRICS == ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM", "AG")
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    a, b, f = synthetic_triple(180)
    # evaluate agrees with the one-metric functions
    assert result["Qabf"] == M.qabf(a, b, f)
    assert result["VIF"] == M.vif(a, b, f)
    assert result["MEF_SSIM"] == M.mef_ssim(a, b, f)
    assert result["PSNR"] == M.psnr(a, b, f)
    assert result["EN"] == M.en(f)


def test_evaluate_same_for_uint8_and_float_inputs():
    a, b, f = synthetic_triple()
    as_uint8 = M.evaluate(a, b, f)
    as_float = M.evaluate(a / 255.0, b.astype(np.float32) / 255, f.astype(np.float64))  # f as 0..255 float
    for key in as_uint8:
        assert as_float[key] == pytest.approx(as_uint8[key], rel=1e-6, abs=1e-9, nan_ok=True), key


def test_evaluate_reduces_colour_fused_image_to_grey():
    a, b, _ = synthetic_triple()
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=a.shape + (3,)).astype(np.uint8)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    colour_b = np.stack([b, b // 2, b // 3], axis=-1)
    grey_b = 0.299 * colour_b[..., 0] + 0.587 * colour_b[..., 1] + 0.114 * colour_b[..., 2]
    from_colour = M.evaluate(a, colour_b, rgb)
    from_grey = M.evaluate(a, grey_b, grey)
    for key in from_colour:
        assert from_colour[key] == pytest.approx(from_grey[key], rel=1e-12, nan_ok=True), key


def test_inputs_are_not_modified():
    a, b, f = synthetic_triple()
    a_f = a / 255.0
    copies = [x.copy() for x in (a_f, b, f)]
    M.evaluate(a_f, b, f)
    M.baseline_fusions(a_f, b)
    for before, after in zip(copies, (a_f, b, f), strict=True):
        np.testing.assert_array_equal(before, after)


def test_fusion_that_keeps_both_sources_beats_a_single_source_on_edges_and_mi():
    a, b, _ = synthetic_triple(96)
    baselines = M.baseline_fusions(a, b)
    scores = {name: M.evaluate(a, b, f) for name, f in baselines.items()}
    # max keeps the MRI's texture and the hot spot: more information about B than the MRI
    # alone and more edge content of A than the functional image alone
    assert scores["max"]["Qabf"] > scores["functional"]["Qabf"]
    assert scores["max"]["SCD"] > scores["mri"]["SCD"]


# ------------------------------------------------------------- baselines ----

def test_baseline_fusions_uint8():
    a = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    b = np.array([[10, 50], [201, 0]], dtype=np.uint8)
    out = M.baseline_fusions(a, b)
    assert set(out) == {"mean", "max", "mri", "functional"}
    assert all(v.dtype == np.uint8 and v.shape == (2, 2) for v in out.values())
    # means 5, 75, 200.5 -> 200 (round half to even), 127.5 -> 128
    np.testing.assert_array_equal(out["mean"], [[5, 75], [200, 128]])
    np.testing.assert_array_equal(out["max"], [[10, 100], [201, 255]])
    np.testing.assert_array_equal(out["mri"], a)
    np.testing.assert_array_equal(out["functional"], b)


def test_baseline_fusions_float_and_colour():
    a = np.array([[0.0, 0.5], [1.0, 0.25]])
    rgb = np.zeros((2, 2, 3))
    rgb[..., 0] = 1.0  # pure red: luma .299
    out = M.baseline_fusions(a, rgb)
    assert all(v.dtype == np.float64 and v.shape == (2, 2) for v in out.values())
    np.testing.assert_allclose(out["functional"], np.full((2, 2), 0.299), atol=1e-12)
    np.testing.assert_allclose(out["max"], [[0.299, 0.5], [1.0, 0.299]], atol=1e-12)
    np.testing.assert_allclose(out["mean"], (a + 0.299) / 2, atol=1e-12)
    np.testing.assert_allclose(out["mri"], a, atol=1e-12)
