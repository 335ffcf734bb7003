"""Full-reference and no-reference image quality metrics, plus bootstrap confidence intervals.

Every metric takes image batches ``(N, 3, H, W)`` float RGB in [0, 1] and returns one value per image,
shape ``(N,)``. The evaluation protocol (DPED, Ignatov et al. 2017; PIRM 2018) first clamps a model's
output to [0, 1] and rounds it to 8 bit (:func:`quantize_8bit`), then compares it with the DSLR target.

Definitions (each is tested against an independent implementation in ``tests/test_metrics.py``):

- PSNR: ``10 * log10(1 / MSE)`` per image, MSE over all RGB values in [0, 1]. Identical images give
  ``inf`` (as scikit-image does); no cap, so a mean over images that contains one is ``inf`` too.
- SSIM: exactly ``pytorch_msssim.ssim(x, y, data_range=1, win_size=7, size_average=False)``: Gaussian
  window of 7 taps, sigma 1.5, valid filtering, per RGB channel then averaged.
- MS-SSIM: pytorch-msssim's definition with the same 7-tap window, using as many scales as fit (3 for
  100x100), standard weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) truncated and renormalised to sum
  1. A scale fits if its shorter side is at least twice the window (see :func:`ms_ssim_scales`), so that
  its SSIM averages over a reasonable number of window positions. ``dslrify.losses.ms_ssim_loss`` is
  ``1 -`` this same computation (it only floors the terms at 1e-6 to keep gradients finite).
- CIEDE2000: mean over pixels of the colour difference (Sharma, Wu and Dalal 2005; kL = kC = kH = 1),
  with sRGB converted to CIELAB (D65) by ``kornia.color.rgb_to_lab``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import kornia
import numpy as np
import pytorch_msssim
import torch
import torch.nn.functional as F
from torch import Tensor

#: Window of SSIM and MS-SSIM: 7 taps (pytorch-msssim's ``win_size=7``), not Wang et al.'s 11.
WIN_SIZE = 7
WIN_SIGMA = 1.5
#: Wang, Simoncelli and Bovik (2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class Interval(NamedTuple):
    """A mean with the bounds of its confidence interval."""

    mean: float
    low: float
    high: float


def _check_images(x: Tensor, y: Tensor | None = None) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
    if y is not None and x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def quantize_8bit(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to the nearest of 256 levels, as a saved 8-bit photo would be.

    Any shape; float in, float out (values ``k / 255``).
    """
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB of each image, peak 1: ``(N, 3, H, W)`` x2 -> ``(N,)``.

    Identical images give ``inf`` (MSE is 0); that is the honest value and what scikit-image returns.
    """
    _check_images(x, y)
    # float64 so that tiny errors (a few 8-bit steps in a large photo) are not lost to rounding.
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(1.0 / mse)).to(x.dtype)


def _check_window(x: Tensor) -> None:
    if min(x.shape[-2:]) < WIN_SIZE:
        raise ValueError(
            f"images of {x.shape[-2]}x{x.shape[-1]} are smaller than the {WIN_SIZE}-tap SSIM window"
        )


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Structural similarity of each image: ``(N, 3, H, W)`` x2 in [0, 1] -> ``(N,)``, 1 for identical.

    The reference definition is pytorch-msssim's (7-tap Gaussian window, sigma 1.5, valid filtering,
    mean of the three RGB channels), so this calls it rather than re-deriving it.
    """
    _check_images(x, y)
    _check_window(x)
    return pytorch_msssim.ssim(
        x, y, data_range=1.0, win_size=WIN_SIZE, win_sigma=WIN_SIGMA, size_average=False
    )


