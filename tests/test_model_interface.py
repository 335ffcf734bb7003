"""The model interface every architecture and shipped model keeps: pure forward, declared spec, exact tiles.

- Threads: one Enhancer shared by 4 threads gives each the single-thread output, bit for bit.
- Tiling never changes the look: tiled and untiled outputs agree within 1/255 on real photos.
- The documented range: outputs lie in [0, 1] for black, white and saturated inputs too.
- The spec: the declared receptive field covers the real one; context kinds are what the model does.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from dslrify.checkpoint import load_checkpoint, save_checkpoint
from dslrify.enhancer import Enhancer
from dslrify.errors import ModelError
from dslrify.models import ARCHITECTURES, EnhancementModel, build_model
from dslrify.models.base import MomentsContext
from dslrify.photo import read_photo
from dslrify.zoo import MODELS, load_model

SHIPPED = sorted(MODELS)
# Small but real variants of every enhancement architecture, so that the checks stay fast.
SMALL_ARGS: dict[str, dict] = {
    "unet": {"width": 8, "depth": 3, "global_width": 16},
    "dped": {"channels": 8, "blocks": 2},
    "ppcn-teacher": {},
    "ppcn-student": {},
    "guided": {"context_size": 48, "radius": 2},
    "detail": {"base_args": {"context_size": 48, "radius": 2}, "width": 4, "layers": 2},
    "xia2018": {"channels": 8, "blocks": 2},
    "matched": {"base": "ppcn-student", "highlight_knee": 0.8},
}
ENHANCERS = sorted(
    name for name, cls in ARCHITECTURES.items() if isinstance(cls, type) and issubclass(cls, EnhancementModel)
)


def random_model(arch: str, seed: int = 0) -> EnhancementModel:
    """``arch`` at a small size with every weight random (norm scales around 1), so nothing is identity."""
    torch.manual_seed(seed)
    model = build_model(arch, SMALL_ARGS.get(arch, {}))
    assert isinstance(model, EnhancementModel)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.copy_(torch.rand_like(p) + 0.5)
            else:
                p.normal_(0, 0.1)
    return model.eval()


def textured(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, h, w) in [0, 1]: gradients, a dark half and noise, so statistics differ across tiles."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    x = torch.stack([xx, yy, (xx + yy) / 2])[None] * 0.7 + 0.3 * torch.rand(1, 3, h, w, generator=g)
    x[..., w // 2 :] *= 0.4
    return x


def test_every_enhancement_architecture_is_tested_here() -> None:
    assert set(ENHANCERS) == set(SMALL_ARGS), "add the new architecture's small arguments to SMALL_ARGS"


@pytest.mark.parametrize("arch", ENHANCERS)
def test_architecture_shape_range_and_gradient(arch: str) -> None:
    model = random_model(arch)
    x = textured(37, 53).repeat(2, 1, 1, 1).requires_grad_(True)
    y = model(x)
    assert y.shape == x.shape and float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    y.square().mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())


@pytest.mark.parametrize("arch", ENHANCERS)
def test_tiled_equals_untiled_for_every_architecture(arch: str) -> None:
    model = random_model(arch)
    x = textured(150, 230)
    whole = Enhancer(model, device="cpu", tile=0).enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=64).enhance_tensor(x)
    assert float((whole - x).abs().max()) > 0.01  # the model really changes the photo
    assert float((tiled - whole).abs().max()) <= 1e-5


@pytest.mark.parametrize("arch", ENHANCERS)
def test_declared_receptive_field_covers_the_real_one(arch: str) -> None:
    model = random_model(arch).double()
    x = textured(160, 160).double()
    context = model.compute_context(x)
    probe = x.clone().requires_grad_(True)
    model(probe, context, (0, 0))[0, :, 81, 79].sum().backward()
    assert probe.grad is not None
    ys, xs = (probe.grad.abs().sum(1)[0] > 0).nonzero(as_tuple=True)
    reach = int(max(81 - ys.min(), ys.max() - 81, 79 - xs.min(), xs.max() - 79))
    assert reach <= model.spec.receptive_field


def test_moments_context_is_the_whole_photo_statistics() -> None:
    model = random_model("ppcn-teacher")
    x = textured(64, 80)
    ctx = model.compute_context(x)
    assert isinstance(ctx, MomentsContext) and len(ctx.moments) == 5  # contrast mean + 4 norms
    torch.testing.assert_close(ctx.moments[0][0], x.mean(dim=(2, 3), keepdim=True))
    with torch.no_grad():
        torch.testing.assert_close(model(x, ctx), model(x), rtol=0, atol=1e-6)


def _run_in_threads(enhancer: Enhancer, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    results: list[torch.Tensor | BaseException | None] = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def work(i: int) -> None:
        try:
            start.wait()
            results[i] = enhancer.enhance_tensor(inputs[i])
        except BaseException as e:  # handed to the main thread, which fails the test with it
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, torch.Tensor)]


@pytest.mark.parametrize("tile", [0, 40])
@pytest.mark.parametrize("name", SHIPPED)
def test_four_threads_on_one_enhancer_give_the_single_thread_output(name: str, tile: int) -> None:
    enhancer = Enhancer(name, device="cpu", tile=tile)
    inputs = [textured(80 + 8 * i, 110 - 6 * i, seed=i) for i in range(4)]
    alone = [enhancer.enhance_tensor(x) for x in inputs]
    for together, single in zip(_run_in_threads(enhancer, inputs), alone, strict=True):
        assert torch.equal(together, single)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_outputs_lie_in_0_1_on_extreme_inputs(name: str) -> None:
    model = load_model(name)
    extremes = torch.zeros(5, 3, 40, 48)
    extremes[1] = 1  # white
    extremes[2, 0] = 1  # saturated red
    extremes[3, 1:] = 1  # saturated cyan
    extremes[4] = (torch.arange(48) % 2).float()  # black/white stripes: overshoot at edges
    with torch.no_grad():
        y = model(extremes)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def _tiled_against_whole(photo_path: Path, name: str, tile: int) -> float:
    photo = read_photo(photo_path)
    whole = Enhancer(name, device="cpu", tile=0).enhance_tensor(photo.pixels)
    tiled = Enhancer(name, device="cpu", tile=tile).enhance_tensor(photo.pixels)
    # Compare the 8-bit results, as written to a file.
    return float(((tiled * 255).round() - (whole * 255).round()).abs().max())


@pytest.mark.parametrize("name", SHIPPED)
def test_tiling_a_real_photo_never_changes_the_look(shared_data: Path, name: str) -> None:
    """Picture_1A (1365x1074): tiled at 256 px and whole agree within one 8-bit level."""
    assert _tiled_against_whole(shared_data / "photos" / "Picture_1A_by_freespace.jpg", name, 256) <= 1


@pytest.mark.slow  # 12 MP untiled: about 11 GB and minutes per model on a CPU
@pytest.mark.parametrize("name", SHIPPED)
def test_tiling_a_12_mp_photo_never_changes_the_look(shared_data: Path, name: str) -> None:
    path = shared_data / "photos" / "sunset_by_Aitzol_Berasategi.jpg"
    assert _tiled_against_whole(path, name, 1024) <= 1


def test_a_context_of_another_kind_is_refused() -> None:
    model = random_model("dped")
    with pytest.raises(TypeError, match="MomentsContext"):
        model(textured(32, 32), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="holds 0 statistics"):
        model(textured(32, 32), MomentsContext())


def test_a_discriminator_checkpoint_is_refused_as_a_model(tmp_path: Path) -> None:
    """Only enhancement models load as models: a discriminator fails at load time with advice."""
    folder = save_checkpoint(tmp_path / "critic", build_model("patchgan"), "patchgan", {})
    with pytest.raises(ModelError, match="does not enhance photos"):
        load_checkpoint(folder)
    with pytest.raises(ModelError, match="does not enhance photos"):
        load_model(folder)


@pytest.mark.parametrize("arch", ["guided", "unet"])
def test_a_thumbnail_made_band_by_band_gives_the_models_context(arch: str) -> None:
    from dslrify.models.resize import resize_long_side, thumbnail_in_bands
    from dslrify.photo import unit_float

    model = random_model(arch)
    x = (textured(301, 457) * 255).round().to(torch.uint8)
    small = thumbnail_in_bands(x, model.spec.thumbnail, unit_float, rows=37)
    whole = resize_long_side(unit_float(x), model.spec.thumbnail)
    assert small.shape == whole.shape and float((small - whole).abs().max()) < 1e-6
    with torch.no_grad():
        direct = model(unit_float(x), model.compute_context(unit_float(x)), (0, 0))
        banded = model(unit_float(x), model.context_from_thumbnail(small, 301, 457), (0, 0))
    assert float((direct - banded).abs().max()) < 1e-4  # float summation order, amplified by the filter
