"""MixFuse's building blocks: cross- and self-attention Swin blocks.

Parameters are laid out as in the authors' code (one module per stream, 1x1
convolutions for the MLP and the embedding, ``qkv`` linear layers), so the
parameter count and initialisation match.  The forward passes work on token
tensors (T, S*C) holding S streams side by side in the channels, tokens in a
:class:`WindowLayout` storage order; the per-stream weights are stacked into one
matrix per step so both streams of a cross block go through one GEMM and one
attention call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import window_attention
from .windows import WindowLayout, relative_index_on


def trunc_normal_init(module: nn.Module) -> None:
    """The authors' init: Linear ~ truncated N(0, 0.02), zero bias; LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def stream_layer_norm(x: torch.Tensor, norms: list[nn.LayerNorm]) -> torch.Tensor:
    """LayerNorm of each C-channel stream of (T, S*C) tokens with its own affine."""
    if len(norms) == 1:
        n = norms[0]
        return F.layer_norm(x, n.normalized_shape, n.weight, n.bias, n.eps)
    channels = norms[0].normalized_shape[0]
    shape = x.shape
    y = F.layer_norm(x.view(*shape[:-1], len(norms), channels), (channels,), eps=norms[0].eps)
    weight = torch.stack([n.weight for n in norms])
    bias = torch.stack([n.bias for n in norms])
    return torch.addcmul(bias, y, weight).view(shape)


def drop_path(x: torch.Tensor, rate: float, layout: WindowLayout, batch: int, streams: int,
              training: bool) -> torch.Tensor:
    """Stochastic depth on (T, S*C) window-major tokens, drawn per sample and stream."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty(1, batch, 1, streams, 1).bernoulli_(keep).div_(keep)
    view = x.view(-1, batch, layout.tokens_per_window, streams, x.shape[-1] // streams)
    return (view * mask).view_as(x)


class ConvMlp(nn.Module):
    """1x1 conv C -> ratio*C, GELU, 1x1 conv back, on the pixel grid."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)


def stream_mlp(x: torch.Tensor, mlps: list[ConvMlp]) -> torch.Tensor:
    """Each stream's ConvMlp on (T, S*C) tokens; the 1x1 convs are per-token GEMMs."""
    if len(mlps) == 1:
        m = mlps[0]
        h = F.gelu(F.linear(x, m.fc1.weight.flatten(1), m.fc1.bias))
        return F.linear(h, m.fc2.weight.flatten(1), m.fc2.bias)
    tokens, channels = x.shape
    streams = len(mlps)
    per_stream = x.view(tokens, streams, channels // streams).transpose(0, 1)
    w1 = torch.stack([m.fc1.weight.flatten(1).t() for m in mlps])
    b1 = torch.stack([m.fc1.bias for m in mlps]).unsqueeze(1)
    w2 = torch.stack([m.fc2.weight.flatten(1).t() for m in mlps])
    b2 = torch.stack([m.fc2.bias for m in mlps]).unsqueeze(1)
    h = F.gelu(torch.baddbmm(b1, per_stream, w1))
    out = torch.baddbmm(b2, h, w2)
    return out.transpose(0, 1).reshape(tokens, channels)


class _RelativeBias(nn.Module):
    """Swin's learnable (2w-1)^2 x heads relative position bias table."""

    def __init__(self, window: int, heads: int) -> None:
        super().__init__()
        self.window = window
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def bias(self, window: int) -> torch.Tensor:
        """(heads, N, N) bias for windows of ``window`` pixels (<= the table's)."""
        index = relative_index_on(window, self.window, self.relative_position_bias_table.device)
        n = window * window
        table = self.relative_position_bias_table
        return table.index_select(0, index).view(n, n, self.heads).permute(2, 0, 1)


class WindowAttention(_RelativeBias):
    """Self-attention in windows: one qkv projection, output projection."""

    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__(window, heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)


class CrossWindowAttention(_RelativeBias):
    """Cross-attention in windows (the paper's CATM attention).

    ``qkv_self`` projects the stream's own tokens x, ``qkv_other`` the other
    stream's tokens y; q = q_x, k = k_x + k_y, v = v_x + v_y.  The q part of
    ``qkv_other`` is unused, as in the authors' code (kept for parity).
    """

    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__(window, heads)
        self.qkv_self = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.qkv_other = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)


