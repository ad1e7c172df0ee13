"""A slow, literal MixFuse forward written straight from the spec (section 2).

Rolls, window partitions and per-window attention exactly as Swin does them,
using the parameters of a :class:`mixfuse_med.networks.MixFuse`.  The tests
hold the fast implementation (window-ordered tokens, fused stream weights,
grouped shift masks) against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mixfuse_med.networks import MixFuse, pad_to_multiple


def _partition(x: torch.Tensor, w: int) -> torch.Tensor:  # (B, H, W, C) -> (B*nW, w*w, C)
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _reverse(windows: torch.Tensor, w: int, b: int, h: int, wd: int) -> torch.Tensor:
    x = windows.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, -1)


def _shift_mask(h: int, wd: int, w: int, s: int) -> torch.Tensor:
    img = torch.zeros(1, h, wd, 1)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    mw = _partition(img, w).squeeze(-1)
    mask = mw.unsqueeze(1) - mw.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def _bias(table: torch.Tensor, w: int, table_w: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (table_w - 1)
    index = rel[..., 0] * (2 * table_w - 1) + rel[..., 1]
    return table[index.reshape(-1)].view(w * w, w * w, -1).permute(2, 0, 1)


def _attend(q, k, v, heads, bias, mask):
    bn, n, c = q.shape
    q, k, v = (t.view(bn, n, heads, c // heads).transpose(1, 2) for t in (q, k, v))
    attn = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1) + bias.unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        attn = attn.view(bn // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, n, n)
    return (attn.softmax(-1) @ v).transpose(1, 2).reshape(bn, n, c)


def _mlp(mlp, x, b, h, wd):
    grid = x.transpose(1, 2).reshape(b, -1, h, wd)
    out = mlp.fc2(F.gelu(mlp.fc1(grid)))
    return out.flatten(2).transpose(1, 2)


def _windows(x, b, h, wd, w, s):
    grid = x.view(b, h, wd, -1)
    if s:
        grid = torch.roll(grid, (-s, -s), (1, 2))
    return _partition(grid, w)


def _unwindows(win, b, h, wd, w, s):
    grid = _reverse(win, w, b, h, wd)
    if s:
        grid = torch.roll(grid, (s, s), (1, 2))
    return grid.reshape(b, h * wd, -1)


def _cross_block(blk, a, b_, bsz, h, wd, w, s, table_w):
    mask = _shift_mask(h, wd, w, s) if s else None
    xa, xb = blk.norm1_a(a), blk.norm1_b(b_)
    wa, wb = _windows(xa, bsz, h, wd, w, s), _windows(xb, bsz, h, wd, w, s)
    outs = []
    for attn, own, other in ((blk.attn_a, wa, wb), (blk.attn_b, wb, wa)):
        q1, k1, v1 = attn.qkv_self(own).chunk(3, -1)
        _, k2, v2 = attn.qkv_other(other).chunk(3, -1)
        o = _attend(q1, k1 + k2, v1 + v2, attn.heads,
                    _bias(attn.relative_position_bias_table, w, table_w), mask)
        outs.append(attn.proj(o))
    a = a + _unwindows(outs[0], bsz, h, wd, w, s)
    b_ = b_ + _unwindows(outs[1], bsz, h, wd, w, s)
    a = a + _mlp(blk.mlp_a, blk.norm2_a(a), bsz, h, wd)
    b_ = b_ + _mlp(blk.mlp_b, blk.norm2_b(b_), bsz, h, wd)
    return a, b_


def _self_block(blk, x, bsz, h, wd, w, s, table_w):
    mask = _shift_mask(h, wd, w, s) if s else None
    win = _windows(blk.norm1(x), bsz, h, wd, w, s)
    q, k, v = blk.attn.qkv(win).chunk(3, -1)
    o = _attend(q, k, v, blk.attn.heads, _bias(blk.attn.relative_position_bias_table, w, table_w), mask)
    x = x + _unwindows(blk.attn.proj(o), bsz, h, wd, w, s)
    return x + _mlp(blk.mlp, blk.norm2(x), bsz, h, wd)


def reference_forward(model: MixFuse, mri: torch.Tensor, functional: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward of ``model`` the slow, literal way."""
    cfg = model.config
    h0, w0 = mri.shape[-2:]
    w = cfg.window_size
    if min(h0, w0) < w:
        w, shift = min(h0, w0), 0
    else:
        shift = w // 2
    x = pad_to_multiple(torch.cat([mri, functional], 1), w)
    bsz, _, h, wd = x.shape
    for matb in model.iterations:
        half = x.shape[1] // 2
        a = matb.embed_a.norm(matb.embed_a.proj(x[:, :half]).flatten(2).transpose(1, 2))
        b_ = matb.embed_b.norm(matb.embed_b.proj(x[:, half:]).flatten(2).transpose(1, 2))
        for i, blk in enumerate(matb.cross_blocks):
            a, b_ = _cross_block(blk, a, b_, bsz, h, wd, w, shift if i % 2 else 0, cfg.window_size)
        f = matb.norm_a(a) + matb.norm_b(b_)
        for i, blk in enumerate(matb.self_blocks):
            f = _self_block(blk, f, bsz, h, wd, w, shift if i % 2 else 0, cfg.window_size)
        f = matb.norm(f)
        x = f.transpose(1, 2).reshape(bsz, -1, h, wd)
    return model.head(x)[..., :h0, :w0]
