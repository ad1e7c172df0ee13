"""Fusion quality metrics: the fusion literature's standard set (spec section 4).

No fused ground truth exists, so a fused image F is scored against its two
sources, A (MRI) and B (PET/SPECT), or on its own.  Every metric works on
float64 grey images scaled 0..255 (:func:`to_grey255`): uint8 is taken as is,
float with max <= 1.0 is multiplied by 255, float with max > 1.0 is taken as
already 0..255, colour (H, W, 3) is reduced to grey with .299/.587/.114.

Conventions (where public implementations disagree, the choice is named):

=========  ==================================================================
EN         Shannon entropy of F's 256-bin histogram (grey rounded to 0..255),
           bits; MATLAB ``entropy``.
SD         population standard deviation of F (divide by M*N, as the MATLAB
           ``SD_evaluation`` of the fusion toolboxes; not ``std2``'s N-1).
SF         sqrt(RF^2 + CF^2), RF/CF the RMS of the horizontal/vertical first
           differences (mean over the (M, N-1) and (M-1, N) difference
           arrays, as ``SF_evaluation`` in the MixFuse/Tang toolboxes; VIFB
           divides both sums by M*N instead, giving slightly smaller values).
AG         mean over the (M-1)(N-1) top-left pixels of
           sqrt((dx^2 + dy^2) / 2), dx/dy forward differences (the classic
           definition, as the spec asks; VIFB and the MixFuse MATLAB code use
           MATLAB ``gradient``, i.e. central differences).
MI         MI(A, F) + MI(B, F), bits, from 256x256-bin joint histograms of
           the grey levels rounded to 0..255.
SCD        corr(F - B, A) + corr(F - A, B), MATLAB ``corr2`` (Aslantas & Bendes).
VIF        VIFP(A, F) + VIFP(B, F), Sheikh & Bovik's ``vifp_mscale``: 4
           scales, Gaussian windows of N = 2^(5-s)+1 pixels and sigma N/5,
           'valid' filtering, dyadic downsampling after the scale's own
           filter, sigma_n^2 = 2, the 1e-10 guards of the reference code.
Qabf       Xydeas & Petrovic: Sobel (MATLAB ``conv2(x, h, 'same')``, zero
           padding, as every public implementation), orientation
           atan(Sy/Sx) with pi/2 where Sx = 0, Gamma_g 0.9994, kappa_g -15,
           sigma_g 0.5, Gamma_a 0.9879, kappa_a -22, sigma_a 0.8, weights g^L,
           L = 1.  The strength ratio is min(gA, gF)/max(gA, gF) (1 when both
           are equal), as in the paper; the common MATLAB code sets it to gF
           when gA == gF, a slip that moves results by < 0.1 % on 0..255 data.
           With these published constants a perfect match scores
           0.9994/(1+e^-7.5) * 0.9879/(1+e^-4.4) = 0.97479, not 1.
SSIM       SSIM(A, F) + SSIM(B, F), Wang et al. ``ssim_index``: 11x11
           Gaussian window sigma 1.5, K = 0.01/0.03, L = 255, 'valid'
           filtering, mean of the map.  No automatic downsampling (the 2009
           ``ssim.m`` first downsamples images whose short side is >= 384).
MEF_SSIM   Ma, Zeng & Wang 2015 ``mef_ssim``: one score of F against both
           sources, K = 0.03, 11x11 box windows for the patch statistics and
           an 11x11 Gaussian (sigma 1.5) for the SSIM of each patch; the
           MixFuse authors' own "SSIM".
CC         mean of corr(A, F) and corr(B, F).
PSNR       10 log10(255^2 / ((MSE(A, F) + MSE(B, F)) / 2)), dB.
MS_SSIM    MS-SSIM(A, F) + MS-SSIM(B, F), Wang, Simoncelli & Bovik 2003
           ``msssim.m``: 5 scales, weights (.0448, .2856, .3001, .2363,
           .1333), 2x2 average + decimation between scales, SSIM settings as
           above; negative per-scale values clipped to 0 before the powers
           (as TensorFlow and pytorch_msssim do).
=========  ==================================================================

A correlation with a constant image (SCD, CC) counts as 0 where MATLAB's
corr2 gives 0/0 = nan, so the trivial baselines F = A and F = B still get an
SCD.  Where a metric is undefined for its input (an image smaller than a
metric's window: 11 px for SSIM and MEF-SSIM, 17 px for VIF, 161 px for
MS-SSIM; VIF against a flat source; Qabf when neither source has an edge) it
is ``nan``; PSNR of a perfect fusion is ``inf``.  :func:`evaluate` therefore
always returns every key.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .color import LUMA_WEIGHTS

MAIN_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM", "AG")
ALL_METRICS = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "MEF_SSIM", "CC", "PSNR",
               "MS_SSIM")

# Qabf model parameters (Xydeas & Petrovic 2000).
QABF_GAMMA_G, QABF_KAPPA_G, QABF_SIGMA_G = 0.9994, -15.0, 0.5
QABF_GAMMA_A, QABF_KAPPA_A, QABF_SIGMA_A = 0.9879, -22.0, 0.8
# Sobel kernels of the reference code, applied as MATLAB conv2 (flipped, zero padded).
_SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
# Sobel responses this small are rounding noise from the float -> 0..255 scaling
# (a float image /255*255 is not bit-exact); snapping them to 0 keeps the
# orientation of flat pixels (pi/2) the same for uint8 and float input.
_SOBEL_ZERO = 1e-7

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_EPS = np.finfo(float).eps


# ----------------------------------------------------------------- input ----

def to_grey255(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as float64 grey (H, W) on the 0..255 scale, a new array.

    uint8 (or any integer type holding 0..255) is taken as grey levels; float
    with max <= 1.0 is scaled by 255, float with max > 1.0 is taken as already
    0..255; (H, W, 3) colour becomes .299 R + .587 G + .114 B.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"{name}: expected a grey (H, W) or colour (H, W, 3) image, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty image of shape {arr.shape}")
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer)
                                     or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: expected uint8 or float pixels, got dtype {arr.dtype}")
    grey = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(grey).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        if grey.max() <= 1.0:
            grey *= 255.0
    if grey.min() < 0.0 or grey.max() > 255.0:
        raise ValueError(f"{name}: values must lie in 0..255 (uint8) or [0, 1] (float), "
                         f"got {grey.min():g}..{grey.max():g} after scaling")
    if grey.ndim == 3:  # the sum in this order, as color.rgb_to_luma, so .5 ties round alike
        wr, wg, wb = LUMA_WEIGHTS
        grey = wr * grey[..., 0] + wg * grey[..., 1] + wb * grey[..., 2]
    return grey


def _grey_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    ga, gb = to_grey255(a, names[0]), to_grey255(b, names[1])
    if ga.shape != gb.shape:
        raise ValueError(f"{names[0]} has shape {np.shape(a)} but {names[1]} has shape {np.shape(b)}: "
                         f"the images must be the same size")
    return ga, gb


def _grey_triple(a: np.ndarray, b: np.ndarray, fused: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ga, gb = _grey_pair(a, b, ("a (MRI)", "b (functional)"))
    gf = to_grey255(fused, "fused")
    if gf.shape != ga.shape:
        raise ValueError(f"fused has shape {np.shape(fused)} but a (MRI) has shape {np.shape(a)}: "
                         f"the images must be the same size")
    return ga, gb, gf


# ------------------------------------------------------------- utilities ----

def _mean(x: np.ndarray) -> float:
    """Mean, ``nan`` for an empty array (a window that does not fit)."""
    return float(x.mean()) if x.size else float("nan")


def _levels(x: np.ndarray) -> np.ndarray:
    """Grey 0..255 rounded to integer histogram bins (what uint8 would store)."""
    return np.clip(np.rint(x), 0, 255).astype(np.intp).ravel()


def _entropy_of_counts(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB's fspecial('gaussian', size, sigma) (it is separable)."""
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(stack: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of (..., H, W) keeping only windows inside the
    image, MATLAB ``filter2(k, x, 'valid')``; odd kernel length."""
    r = len(kernel) // 2
    h, w = stack.shape[-2:]
    if h < len(kernel) or w < len(kernel):
        return np.empty(stack.shape[:-2] + (max(h - 2 * r, 0), max(w - 2 * r, 0)))
    out = ndimage.correlate1d(stack, kernel, axis=-2, mode="constant")[..., r:h - r, :]
    return ndimage.correlate1d(out, kernel, axis=-1, mode="constant")[..., r:w - r]


# Below this RMS (grey levels) an image counts as constant: float rounding only.
_CONSTANT_RMS = 1e-9


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """MATLAB corr2 (Pearson over all pixels), but 0 instead of 0/0 when one image
    is constant: a flat image carries nothing of the other, so SCD of F = A scores
    only corr(A - B, A) instead of becoming nan."""
    xc, yc = x - x.mean(), y - y.mean()
    sxx, syy = (xc * xc).sum(), (yc * yc).sum()
    if min(sxx, syy) <= x.size * _CONSTANT_RMS ** 2:
        return 0.0
    return float((xc * yc).sum() / np.sqrt(sxx * syy))


def _mse(x: np.ndarray, y: np.ndarray) -> float:
    d = x - y
    return float((d * d).mean())


# ---------------------------------------------------- single-image metrics ----

def _en(f: np.ndarray) -> float:
    return _entropy_of_counts(np.bincount(_levels(f), minlength=256))


def _sd(f: np.ndarray) -> float:
    return float(f.std())


def _sf(f: np.ndarray) -> float:
    rf2 = _mean(np.diff(f, axis=1) ** 2)
    cf2 = _mean(np.diff(f, axis=0) ** 2)
    return float(np.sqrt(rf2 + cf2))


def _ag(f: np.ndarray) -> float:
    dx = f[:-1, 1:] - f[:-1, :-1]
    dy = f[1:, :-1] - f[:-1, :-1]
    return _mean(np.sqrt((dx * dx + dy * dy) / 2.0))


def en(fused: np.ndarray) -> float:
    """EN: Shannon entropy (bits) of F's 256-bin grey histogram, MATLAB ``entropy``."""
    return _en(to_grey255(fused, "fused"))


def sd(fused: np.ndarray) -> float:
    """SD: standard deviation of F on 0..255, population form (divide by M*N)."""
    return _sd(to_grey255(fused, "fused"))


def sf(fused: np.ndarray) -> float:
    """SF: sqrt(RF^2 + CF^2), RF/CF = RMS of horizontal/vertical first differences."""
    return _sf(to_grey255(fused, "fused"))


def ag(fused: np.ndarray) -> float:
    """AG: mean of sqrt((dx^2 + dy^2)/2) over forward differences, (M-1)(N-1) terms."""
    return _ag(to_grey255(fused, "fused"))


# ----------------------------------------------------------- pair metrics ----

def _mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    lx, ly = _levels(x), _levels(y)
    joint = np.bincount(lx * 256 + ly, minlength=256 * 256)
    return (_entropy_of_counts(np.bincount(lx, minlength=256))
            + _entropy_of_counts(np.bincount(ly, minlength=256))
            - _entropy_of_counts(joint))


def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """Mutual information (bits) of two images from their 256x256-bin joint histogram."""
    return _mutual_information(*_grey_pair(x, y, ("x", "y")))


_SSIM_WINDOW = _gaussian_1d(11, 1.5)
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2


def _ssim_maps(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps of Wang et al.'s SSIM, 'valid' windows."""
    m = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), _SSIM_WINDOW)
    mx, my = m[0], m[1]
    sxx, syy, sxy = m[2] - mx * mx, m[3] - my * my, m[4] - mx * my
    lum = (2.0 * mx * my + _SSIM_C1) / (mx * mx + my * my + _SSIM_C1)
    cs = (2.0 * sxy + _SSIM_C2) / (sxx + syy + _SSIM_C2)
    return lum, cs


