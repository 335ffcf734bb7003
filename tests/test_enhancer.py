"""Enhancer: tiling that never changes the result, strength, devices, image types."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import random_unet
from dslrify.enhancer import Enhancer, plan_tiles
from dslrify.errors import DslrifyError
from dslrify.models.base import ContextInstanceNorm, ModelSpec, MomentsModel, MomentsPass


class TinyNormNet(MomentsModel):
    """Conv -> instance norm -> conv -> instance norm -> conv: chained whole-image statistics."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.spec = ModelSpec(receptive_field=3, context="moments")
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.norm = ContextInstanceNorm(8)
        self.b = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.norm2 = ContextInstanceNorm(8)
        self.c = torch.nn.Conv2d(8, 3, 3, padding=1)

    def network(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        h = torch.relu(self.norm2(self.b(torch.relu(self.norm(self.a(x), stats))), stats))
        return torch.sigmoid(self.c(h))


def test_tiles_cover_every_pixel_exactly_once():
    cover = np.zeros((301, 457), int)
    for t in plan_tiles(301, 457, tile=100, halo=13, multiple=8):
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
        assert t.cy0 <= t.y0 and t.cy1 >= t.y1 and t.cx0 <= t.x0 and t.cx1 >= t.x1
        assert t.cy0 % 8 == 0 and t.cx0 % 8 == 0  # crops start on the pooling grid
    assert (cover == 1).all()


def test_tiled_output_matches_untiled_within_one_level():
    model = random_unet()
    x = torch.rand(1, 3, 230, 310)
    whole = Enhancer(model, device="cpu", tile=0).enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=64).enhance_tensor(x)
    assert (whole - x).abs().max() > 0.05  # the model really changes the photo
    assert (tiled - whole).abs().max() <= 1 / 255


def test_declared_receptive_field_covers_the_real_one():
    model = random_unet().double()
    x = torch.rand(1, 3, 200, 200, dtype=torch.double, requires_grad=True)
    context = model.compute_context(x).detach()
    model(x, context)[0, :, 101, 99].sum().backward()
    ys, xs = (x.grad.abs().sum(1)[0] > 0).nonzero(as_tuple=True)
    reach = max(101 - ys.min(), ys.max() - 101, 99 - xs.min(), xs.max() - 99)
    assert 0 < reach <= model.spec.receptive_field


def test_instance_norm_tiles_share_whole_image_statistics():
    model = TinyNormNet().eval()
    x = torch.rand(1, 3, 90, 120)
    x[:, :, :, 60:] *= 0.3  # the right half is darker: per-tile statistics would differ
    whole = Enhancer(model, device="cpu", tile=0).enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=32).enhance_tensor(x)
    # Exact statistics: the tiled photo is the whole photo up to float summation order.
    assert (tiled - whole).abs().max() < 1e-5
    # Without the shared context each tile normalises by itself and the look changes.
    alone = model(x[:, :, :, 60:])
    assert (alone - whole[:, :, :, 60:]).abs().max() > 0.01


def test_auto_tile_size_follows_free_memory(monkeypatch):
    model = random_unet()
    enhancer = Enhancer(model, device="cpu")
    monkeypatch.setattr("dslrify.enhancer.available_memory", lambda device: 1 << 40)
    assert enhancer._choose_tile(700, 900) is None
    monkeypatch.setattr("dslrify.enhancer.available_memory", lambda device: 400 * 1024**2)
    small = enhancer._choose_tile(4000, 6000)
    assert small is not None and small < 4000


def test_a_1280x720_photo_runs_whole_even_for_dpeds_generator_but_12_mp_is_tiled(monkeypatch):
    """Whole means instance-norm statistics from the photo itself: the model's exact output."""
    from dslrify.models import build_model

    monkeypatch.setattr("dslrify.enhancer.available_memory", lambda device: 16 * 1024**3)
    enhancer = Enhancer(build_model("dped"), device="cpu")
    assert enhancer._choose_tile(720, 1280) is None
    tile = enhancer._choose_tile(2848, 4272)
    per_pixel = enhancer.model.spec.bytes_per_pixel
    assert tile is not None and tile * tile * per_pixel <= 0.75 * 1024**3  # tiles keep the smaller cap


