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
            if mask.requires_grad and torch.is_grad_enabled():
                o = BiasedAttention.apply(q, k, v, mask)
            else:
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif backend == "matmul":
            scores = (q * head_dim**-0.5) @ k.transpose(-2, -1) + mask
            o = scores.softmax(dim=-1) @ v
        else:
            raise ValueError(f"unknown attention backend {backend!r}; use one of {ATTENTION_BACKENDS}")
        out[group.start : group.stop].view(-1, n, stream_heads, head_dim).copy_(o.transpose(1, 2))
    return out.view(qkv.shape[0], stream_heads * head_dim)


class BiasedAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d) + mask) v with a learnable mask shared by all windows.

    PyTorch's fused kernels refuse a mask that needs a gradient and fall back
    to materialising every score at once.  Here the forward runs the fused
    kernel and the backward recomputes the scores a chunk of windows at a
    time, so the memory peak is one chunk while q, k, v and the mask all get
    their gradients.  q, k, v: (M, G, N, d); mask: (1, G, N, N).
    """

    CHUNK_ELEMENTS = 1 << 22  # scores per chunk: 16 MiB in float32

    @staticmethod
    def forward(ctx, q, k, v, mask):
        # Detached inputs: a mask that requires grad would steer SDPA to its math path.
        out = F.scaled_dot_product_attention(q.detach(), k.detach(), v.detach(),
                                             attn_mask=mask.detach())
        ctx.save_for_backward(q, k, v, mask, out)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, mask, out = ctx.saved_tensors
        windows, groups, n, d = q.shape
        scale = d**-0.5
        grad_q, grad_k, grad_v = (torch.empty(t.shape, dtype=t.dtype, device=t.device)
                                  for t in (q, k, v))
        grad_mask = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        # softmax backward needs delta_i = sum_j P_ij dP_ij = dO_i . O_i
        delta = (grad_out * out).sum(-1, keepdim=True)
        step = max(1, BiasedAttention.CHUNK_ELEMENTS // (groups * n * n))
        for start in range(0, windows, step):
            sl = slice(start, min(windows, start + step))
            qc, kc, vc, go = q[sl], k[sl], v[sl], grad_out[sl]
            probs = torch.matmul(qc, kc.transpose(-2, -1)).mul_(scale).add_(mask).softmax(dim=-1)
            grad_v[sl] = probs.transpose(-2, -1) @ go
            grad_scores = probs.mul_(torch.matmul(go, vc.transpose(-2, -1)).sub_(delta[sl]))
            grad_mask += grad_scores.sum(dim=0, keepdim=True, dtype=torch.float32)
            grad_q[sl] = torch.matmul(grad_scores, kc).mul_(scale)
            grad_k[sl] = torch.matmul(grad_scores.transpose(-2, -1), qc).mul_(scale)
        return grad_q, grad_k, grad_v, grad_mask.to(mask.dtype)
