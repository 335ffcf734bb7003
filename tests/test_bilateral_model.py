"""The `bilateral` architecture (a bilateral grid of affine colour maps): shapes, identity at initialisation,
gradients, the shared context, tiling with an origin, the slicing against PyTorch's trilinear
``grid_sample``, the declared receptive field, and that it learns a per-image tone mapping.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dslrify.enhancer import Enhancer
from dslrify.models import bilateral, build_model
from dslrify.models.bilateral import BilateralGridEnhancer, cell_coords, slice_grid_3d

PARAMS = {False: 208_239, True: 208_682}


def random_grid(residual: bool = False, seed: int = 0, **args) -> BilateralGridEnhancer:
    """Every weight perturbed, so that the grid varies over space and tone and the residual is on."""
    torch.manual_seed(seed)
    model = BilateralGridEnhancer(residual=residual, **args)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) smooth colour fields with a random exposure per image, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 5, 5, generator=g), size=(size, size), mode="bicubic")
    return (x.clamp(0, 1) * (torch.rand(n, 1, 1, 1, generator=g) * 1.2 + 0.4)).clamp(0, 1)


@pytest.mark.parametrize("residual", [False, True])
def test_registered_with_parameter_count(residual: bool) -> None:
    model = build_model("bilateral", {"residual": residual})
    assert isinstance(model, BilateralGridEnhancer)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[residual]
    assert model.receptive_field == (2 if residual else 0)
    assert model.uses_global_context and model.context_from_thumbnail and model.size_multiple == 1
    assert BilateralGridEnhancer().residual  # the default: its cost fits the 12 MP budget


@pytest.mark.parametrize("shape", [(1, 100, 100), (2, 37, 53), (1, 1, 1), (1, 7, 300), (1, 301, 517)])
@pytest.mark.parametrize("residual", [False, True])
def test_shapes_and_range(shape: tuple[int, int, int], residual: bool) -> None:
    n, h, w = shape
    x = torch.rand(n, 3, h, w)
    with torch.no_grad():
        y = random_grid(residual)(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.equal(y, x)  # the perturbed model does something
    ctx = random_grid(residual).compute_context(x)
    assert ctx.grid.shape == (n, 12, 8, 16, 16) and (ctx.height, ctx.width) == (h, w)


@pytest.mark.parametrize("residual", [False, True])
def test_untrained_model_is_the_identity(residual: bool) -> None:
    x = torch.rand(2, 3, 61, 90)
    with torch.no_grad():
        y = BilateralGridEnhancer(residual=residual)(x)
    assert float((y - x).abs().max()) < 1e-6


@pytest.mark.parametrize("residual", [False, True])
def test_gradients_reach_every_parameter(residual: bool) -> None:
    model = random_grid(residual).train()
    x = torch.rand(2, 3, 40, 56, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_explicit_context_equals_own_context() -> None:
    model = random_grid(residual=True)
    x = torch.rand(2, 3, 45, 77)
    with torch.no_grad():
        assert torch.equal(model(x, model.compute_context(x)), model(x))


def test_fast_slicing_matches_trilinear_grid_sample() -> None:
    model = random_grid()
    x = torch.rand(2, 3, 33, 47)
    with torch.no_grad():
        ctx = model.compute_context(x)
        grid_rows = ctx.grid.permute(0, 3, 1, 2, 4).reshape(2, 16, -1)
        coef = model._slice_rows(x, ctx, grid_rows, 0, 0)  # (N, H, 3, 4, W)
        ref = slice_grid_3d(
            ctx.grid,
            model.tone(x),
            cell_coords(0, 33, 33, 16, x.device),
            cell_coords(0, 47, 47, 16, x.device),
        )
    assert float((coef.permute(0, 2, 3, 1, 4).reshape(2, 12, 33, 47) - ref).abs().max()) < 1e-5


@pytest.mark.parametrize("residual", [False, True])
def test_tiles_with_the_whole_context_match_the_whole_image(residual: bool, monkeypatch) -> None:
    model = random_grid(residual)
    x = torch.rand(1, 3, 150, 230)
    margin = model.receptive_field
    with torch.inference_mode():
        ctx = model.compute_context(x)
        whole = model(x, ctx)
        # Row chunks (the full-resolution loop) change nothing, residual halos included. Not bit-exact:
        # the y-interpolation matmul has another shape per chunk, so BLAS may sum in another order.
        monkeypatch.setattr(bilateral, "CHUNK_PIXELS", 7 * 230)
        assert float((model(x, ctx) - whole).abs().max()) < 1e-6
        for y0, y1, x0, x1 in [(0, 64, 0, 80), (37, 150, 101, 230), (50, 51, 3, 200)]:
            tile = model(x[:, :, y0:y1, x0:x1], ctx, origin=(y0, x0))
            # With a residual, only pixels at least ``margin`` from a cut (not an image border) must agree.
            top = 0 if y0 == 0 else margin
            bottom = y1 - y0 - (0 if y1 == 150 else margin)
            left = 0 if x0 == 0 else margin
            right = x1 - x0 - (0 if x1 == 230 else margin)
            core = tile[:, :, top:bottom, left:right]
            expected = whole[:, :, y0 + top : y0 + bottom, x0 + left : x0 + right]
            assert core.numel() == 0 or float((core - expected).abs().max()) < 1e-5
        with pytest.raises(ValueError, match="origin"):
            model(x[:, :, :64, :64], ctx)  # a tile without its position would pick the wrong cells


def test_receptive_field_is_what_it_declares() -> None:
    model = random_grid(residual=True).train()
    x = torch.rand(1, 3, 21, 21)
    ctx = model.compute_context(x)
    ctx = bilateral.GridContext(ctx.grid.detach(), 21, 21)
    x.requires_grad_(True)
    model(x, ctx)[0, :, 10, 10].sum().backward()
    rows, cols = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero(as_tuple=True)
    rf = model.receptive_field
    assert int(rows.min()) == 10 - rf and int(rows.max()) == 10 + rf
    assert int(cols.min()) == 10 - rf and int(cols.max()) == 10 + rf


def test_learns_a_per_image_exposure_and_gamma() -> None:
    """100 Adam steps: auto-exposure (gain from the image's mean) then a gamma; the loss drops > 5x."""

    def target(x: torch.Tensor) -> torch.Tensor:
        gain = 0.5 / x.mean(dim=(1, 2, 3), keepdim=True).clamp(min=0.05)
        return (x * gain).clamp(0, 1) ** 0.6

    torch.manual_seed(0)
    model = BilateralGridEnhancer()
    x = smooth_images(8, 48, seed=0)
    y = target(x)
    held_out = smooth_images(8, 48, seed=1)
    with torch.no_grad():
        before = F.mse_loss(model(held_out), target(held_out)).item()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(100):
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = F.mse_loss(model(held_out), target(held_out)).item()
    assert after < before / 5, (before, after)


def test_enhancer_runs_it_whole() -> None:
    x = torch.rand(1, 3, 64, 96)
    y = Enhancer(random_grid(), device="cpu", tile=0).enhance_tensor(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
