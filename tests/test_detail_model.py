"""The `detail` architecture (a full-resolution detail path on a thumbnail model), the per-fold second
stages of cross-validation its recipe needs, and the shipped `balanced` model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dslrify.checkpoint import load_checkpoint, save_checkpoint
from dslrify.enhancer import POINTWISE_TILE, Enhancer
from dslrify.models import base as base_module
from dslrify.models import build_model
from dslrify.models.detail import DetailEnhancer, DetailPath, detail_dtype
from dslrify.train.config import load_config
from dslrify.train.cv import run_cv
from dslrify.train.trainer import Trainer
from test_train import pairs_root, write_config  # noqa: F401 - the module fixture is used below

GUIDED = {"base": "ppcn-student", "context_size": 32, "radius": 1}


def detail_model(
    width: int = 4, layers: int = 2, seed: int = 0, trained: bool = True, precision: str = "float32"
) -> DetailEnhancer:
    torch.manual_seed(seed)
    model = DetailEnhancer("guided", GUIDED, width=width, layers=layers, precision=precision)
    if trained:  # a detail path that does something (a fresh one is the identity on the base)
        with torch.no_grad():
            for p in model.detail.parameters():
                p.normal_(0, 0.2)
    return model.eval()


def photo(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    noise = torch.rand(1, 3, h, w, generator=g)
    return (torch.stack([xx, yy, xx * yy])[None] * 0.6 + 0.4 * noise).clamp(0, 1)


def test_a_fresh_detail_path_is_the_base_itself():
    model = detail_model(trained=False)
    x = photo(40, 56)
    assert torch.equal(model(x), model.net(x))


def test_shape_range_and_the_declared_cost():
    model = detail_model(width=8, layers=3)
    assert model.detail.macs_per_pixel() == 6 * 8 * 9 + 8 * 8 * 9 + 8 * 3 * 9 == 1224
    assert model.spec.receptive_field == 3 and model.spec.context == "thumbnail" and model.spec.needs_origin
    for h, w in ((40, 56), (2, 3), (1, 1)):  # too small to reflect: replicated edges
        with torch.no_grad():
            y = model(photo(h, w))
        assert y.shape == (1, 3, h, w) and float(y.min()) >= 0 and float(y.max()) <= 1


def test_inference_and_autograd_paths_give_the_same_numbers():
    """Outside autograd the path runs channels-last with in-place activations; in training it does not."""
    model = detail_model(width=8, layers=3)
    x = photo(50, 70)
    with torch.inference_mode():
        fast = model(x)
    slow = model(x.clone().requires_grad_(True))
    assert float((fast - slow.detach()).abs().max()) <= 1e-6


def test_gradients_of_the_detail_path_are_correct():
    path = DetailPath(width=3, layers=2).double()
    with torch.no_grad():
        for p in path.parameters():
            p.normal_(0, 0.3)
    x = torch.rand(1, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    y0 = torch.rand(1, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(path, (x, y0))


def test_tiles_with_the_declared_halo_give_the_whole_photo_result_at_the_edges_too():
    model = detail_model(width=8, layers=3)
    x = photo(150, 210)
    whole = Enhancer(model, device="cpu", tile=0, borders="zero").enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=48, borders="zero").enhance_tensor(x)
    assert float((tiled - whole).abs().max()) <= 1e-5
    # The detail path really acts near the photo's edges, so the check covers its own padding.
    base = Enhancer(model.net, device="cpu", tile=0).enhance_tensor(x)
    assert float((whole - base)[..., :, :2].abs().max()) > 0.01


def test_bfloat16_tiles_agree_with_the_whole_photo_and_grad_mode_stays_float32():
    """The shipped precision ("auto" is bfloat16 here): tiles within rounding of the whole photo; in grad
    mode, as when a gate trains around this frozen model, the numbers are float32's on every machine."""
    exact = detail_model(width=8, layers=3)
    model = detail_model(width=8, layers=3, precision="bfloat16").requires_grad_(False)
    x = photo(150, 210)
    whole = Enhancer(model, device="cpu", tile=0, borders="zero").enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=48, borders="zero").enhance_tensor(x)
    assert float((tiled - whole).abs().max()) <= 1 / 255
    with torch.inference_mode():
        want = exact(x)
    assert float((whole - want).abs().max()) > 0  # inference ran in bfloat16
    assert float((model(x) - want).abs().max()) <= 1e-6  # grad mode, frozen weights: float32


def test_large_photos_run_in_one_megapixel_pieces():
    enhancer = Enhancer(detail_model(), device="cpu", borders="zero")
    enhancer.enhance_tensor(photo(POINTWISE_TILE + 40, 300))
    assert enhancer.last_tile == POINTWISE_TILE


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="layers >= 1"):
        DetailEnhancer("guided", GUIDED, layers=0)
    with pytest.raises(ValueError, match="instance-norm"):
        DetailEnhancer("ppcn-student")
    with pytest.raises(ValueError, match="not a detail one"):
        DetailEnhancer("detail", {"base_args": GUIDED})
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        DetailEnhancer("guided", GUIDED, precision="float16")


