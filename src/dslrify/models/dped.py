"""DPED's networks (Ignatov et al., "DSLR-Quality Photos on Mobile Devices with Deep Convolutional
Networks", ICCV 2017), layer for layer as ``resnet()`` and ``adversarial()`` in aiff22/DPED ``models.py``.

Generator: conv 9x9 3->64 + ReLU; four residual blocks, each
``c_a = relu(IN(conv3x3(x)))``, ``out = relu(IN(conv3x3(c_a))) + x`` (the ReLU comes *before* the skip
add); two conv 3x3 + ReLU; conv 9x9 64->3; ``tanh(.) * 0.58 + 0.5``. Instance norm is DPED's
``_instance_norm``: ``tf.nn.moments`` over H, W (biased variance), eps 1e-3, ``scale * x_hat + shift``.
All convolutions are stride 1 with TF "SAME" padding, which for odd kernels is PyTorch's ``k // 2``.

Discriminator: grayscale patch -> conv 11x11/4 (48) -> 5x5/2 (128) -> 3x3 (192) -> 3x3 (192) -> 3x3/2
(128), each conv + bias -> leaky ReLU 0.2 -> instance norm (not after the first), then fc 1024 + leaky
ReLU, fc 2. Strided "SAME" convolutions pad asymmetrically (more at the bottom/right), done by hand here.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from dslrify.models.base import ContextInstanceNorm, ModelSpec, MomentsModel, MomentsPass

# tf.image.rgb_to_grayscale's weights, which DPED applies before the discriminator.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)
DPED_IN_EPS = 1e-3


class DPEDResidualBlock(nn.Module):
    """(N, C, H, W) -> (N, C, H, W): ``relu(IN(conv(relu(IN(conv(x)))))) + x``, as DPED's residual k."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = ContextInstanceNorm(channels, eps=DPED_IN_EPS)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = ContextInstanceNorm(channels, eps=DPED_IN_EPS)

    def forward(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x), stats))
        return F.relu(self.norm2(self.conv2(y), stats)) + x


class DPEDGenerator(MomentsModel):
    """DPED's 12-layer residual generator: (N, 3, H, W) RGB [0, 1] -> (N, 3, H, W) in [0, 1].

    DPED's own output range is ``0.5 ± 0.58``; ``forward`` clamps it (the measuring protocol clamps
    too, so scores are DPED's). Any H, W. The instance norms are whole-image statistics.
    ``channels`` and ``blocks`` default to DPED's 64 and 4 (401,475 parameters).
    """

    def __init__(self, channels: int = 64, blocks: int = 4) -> None:
        super().__init__()
        # Receptive field: 4 (9x9) + 2 x blocks (residual 3x3s) + 2 (3x3s) + 4 (9x9). Memory: float32 at
        # 64 channels is 256 B/pixel per tensor; about six are live at once (input of the block, conv
        # output, normalised copy, ReLU output, the skip and autograd-free temporaries).
        self.spec = ModelSpec(
            receptive_field=10 + 2 * blocks, bytes_per_pixel=24 * channels, context="moments"
        )
        self.head = nn.Conv2d(3, channels, 9, padding=4)
        self.blocks = nn.ModuleList(DPEDResidualBlock(channels) for _ in range(blocks))
        self.conv10 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv11 = nn.Conv2d(channels, channels, 3, padding=1)
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)

    def network(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W), ``tanh * 0.58 + 0.5`` (about [-0.08, 1.08])."""
        h = F.relu(self.head(x))
        for block in self.blocks:
            h = block(h, stats)
        h = F.relu(self.conv10(h))
        h = F.relu(self.conv11(h))
        return torch.tanh(self.tail(h)) * 0.58 + 0.5


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding along one axis: output ceil(size / stride), extra pixel at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv(nn.Module):
    """Conv2d with TensorFlow "SAME" padding for any stride (asymmetric when the total is odd)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride)
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(x.shape[-2], self.kernel, self.stride)
        left, right = _same_pad(x.shape[-1], self.kernel, self.stride)
        return self.conv(F.pad(x, (left, right, top, bottom)))


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) with ``tf.image.rgb_to_grayscale``'s weights."""
    return kornia.color.rgb_to_grayscale(x, rgb_weights=x.new_tensor(GRAY_WEIGHTS))


class DPEDDiscriminator(nn.Module):
    """DPED's texture discriminator: (N, 1 or 3, P, P) in [0, 1] -> (N, 2) logits.

    RGB input is converted to gray with DPED's weights first. DPED's ``adversarial()`` returns
    ``softmax(logits)``; ``forward`` returns the logits (use ``F.cross_entropy`` or ``probabilities``)
    because a log of a softmax is what the loss takes anyway and logits are numerically safer.
    In DPED's training the target is ``[adv, 1 - adv]`` with ``adv = 1`` when the DSLR patch was fed
    (``train_model.py``): column 0 means "DSLR", column 1 "enhanced".
    ``patch_size`` fixes the fc layer's input (128 x 7 x 7 for DPED's 100x100 patches). The flatten is in
    TF's (H, W, C) order so that TensorFlow weights would load unchanged.
    """

    def __init__(self, patch_size: int = 100) -> None:
        super().__init__()
        self.patch_size = patch_size
        specs = [(1, 48, 11, 4), (48, 128, 5, 2), (128, 192, 3, 1), (192, 192, 3, 1), (192, 128, 3, 2)]
        self.convs = nn.ModuleList(_SameConv(ci, co, k, s) for ci, co, k, s in specs)
        # The first layer has no instance norm (batch_nn=False in DPED).
        self.norms = nn.ModuleList(
            [nn.Identity()] + [ContextInstanceNorm(co, eps=DPED_IN_EPS) for _, co, _, _ in specs[1:]]
        )
        side = patch_size
        for _, _, _, s in specs:
            side = math.ceil(side / s)
        self.flat_size = 128 * side * side
        self.fc = nn.Linear(self.flat_size, 1024)
        self.out = nn.Linear(1024, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, P, P) gray or (N, 3, P, P) RGB in [0, 1] -> (N, 2) logits (before DPED's softmax)."""
        if x.shape[1] == 3:
            x = rgb_to_gray(x)
        if x.shape[1] != 1 or x.shape[-2:] != (self.patch_size, self.patch_size):
            raise ValueError(
                f"DPEDDiscriminator(patch_size={self.patch_size}) takes (N, 1 or 3, "
                f"{self.patch_size}, {self.patch_size}) input, got {tuple(x.shape)}"
            )
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = norm(F.leaky_relu(conv(x), 0.2))
        flat = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # TF's NHWC flatten order
        return self.out(F.leaky_relu(self.fc(flat), 0.2))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """DPED's own output: softmax of the logits, (N, 2), rows summing to 1."""
        return torch.softmax(self.forward(x), dim=1)