def ms_ssim_scales(height: int, width: int, win_size: int = WIN_SIZE) -> int:
    """How many MS-SSIM scales fit an image: those whose shorter side is at least ``2 * win_size``.

    Scale 1 is the image itself; each further scale halves it (rounding up, as pytorch-msssim's 2x2
    average pooling pads odd sizes); at most 5 (the number of standard weights). The rule asks for twice
    the window so that the SSIM at a scale averages over a reasonable number of window positions (at
    least ``(win_size + 1) ** 2``), not over the handful left when the window barely fits, whose mean is
    too noisy to carry a fixed weight. For 100x100 DPED patches and 7 taps: sides 100, 50, 25 -> 3
    scales (the fourth, 13, is below 14); 5 scales need a shorter side above ``16 * (2 * win_size - 1)``
    (208 for 7 taps). Returns 0 if even the full image is too small.
    """
    side, scales = min(height, width), 0
    while scales < len(MS_SSIM_WEIGHTS) and side >= 2 * win_size:
        scales += 1
        side = (side + 1) // 2
    return scales


def _gaussian_window(win_size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    coords = torch.arange(win_size, dtype=like.dtype, device=like.device) - win_size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).view(1, 1, 1, -1).repeat(channels, 1, 1, 1)  # (C, 1, 1, win)


