"""MixFuse (Li et al., ESWA 261, 2025, 125427): iterative mix-attention fusion.

Structure as in ``MIXFUSE_SPEC.md`` section 2: ``iterations`` MATBs (cross
attention module then self attention module) and a convolutional
reconstruction head.  The tokens of a forward pass stay in window order from
the first embedding to the last block (see :mod:`.windows`), so the whole
transformer runs without rolls or window partitions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import ATTENTION_BACKENDS
from .blocks import (
    CrossSwinBlock,
    PatchEmbed,
    SwinBlock,
    embed_streams,
    stream_layer_norm,
    trunc_normal_init,
)
from .windows import WindowLayout, reorder_index, window_layout


@dataclass(frozen=True)
class MixFuseConfig:
    """Hyper-parameters; the defaults are the paper's configuration."""

    embed_dim: int = 16
    iterations: int = 3
    cross_depth: int = 4
    self_depth: int = 2
    num_heads: int = 8
    window_size: int = 8
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        if self.embed_dim % 2 or self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} must be even and divisible by num_heads {self.num_heads}"
            )
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim {self.embed_dim} must be divisible by 4 (head: C -> C/4)")
        if min(self.iterations, self.cross_depth, self.self_depth, self.window_size) < 1:
            raise ValueError("iterations, depths and window_size must be >= 1")


def _drop_path_rates(depth: int, rate: float) -> list[float]:
    return [float(r) for r in torch.linspace(0, rate, depth)]


