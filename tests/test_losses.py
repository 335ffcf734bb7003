"""Losses: values on inputs with known answers, DPED's definitions, gradients, and shape errors."""

from __future__ import annotations

import math

import pytest
import pytorch_msssim
import torch
import torch.nn.functional as F

from dslrify import losses as L
from dslrify import metrics as M
from dslrify.models.vgg import LAYER_INDEX, VGGFeatures, expected_shapes


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def tiny_vgg(layer: str = "relu1_2") -> VGGFeatures:
    gen = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(s, generator=gen) * 0.2 for k, s in expected_shapes(LAYER_INDEX[layer]).items()}
    return VGGFeatures(layer, weights)


PAIR_LOSSES = [L.l1_loss, L.mse_loss, L.ssim_loss, L.ms_ssim_loss, L.color_loss]


# --- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", PAIR_LOSSES, ids=lambda f: f.__name__)
def test_pair_losses_reject_mismatched_or_non_4d_shapes(loss) -> None:
    with pytest.raises(ValueError, match="same shape"):
        loss(rand(1, 3, 32, 32), rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match="same shape"):
        loss(rand(3, 32, 32), rand(3, 32, 32))


def test_perceptual_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        L.perceptual_loss(rand(1, 3, 8, 8), rand(2, 3, 8, 8), tiny_vgg())


def test_tv_and_grayscale_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="H, W >= 2"):
        L.tv_loss(rand(1, 3, 1, 8))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        L.to_grayscale(rand(1, 1, 8, 8))


# --- pixel losses ---------------------------------------------------------------------------------


def test_l1_and_mse_of_a_constant_offset() -> None:
    target = rand(2, 3, 8, 8)
    output = target + 0.25
    assert L.l1_loss(output, target).item() == pytest.approx(0.25)
    assert L.mse_loss(output, target).item() == pytest.approx(0.0625)
    assert L.l1_loss(target, target).item() == 0.0


# --- total variation ------------------------------------------------------------------------------


def test_tv_of_ramps_is_slope_squared() -> None:
    h, w = 6, 9
    rows = torch.arange(h, dtype=torch.float64).view(1, 1, h, 1).expand(2, 3, h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, 1, w).expand(2, 3, h, w)
    assert L.tv_loss(0.1 * cols).item() == pytest.approx(0.01)
    assert L.tv_loss(0.2 * rows).item() == pytest.approx(0.04)
    assert L.tv_loss(0.1 * cols + 0.2 * rows).item() == pytest.approx(0.05)
    assert L.tv_loss(torch.full((1, 3, 4, 4), 0.7)).item() == 0.0


def test_tv_matches_dped_formula_literally() -> None:
    x = rand(3, 3, 10, 12, dtype=torch.float64)
    nhwc = x.permute(0, 2, 3, 1)  # DPED works in NHWC
    n, h, w, c = nhwc.shape

    def l2_loss(t: torch.Tensor) -> torch.Tensor:  # tf.nn.l2_loss
        return t.pow(2).sum() / 2

    y_tv = l2_loss(nhwc[:, 1:, :, :] - nhwc[:, : h - 1, :, :])
    x_tv = l2_loss(nhwc[:, :, 1:, :] - nhwc[:, :, : w - 1, :])
    tv_y_size, tv_x_size = (h - 1) * w * c, h * (w - 1) * c  # per image, as utils._tensor_size
    dped = 2 * (x_tv / tv_x_size + y_tv / tv_y_size) / n
    assert L.tv_loss(x).item() == pytest.approx(dped.item(), rel=1e-12)


# --- colour ---------------------------------------------------------------------------------------


