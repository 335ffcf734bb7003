"""Training losses: pixel and structural losses, and DPED's colour, total-variation, content and texture
losses (Ignatov et al., "DSLR-Quality Photos on Mobile Devices with Deep Convolutional Networks",
ICCV 2017; reference code github.com/aiff22/DPED, ``train_model.py`` and ``utils.py``), and the gradient
texture loss of Xia et al.'s 2018 code (``gradient_loss``).

Every loss is a typed function plus a thin ``nn.Module`` that stores its options (kornia style).
Images are ``(N, C, H, W)`` float tensors, RGB in ``[0, 1]`` unless stated; ``output`` and ``target``
must have the same shape (``ValueError`` otherwise). Every loss returns a scalar tensor, 0 when
``output == target`` (a perfect fake for the adversarial losses has no such point).

The structural losses default to the evaluation metrics' 7-tap Gaussian window (sigma 1.5), and
``ms_ssim_loss`` is ``1 -`` the very MS-SSIM of ``dslrify.metrics`` (same scales, same weights), so that
training optimises what evaluation measures.
"""

from __future__ import annotations

import os
from typing import Literal

import kornia.filters
import pytorch_msssim
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dslrify.metrics import _ms_ssim
from dslrify.models.dped import rgb_to_gray
from dslrify.models.vgg import VGGFeatures

ColorReduction = Literal["dped", "mean", "sum"]
GanMode = Literal["vanilla", "lsgan", "hinge"]
GAN_MODES: tuple[str, ...] = ("vanilla", "lsgan", "hinge")


def _check_pair(output: Tensor, target: Tensor, name: str) -> None:
    if output.dim() != 4 or output.shape != target.shape:
        raise ValueError(
            f"{name}: output and target must both be (N, C, H, W) with the same shape, "
            f"got {tuple(output.shape)} and {tuple(target.shape)}"
        )


# --- pixel losses -------------------------------------------------------------------------------


def l1_loss(output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over all elements of ``(N, C, H, W)`` tensors."""
    _check_pair(output, target, "l1_loss")
    return F.l1_loss(output, target)


def mse_loss(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all elements of ``(N, C, H, W)`` tensors (DPED's ``loss_mse``)."""
    _check_pair(output, target, "mse_loss")
    return F.mse_loss(output, target)


# --- structural losses --------------------------------------------------------------------------


def _check_window(win_size: int, output: Tensor, name: str) -> None:
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"{name}: win_size must be odd and positive (7 or 11 are usual), got {win_size}")
    if min(output.shape[-2:]) < win_size:
        # pytorch_msssim would only warn and skip the smoothing, which gives a different quantity.
        raise ValueError(
            f"{name}: images of {tuple(output.shape[-2:])} are smaller than the {win_size}-pixel window; "
            "use a smaller win_size or larger patches"
        )


def ssim_loss(output: Tensor, target: Tensor, win_size: int = 7, win_sigma: float = 1.5) -> Tensor:
    """``1 - SSIM`` (Gaussian window ``win_size`` x ``win_size``, ``win_sigma``; data range 1), averaged
    over images and channels. In ``[0, 2]``; 0 for identical images. Needs ``H, W >= win_size``.

    The default window (7 taps) is the one of ``dslrify.metrics.ssim``, so that with the defaults the
    loss is ``1 -`` the evaluation metric's mean (Wang et al.'s 11 taps: ``win_size=11``)."""
    _check_pair(output, target, "ssim_loss")
    _check_window(win_size, output, "ssim_loss")
    ssim = pytorch_msssim.ssim(output, target, data_range=1.0, win_size=win_size, win_sigma=win_sigma)
    return 1.0 - ssim


def ms_ssim_loss(output: Tensor, target: Tensor, win_size: int = 7, win_sigma: float = 1.5) -> Tensor:
    """``1 - MS-SSIM`` (data range 1), averaged over images: ``1 - dslrify.metrics.ms_ssim(...).mean()``.

    The same implementation as the metric: ``dslrify.metrics.ms_ssim_scales(H, W, win_size)`` scales
    (each scale's shorter side at least ``2 * win_size``: 3 for 100x100 patches; at most 5), the standard
    weights truncated to them and renormalised to sum to 1. The one difference: each scale's term is
    floored at 1e-6 instead of 0 (the metric's ReLU), which keeps the gradient of ``term ** weight``
    (infinite at 0) finite and changes nothing for any realistic value. ``(N, C, H, W)`` (any ``C``);
    needs ``H, W >= 2 * win_size`` (``ValueError`` otherwise).
    """
    _check_pair(output, target, "ms_ssim_loss")
    _check_window(win_size, output, "ms_ssim_loss")
    return 1.0 - _ms_ssim(output, target, win_size=win_size, win_sigma=win_sigma, floor=1e-6).mean()