def _ssim_index(x: np.ndarray, y: np.ndarray) -> float:
    lum, cs = _ssim_maps(x, y)
    return _mean(lum * cs)


def ssim_index(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two images (Wang et al. 2004 ``ssim_index``: Gaussian 11x11 sigma 1.5,
    K = 0.01/0.03, L = 255, mean over the 'valid' map); nan below 11x11."""
    return _ssim_index(*_grey_pair(x, y, ("x", "y")))


def _downsample2(x: np.ndarray) -> np.ndarray:
    """msssim.m's step: 2x2 mean filter (symmetric border) then every other pixel."""
    h, w = x.shape
    x = np.pad(x, ((0, h % 2), (0, w % 2)), mode="edge")
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def _ms_ssim_index(x: np.ndarray, y: np.ndarray) -> float:
    values = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        lum, cs = _ssim_maps(x, y)
        if cs.size == 0:
            return float("nan")
        last = level == len(MS_SSIM_WEIGHTS) - 1
        values.append(float((lum * cs).mean()) if last else float(cs.mean()))
        if not last:
            x, y = _downsample2(x), _downsample2(y)
    return float(np.prod(np.maximum(values, 0.0) ** np.asarray(MS_SSIM_WEIGHTS)))


def ms_ssim_index(x: np.ndarray, y: np.ndarray) -> float:
    """MS-SSIM of two images (Wang, Simoncelli & Bovik 2003, 5 scales); nan below 161x161."""
    return _ms_ssim_index(*_grey_pair(x, y, ("x", "y")))


_VIF_SIGMA_N2 = 2.0
_VIF_TINY = 1e-10


def _vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    # VIFP only sees (co)variances: removing each image's mean changes nothing
    # but keeps E[x^2] - E[x]^2 clear of rounding noise near the 1e-10 guards.
    ref, dist = ref - ref.mean(), dist - dist.mean()
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        window = _gaussian_1d(n, n / 5.0)
        if scale > 1:
            ref, dist = _filter_valid(np.stack([ref, dist]), window)[:, ::2, ::2]
        m = _filter_valid(np.stack([ref, dist, ref * ref, dist * dist, ref * dist]), window)
        if m[0].size == 0:
            break
        mu1, mu2 = m[0], m[1]
        s1 = np.maximum(m[2] - mu1 * mu1, 0.0)
        s2 = np.maximum(m[3] - mu2 * mu2, 0.0)
        s12 = m[4] - mu1 * mu2
        # The guards of the reference vifp_mscale, in its order.
        g = s12 / (s1 + _VIF_TINY)
        sv = s2 - g * s12
        flat_ref = s1 < _VIF_TINY
        g[flat_ref] = 0.0
        sv[flat_ref] = s2[flat_ref]
        s1[flat_ref] = 0.0
        flat_dist = s2 < _VIF_TINY
        g[flat_dist] = 0.0
        sv[flat_dist] = 0.0
        negative = g < 0
        sv[negative] = s2[negative]
        g[negative] = 0.0
        sv = np.maximum(sv, _VIF_TINY)
        num += np.log10(1.0 + g * g * s1 / (sv + _VIF_SIGMA_N2)).sum()
        den += np.log10(1.0 + s1 / _VIF_SIGMA_N2).sum()
    return float(num / den) if den > 0 else float("nan")


def vifp(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain multiscale VIF of ``dist`` against ``ref`` (Sheikh & Bovik
    ``vifp_mscale``, sigma_n^2 = 2); 1 (to 1e-10) for dist = ref, 0 for a flat dist,
    above 1 for contrast enhancement; nan for a flat ref or one under 17x17."""
    return _vifp(*_grey_pair(ref, dist, ("ref", "dist")))


# --------------------------------------------------------- fusion metrics ----

def mi(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """MI: MI(A, F) + MI(B, F), bits, 256x256-bin joint histograms."""
    ga, gb, gf = _grey_triple(a, b, fused)
    return _mutual_information(ga, gf) + _mutual_information(gb, gf)


def scd(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """SCD: corr(F - B, A) + corr(F - A, B) (Aslantas & Bendes 2015, MATLAB corr2;
    a constant difference image correlates 0)."""
    ga, gb, gf = _grey_triple(a, b, fused)
    return _correlation(gf - gb, ga) + _correlation(gf - ga, gb)


def vif(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """VIF: VIFP(A, F) + VIFP(B, F), Sheikh & Bovik's ``vifp_mscale`` (see :func:`vifp`)."""
    ga, gb, gf = _grey_triple(a, b, fused)
    return _vifp(ga, gf) + _vifp(gb, gf)


def _sobel_strength_orientation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx = ndimage.convolve(x, _SOBEL_X, mode="constant")
    sy = ndimage.convolve(x, _SOBEL_Y, mode="constant")
    sx[np.abs(sx) < _SOBEL_ZERO] = 0.0
    sy[np.abs(sy) < _SOBEL_ZERO] = 0.0
    flat = sx == 0
    alpha = np.where(flat, np.pi / 2, np.arctan(sy / np.where(flat, 1.0, sx)))
    return np.hypot(sx, sy), alpha


def _edge_preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray
                       ) -> np.ndarray:
    """Q^{SF} per pixel: sigmoid-mapped strength and orientation preservation."""
    hi, lo = np.maximum(g_src, g_f), np.minimum(g_src, g_f)
    strength = np.divide(lo, hi, out=np.ones_like(hi), where=hi > 0)
    orientation = 1.0 - np.abs(a_src - a_f) / (np.pi / 2)
    q_g = QABF_GAMMA_G / (1.0 + np.exp(QABF_KAPPA_G * (strength - QABF_SIGMA_G)))
    q_a = QABF_GAMMA_A / (1.0 + np.exp(QABF_KAPPA_A * (orientation - QABF_SIGMA_A)))
    return q_g * q_a


def _qabf(ga: np.ndarray, gb: np.ndarray, gf: np.ndarray, exponent: float = 1.0) -> float:
    g_a, a_a = _sobel_strength_orientation(ga)
    g_b, a_b = _sobel_strength_orientation(gb)
    g_f, a_f = _sobel_strength_orientation(gf)
    w_a, w_b = g_a ** exponent, g_b ** exponent
    den = (w_a + w_b).sum()
    if den == 0:
        return float("nan")
    num = (_edge_preservation(g_a, a_a, g_f, a_f) * w_a + _edge_preservation(g_b, a_b, g_f, a_f) * w_b).sum()
    return float(num / den)


def qabf(a: np.ndarray, b: np.ndarray, fused: np.ndarray, exponent: float = 1.0) -> float:
    """Qabf: Xydeas-Petrovic edge preservation, weights g^L (L = ``exponent``).

    Sobel with zero padding as the public MATLAB code; a perfect match scores
    0.97479 (the published Gamma constants), F without edges scores ~0; nan
    when neither source has an edge.
    """
    return _qabf(*_grey_triple(a, b, fused), exponent=exponent)


def ssim(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """SSIM: SSIM(A, F) + SSIM(B, F), Wang et al. (see :func:`ssim_index`); 2 at best."""
    ga, gb, gf = _grey_triple(a, b, fused)
    return _ssim_index(ga, gf) + _ssim_index(gb, gf)


def ms_ssim(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """MS-SSIM: MS-SSIM(A, F) + MS-SSIM(B, F), Wang 2003 (see :func:`ms_ssim_index`); 2 at best."""
    ga, gb, gf = _grey_triple(a, b, fused)
    return _ms_ssim_index(ga, gf) + _ms_ssim_index(gb, gf)


_MEF_BOX = np.full(11, 1.0 / 11.0)
_MEF_C = (0.03 * 255.0) ** 2


def _mef_ssim(sources: np.ndarray, f: np.ndarray) -> float:
    """Ma, Zeng & Wang's MEF-SSIM with the per-patch loops turned into filter maps.

    Per patch the reference builds r = sum_k w_k (x_k - mu_k) / ed_k, rescales it
    to the largest source contrast, and takes SSIM's contrast-structure term of
    (r, f) under a Gaussian window.  Every quantity it needs is a linear
    combination of box- and Gaussian-filtered products of the images.
    """
    k = sources.shape[0]
    n_pix = float(_MEF_BOX.size ** 2)
    # Only (co)variances enter the score: a common offset changes nothing and
    # centring keeps the filtered second moments accurate.
    offset = 0.5 * (sources.mean() + f.mean())
    x, f = sources - offset, f - offset
    pairs = [(i, j) for i in range(k) for j in range(k)]
    products = np.stack([x[i] * x[j] for i, j in pairs])
    box = _filter_valid(np.concatenate([x, products]), _MEF_BOX)
    if box.shape[-1] == 0 or box.shape[-2] == 0:
        return float("nan")
    mu = box[:k]
    cov = {(i, j): box[k + p] - mu[i] * mu[j] for p, (i, j) in enumerate(pairs)}
    dev = np.sqrt(np.maximum(n_pix * np.stack([cov[i, i] for i in range(k)]), 0.0))  # ||x_k - mu_k||
    ed = dev + 0.001
    # Structural consistency R and the weighting exponent p of the reference.
    total = np.sqrt(np.maximum(n_pix * sum(cov[i, j] for i, j in pairs), 0.0))
    r_cons = (total + _EPS) / (dev.sum(axis=0) + _EPS)
    r_cons = np.where(r_cons > 1, 1 - _EPS, np.where(r_cons < 0, _EPS, r_cons))
    p = np.minimum(np.tan(np.pi / 2 * r_cons), 10.0)
    weight = (ed / 11.0) ** p + _EPS
    weight /= weight.sum(axis=0)
    c = weight / ed  # s = sum_k c_k (x_k - mu_k)
    # Gaussian-window statistics of s and f.
    gauss = _filter_valid(np.concatenate([x, f[None], products, x * f, (f * f)[None]]), _SSIM_WINDOW)
    gx, gf = gauss[:k], gauss[k]
    gxx = {pair: gauss[k + 1 + p] for p, pair in enumerate(pairs)}
    gxf, gff = gauss[k + 1 + len(pairs):2 * k + 1 + len(pairs)], gauss[-1]
    s_mean = sum(c[i] * (gx[i] - mu[i]) for i in range(k))
    s_sq = sum(c[i] * c[j] * (gxx[i, j] - mu[i] * gx[j] - mu[j] * gx[i] + mu[i] * mu[j]) for i, j in pairs)
    s_f = sum(c[i] * (gxf[i] - mu[i] * gf) for i in range(k))
    s_norm = np.sqrt(np.maximum(n_pix * sum(c[i] * c[j] * cov[i, j] for i, j in pairs), 0.0))
    scale = np.divide(ed.max(axis=0), s_norm, out=np.ones_like(s_norm), where=s_norm > 0)
    mu1 = scale * s_mean
    var1 = np.maximum(scale * scale * s_sq - mu1 * mu1, 0.0)
    var2 = np.maximum(gff - gf * gf, 0.0)
    cov12 = scale * s_f - mu1 * gf
    return _mean((2.0 * cov12 + _MEF_C) / (var1 + var2 + _MEF_C))


def mef_ssim(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """MEF-SSIM: one score of F against both sources (Ma, Zeng & Wang 2015, K = 0.03,
    11x11 windows), the MixFuse authors' own "SSIM"; 1 at best, nan below 11x11."""
    ga, gb, gf = _grey_triple(a, b, fused)
    return _mef_ssim(np.stack([ga, gb]), gf)


def cc(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """CC: mean of corr(A, F) and corr(B, F) (MATLAB corr2)."""
    ga, gb, gf = _grey_triple(a, b, fused)
    return 0.5 * (_correlation(ga, gf) + _correlation(gb, gf))


def _psnr(ga: np.ndarray, gb: np.ndarray, gf: np.ndarray) -> float:
    mse = 0.5 * (_mse(ga, gf) + _mse(gb, gf))
    return float(10.0 * np.log10(255.0 ** 2 / mse)) if mse > 0 else float("inf")


def psnr(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> float:
    """PSNR, fusion-paper convention: 10 log10(255^2 / ((MSE(A,F) + MSE(B,F)) / 2)) dB."""
    return _psnr(*_grey_triple(a, b, fused))


# --------------------------------------------------------------- summary ----

def evaluate(a: np.ndarray, b: np.ndarray, fused: np.ndarray) -> dict[str, float]:
    """Every metric of the module for one fused slice, keyed as :data:`ALL_METRICS`.

    ``a`` MRI, ``b`` functional (grey or colour), ``fused`` grey or colour; all
    the same height and width.  Read EN/SD/SF/AG beside SSIM/VIF/Qabf and the
    :func:`baseline_fusions`: they reward noise as much as detail.
    """
    ga, gb, gf = _grey_triple(a, b, fused)
    return {
        "EN": _en(gf),
        "SD": _sd(gf),
        "SF": _sf(gf),
        "AG": _ag(gf),
        "MI": _mutual_information(ga, gf) + _mutual_information(gb, gf),
        "SCD": _correlation(gf - gb, ga) + _correlation(gf - ga, gb),
        "VIF": _vifp(ga, gf) + _vifp(gb, gf),
        "Qabf": _qabf(ga, gb, gf),
        "SSIM": _ssim_index(ga, gf) + _ssim_index(gb, gf),
        "MEF_SSIM": _mef_ssim(np.stack([ga, gb]), gf),
        "CC": 0.5 * (_correlation(ga, gf) + _correlation(gb, gf)),
        "PSNR": _psnr(ga, gb, gf),
        "MS_SSIM": _ms_ssim_index(ga, gf) + _ms_ssim_index(gb, gf),
    }


def _like(grey255: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Grey 0..255 back to ``template``'s convention: its integer dtype (rounded),
    or its float dtype on [0, 1] or 0..255 as the template is."""
    template = np.asarray(template)
    if np.issubdtype(template.dtype, np.integer):
        return np.clip(np.rint(grey255), 0, 255).astype(template.dtype)
    unit = float(template.max()) <= 1.0
    return (grey255 / 255.0 if unit else grey255).astype(template.dtype)


def baseline_fusions(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Trivial fusions to read the metrics against: "mean", "max", "mri", "functional".

    All are grey (H, W) in the MRI's convention (uint8 stays uint8 with the
    mean rounded; float stays float on its own scale).  A colour functional
    image enters through its grey (.299/.587/.114), so "functional" is then
    its grey version, and "mean"/"max" combine the MRI with that grey.
    """
    ga, gb = _grey_pair(a, b, ("a (MRI)", "b (functional)"))
    return {
        "mean": _like(0.5 * (ga + gb), a),
        "max": _like(np.maximum(ga, gb), a),
        "mri": _like(ga, a),
        "functional": _like(gb, a),
    }