def _cross_qkv_weights(attn_a: CrossWindowAttention, attn_b: CrossWindowAttention):
    """One (6C x 2C) weight taking [x_a | x_b] to [q_a q_b | k_a k_b | v_a v_b].

    Stream a: q = Wq_self_a x_a; k, v = W_self_a x_a + W_other_a x_b, and
    stream b mirrors it.  A zero block drops the unused q of ``qkv_other``.
    """
    c = attn_a.proj.in_features
    zeros = attn_a.qkv_self.weight.new_zeros(c, c)

    def part(attn: CrossWindowAttention, i: int, own_first: bool) -> torch.Tensor:
        rows = slice(i * c, (i + 1) * c)
        own = attn.qkv_self.weight[rows]
        other = zeros if i == 0 else attn.qkv_other.weight[rows]
        return torch.cat([own, other] if own_first else [other, own], dim=1)

    weight = torch.cat([part(attn, i, attn is attn_a) for i in range(3) for attn in (attn_a, attn_b)])
    if attn_a.qkv_self.bias is None:
        return weight, None

    def part_bias(attn: CrossWindowAttention, i: int) -> torch.Tensor:
        rows = slice(i * c, (i + 1) * c)
        own = attn.qkv_self.bias[rows]
        return own if i == 0 else own + attn.qkv_other.bias[rows]

    bias = torch.cat([part_bias(attn, i) for i in range(3) for attn in (attn_a, attn_b)])
    return weight, bias


def _block_diagonal_linear(x: torch.Tensor, linears: list[nn.Linear]) -> torch.Tensor:
    if len(linears) == 1:
        return F.linear(x, linears[0].weight, linears[0].bias)
    weight = torch.block_diag(*[lin.weight for lin in linears])
    bias = torch.cat([lin.bias for lin in linears])
    return F.linear(x, weight, bias)


class SwinBlock(nn.Module):
    """x' = x + Attn(LN(x)); x'' = x' + ConvMLP(LN(x'))."""

    streams = 1

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float, drop_path: float,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.drop_path_rate = drop_path
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))

    def forward_tokens(self, x: torch.Tensor, layout: WindowLayout, batch: int,
                       backend: str) -> torch.Tensor:
        """x: (T, C) tokens in ``layout`` storage."""
        y = stream_layer_norm(x, [self.norm1])
        qkv = F.linear(y, self.attn.qkv.weight, self.attn.qkv.bias)
        y = window_attention(qkv, self.attn.bias(layout.window), layout, batch, backend)
        y = F.linear(y, self.attn.proj.weight, self.attn.proj.bias)
        x = x + drop_path(y, self.drop_path_rate, layout, batch, 1, self.training)
        y = stream_mlp(stream_layer_norm(x, [self.norm2]), [self.mlp])
        return x + drop_path(y, self.drop_path_rate, layout, batch, 1, self.training)


class CrossSwinBlock(nn.Module):
    """Both streams updated symmetrically, each with its own weights.

    a' = a + Xattn_A(LN(a), LN(b)); a'' = a' + ConvMLP_A(LN(a')), and the same
    for b with the roles swapped.
    """

    streams = 2

    def __init__(self, dim: int, heads: int, window: int, mlp_ratio: float, drop_path: float,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.drop_path_rate = drop_path
        self.norm1_a = nn.LayerNorm(dim)
        self.norm1_b = nn.LayerNorm(dim)
        self.attn_a = CrossWindowAttention(dim, window, heads, qkv_bias)
        self.attn_b = CrossWindowAttention(dim, window, heads, qkv_bias)
        self.norm2_a = nn.LayerNorm(dim)
        self.norm2_b = nn.LayerNorm(dim)
        self.mlp_a = ConvMlp(dim, int(dim * mlp_ratio))
        self.mlp_b = ConvMlp(dim, int(dim * mlp_ratio))

    def forward_tokens(self, x: torch.Tensor, layout: WindowLayout, batch: int,
                       backend: str) -> torch.Tensor:
        """x: (T, 2C) tokens in ``layout`` storage, stream a then stream b."""
        y = stream_layer_norm(x, [self.norm1_a, self.norm1_b])
        weight, bias = _cross_qkv_weights(self.attn_a, self.attn_b)
        qkv = F.linear(y, weight, bias)
        pos_bias = torch.cat([self.attn_a.bias(layout.window), self.attn_b.bias(layout.window)])
        y = window_attention(qkv, pos_bias, layout, batch, backend)
        y = _block_diagonal_linear(y, [self.attn_a.proj, self.attn_b.proj])
        x = x + drop_path(y, self.drop_path_rate, layout, batch, 2, self.training)
        y = stream_mlp(stream_layer_norm(x, [self.norm2_a, self.norm2_b]), [self.mlp_a, self.mlp_b])
        return x + drop_path(y, self.drop_path_rate, layout, batch, 2, self.training)


class PatchEmbed(nn.Module):
    """1x1 conv c_in -> C then LayerNorm (patch size 1: every pixel a token)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 1)
        self.norm = nn.LayerNorm(dim)


def embed_streams(x: torch.Tensor, embeds: list[PatchEmbed]) -> torch.Tensor:
    """(T, S*c_in) -> (T, S*C): each stream through its own embedding."""
    weight = torch.block_diag(*[e.proj.weight.flatten(1) for e in embeds])
    bias = torch.cat([e.proj.bias for e in embeds])
    return stream_layer_norm(F.linear(x, weight, bias), [e.norm for e in embeds])