def test_dped_blur_kernel_reproduces_dped_gauss_kernel_values() -> None:
    # Reference values printed by DPED's utils.gauss_kernel(21, 3) (numpy + scipy.stats).
    kernel = torch.outer(L.dped_blur_kernel(), L.dped_blur_kernel())
    assert kernel.shape == (21, 21)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert kernel[10, 10].item() == pytest.approx(0.007563093417643524, rel=1e-9)
    assert kernel[0, 0].item() == pytest.approx(8.288246929951529e-05, rel=1e-9)
    assert kernel[10, 0].item() == pytest.approx(0.000791737240501674, rel=1e-9)


def test_dped_blur_is_a_gaussian_of_sigma_about_4_7_not_3() -> None:
    x = rand(1, 3, 40, 40)
    close = (L.color_blur(x) - L.color_blur(x, sigma=4.7)).abs().max().item()
    far = (L.color_blur(x) - L.color_blur(x, sigma=3.0)).abs().max().item()
    assert close < 2e-3 < far


def test_color_loss_matches_dped_sum_over_2n_with_zero_padding() -> None:
    output, target = rand(2, 3, 30, 30, seed=1), rand(2, 3, 30, 30, seed=2)
    kernel = torch.outer(L.dped_blur_kernel(), L.dped_blur_kernel()).float().expand(3, 1, 21, 21)

    def blur(t: torch.Tensor) -> torch.Tensor:  # tf.nn.depthwise_conv2d(padding='SAME')
        return F.conv2d(t, kernel, padding=10, groups=3)

    expected = (blur(target) - blur(output)).pow(2).sum() / (2 * 2)
    loss = L.color_loss(output, target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert L.color_loss(output, target, reduction="sum").item() == pytest.approx(4 * loss.item(), rel=1e-6)
    mean = L.color_loss(output, target, reduction="mean").item()
    assert mean == pytest.approx(4 * loss.item() / output.numel(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        L.color_loss(output, target, reduction="median")  # type: ignore[arg-type]


def test_color_loss_sees_colour_shifts_but_hardly_texture() -> None:
    target = torch.full((1, 3, 32, 32), 0.5)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).float() * 0.1  # +-0.1: same MSE as a 0.1 shift
    shifted, textured = target + 0.1, target + checker
    assert L.mse_loss(shifted, target).item() == pytest.approx(L.mse_loss(textured, target).item())
    assert L.color_loss(target, target).item() == 0.0
    assert L.color_loss(shifted, target).item() > 0.0
    assert L.color_loss(textured, target).item() < 1e-3 * L.color_loss(shifted, target).item()


# --- SSIM / MS-SSIM -------------------------------------------------------------------------------


@pytest.mark.parametrize("win_size", [7, 11])
def test_ssim_loss_is_zero_for_identical_and_one_minus_ssim_otherwise(win_size: int) -> None:
    x, y = rand(1, 3, 24, 24, seed=1), rand(1, 3, 24, 24, seed=2)
    assert L.ssim_loss(x, x, win_size).item() == pytest.approx(0.0, abs=1e-6)
    expected = 1 - pytorch_msssim.ssim(x, y, data_range=1.0, win_size=win_size).item()
    assert L.ssim_loss(x, y, win_size).item() == pytest.approx(expected, rel=1e-6)
    assert L.ssim_loss(x, y, win_size).item() > 0.5  # unrelated noise images


def test_ssim_loss_defaults_to_the_metrics_7_tap_window() -> None:
    x, y = rand(2, 3, 24, 24, seed=1), rand(2, 3, 24, 24, seed=2)
    assert L.ssim_loss(x, y).item() == pytest.approx(1 - M.ssim(x, y).mean().item(), rel=1e-6)
    assert L.ssim_loss(x, y).item() != pytest.approx(L.ssim_loss(x, y, 11).item(), rel=1e-3)


def test_ssim_window_errors() -> None:
    x = rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        L.ssim_loss(x, x, win_size=8)
    with pytest.raises(ValueError, match="odd"):
        L.ms_ssim_loss(x, x, win_size=8)
    with pytest.raises(ValueError, match="smaller than the 11-pixel window"):
        L.ssim_loss(x, x, win_size=11)
    with pytest.raises(ValueError, match="smaller than the 11-pixel window"):
        L.ms_ssim_loss(x, x, win_size=11)
    # The window fits, but not even one MS-SSIM scale (shorter side >= 2 * win_size).
    with pytest.raises(ValueError, match="too small for MS-SSIM .* at least 14"):
        L.ms_ssim_loss(rand(1, 3, 13, 40), rand(1, 3, 13, 40))


def test_losses_module_has_no_second_ms_ssim_implementation() -> None:
    assert not hasattr(L, "ms_ssim_scales") and not hasattr(L, "_ssim_and_cs")


@pytest.mark.parametrize(
    ("shape", "win_size", "scales"),
    [((2, 3, 100, 100), 7, 3), ((1, 3, 61, 47), 7, 2), ((1, 3, 40, 40), 3, 3), ((1, 3, 100, 100), 11, 3)],
)
def test_ms_ssim_loss_is_one_minus_the_metric(shape, win_size: int, scales: int) -> None:
    x = rand(*shape, seed=1)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert M.ms_ssim_scales(*shape[-2:], win_size) == scales
    metric = M.ms_ssim(x, y, win_size=win_size).mean().item()
    assert L.ms_ssim_loss(x, y, win_size).item() == pytest.approx(1 - metric, abs=1e-6)
    assert L.ms_ssim_loss(x, x, win_size).item() == pytest.approx(0.0, abs=1e-6)


def test_ms_ssim_loss_equals_pytorch_msssim_with_truncated_renormalised_weights() -> None:
    x = rand(1, 3, 40, 40, seed=1)  # 40 > (3 - 1) * 16: pytorch_msssim accepts it with a 3-pixel window
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    weights = [w / sum(M.MS_SSIM_WEIGHTS[:3]) for w in M.MS_SSIM_WEIGHTS[:3]]  # 40, 20, 10 >= 6; 5 < 6
    expected = 1 - pytorch_msssim.ms_ssim(x, y, data_range=1.0, win_size=3, weights=weights)
    assert L.ms_ssim_loss(x, y, win_size=3).item() == pytest.approx(expected.item(), abs=1e-5)


def test_ms_ssim_works_on_dped_sized_patches_with_the_default_window() -> None:
    x = rand(1, 3, 100, 100, seed=1)
    y = (x + 0.05).clamp(0, 1)
    loss = L.ms_ssim_loss(x.requires_grad_(), y)  # 3 scales: the evaluation metric's own
    loss.backward()
    assert 0.0 < loss.item() < 1.0 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert loss.item() == pytest.approx(1 - M.ms_ssim(x.detach(), y).item(), abs=1e-6)
    assert L.ms_ssim_loss(y, y).item() == pytest.approx(0.0, abs=1e-6)


def test_ms_ssim_loss_floors_negative_terms_and_keeps_gradients_finite() -> None:
    x = rand(2, 3, 64, 64, seed=4)
    inverted = (1 - x).requires_grad_()  # anti-correlated: every contrast-structure term is negative
    assert torch.equal(M.ms_ssim(inverted.detach(), x), torch.zeros(2))  # the metric's ReLU
    loss = L.ms_ssim_loss(inverted, x)
    loss.backward()
    assert loss.item() == pytest.approx(1.0, abs=0.01) and loss.item() < 1.0  # floored at 1e-6, not 0
    assert torch.isfinite(inverted.grad).all()


# --- perceptual -----------------------------------------------------------------------------------


def test_perceptual_loss_is_mean_squared_feature_difference_and_target_is_constant() -> None:
    vgg = tiny_vgg("relu2_2")
    output, target = rand(2, 3, 16, 16, seed=1).requires_grad_(), rand(2, 3, 16, 16, seed=2).requires_grad_()
    loss = L.PerceptualLoss("relu2_2", weights=dict(vgg.state_dict()))(output, target)
    fo, ft = vgg(output), vgg(target)
    assert loss.item() == pytest.approx((fo - ft).pow(2).sum().item() / fo.numel(), rel=1e-5)
    loss.backward()
    assert output.grad is not None and output.grad.abs().sum() > 0 and target.grad is None
    assert L.perceptual_loss(output, output, vgg).item() == 0.0
    l1 = L.perceptual_loss(output, target, vgg, distance="l1")
    assert l1.item() == pytest.approx((fo - ft).abs().mean().item(), rel=1e-5)


# --- adversarial / texture ------------------------------------------------------------------------


def test_to_grayscale_uses_bt601_weights() -> None:
    red, white = torch.zeros(1, 3, 2, 2), torch.ones(2, 3, 4, 5)
    red[:, 0] = 1.0
    assert L.to_grayscale(red).flatten().tolist() == pytest.approx([0.2989] * 4)
    gray = L.to_grayscale(white)
    assert gray.shape == (2, 1, 4, 5) and gray.max().item() == pytest.approx(0.9999)


def test_vanilla_adversarial_loss_values() -> None:
    zero = torch.zeros(4, 1)
    assert L.adversarial_loss(zero, True).item() == pytest.approx(math.log(2))
    assert L.adversarial_loss(zero, False).item() == pytest.approx(math.log(2))
    assert L.adversarial_loss(torch.full((4, 1), 20.0), True).item() < 1e-8
    assert L.adversarial_loss(torch.full((4, 1), 20.0), False).item() == pytest.approx(20.0, rel=1e-6)
    # DPED clips probabilities at 1e-10 before the log: finite even for a certain, wrong discriminator.
    assert L.adversarial_loss(torch.zeros(3), True, probabilities=True).item() == pytest.approx(
        -math.log(1e-10)
    )


def test_probability_and_logit_forms_agree_with_dpeds_two_class_softmax() -> None:
    logits = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))  # column 0 = "real" (DSLR)
    probs = logits.softmax(dim=1)
    dped_fake = -torch.log(probs[:, 1]).mean()  # -sum(target * log(pred)) with target [0, 1], per image
    single_logit = logits[:, 0] - logits[:, 1]
    assert L.adversarial_loss(probs[:, 0], False, probabilities=True).item() == pytest.approx(
        dped_fake.item()
    )
    assert L.adversarial_loss(single_logit, False).item() == pytest.approx(dped_fake.item(), rel=1e-5)


