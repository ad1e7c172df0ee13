"""The public Python entry points (/work/shared/PUBLIC_API.md), called as users call them."""

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

import mixfuse_med
from mixfuse_med.color import rgb_to_ycbcr
from mixfuse_med.colormaps import apply_colormap
from mixfuse_med.networks import MixFuse

SHIPPED_WEIGHTS = Path(mixfuse_med.__file__).parent / "weights" / "mixfuse_default.pt"
H, W = 40, 48  # small: the default network fuses it in about a second on the CPU


def blob(seed: int) -> np.ndarray:
    """A smooth bright blob on a darker noisy background, float in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:H, :W]
    centre = rng.uniform([10, 10], [H - 10, W - 10])
    image = 0.15 + 0.8 * np.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / 60.0)
    return np.clip(image + rng.normal(0, 0.03, (H, W)), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return mixfuse_med.load_pretrained("cpu")


def test_load_pretrained_gives_the_shipped_weights_in_eval_mode_on_cpu(model):
    assert isinstance(model, MixFuse)
    assert not any(module.training for module in model.modules())  # eval, BatchNorm and drop path too
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in MixFuse().parameters())
    shipped = torch.load(SHIPPED_WEIGHTS, map_location="cpu", weights_only=True)
    loaded = model.state_dict()
    assert set(loaded) == set(shipped)
    for name, tensor in shipped.items():
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0, msg=name)


def test_load_pretrained_defaults_to_the_cpu_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the default is CUDA")
    assert {p.device.type for p in mixfuse_med.load_pretrained().parameters()} == {"cpu"}


def test_fuse_2d_uint8_grey_pair_gives_uint8_hxw(model):
    mri = np.rint(blob(0) * 255).astype(np.uint8)
    pet = np.rint(blob(1) * 255).astype(np.uint8)
    fused = mixfuse_med.fuse_2d(mri, pet, model=model)
    assert fused.shape == (H, W) and fused.dtype == np.uint8
    assert fused.std() > 5  # an image, not a constant
    # the same fusion as float input, rounded: uint8 is only the encoding
    as_float = mixfuse_med.fuse_2d(mri / 255.0, pet / 255.0, model=model)
    assert np.abs(fused.astype(int) - np.rint(as_float * 255).astype(int)).max() <= 1


def test_fuse_2d_float_grey_with_colour_keeps_the_functional_chroma(model):
    mri = blob(2).astype(np.float64)
    pet = apply_colormap(blob(3), "pet").astype(np.float64)  # (H, W, 3): the colour a user would pass
    fused = mixfuse_med.fuse_2d(mri, pet, model=model)
    assert fused.shape == (H, W, 3) and np.issubdtype(fused.dtype, np.floating)
    assert fused.min() >= 0.0 and fused.max() <= 1.0

    # where the RGB rebuilt from (fused Y, Cb, Cr) fits the gamut, its chroma is the PET's
    unclamped = np.all((fused > 1e-4) & (fused < 1.0 - 1e-4), axis=-1)
    assert unclamped.mean() > 0.2
    chroma_in, chroma_out = rgb_to_ycbcr(pet)[..., 1:], rgb_to_ycbcr(fused)[..., 1:]
    assert np.abs(chroma_in - 0.5)[unclamped].max() > 0.1  # really coloured: grey output would fail
    np.testing.assert_allclose(chroma_out[unclamped], chroma_in[unclamped], atol=4e-3)  # rounded inverse
    # elsewhere the chroma only shrinks towards grey (same hue), it never changes direction
    offsets_in, offsets_out = chroma_in - 0.5, chroma_out - 0.5
    coloured = np.linalg.norm(offsets_in, axis=-1) > 0.05
    along = (offsets_in * offsets_out).sum(-1) / np.linalg.norm(offsets_in, axis=-1) ** 2
    assert np.all(along[coloured] > -4e-3) and np.all(along[coloured] < 1.0 + 4e-2)
    # the anatomy shows through the brightness: the luma differs from the PET's alone
    assert np.abs(rgb_to_ycbcr(fused)[..., 0] - rgb_to_ycbcr(pet)[..., 0]).mean() > 0.01


def test_fuse_2d_refuses_a_size_mismatch_clearly(model):
    with pytest.raises(ValueError, match=r"functional.*\(40, 48\).*\(40, 47\)"):
        mixfuse_med.fuse_2d(blob(0), blob(1)[:, :47], model=model)
    with pytest.raises(ValueError, match=r"functional.*\(40, 48\).*\(40, 47, 3\)"):
        mixfuse_med.fuse_2d(blob(0), np.zeros((H, W - 1, 3), np.float32), model=model)


@pytest.mark.parametrize("name, module", [("fuse_study", "mixfuse_med.pipeline"),
                                          ("register_rigid", "mixfuse_med.transforms"),
                                          ("load_pretrained", "mixfuse_med.inference"),
                                          ("fuse_2d", "mixfuse_med.inference")])
def test_lazy_top_level_names_resolve(name, module, monkeypatch):
    monkeypatch.delitem(vars(mixfuse_med), name, raising=False)  # not cached: __getattr__ must find it
    assert name in mixfuse_med.__all__
    value = getattr(mixfuse_med, name)
    assert callable(value) and value is getattr(importlib.import_module(module), name)


def test_an_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="fuse_3d"):
        mixfuse_med.fuse_3d  # noqa: B018 (the lookup is the test)


def test_mixfuse_forward_contract():
    torch.manual_seed(0)
    net = MixFuse().eval()
    mri, functional = torch.rand(2, 1, H, W), torch.rand(2, 1, H, W)
    with torch.no_grad():
        fused = net(mri, functional)
    assert fused.shape == (2, 1, H, W) and fused.dtype == torch.float32
    assert torch.isfinite(fused).all() and fused.min() >= 0 and fused.max() <= 1
