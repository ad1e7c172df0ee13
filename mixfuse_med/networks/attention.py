"""Window attention over tokens stored in a :class:`WindowLayout` order.

Tokens are a flat (T, channels) tensor, T = windows x batch x N, window-major
(see :mod:`.windows`), so q, k and v of any run of windows are strided views
of the projection output: no copy before attention.

Two interchangeable paths compute the same thing:

- ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` with the
  relative position bias and the shift mask folded into one additive mask,
  one call per shift-mask pattern; it never materialises the
  (windows x heads x N x N) scores in the forward pass.
- ``"matmul"``: the reference formulation, scores = q k^T + bias + mask,
  softmax, times v.  Kept as the ground truth for tests and benchmarks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import native
from .windows import WindowLayout

ATTENTION_BACKENDS = ("sdpa", "matmul")


def window_attention(
    qkv: torch.Tensor,
    bias: torch.Tensor,
    layout: WindowLayout,
    batch: int,
    backend: str = "sdpa",
) -> torch.Tensor:
    """Attention inside every window of ``layout``.

    qkv:  (T, 3*S*C) projections, channels ordered (q, k, v), stream, head,
          head_dim; T = windows x batch x N in layout storage.
    bias: (S*heads, N, N) relative position bias, stream-major.
    Returns (T, S*C), channels ordered stream, head, head_dim.
    """
    n = layout.tokens_per_window
    stream_heads = bias.shape[0]
    head_dim = qkv.shape[-1] // (3 * stream_heads)
    per_window = qkv.view(layout.num_windows, batch * n, 3, stream_heads, head_dim)
    out = qkv.new_empty(layout.num_windows, batch * n, stream_heads, head_dim)
    for group in layout.groups:
        rows = per_window[group.start : group.stop].reshape(-1, n, 3, stream_heads, head_dim)
        q, k, v = (rows[:, :, i].transpose(1, 2) for i in range(3))  # (M, SH, N, d)
        mask = (bias + layout.masks[group.pattern]).unsqueeze(0).to(q.dtype)
        if backend == "sdpa":
            o = attend(q, k, v, mask)
        elif backend == "matmul":
            scores = (q * head_dim**-0.5) @ k.transpose(-2, -1) + mask
            o = scores.softmax(dim=-1) @ v
        else:
            raise ValueError(f"unknown attention backend {backend!r}; use one of {ATTENTION_BACKENDS}")
        out[group.start : group.stop].view(-1, n, stream_heads, head_dim).copy_(o.transpose(1, 2))
    return out.view(qkv.shape[0], stream_heads * head_dim)


_aten = torch.ops.aten
_HAS_CPU_FLASH = hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu") and hasattr(
    _aten, "_scaled_dot_product_flash_attention_for_cpu_backward")


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v, fused, also when the mask is learnable."""
    if (mask.requires_grad and torch.is_grad_enabled() and q.device.type == "cpu"
            and _HAS_CPU_FLASH and not torch.jit.is_tracing()):
        return BiasedAttention.apply(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class BiasedAttention(torch.autograd.Function):
    """CPU attention with a learnable additive mask shared by all windows.

    PyTorch's fused CPU kernel refuses a mask that needs a gradient and falls
    back to materialising every score.  Here the fused kernel runs forward and
    backward for q, k and v; only the mask gradient, sum over windows of
    dS = P * (dO v^T - rowsum(dO * O)), is computed apart, a chunk of windows
    at a time with P rebuilt from the saved log-sum-exp, so the memory peak
    stays at one chunk.  q, k, v: (M, G, N, d); mask: (1, G, N, N).
    """

    CHUNK_ELEMENTS = 1 << 20  # scores per chunk: 4 MiB in float32

    @staticmethod
    def forward(ctx, q, k, v, mask):
        out, lse = _aten._scaled_dot_product_flash_attention_for_cpu(
            q.detach(), k.detach(), v.detach(), attn_mask=mask.detach())
        ctx.save_for_backward(q, k, v, mask, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, mask, out, lse = ctx.saved_tensors
        if native.supports(q):
            return native.window_attention_backward(q, k, v, grad_out, out, lse, mask)
        return BiasedAttention.reference_backward(q, k, v, mask, out, lse, grad_out)

    @staticmethod
    def reference_backward(q, k, v, mask, out, lse, grad_out):
        """The same gradients from PyTorch ops: fused kernel for q, k, v; chunked mask gradient."""
        grad_out = grad_out.contiguous()
        grad_q, grad_k, grad_v = _aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_out, q, k, v, out, lse, 0.0, False, attn_mask=mask)
        windows, groups, n, d = q.shape
        scale = d**-0.5
        delta = (grad_out * out).sum(-1, keepdim=True)
        log_norm = lse.unsqueeze(-1).to(q.dtype)
        grad_mask = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        step = max(1, BiasedAttention.CHUNK_ELEMENTS // (groups * n * n))
        for start in range(0, windows, step):
            sl = slice(start, min(windows, start + step))
            probs = (torch.matmul(q[sl], k[sl].transpose(-2, -1)).mul_(scale).add_(mask)
                     .sub_(log_norm[sl]).exp_())
            grad_probs = torch.matmul(grad_out[sl], v[sl].transpose(-2, -1)).sub_(delta[sl])
            grad_mask += probs.mul_(grad_probs).sum(dim=0, keepdim=True, dtype=torch.float32)
        return grad_q, grad_k, grad_v, grad_mask.to(mask.dtype)