def test_lsgan_and_hinge_values() -> None:
    half = torch.full((2, 1, 3, 3), 0.5)  # a patch map works too
    assert L.adversarial_loss(half, True, "lsgan").item() == pytest.approx(0.25)
    assert L.adversarial_loss(half, False, "lsgan").item() == pytest.approx(0.25)
    scores = torch.tensor([2.0, 0.0, -2.0])
    assert L.adversarial_loss(scores, True, "hinge", for_discriminator=True).item() == pytest.approx(4 / 3)
    assert L.adversarial_loss(scores, False, "hinge", for_discriminator=True).item() == pytest.approx(4 / 3)
    assert L.adversarial_loss(scores, True, "hinge").item() == pytest.approx(0.0)
    assert L.adversarial_loss(torch.tensor([1.0, 2.0]), True, "hinge").item() == pytest.approx(-1.5)


def test_adversarial_argument_errors() -> None:
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="mode must be one of"):
        L.adversarial_loss(x, True, "wgan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only targets 'real'"):
        L.adversarial_loss(x, False, "hinge")
    with pytest.raises(ValueError, match="raw scores"):
        L.adversarial_loss(x, True, "hinge", probabilities=True)


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge"])
def test_discriminator_and_texture_losses_compose_adversarial_loss(mode: str) -> None:
    real, fake = torch.randn(4, 1), torch.randn(5, 1)
    expected = L.adversarial_loss(real, True, mode, for_discriminator=True) + L.adversarial_loss(
        fake, False, mode, for_discriminator=True
    )
    assert L.discriminator_loss(real, fake, mode).item() == pytest.approx(expected.item())
    assert L.DiscriminatorLoss(mode)(real, fake).item() == pytest.approx(expected.item())
    assert L.texture_loss(fake, mode).item() == pytest.approx(L.adversarial_loss(fake, True, mode).item())
    assert L.TextureLoss(mode)(fake).item() == pytest.approx(L.texture_loss(fake, mode).item())