class MATB(nn.Module):
    """One mix-attention iteration: embed, CATM, merge, SATM."""

    def __init__(self, in_channels: int, cfg: MixFuseConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.embed_a = PatchEmbed(in_channels, dim)
        self.embed_b = PatchEmbed(in_channels, dim)
        block_args = dict(heads=cfg.num_heads, window=cfg.window_size,
                          mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias)
        self.cross_blocks = nn.ModuleList(
            CrossSwinBlock(dim, drop_path=r, **block_args)
            for r in _drop_path_rates(cfg.cross_depth, cfg.drop_path_rate)
        )
        self.norm_a = nn.LayerNorm(dim)
        self.norm_b = nn.LayerNorm(dim)
        self.self_blocks = nn.ModuleList(
            SwinBlock(dim, drop_path=r, **block_args)
            for r in _drop_path_rates(cfg.self_depth, cfg.drop_path_rate)
        )
        self.norm = nn.LayerNorm(dim)


class ReconstructionHead(nn.Module):
    """3x3 conv C -> C/4, BN, LeakyReLU(0.1); 3x3 conv -> 1, BN; tanh/2 + 0.5."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim // 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim // 4)
        self.conv2 = nn.Conv2d(dim // 4, 1, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)
        return torch.tanh(self.bn2(self.conv2(x))) / 2 + 0.5


class MixFuse(nn.Module):
    """Fuse an anatomical and a functional image, both (N, 1, H, W) in [0, 1].

    ``attention`` picks the attention path: ``"sdpa"`` (fast, default) or
    ``"matmul"`` (reference formulation); both give the same result.
    """

    def __init__(
        self,
        embed_dim: int = 16,
        iterations: int = 3,
        cross_depth: int = 4,
        self_depth: int = 2,
        num_heads: int = 8,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        qkv_bias: bool = True,
        attention: str = "sdpa",
    ) -> None:
        super().__init__()
        self.config = MixFuseConfig(embed_dim, iterations, cross_depth, self_depth, num_heads,
                                    window_size, mlp_ratio, drop_path_rate, qkv_bias)
        self.attention = attention
        self.iterations = nn.ModuleList(
            MATB(1 if i == 0 else embed_dim // 2, self.config) for i in range(iterations)
        )
        self.head = ReconstructionHead(embed_dim)
        self.apply(trunc_normal_init)

    @property
    def attention(self) -> str:
        return self._attention

    @attention.setter
    def attention(self, backend: str) -> None:
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend {backend!r}; use one of {ATTENTION_BACKENDS}")
        self._attention = backend

    def config_dict(self) -> dict:
        return asdict(self.config)

    def _window_and_shift(self, height: int, width: int) -> tuple[int, int]:
        window = self.config.window_size
        if min(height, width) < window:  # smaller than one window: shrink, no shift
            return min(height, width), 0
        return window, window // 2

    def forward(self, mri: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
        if mri.shape != functional.shape or mri.dim() != 4 or mri.shape[1] != 1:
            raise ValueError(
                "MixFuse expects two (N, 1, H, W) tensors of the same shape, got "
                f"{tuple(mri.shape)} and {tuple(functional.shape)}"
            )
        # plain ints: under torch.jit.trace sizes are tensors, and the size fixes the layout anyway
        height, width = (int(s) for s in mri.shape[-2:])
        window, shift = self._window_and_shift(height, width)
        x = pad_to_multiple(torch.cat([mri, functional], dim=1), window)
        batch, _, hp, wp = (int(s) for s in x.shape)
        device = x.device
        plain = window_layout(hp, wp, window, 0, device)
        shifted = window_layout(hp, wp, window, shift, device) if shift else plain
        layouts = [plain, shifted]

        tokens = x.permute(0, 2, 3, 1).reshape(batch * hp * wp, 2)  # raster storage
        order: WindowLayout | None = None
        for matb in self.iterations:
            tokens = embed_streams(tokens, [matb.embed_a, matb.embed_b])
            for i, block in enumerate(matb.cross_blocks):
                tokens, order = _to_layout(tokens, order, layouts[i % 2], batch, device)
                tokens = block.forward_tokens(tokens, order, batch, self.attention)
            tokens = stream_layer_norm(tokens, [matb.norm_a, matb.norm_b])
            dim = tokens.shape[-1] // 2
            tokens = tokens[:, :dim] + tokens[:, dim:]
            for i, block in enumerate(matb.self_blocks):
                tokens, order = _to_layout(tokens, order, layouts[i % 2], batch, device)
                tokens = block.forward_tokens(tokens, order, batch, self.attention)
            tokens = stream_layer_norm(tokens, [matb.norm])
        tokens, _ = _to_layout(tokens, order, None, batch, device)
        features = tokens.view(batch, hp, wp, -1).permute(0, 3, 1, 2)
        return self.head(features)[..., :height, :width]


def _to_layout(tokens: torch.Tensor, src: WindowLayout | None, dst: WindowLayout | None,
               batch: int, device: torch.device):
    index = reorder_index(src, dst, batch, device)
    if index is not None:
        tokens = tokens.index_select(0, index)
    return tokens, dst


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad right/bottom with mirrored content (edge repeated) to a multiple.

    This is the reference's padding: ``cat([x, flip(x)])`` then crop, which
    needs the pad to be no larger than the image, true whenever the window
    is not larger than the image.
    """
    height, width = (int(s) for s in x.shape[-2:])
    pad_h = -height % multiple
    pad_w = -width % multiple
    if pad_h:
        x = torch.cat([x, x[..., height - pad_h:, :].flip(-2)], dim=-2)
    if pad_w:
        x = torch.cat([x, x[..., :, width - pad_w:].flip(-1)], dim=-1)
    return x


class StackedMixFuse(MixFuse):
    """MixFuse taking one (N, 2, H, W) tensor, MRI then functional.

    For tools that feed a network a single input: TorchScript export by
    tracing (``python -m monai.bundle ckpt_export``), MONAI inferers.  Same
    parameters and state dict as :class:`MixFuse`.
    """

    def forward(self, pair: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if pair.dim() != 4 or pair.shape[1] != 2:
            raise ValueError(f"expected (N, 2, H, W): MRI and functional, got {tuple(pair.shape)}")
        return super().forward(pair[:, :1], pair[:, 1:])