def test_strength_blends_linearly_with_the_input():
    model = random_unet()
    x = torch.rand(1, 3, 64, 64)
    full = Enhancer(model, device="cpu").enhance_tensor(x)
    assert torch.equal(Enhancer(model, device="cpu", strength=0.0).enhance_tensor(x), x)
    half = Enhancer(model, device="cpu", strength=0.5).enhance_tensor(x)
    assert torch.allclose(half, (x + full) / 2, atol=1e-6)


def test_bad_strength_and_device_are_errors():
    with pytest.raises(DslrifyError, match="strength"):
        Enhancer(random_unet(), strength=1.5)
    if not torch.cuda.is_available():
        with pytest.raises(DslrifyError, match="CUDA"):
            Enhancer(random_unet(), device="cuda")


def test_enhance_returns_the_type_it_was_given(photo_array):
    enhancer = Enhancer(random_unet(), device="cpu")
    out = enhancer.enhance(photo_array)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == photo_array.shape
    assert np.abs(out.astype(int) - photo_array).max() > 5
    as_float = enhancer.enhance(photo_array.astype(np.float32) / 255)
    assert as_float.dtype == np.float32 and np.abs(as_float * 255 - out).max() <= 1.0
    pil = enhancer.enhance(Image.fromarray(photo_array))
    assert isinstance(pil, Image.Image) and pil.size == (128, 96) and pil.mode == "RGB"
    assert np.array_equal(np.asarray(pil), out)


def test_rgba_image_keeps_its_alpha(photo_array):
    alpha = np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1))
    rgba = Image.fromarray(np.dstack([photo_array, alpha]), "RGBA")
    out = Enhancer(random_unet(), device="cpu").enhance(rgba)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out)[..., 3], alpha)


def test_load_model_is_differentiable_for_preprocessing():
    from dslrify import load_model

    model = load_model("default")
    x = torch.rand(2, 3, 48, 40, requires_grad=True)
    y = model(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    y.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fast_model_tiles_match_the_whole_photo():
    from dslrify.models import build_model

    torch.manual_seed(0)
    model = build_model("guided", {"context_size": 48, "radius": 2}).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.rand(1, 3, 150, 230)
    whole = Enhancer(model, device="cpu", tile=0).enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=64).enhance_tensor(x)
    assert (whole - x).abs().max() > 0.01
    assert (tiled - whole).abs().max() <= 1 / 255


def _smooth_sky(h: int = 120, w: int = 160) -> torch.Tensor:
    """A smooth vertical gradient, like a clear sky: its own edge steps are tiny."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.35 + 0.3 * yy, 0.5 + 0.1 * xx, 0.8 - 0.3 * yy])[None]


def test_reflected_borders_remove_the_frame_and_keep_tiles_exact():
    from dslrify.metrics import edge_step

    x = _smooth_sky()
    zero = Enhancer("default", device="cpu", borders="zero").enhance_tensor(x)
    reflect = Enhancer("default", device="cpu").enhance_tensor(x)  # the shipped config says "reflect"
    assert float(edge_step(x, zero)) > 4  # zero padding: a frame of several levels
    assert float(edge_step(x, reflect)) <= 1
    tiled = Enhancer("default", device="cpu", tile=48).enhance_tensor(x)
    assert float((tiled - reflect).abs().max()) <= 1e-5


def test_imported_checkpoints_run_with_zero_borders_as_released(tmp_path):
    from dslrify.checkpoint import save_checkpoint

    model = random_unet()
    folder = save_checkpoint(tmp_path / "ckpt", model, "unet", {"width": 8, "depth": 3, "global_width": 16})
    assert Enhancer(folder, device="cpu").borders == "zero"
    with pytest.raises(DslrifyError, match="border mode"):
        Enhancer(model, device="cpu", borders="wrap")  # type: ignore[arg-type]


def test_edge_step_sees_a_bright_top_row():
    from dslrify.metrics import edge_step

    x = _smooth_sky()
    framed = x.clone()
    framed[:, :, 0] += 10 / 255
    assert float(edge_step(x, x)) == pytest.approx(0, abs=1e-9)
    assert float(edge_step(x, framed)) == pytest.approx(10, abs=0.5)  # less the sky's own step