# --- modules and gradients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "function"),
    [
        (L.L1Loss(), L.l1_loss),
        (L.MSELoss(), L.mse_loss),
        (L.SSIMLoss(win_size=7), lambda o, t: L.ssim_loss(o, t, 7)),
        (L.MSSSIMLoss(win_size=3), lambda o, t: L.ms_ssim_loss(o, t, 3)),
        (L.SSIMLoss(), lambda o, t: L.ssim_loss(o, t, 7)),
        (L.MSSSIMLoss(), lambda o, t: L.ms_ssim_loss(o, t, 7)),
        (L.ColorLoss(reduction="mean"), lambda o, t: L.color_loss(o, t, "mean")),
    ],
)
def test_modules_equal_their_functions(module: torch.nn.Module, function) -> None:
    output, target = rand(2, 3, 24, 24, seed=1), rand(2, 3, 24, 24, seed=2)
    assert module(output, target).item() == pytest.approx(function(output, target).item())


def test_tv_module_equals_function() -> None:
    x = rand(2, 3, 8, 8)
    assert L.TVLoss()(x).item() == pytest.approx(L.tv_loss(x).item())


@pytest.mark.parametrize(
    "loss",
    [
        L.l1_loss,
        L.mse_loss,
        lambda o, t: L.tv_loss(o),
        lambda o, t: L.color_loss(o, t),
        lambda o, t: L.color_loss(o, t, blur_sigma=2.0),
        lambda o, t: L.ssim_loss(o, t, win_size=3),
        lambda o, t: L.ms_ssim_loss(o, t, win_size=3),
        lambda o, t: L.adversarial_loss(L.to_grayscale(o) - t.mean(), True),
        lambda o, t: L.discriminator_loss(o, t, "lsgan"),
        lambda o, t: L.discriminator_loss(o, t, "hinge"),
    ],
    ids=["l1", "mse", "tv", "color", "color_sigma", "ssim", "ms_ssim", "texture", "d_lsgan", "d_hinge"],
)
def test_gradcheck_float64(loss) -> None:
    output = rand(1, 3, 8, 8, seed=1, dtype=torch.float64).requires_grad_()
    target = rand(1, 3, 8, 8, seed=2, dtype=torch.float64)
    # fast_mode checks a random projection of the Jacobian: the same test, far fewer evaluations.
    assert torch.autograd.gradcheck(lambda o: loss(o, target), (output,), fast_mode=True)


@pytest.mark.parametrize(("shape", "win_size", "scales"), [((1, 3, 24, 24), 3, 3), ((1, 3, 29, 30), 7, 2)])
def test_gradcheck_ms_ssim_over_several_scales_float64(shape, win_size: int, scales: int) -> None:
    assert M.ms_ssim_scales(*shape[-2:], win_size) == scales  # the pooled, odd-sized scales are exercised
    output = rand(*shape, seed=1, dtype=torch.float64).requires_grad_()
    target = ((output.detach() + 0.2 * rand(*shape, seed=2, dtype=torch.float64)) / 1.2).clamp(0, 1)
    assert torch.autograd.gradcheck(lambda o: L.ms_ssim_loss(o, target, win_size), (output,), fast_mode=True)


def test_gradcheck_perceptual_float64() -> None:
    vgg = tiny_vgg("relu1_2").double()
    output = rand(1, 3, 5, 5, seed=1, dtype=torch.float64).requires_grad_()
    target = rand(1, 3, 5, 5, seed=2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda o: L.perceptual_loss(o, target, vgg), (output,), fast_mode=True)
