"""The ``guided`` architecture (a network on a thumbnail + colour guided filter): the filter's maths,
agreement with the base network where the thumbnail is the photo, the fast inference path against the
plain one, tiling with an origin, gradients, initialisation from a base checkpoint, and errors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dslrify.data import open_pairs
from dslrify.enhancer import Enhancer
from dslrify.metrics import psnr, quantize_8bit
from dslrify.models import build_model, guided
from dslrify.models.guided import GuidedEnhancer, apply_coefficients, guided_coefficients
from dslrify.models.ppcn import PPCNStudent
from dslrify.zoo import load_model


def smooth_photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, h, w) in [0.1, 0.9]: low-frequency colour blobs plus a little noise, like a small photo.

    Never clipped, so no channel is flat anywhere (where one is, many affine maps fit equally well).
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, h // 16), max(2, w // 16), generator=g)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return 0.15 + 0.7 * x + 0.02 * torch.randn(1, 3, h, w, generator=g).clamp(-2.5, 2.5)


def random_guided(context_size: int = 64, radius: int = 2, seed: int = 0) -> GuidedEnhancer:
    """A guided model over PPCN's (small) student with perturbed weights, in eval mode."""
    torch.manual_seed(seed)
    model = GuidedEnhancer(base="ppcn-student", context_size=context_size, radius=radius)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_filter_recovers_an_exact_affine_colour_map() -> None:
    guide = smooth_photo(40, 50)
    a = torch.tensor([[0.9, 0.2, -0.1], [0.05, 1.1, 0.0], [-0.2, 0.1, 0.8]])
    b = torch.tensor([0.05, -0.02, 0.1])
    target = torch.einsum("ck,nkhw->nchw", a, guide) + b.view(1, 3, 1, 1)
    coef = guided_coefficients(guide, target, radius=2, eps=1e-8)
    assert coef.shape == (1, 12, 40, 50)
    assert torch.allclose(coef[0, :9].mean(dim=(1, 2)).view(3, 3), a, atol=2e-3)
    assert torch.allclose(apply_coefficients(guide, coef), target, atol=1e-3)


@pytest.mark.parametrize("radius", [0, 1, 4])
def test_box_filter_is_the_window_mean_with_replicated_edges(radius: int) -> None:
    x = torch.rand(2, 5, 7, 9, dtype=torch.float64)  # smaller than a radius-4 window on one side
    expected = F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), 2 * radius + 1, stride=1)
    assert torch.allclose(guided.box_filter(x, radius), expected, atol=1e-12)


def test_coefficients_are_resampled_like_bilinear_interpolation_of_the_maps() -> None:
    model = random_guided(context_size=16)
    x = torch.rand(1, 3, 48, 80)
    coef = torch.randn(1, 12, 10, 16)
    ctx = guided.GuidedContext(coef, 48, 80)
    with torch.no_grad():
        y = model(x, ctx)
    up = F.interpolate(coef, size=(48, 80), mode="bilinear", align_corners=False)
    assert float((y - apply_coefficients(x, up).clamp(0, 1)).abs().max()) < 1e-5


def test_flat_regions_get_a_constant_colour_not_a_division_by_zero() -> None:
    guide = torch.full((1, 3, 20, 20), 0.5)
    target = torch.full((1, 3, 20, 20), 0.7)
    coef = guided_coefficients(guide, target, radius=1, eps=1e-4)
    assert torch.isfinite(coef).all()
    assert torch.allclose(apply_coefficients(guide, coef), target, atol=1e-5)


def test_a_photo_no_larger_than_the_thumbnail_is_filtered_without_resampling() -> None:
    model = random_guided(context_size=64, radius=2)
    x = smooth_photo(48, 64)
    with torch.no_grad():
        y = model(x)
        expected = apply_coefficients(x, guided_coefficients(x, model.net(x), 2, model.eps)).clamp(0, 1)
    assert y.shape == x.shape and float((y - expected).abs().max()) < 1e-6


def test_shipped_fast_model_keeps_the_default_models_quality_on_dped_patches(shared_data) -> None:
    """The part-5 promise: ``fast`` within 0.3 dB PSNR of ``default`` on DPED's 39 test pairs."""
    pairs = open_pairs(shared_data / "dped", "iphone", split="test")
    x, y = (torch.stack(t) for t in zip(*(pairs[i] for i in range(len(pairs))), strict=True))
    with torch.no_grad():
        fast, default = (quantize_8bit(load_model(name)(x).clamp(0, 1)) for name in ("fast", "default"))
    assert float(psnr(default, y).mean() - psnr(fast, y).mean()) < 0.3
    assert float(psnr(fast, default).mean()) > 30  # dB: it is the default model's look, not another


