"""MixFuse's unsupervised fusion loss (spec section 3).

No fused ground truth exists, so the loss asks the fused image F to keep the
brighter source intensity, the stronger source edge, and the structure of
both sources:

    L = 5 * mean|F - max(A, B)|
      + 10 * mean| grad F - max(grad A, grad B) |,  grad X = |Sobel_x X| + |Sobel_y X|
      + 4 * (0.5 * (1 - SSIM(A, F)) / 2 + 0.5 * (1 - SSIM(B, F)) / 2)

on images in [0, 1], SSIM with an 11x11 Gaussian window (sigma 1.5), MONAI's.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_gradient(x: torch.Tensor) -> torch.Tensor:
    """|Sobel_x x| + |Sobel_y x| of (N, 1, H, W), unnormalised, replicate border."""
    kernel = torch.stack([_SOBEL_X, _SOBEL_X.t()]).unsqueeze(1).to(x)
    grad = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)
    return grad.abs().sum(dim=1, keepdim=True)


class FusionLossTerms(NamedTuple):
    total: torch.Tensor
    intensity: torch.Tensor
    gradient: torch.Tensor
    ssim: torch.Tensor


class FusionLoss(nn.Module):
    """Weighted intensity + Sobel-gradient + SSIM loss; ``forward(a, b, fused)``.

    Returns the weighted total; :meth:`terms` also gives the weighted parts
    for logging.
    """

    def __init__(self, w_intensity: float = 5.0, w_gradient: float = 10.0, w_ssim: float = 4.0,
                 ssim_window: int = 11, ssim_sigma: float = 1.5) -> None:
        super().__init__()
        self.w_intensity = w_intensity
        self.w_gradient = w_gradient
        self.w_ssim = w_ssim
        self.ssim_loss = SSIMLoss(spatial_dims=2, data_range=1.0, win_size=ssim_window,
                                  kernel_sigma=ssim_sigma)

    def terms(self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> FusionLossTerms:
        if not (a.shape == b.shape == fused.shape) or a.dim() != 4 or a.shape[1] != 1:
            raise ValueError(
                f"FusionLoss expects three (N, 1, H, W) tensors of one shape, got "
                f"{tuple(a.shape)}, {tuple(b.shape)}, {tuple(fused.shape)}"
            )
        intensity = F.l1_loss(fused, torch.maximum(a, b))
        gradient = F.l1_loss(sobel_gradient(fused),
                             torch.maximum(sobel_gradient(a), sobel_gradient(b)))
        # MONAI's SSIMLoss is 1 - SSIM; the spec's term is (1 - SSIM) / 2 per source.
        ssim = 0.25 * self.ssim_loss(fused, a) + 0.25 * self.ssim_loss(fused, b)
        parts = (self.w_intensity * intensity, self.w_gradient * gradient, self.w_ssim * ssim)
        return FusionLossTerms(parts[0] + parts[1] + parts[2], *parts)

    def forward(self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return self.terms(a, b, fused).total