def _ssim_and_cs(x: Tensor, y: Tensor, win: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean SSIM and contrast-structure term, ``(N, C)`` each (valid separable filtering)."""
    c = x.shape[1]

    def blur(t: Tensor) -> Tensor:
        t = F.conv2d(t, win, groups=c)  # along W
        return F.conv2d(t, win.transpose(2, 3), groups=c)  # along H

    c1, c2 = 0.01**2, 0.03**2  # K1 = 0.01, K2 = 0.03 with data range 1
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ms_ssim(
    x: Tensor, y: Tensor, scales: int | None = None, win_size: int = WIN_SIZE, win_sigma: float = WIN_SIGMA
) -> Tensor:
    """Multi-scale SSIM of each image: ``(N, 3, H, W)`` x2 in [0, 1] -> ``(N,)``, 1 for identical.

    ``scales`` defaults to :func:`ms_ssim_scales` (3 for 100x100 patches with the 7-tap window). The
    standard weights are truncated to the scales used and renormalised to sum to 1, so that identical
    images still score 1 and the value stays comparable in range. Otherwise identical to
    ``pytorch_msssim.ms_ssim(x, y, data_range=1, win_size=win_size, win_sigma=win_sigma, weights=...)``
    (ReLU on each term, product over scales, mean over RGB), which refuses images smaller than
    ``16 * (win_size - 1)`` whatever the number of weights; hence this re-implementation, tested equal
    to it where it applies.
    """
    _check_images(x, y)
    return _ms_ssim(x, y, scales, win_size, win_sigma)


def _ms_ssim(
    x: Tensor,
    y: Tensor,
    scales: int | None = None,
    win_size: int = WIN_SIZE,
    win_sigma: float = WIN_SIGMA,
    floor: float = 0.0,
) -> Tensor:
    """MS-SSIM of ``(N, C, H, W)`` x2 (any ``C``) -> ``(N,)``: the one implementation, shared with
    ``dslrify.losses.ms_ssim_loss``.

    Each scale's term is clamped below at ``floor``: 0 is pytorch-msssim's ReLU (the metric); a small
    positive ``floor`` keeps the gradient of ``term ** weight`` finite (it is infinite at 0), for the loss.
    """
    if win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and positive, got {win_size}")
    height, width = x.shape[-2:]
    fit = ms_ssim_scales(height, width, win_size)
    if fit == 0:
        raise ValueError(
            f"images of {height}x{width} are too small for MS-SSIM with a {win_size}-tap window: "
            f"the shorter side must be at least {2 * win_size}"
        )
    if scales is None:
        scales = fit
    if not 1 <= scales <= fit:
        raise ValueError(
            f"{scales} MS-SSIM scales asked for, but {fit} fit images of {height}x{width} "
            f"with a {win_size}-tap window"
        )
    weights = x.new_tensor(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    win = _gaussian_window(win_size, win_sigma, x.shape[1], x)
    terms = []
    for level in range(scales):
        s, cs = _ssim_and_cs(x, y, win)
        # Coarser scales contribute contrast-structure only; the coarsest adds luminance (full SSIM).
        term = s if level == scales - 1 else cs
        terms.append(torch.relu(term) if floor == 0 else term.clamp_min(floor))
        if level < scales - 1:
            pad = [d % 2 for d in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
    per_channel = torch.prod(torch.stack(terms) ** weights.view(-1, 1, 1), dim=0)  # (N, C)
    return per_channel.mean(dim=1)


def delta_e2000(x: Tensor, y: Tensor) -> Tensor:
    """Mean CIEDE2000 colour difference of each image: ``(N, 3, H, W)`` sRGB in [0, 1] -> ``(N,)``.

    0 for identical images; about 1 is a just-noticeable difference, above 10 clearly different colours.
    """
    _check_images(x, y)
    lab1 = kornia.color.rgb_to_lab(x).double()
    lab2 = kornia.color.rgb_to_lab(y).double()
    return ciede2000(lab1, lab2).flatten(1).mean(dim=1).to(x.dtype)


def ciede2000(lab1: Tensor, lab2: Tensor) -> Tensor:
    """CIEDE2000 between CIELAB colours, channel dim 1: ``(N, 3, ...)`` x2 -> ``(N, ...)`` (Sharma et al.)."""
    l1, a1, b1 = lab1.unbind(1)
    l2, a2, b2 = lab2.unbind(1)
    c_bar = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.remainder(torch.atan2(b1, a1p), 2 * math.pi)
    h2p = torch.remainder(torch.atan2(b2, a2p), 2 * math.pi)

    dl = l2 - l1
    dc = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > math.pi, dh - 2 * math.pi, dh)
    dh = torch.where(dh < -math.pi, dh + 2 * math.pi, dh)
    chroma_zero = c1p * c2p == 0
    dh = torch.where(chroma_zero, torch.zeros_like(dh), dh)  # hue is undefined for a grey colour
    dh_big = 2 * torch.sqrt(c1p * c2p) * torch.sin(dh / 2)

    l_bar = (l1 + l2) / 2
    c_bar_p = (c1p + c2p) / 2
    h_sum = h1p + h2p
    # Mean hue on the circle: average the angles, moving by pi when they are more than pi apart.
    far = (h1p - h2p).abs() > math.pi
    shift = torch.where(h_sum < 2 * math.pi, math.pi, -math.pi)
    h_bar = torch.where(chroma_zero, h_sum, h_sum / 2 + torch.where(far, shift, 0.0))

    t = (
        1
        - 0.17 * torch.cos(h_bar - math.radians(30))
        + 0.24 * torch.cos(2 * h_bar)
        + 0.32 * torch.cos(3 * h_bar + math.radians(6))
        - 0.20 * torch.cos(4 * h_bar - math.radians(63))
    )
    d_theta = math.radians(30) * torch.exp(-(((torch.rad2deg(h_bar) - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(c_bar_p**7 / (c_bar_p**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * t
    r_t = -torch.sin(2 * d_theta) * r_c
    tl, tc, th = dl / s_l, dc / s_c, dh_big / s_h
    return torch.sqrt(tl**2 + tc**2 + th**2 + r_t * tc * th)


def sharpness(x: Tensor) -> Tensor:
    """No-reference sharpness: variance of the Laplacian of luma, ``(N, 3, H, W)`` in [0, 1] -> ``(N,)``.

    Luma is ITU-R BT.601 (``kornia.color.rgb_to_grayscale``); the Laplacian is kornia's unnormalised
    3x3 kernel; the 1-pixel border is dropped so that padding does not count. Higher means more fine
    detail (or more noise: it cannot tell them apart). Depends on content and scale, so only compare
    images of the same scene at the same size, e.g. a model's output against its input.
    """
    _check_images(x)
    if min(x.shape[-2:]) < 3:
        raise ValueError(f"sharpness needs images of at least 3x3, got {x.shape[-2]}x{x.shape[-1]}")
    lap = kornia.filters.laplacian(kornia.color.rgb_to_grayscale(x), 3, normalized=False)
    return lap[:, :, 1:-1, 1:-1].flatten(1).var(dim=1, unbiased=False)


def edge_step(inp: Tensor, out: Tensor, depth: int = 4) -> Tensor:
    """How much a model adds at the photo's edges (a frame), in 8-bit levels: ``(N, 3, H, W)`` -> ``(N,)``.

    Per side and for rows (columns) ``r = 0 .. depth - 1`` from that edge: the mean ``|out[r] - out[r+1]|``
    minus the mean ``|inp[r] - inp[r+1]|`` (over the row and the channels), times 255. The result is the
    largest over the four sides and the ``depth`` rows: about 0 when the edge is treated like the
    centre, several levels for a bright or dark frame. Meaningful on smooth photos, where the input's
    own steps are small.
    """
    _check_images(inp, out)
    if min(inp.shape[-2:]) < depth + 1:
        raise ValueError(f"edge_step needs images of at least {depth + 1} pixels on each side")
    worst = torch.full((inp.shape[0],), -float("inf"), dtype=torch.float64, device=inp.device)
    for image in (
        lambda t: t,
        lambda t: t.flip(-2),
        lambda t: t.transpose(-1, -2),
        lambda t: t.flip(-1).transpose(-1, -2),
    ):
        a, b = image(inp).double(), image(out).double()
        for r in range(depth):
            step = (b[:, :, r] - b[:, :, r + 1]).abs().mean(dim=(1, 2)) - (
                a[:, :, r] - a[:, :, r + 1]
            ).abs().mean(dim=(1, 2))
            worst = torch.maximum(worst, step * 255)
    return worst


def _as_array(values: Sequence[float] | np.ndarray | Tensor, what: str) -> np.ndarray:
    v = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D sequence of numbers, got shape {v.shape}")
    if np.isnan(v).any():
        raise ValueError(f"{what} contains NaN; a metric failed on some image")
    return v


def bootstrap_ci(
    values: Sequence[float] | np.ndarray | Tensor, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Mean of ``values`` (shape ``(n,)``) with a percentile-bootstrap confidence interval.

    Resamples the values ``n_boot`` times with replacement (fixed ``seed``: reproducible). The bounds are
    the order statistics just outside the ``level`` range (no interpolation), which is slightly
    conservative and keeps ``inf`` values (PSNR of identical images) from turning into NaN.
    """
    v = _as_array(values, "values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Chunks of resamples keep memory bounded for 160k-image test sets (n_boot * n indices otherwise).
    chunk = max(1, 2_000_000 // v.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = v[rng.integers(0, v.size, size=(stop - start, v.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low = float(np.quantile(means, alpha, method="lower"))
    high = float(np.quantile(means, 1 - alpha, method="higher"))
    return Interval(float(v.mean()), low, high)


def paired_difference(
    a: Sequence[float] | np.ndarray | Tensor,
    b: Sequence[float] | np.ndarray | Tensor,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Mean of ``a - b`` over paired values (same images, two models) with its bootstrap interval.

    Pairing removes the (large) variation between images, so this tells whether a beats b far more
    sharply than comparing two independent intervals. Positive means ``a`` scored higher.
    """
    va, vb = _as_array(a, "a"), _as_array(b, "b")
    if va.shape != vb.shape:
        raise ValueError(f"paired values must have the same length, got {va.size} and {vb.size}")
    with np.errstate(invalid="ignore"):
        diff = va - vb
    if np.isnan(diff).any():
        raise ValueError("a - b is undefined (inf - inf) for some pair, e.g. PSNR of two perfect outputs")
    return bootstrap_ci(diff, n_boot=n_boot, seed=seed, level=level)
