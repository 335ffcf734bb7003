"""The Enhancer's half-precision autocast (``--half``): fp16 on CUDA, bfloat16 on CPUs that multiply it
natively. Run here on the CPU in bfloat16 whatever this CPU has (emulated where it is not native: slower,
same numbers), so the dtype handling that CUDA's fp16 shares (a network's half-precision output meeting
the photo's float32 in the gate's blend, the guided filter's float64 fit) is checked on every machine."""

from __future__ import annotations

import pytest
import torch

from dslrify import enhancer as enhancer_module
from dslrify.enhancer import Enhancer
from dslrify.errors import DslrifyError
from dslrify.models.base import EnhancementModel, ModelSpec


def photo_pixels(h: int = 480, w: int = 720) -> torch.Tensor:
    """(1, 3, h, w) uint8: smooth gradients plus noise, so every network has something to do."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = torch.stack([xx, yy, (xx + yy) / 2])[None] * 0.7 + 0.3 * torch.rand(1, 3, h, w, generator=g)
    return (x * 255).round().to(torch.uint8)


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enhancer_module, "native_bfloat16", lambda: True)


def test_half_is_refused_with_advice_on_a_cpu_without_native_bfloat16(monkeypatch):
    monkeypatch.setattr(enhancer_module, "native_bfloat16", lambda: False)
    with pytest.raises(DslrifyError, match="native bfloat16") as caught:
        Enhancer("fast", device="cpu", half=True)
    assert caught.value.advice is not None and "drop --half" in caught.value.advice


@pytest.mark.usefixtures("native_bf16")
@pytest.mark.parametrize("name", ["fast", "balanced", "default", "paper"])
def test_every_shipped_model_runs_in_half_precision_within_a_few_levels(name):
    """Each architecture behind the shipped models (guided and detail inside the gate, the gate around a
    full-resolution network, the U-Net) gives 8-bit output within a few levels of float32's. 480x720:
    larger than the thumbnails (384 px: made band by band) and than the guided filter's row chunk."""
    x = photo_pixels()
    exact = Enhancer(name, device="cpu").enhance_pixels(x)
    half = Enhancer(name, device="cpu", half=True).enhance_pixels(x)
    assert half.dtype == torch.uint8 and half.shape == x.shape
    diff = (half.float() - exact.float()).abs()
    assert float(diff.max()) > 0  # it really ran in bfloat16
    assert float(diff.mean()) < 1.0 and float(diff.max()) <= 8


@pytest.mark.usefixtures("native_bf16")
def test_half_precision_tiles_measure_whole_photo_statistics_too():
    """``default`` tiled (instance-norm statistics measured tile by tile) under autocast agrees with its
    untiled half-precision run as closely as float32 tiles agree with float32 whole."""
    x = photo_pixels(120, 160)
    whole = Enhancer("default", device="cpu", tile=0, half=True).enhance_pixels(x)
    tiled = Enhancer("default", device="cpu", tile=64, half=True).enhance_pixels(x)
    assert float((whole.float() - tiled.float()).abs().max()) <= 4


@pytest.mark.usefixtures("native_bf16")
@pytest.mark.parametrize("name", ["default", "paper", "fast"])
def test_half_precision_contexts_are_float32_so_video_frames_can_blend_them(name):
    """Video blends whole-photo contexts over frames; in bfloat16 a running average loses small steps
    (an exposure change never settles), so the Enhancer hands them out in float32."""
    from dslrify.temporal import map_context

    context = Enhancer(name, device="cpu", half=True).context_of(photo_pixels(120, 160))
    dtypes: list[torch.dtype] = []
    map_context(lambda t: dtypes.append(t.dtype) or t, context)
    assert dtypes and all(d in (torch.float32, torch.float64) for d in dtypes), dtypes


@pytest.mark.usefixtures("native_bf16")
def test_half_is_refused_for_a_model_without_a_network():
    class Invert(EnhancementModel):  # a pointwise model with no weights, like a look or an ONNX graph
        def __init__(self) -> None:
            super().__init__()
            self.spec = ModelSpec()

        def enhance(self, x, context, origin):
            return 1 - x

    with pytest.raises(DslrifyError, match="--half is for PyTorch networks"):
        Enhancer(Invert(), device="cpu", half=True)
