"""MixFuse network: structure, shapes, equivalences and trainability."""

import pytest
import torch
from swin_reference import reference_forward

from mixfuse_med.losses import FusionLoss
from mixfuse_med.networks import MixFuse, MixFuseConfig

# The authors' MixFusion (3 CAFR iterations, C=16, cross depth 4, self depth 2, 8 heads,
# window 8, qkv bias, conv MLPs, 3x3 conv head) has exactly this many parameters:
# per iteration embeddings 128 (first) or 352 (later), 4 cross blocks x 11792,
# 2 norms 64, 2 self blocks x 5080, final norm 32; head 623.
AUTHORS_PARAMETER_COUNT = 173_727

TINY = dict(embed_dim=8, iterations=2, cross_depth=2, self_depth=2, num_heads=2, window_size=4)


def images(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g), torch.rand(*shape, generator=g)


def test_default_config_is_the_papers():
    model = MixFuse()
    cfg = model.config
    assert (cfg.embed_dim, cfg.iterations, cfg.cross_depth, cfg.self_depth) == (16, 3, 4, 2)
    assert (cfg.num_heads, cfg.window_size, cfg.mlp_ratio, cfg.drop_path_rate) == (8, 8, 4.0, 0.1)
    assert sum(p.numel() for p in model.parameters()) == AUTHORS_PARAMETER_COUNT


def test_bad_config_and_inputs_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        MixFuseConfig(embed_dim=12, num_heads=8)
    with pytest.raises(ValueError, match="backend"):
        MixFuse(**TINY, attention="flash")
    model = MixFuse(**TINY)
    with pytest.raises(ValueError, match="same shape"):
        model(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))


@pytest.mark.parametrize("size", [(181, 217), (7, 9), (8, 8), (33, 16)])
def test_output_in_unit_range_and_input_size(size):
    torch.manual_seed(0)
    model = MixFuse().eval()
    mri, pet = images(2, 1, *size)
    with torch.no_grad():
        fused = model(mri, pet)
    assert fused.shape == (2, 1, *size)
    assert torch.isfinite(fused).all()
    assert fused.min() >= 0.0 and fused.max() <= 1.0


@pytest.mark.parametrize("size", [(16, 16), (21, 30), (6, 5)])
def test_matches_literal_swin_reference(size):
    """Window-ordered tokens, fused stream weights and grouped masks change nothing."""
    torch.manual_seed(1)
    model = MixFuse().eval()
    with torch.no_grad():  # give LayerNorms and biases non-trivial values
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    mri, pet = images(2, 1, *size, seed=1)
    with torch.no_grad():
        fast = model(mri, pet)
        reference = reference_forward(model, mri, pet)
    torch.testing.assert_close(fast, reference, atol=2e-5, rtol=0)


def test_fast_and_plain_attention_agree():
    torch.manual_seed(2)
    model = MixFuse().eval()
    mri, pet = images(2, 1, 40, 24, seed=2)
    with torch.no_grad():
        fast = model(mri, pet)
        model.attention = "matmul"
        plain = model(mri, pet)
    assert (fast - plain).abs().max() < 1e-5


def test_fast_and_plain_gradients_agree():
    """The custom backward (bias gradient without stored scores) is exact."""
    torch.manual_seed(3)
    model = MixFuse(**TINY, drop_path_rate=0.0).double().train()
    mri, pet = (t.double() for t in images(2, 1, 12, 10, seed=3))
    grads = {}
    for backend in ("sdpa", "matmul"):
        model.zero_grad()
        model.attention = backend
        model(mri, pet).square().sum().backward()
        grads[backend] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, g in grads["sdpa"].items():
        torch.testing.assert_close(g, grads["matmul"][name], atol=1e-9, rtol=1e-7, msg=name)


def test_gradients_reach_every_parameter():
    torch.manual_seed(4)
    model = MixFuse().train()
    mri, pet = images(2, 1, 24, 20, seed=4)
    FusionLoss()(mri, pet, model(mri, pet)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    zero = {n for n, p in model.named_parameters() if not p.grad.abs().sum() > 1e-7}
    # Followed by training-mode BatchNorm, the last conv's bias cancels: its gradient
    # is zero up to rounding by construction, as in the authors' network.
    assert zero <= {"head.conv2.bias"}


def test_eval_is_deterministic_and_batch_equals_single_slices():
    torch.manual_seed(5)
    model = MixFuse().eval()
    mri, pet = images(3, 1, 30, 26, seed=5)
    with torch.no_grad():
        batch = model(mri, pet)
        again = model(mri, pet)
        singles = torch.cat([model(mri[i : i + 1], pet[i : i + 1]) for i in range(3)])
    assert torch.equal(batch, again)
    torch.testing.assert_close(batch, singles, atol=1e-6, rtol=0)


def test_mixed_precision_runs():
    torch.manual_seed(6)
    model = MixFuse(**TINY).eval()
    mri, pet = images(1, 1, 20, 20, seed=6)
    with torch.no_grad():
        full = model(mri, pet)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(mri, pet)
    assert torch.isfinite(half).all()
    assert (half.float() - full).abs().max() < 0.05


def test_loss_decreases_when_training_a_tiny_model():
    torch.manual_seed(7)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    mri = ((xx.abs() < 0.6) & (yy.abs() < 0.6)).float() * 0.8  # a bright square
    pet = torch.exp(-((xx - 0.3) ** 2 + yy**2) / 0.1)  # a hot blob off-centre
    mri, pet = mri[None, None], pet[None, None]
    model = MixFuse(**TINY).train()
    loss_fn = FusionLoss()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = loss_fn(mri, pet, model(mri, pet))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_biased_attention_gradients_are_exact(monkeypatch):
    """Fused forward/backward plus the chunked mask gradient pass gradcheck."""
    from mixfuse_med.networks.attention import BiasedAttention

    monkeypatch.setattr(BiasedAttention, "CHUNK_ELEMENTS", 2 * 3 * 16 * 16)  # several chunks
    g = torch.Generator().manual_seed(8)

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    q, k, v = leaf(5, 3, 16, 2), leaf(5, 3, 16, 2), leaf(5, 3, 16, 2)
    mask = leaf(1, 3, 16, 16)
    assert torch.autograd.gradcheck(BiasedAttention.apply, (q, k, v, mask))


def test_native_attention_backward_matches_pytorch():
    """The C kernel used for training gives PyTorch's gradients (shift masks included)."""
    from mixfuse_med.networks import native
    from mixfuse_med.networks.attention import BiasedAttention

    if not native.available():
        pytest.skip("no C compiler: training uses the PyTorch backward")
    g = torch.Generator().manual_seed(9)
    q, k, v, grad = (torch.randn(7, 64, 3, 2, generator=g).transpose(1, 2) for _ in range(4))
    mask = torch.randn(1, 3, 64, 64, generator=g)
    mask[..., 40:, :20] = -100.0  # a shifted window's region mask
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask)
    expected = BiasedAttention.reference_backward(q, k, v, mask, out, lse, grad)
    got = native.window_attention_backward(q, k, v, grad, out, lse, mask)
    for name, e, o in zip("q k v mask".split(), expected, got, strict=True):
        torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-5, msg=name)