def test_large_photo_path_matches_the_plain_resampling(monkeypatch) -> None:
    model = random_guided(context_size=32)
    x = smooth_photo(150, 230)
    with torch.inference_mode():
        ctx = model.compute_context(x)
        assert ctx.coef.shape[-2:] == (21, 32)  # the thumbnail: long side 32
        plain = model._rows(x, ctx, 0, 0).clamp(0, 1)  # forward clamps
        monkeypatch.setattr(guided, "CHUNK_PIXELS", 1000)  # forces the banded inference path
        fast = model(x, ctx)
    assert float((fast - plain).abs().max()) < 1e-5


@pytest.mark.parametrize("chunk", [1 << 17, 1000])
def test_tiles_at_their_origin_match_the_whole_photo(chunk: int, monkeypatch) -> None:
    monkeypatch.setattr(guided, "CHUNK_PIXELS", chunk)
    model = random_guided(context_size=40)
    x = smooth_photo(120, 170)
    with torch.inference_mode():
        ctx = model.compute_context(x)
        whole = model(x, ctx)
        for y0, y1, x0, x1 in [(0, 64, 0, 80), (37, 120, 101, 170), (50, 51, 3, 160)]:
            tile = model(x[:, :, y0:y1, x0:x1], ctx, origin=(y0, x0))
            assert float((tile - whole[:, :, y0:y1, x0:x1]).abs().max()) < 1e-5
        with pytest.raises(ValueError, match="origin"):
            model(x[:, :, :64, :64], ctx)


def test_enhancer_tiles_give_the_untiled_result() -> None:
    model = random_guided(context_size=48)
    x = smooth_photo(130, 150)
    whole = Enhancer(model, device="cpu", tile=0).enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=64).enhance_tensor(x)
    assert float((whole - tiled).abs().max()) < 1e-5  # pointwise given the shared coefficients


def test_gradients_reach_the_base_network_through_the_filter() -> None:
    model = random_guided(context_size=32).train()
    x = smooth_photo(40, 56)  # larger than the thumbnail: the resampling path too
    model(x).mean().backward()
    grads = [p.grad for p in model.net.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_init_from_takes_a_base_checkpoint_and_refuses_another() -> None:
    student = PPCNStudent()
    with torch.no_grad():
        next(student.parameters()).add_(1.0)
    model = GuidedEnhancer(base="ppcn-student")
    assert model.init_from(student, {"architecture": "ppcn-student", "args": {}})
    assert torch.equal(next(model.net.parameters()), next(student.parameters()))
    assert not model.init_from(student, {"architecture": "ppcn-teacher", "args": {}})
    assert not build_model("ppcn-student").init_from(student, {"architecture": "ppcn-student", "args": {}})


def test_base_must_be_an_enhancement_network() -> None:
    with pytest.raises(ValueError, match="enhancement network"):
        GuidedEnhancer(base="patchgan")


def test_a_mirrored_border_around_the_thumbnail_removes_the_networks_frame() -> None:
    """The shipped `fast` network zero-pads: on a smooth sky the filter carries its frame to the photo's
    edges (part 9 measured 1.19 levels). Run on the thumbnail with a mirrored border, it is gone."""
    from dslrify.enhancer import Enhancer
    from dslrify.metrics import edge_step
    from dslrify.models import build_model
    from dslrify.zoo import resolve_model

    fast, config, _ = resolve_model("fast")
    args = {**config["args"], "base_args": {**config["args"]["base_args"], "border": 10}}
    bordered = build_model("matched", args)
    bordered.load_state_dict(fast.state_dict())
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 240), torch.linspace(0, 1, 320), indexing="ij")
    sky = torch.stack([0.35 + 0.3 * yy, 0.5 + 0.1 * xx, 0.8 - 0.3 * yy])[None]
    plain = float(edge_step(sky, Enhancer(fast, device="cpu").enhance_tensor(sky)).max())
    mirrored = float(edge_step(sky, Enhancer(bordered.eval(), device="cpu").enhance_tensor(sky)).max())
    assert plain > 1.0 and mirrored < 0.5 * plain


def test_a_guided_checkpoint_starts_a_guided_model_with_other_filter_settings() -> None:
    from dslrify.models import build_model

    torch.manual_seed(3)
    trained = build_model("guided", {"base": "ppcn-student", "context_size": 32})
    config = {"architecture": "guided", "args": {"base": "ppcn-student", "context_size": 32}}
    other = build_model("guided", {"base": "ppcn-student", "context_size": 64, "radius": 2, "border": 4})
    assert other.init_from(trained, config)
    assert all(torch.equal(a, b) for a, b in zip(other.parameters(), trained.parameters(), strict=True))
    teacher = build_model("guided", {"base": "ppcn-teacher"})
    assert not teacher.init_from(trained, config)  # another network inside
    with pytest.raises(ValueError, match="border"):
        build_model("guided", {"border": -1})