def test_auto_precision_is_bfloat16_only_on_cpus_that_multiply_it_natively(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(base_module, "native_bfloat16", lambda: True)
    assert detail_dtype("auto", cpu) == torch.bfloat16
    assert detail_dtype("auto", cuda) == torch.float32  # CUDA has the Enhancer's own --half
    assert detail_dtype("float32", cpu) == torch.float32
    monkeypatch.setattr(base_module, "native_bfloat16", lambda: False)
    assert detail_dtype("auto", cpu) == torch.float32
    assert detail_dtype("bfloat16", cpu) == torch.bfloat16  # asked for: emulated where not native


def test_bfloat16_detail_path_stays_within_a_fraction_of_an_8_bit_level_and_trains_in_float32():
    """bfloat16 rounds the detail path's arithmetic, not the base's output: with a residual of the
    shipped model's size (a few hundredths) the result moves by far less than one 8-bit level."""
    exact, rounded = detail_model(width=8, layers=3), detail_model(width=8, layers=3, precision="bfloat16")
    with torch.no_grad():
        for p in exact.detail.parameters():
            p.mul_(0.25)  # a mean |residual| of ~0.015: the shipped `balanced` has 0.02 on a phone photo
        rounded.load_state_dict(exact.state_dict())
    x = photo(120, 90)
    with torch.inference_mode():
        a, b = exact(x), rounded(x)
        residual = a - exact.net(x)
    assert float(residual.abs().mean()) > 0.01  # the path does something
    assert b.dtype == torch.float32
    assert float((a - b).abs().max()) < 0.5 / 255
    assert 0 < float((a - b).abs().mean()) < 0.1 / 255  # it really ran in bfloat16, and barely moved
    trained = rounded(x.clone().requires_grad_(True))  # autograd: float32 whatever the precision
    assert float((trained.detach() - a).abs().max()) <= 1e-6


def test_starts_from_the_base_or_from_the_network_inside_it(tmp_path):
    torch.manual_seed(1)
    student = build_model("ppcn-student")
    guided = build_model("guided", GUIDED)
    model = DetailEnhancer("guided", GUIDED)
    assert model.init_from(student, {"architecture": "ppcn-student", "args": {}})
    assert all(
        torch.equal(a, b) for a, b in zip(model.net.net.parameters(), student.parameters(), strict=True)
    )
    assert model.init_from(guided, {"architecture": "guided", "args": GUIDED})
    assert all(torch.equal(a, b) for a, b in zip(model.net.parameters(), guided.parameters(), strict=True))
    assert not model.init_from(student, {"architecture": "unet", "args": {}})


# -- training features used by the recipe ------------------------------------------------------------
def test_cross_validation_starts_each_folds_second_stage_from_that_fold(tmp_path, pairs_root):  # noqa: F811
    first = write_config(tmp_path / "a", pairs_root, max_steps=2)
    run_cv(first, folds=2, out=tmp_path / "cv1")
    second = write_config(tmp_path / "b", pairs_root, max_steps=1)
    summary = run_cv(second, folds=2, overrides=[f"model.init={tmp_path / 'cv1'}/fold{{fold}}/last"])
    starts = [json.loads((Path(f["run_dir"]) / "last" / "config.json").read_text()) for f in summary["folds"]]
    assert [c["training"]["config"]["model"]["init"] for c in starts] == [
        f"{tmp_path / 'cv1'}/fold{k}/last" for k in (0, 1)
    ]


def test_the_shipped_recipe_trains_a_detail_model_from_a_guided_checkpoint(tmp_path, pairs_root):  # noqa: F811
    torch.manual_seed(2)
    base_dir = save_checkpoint(tmp_path / "guided", build_model("guided", GUIDED), "guided", GUIDED)
    args = {"base": "guided", "base_args": GUIDED, "width": 4, "layers": 2}
    overrides = [
        "model.architecture=detail",
        f"model.args={json.dumps(args)}",
        f"model.init={base_dir}",
        "model.freeze=net.",
        "run.max_steps=2",
    ]
    trainer = Trainer(load_config(write_config(tmp_path, pairs_root), overrides))
    assert all(not p.requires_grad for p in trainer.model.net.parameters())
    trainer.fit()
    model, cfg = load_checkpoint(tmp_path / "run" / "last")
    assert isinstance(model, DetailEnhancer) and cfg["args"] == args
    guided, _ = load_checkpoint(base_dir)
    assert all(torch.equal(a, b) for a, b in zip(model.net.parameters(), guided.parameters(), strict=True))
    assert float(model.detail.convs[-1].weight.detach().abs().sum()) > 0  # the detail path learned


# -- the shipped balanced model ---------------------------------------------------------------------------
def test_shipped_balanced_keeps_defaults_psnr_and_does_more_pixel_level_work_than_fast(shared_data: Path):
    """Part 11's figures on real data: `balanced` scores like `default` on DPED's test pairs (well above
    `fast`'s SSIM), and on a whole phone photo its detail is closer to `default`'s than `fast`'s is."""
    import kornia

    from dslrify.data import open_pairs
    from dslrify.metrics import psnr, quantize_8bit, ssim
    from dslrify.photo import read_photo

    pairs = open_pairs(shared_data / "dped", "iphone", split="test")
    x, y = (torch.stack(t) for t in zip(*(pairs[i] for i in range(len(pairs))), strict=True))
    runs = {name: Enhancer(name, device="cpu") for name in ("balanced", "default", "fast")}
    out = {name: quantize_8bit(e.enhance_tensor(x)) for name, e in runs.items()}
    score = {name: (float(psnr(o, y).mean()), float(ssim(o, y).mean())) for name, o in out.items()}
    assert score["balanced"][0] > score["default"][0] - 0.3
    assert score["balanced"][1] > score["fast"][1] + 0.005

    def high_pass(t: torch.Tensor) -> torch.Tensor:
        return t - kornia.filters.gaussian_blur2d(t, (13, 13), (2.0, 2.0), border_type="reflect")

    phone = read_photo(shared_data / "phone-photos" / "3.jpg").pixels
    whole = {name: high_pass(quantize_8bit(e.enhance_tensor(phone))) for name, e in runs.items()}
    detail = {name: float(psnr(whole[name], whole["default"])) for name in ("balanced", "fast")}
    assert detail["balanced"] > detail["fast"] + 2.0