# --- DPED's colour and total-variation losses ---------------------------------------------------


def dped_blur_kernel(size: int = 21, nsig: float = 3.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """DPED's ``utils.gauss_kernel(21, 3)`` as its 1-D factor ``(size,)``, summing to 1.

    DPED takes bin masses of the standard normal over ``size`` equal bins spanning
    ``[-nsig - d/2, nsig + d/2]`` (``d = (2 nsig + 1) / size``) and then the square root of their outer
    product; that square root makes the 2-D kernel the outer product of ``sqrt(bins)``, i.e. an
    (approximately) Gaussian blur with sigma ~4.7 pixels, not 3.
    """
    interval = (2 * nsig + 1.0) / size
    edges = torch.linspace(-nsig - interval / 2, nsig + interval / 2, size + 1, dtype=torch.float64)
    factor = torch.diff(torch.special.ndtr(edges)).sqrt()
    return (factor / factor.sum()).to(dtype)


def color_blur(x: Tensor, sigma: float | None = None) -> Tensor:
    """Blur ``(N, C, H, W)`` per channel with DPED's 21x21 kernel (``sigma=None``) or with a 21x21
    Gaussian of the given ``sigma``. Zero padding, as TensorFlow's ``padding='SAME'`` in DPED."""
    if sigma is not None:
        return kornia.filters.gaussian_blur2d(x, (21, 21), (sigma, sigma), border_type="constant")
    kernel = dped_blur_kernel(dtype=x.dtype).to(x.device)[None]
    return kornia.filters.filter2d_separable(x, kernel, kernel, border_type="constant")


def color_loss(
    output: Tensor, target: Tensor, reduction: ColorReduction = "dped", blur_sigma: float | None = None
) -> Tensor:
    """Squared difference of blurred images: compares colour and brightness, not texture (DPED).

    ``(N, C, H, W)``. ``reduction``: ``"dped"`` = sum over all elements / ``(2 N)``, DPED's
    ``reduce_sum((dslr_blur - enhanced_blur) ** 2) / (2 * batch_size)`` (it grows with patch area: its
    weight 0.5 is tuned for 100x100x3 patches); ``"mean"`` per element; ``"sum"``. ``blur_sigma``: see
    ``color_blur`` (``None`` = DPED's exact kernel).
    """
    _check_pair(output, target, "color_loss")
    # Blurring is linear (zero padding included), so blur(o) - blur(t) == blur(o - t): one blur, not two.
    squared = color_blur(output - target, blur_sigma) ** 2
    if reduction == "dped":
        return squared.sum() / (2 * output.shape[0])
    if reduction == "mean":
        return squared.mean()
    if reduction == "sum":
        return squared.sum()
    raise ValueError(f"color_loss: reduction must be 'dped', 'mean' or 'sum', got {reduction!r}")


def tv_loss(x: Tensor) -> Tensor:
    """DPED's total variation of ``(N, C, H, W)``, ``H, W >= 2``: mean squared vertical difference
    plus mean squared horizontal difference (its ``2 * (x_tv / tv_x_size + y_tv / tv_y_size) /
    batch_size`` with ``tf.nn.l2_loss = sum / 2`` and per-image sizes). A ramp of slope ``a`` gives
    ``a ** 2``."""
    if x.dim() != 4 or x.shape[-2] < 2 or x.shape[-1] < 2:
        raise ValueError(f"tv_loss: expected (N, C, H, W) with H, W >= 2, got {tuple(x.shape)}")
    dy = x[:, :, 1:, :] - x[:, :, :-1, :]
    dx = x[:, :, :, 1:] - x[:, :, :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


# --- Xia et al.'s gradient texture loss ----------------------------------------------------------


def gradient_loss(output: Tensor, target: Tensor) -> Tensor:
    """L1 distance between the image gradients of ``output`` and ``target``, ``(N, C, H, W)``, H, W >= 2.

    Mean over all elements of ``|dx(output) - dx(target)|`` plus the same for ``dy``, with ``dx`` and
    ``dy`` the differences of horizontally and vertically adjacent pixels (``(N, C, H, W - 1)`` and
    ``(N, C, H - 1, W)``). It asks for the target's edges and texture, not its tones: adding a constant
    to either image changes nothing. This is the texture loss of Xia et al.'s preliminary code
    (bdseal/Low-Quality-to-DSLR-Translation, ``utils.compute_gradient`` and ``train_model.py``), which
    leaves the sum of the two absolute differences unreduced (and of shapes that do not broadcast); the
    values its log reports (about 0.04) are on the scale of these per-element means.
    """
    _check_pair(output, target, "gradient_loss")
    if output.shape[-2] < 2 or output.shape[-1] < 2:
        raise ValueError(f"gradient_loss: images need H, W >= 2, got {tuple(output.shape)}")
    # Differencing is linear: dx(output) - dx(target) == dx(output - target).
    diff = output - target
    dx = diff[:, :, :, 1:] - diff[:, :, :, :-1]
    dy = diff[:, :, 1:, :] - diff[:, :, :-1, :]
    return dx.abs().mean() + dy.abs().mean()


# --- DPED's content (perceptual) loss -----------------------------------------------------------


def perceptual_loss(
    output: Tensor, target: Tensor, extractor: nn.Module, distance: Literal["mse", "l1"] = "mse"
) -> Tensor:
    """Distance between ``extractor`` features of ``output`` and ``target`` (``(N, 3, H, W)`` in [0,1]).

    ``"mse"`` is DPED's content loss: ``2 * l2_loss(diff) / content_size`` with ``content_size`` the
    feature map's ``N * C * H' * W'``, i.e. the mean squared feature difference. The target's features
    are computed without autograd: it is a constant.
    """
    _check_pair(output, target, "perceptual_loss")
    features = extractor(output)
    with torch.no_grad():
        target_features = extractor(target)
    if distance == "mse":
        return F.mse_loss(features, target_features)
    if distance == "l1":
        return F.l1_loss(features, target_features)
    raise ValueError(f"perceptual_loss: distance must be 'mse' or 'l1', got {distance!r}")


# --- DPED's texture (adversarial) loss ----------------------------------------------------------


def to_grayscale(x: Tensor) -> Tensor:
    """``(N, 3, H, W)`` RGB -> ``(N, 1, H, W)`` luma with TensorFlow's (and DPED's) BT.601 weights."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"to_grayscale: expected (N, 3, H, W) RGB, got {tuple(x.shape)}")
    return rgb_to_gray(x)


def adversarial_loss(
    prediction: Tensor,
    target_is_real: bool,
    mode: GanMode = "vanilla",
    *,
    for_discriminator: bool = False,
    probabilities: bool = False,
) -> Tensor:
    """Loss pushing discriminator ``prediction`` (any shape: ``(N,)``, ``(N, 1)``, a patch map) towards
    the "real" (``target_is_real``) or "fake" label, averaged over all elements.

    ``prediction`` holds raw scores (logits) unless ``probabilities=True`` (only for ``"vanilla"`` and
    ``"lsgan"``; DPED's discriminator ends in a softmax: pass its "real" column).
    - ``"vanilla"``: binary cross-entropy; probabilities are clipped at 1e-10 before the log, as DPED.
    - ``"lsgan"``: mean squared distance to 1 (real) or 0 (fake).
    - ``"hinge"``: for the discriminator ``relu(1 - x)`` (real) / ``relu(1 + x)`` (fake); for the
      generator (``for_discriminator=False``) ``-x``, which only makes sense with ``target_is_real``.
    """
    if mode not in GAN_MODES:
        raise ValueError(f"adversarial_loss: mode must be one of {GAN_MODES}, got {mode!r}")
    if mode == "vanilla":
        if probabilities:
            p = prediction if target_is_real else 1.0 - prediction
            return -torch.log(p.clamp(1e-10, 1.0)).mean()
        label = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        return F.binary_cross_entropy_with_logits(prediction, label)
    if mode == "lsgan":
        return (prediction - (1.0 if target_is_real else 0.0)).pow(2).mean()
    if probabilities:
        raise ValueError("adversarial_loss: hinge mode needs raw scores, not probabilities")
    if for_discriminator:
        return F.relu(1.0 - prediction).mean() if target_is_real else F.relu(1.0 + prediction).mean()
    if not target_is_real:
        raise ValueError("adversarial_loss: the hinge generator loss only targets 'real'")
    return -prediction.mean()


def discriminator_loss(
    real: Tensor, fake: Tensor, mode: GanMode = "vanilla", *, probabilities: bool = False
) -> Tensor:
    """Discriminator loss: real predictions towards "real" plus fake ones towards "fake" (sum of the two
    means; shapes may differ). Pass predictions on ``generated.detach()`` so the generator is untouched."""
    real_term = adversarial_loss(real, True, mode, for_discriminator=True, probabilities=probabilities)
    fake_term = adversarial_loss(fake, False, mode, for_discriminator=True, probabilities=probabilities)
    return real_term + fake_term


def texture_loss(fake: Tensor, mode: GanMode = "vanilla", *, probabilities: bool = False) -> Tensor:
    """DPED's texture loss for the generator: the discriminator's predictions on
    ``to_grayscale(output)`` pushed towards "real".

    DPED itself minimises ``-loss_discrim`` (the saturating ``log(1 - D)``, summed over the batch);
    this is the non-saturating form, averaged, which gives useful gradients while the discriminator wins.
    """
    return adversarial_loss(fake, True, mode, probabilities=probabilities)


# --- thin modules -------------------------------------------------------------------------------


class L1Loss(nn.Module):
    """Module form of ``l1_loss``: ``forward(output, target) -> scalar``."""

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return l1_loss(output, target)


class MSELoss(nn.Module):
    """Module form of ``mse_loss``: ``forward(output, target) -> scalar``."""

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return mse_loss(output, target)


class SSIMLoss(nn.Module):
    """Module form of ``ssim_loss``."""

    def __init__(self, win_size: int = 7, win_sigma: float = 1.5) -> None:
        super().__init__()
        self.win_size, self.win_sigma = win_size, win_sigma

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return ssim_loss(output, target, self.win_size, self.win_sigma)


class MSSSIMLoss(nn.Module):
    """Module form of ``ms_ssim_loss``."""

    def __init__(self, win_size: int = 7, win_sigma: float = 1.5) -> None:
        super().__init__()
        self.win_size, self.win_sigma = win_size, win_sigma

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return ms_ssim_loss(output, target, self.win_size, self.win_sigma)


class ColorLoss(nn.Module):
    """Module form of ``color_loss``."""

    def __init__(self, reduction: ColorReduction = "dped", blur_sigma: float | None = None) -> None:
        super().__init__()
        self.reduction, self.blur_sigma = reduction, blur_sigma

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return color_loss(output, target, self.reduction, self.blur_sigma)


class TVLoss(nn.Module):
    """Module form of ``tv_loss``: ``forward(output) -> scalar``."""

    def forward(self, output: Tensor) -> Tensor:
        return tv_loss(output)


class GradientLoss(nn.Module):
    """Module form of ``gradient_loss``: ``forward(output, target) -> scalar``."""

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return gradient_loss(output, target)


class PerceptualLoss(nn.Module):
    """DPED's content loss on a frozen VGG-19 (``VGGFeatures``) at ``layer``.

    ``weights``: a path (``.pth``/``.safetensors``), a state dict, or ``None`` for PyTorch's published
    checkpoint (downloaded and checksummed; a ``DslrifyError`` with advice if that fails). Unlike DPED
    (MatConvNet VGG on mean-subtracted 0-255 input), torchvision's weights see ImageNet-normalised input,
    so features, and the loss, are on a smaller scale: DPED's weight 10 does not carry over as is.
    """

    def __init__(
        self,
        layer: str = "relu5_4",
        weights: dict[str, Tensor] | str | os.PathLike[str] | None = None,
        distance: Literal["mse", "l1"] = "mse",
    ) -> None:
        super().__init__()
        self.vgg = VGGFeatures(layer, weights)
        self.distance: Literal["mse", "l1"] = distance

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return perceptual_loss(output, target, self.vgg, self.distance)


class TextureLoss(nn.Module):
    """Module form of ``texture_loss``: ``forward(fake_prediction) -> scalar``."""

    def __init__(self, mode: GanMode = "vanilla", probabilities: bool = False) -> None:
        super().__init__()
        self.mode, self.probabilities = mode, probabilities

    def forward(self, fake: Tensor) -> Tensor:
        return texture_loss(fake, self.mode, probabilities=self.probabilities)


class DiscriminatorLoss(nn.Module):
    """Module form of ``discriminator_loss``: ``forward(real_prediction, fake_prediction) -> scalar``."""

    def __init__(self, mode: GanMode = "vanilla", probabilities: bool = False) -> None:
        super().__init__()
        self.mode, self.probabilities = mode, probabilities

    def forward(self, real: Tensor, fake: Tensor) -> Tensor:
        return discriminator_loss(real, fake, self.mode, probabilities=self.probabilities)
