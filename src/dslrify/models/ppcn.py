"""PPCN's teacher and student (Hui et al., "Perception-Preserving Convolutional Networks for Image
Enhancement on Smartphones", PIRM 2018), layer for layer as Zheng222/PPCN ``test/model_enhancement.py``.

Both networks first raise the contrast: ``tf.image.adjust_contrast(x, 1.2)``, i.e. per image and
channel ``(x - mean) * 1.2 + mean`` with the mean over H and W (no clipping). That mean is a whole-image
statistic like the instance norms', so it is part of the context: tiles of a large photo share it.

Teacher (TF scope ``generator_s`` in the released ``teacher.ckpt``; 21,843 parameters)::

    c0 = lrelu(conv1x7(x, 3->16));  c1 = lrelu(conv7x1(c0, 16->16))
    c2 = lrelu(IN(conv3x3(c1, 16->32)));         c3 = IN(conv3x3(c2, 32->16)) + c1
    c4 = lrelu(IN(conv3x3 rate 2(c3, 16->32)));  c5 = IN(conv3x3 rate 2(c4, 32->16)) + c3
    c6 = lrelu(conv1x1([c3, c5], 32->16));       out = tanh(conv3x3(c6, 16->3)) * 0.58 + 0.5

Student (scope ``generator_little``; 2,715 parameters)::

    c0 = lrelu(conv1x7(x, 3->8));  c1 = lrelu(conv7x1(c0, 8->8))
    c2 = lrelu(IN(conv1x7 rate 2(c1, 8->16)));   c3 = lrelu(IN(conv7x1 rate 2(c2, 16->8))) + c1
    out = tanh(conv3x3(c3, 8->3)) * 0.58 + 0.5

``lrelu`` has slope 0.05; IN is ``scale * (x - mu) / sqrt(var + 1e-3) + shift`` (biased variance).
All convolutions are stride 1 "SAME" (zero padding ``dilation * (k - 1) / 2`` per axis).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dslrify.models.base import ContextInstanceNorm, ModelSpec, MomentsModel, MomentsPass

CONTRAST = 1.2
LRELU_SLOPE = 0.05
PPCN_IN_EPS = 1e-3


def _conv(c_in: int, c_out: int, kh: int, kw: int, dilation: int = 1) -> nn.Conv2d:
    """Stride-1 convolution with TF "SAME" zero padding (odd kernels: symmetric)."""
    return nn.Conv2d(
        c_in, c_out, (kh, kw), padding=(dilation * (kh // 2), dilation * (kw // 2)), dilation=dilation
    )


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


class _PPCNBase(MomentsModel):
    """Shared contrast step. Its channel mean is the first whole-image statistic (then the norms')."""

    def adjust_contrast(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        """``tf.image.adjust_contrast(x, 1.2)`` on (N, 3, H, W), with the whole photo's channel mean."""
        mean, _ = stats(x)
        return (x - mean) * CONTRAST + mean


class PPCNTeacher(_PPCNBase):
    """PPCN's teacher: (N, 3, H, W) RGB [0, 1] -> (N, 3, H, W) in [0, 1] (``forward`` clamps)."""

    def __init__(self) -> None:
        super().__init__()
        # Receptive field per axis: 3 (1x7/7x1) + 1 + 1 + 2 + 2 (dilated 3x3) + 1 (3x3) = 10.
        # Memory measured: ~850 B per pixel above the input (1200x1200, inference mode).
        self.spec = ModelSpec(receptive_field=10, bytes_per_pixel=900, context="moments")
        self.conv0 = _conv(3, 16, 1, 7)
        self.conv1 = _conv(16, 16, 7, 1)
        self.conv2 = _conv(16, 32, 3, 3)
        self.norm2 = ContextInstanceNorm(32, eps=PPCN_IN_EPS)
        self.conv3 = _conv(32, 16, 3, 3)
        self.norm3 = ContextInstanceNorm(16, eps=PPCN_IN_EPS)
        self.conv4 = _conv(16, 32, 3, 3, dilation=2)
        self.norm4 = ContextInstanceNorm(32, eps=PPCN_IN_EPS)
        self.conv5 = _conv(32, 16, 3, 3, dilation=2)
        self.norm5 = ContextInstanceNorm(16, eps=PPCN_IN_EPS)
        self.conv6 = _conv(32, 16, 1, 1)
        self.conv7 = _conv(16, 3, 3, 3)

    def network(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W), ``tanh * 0.58 + 0.5``."""
        c0 = _lrelu(self.conv0(self.adjust_contrast(x, stats)))
        c1 = _lrelu(self.conv1(c0))
        c2 = _lrelu(self.norm2(self.conv2(c1), stats))
        c3 = self.norm3(self.conv3(c2), stats) + c1  # no activation before the skip add, as in the source
        c4 = _lrelu(self.norm4(self.conv4(c3), stats))
        c5 = self.norm5(self.conv5(c4), stats) + c3
        c6 = _lrelu(self.conv6(torch.cat([c3, c5], dim=1)))
        return torch.tanh(self.conv7(c6)) * 0.58 + 0.5


class PPCNStudent(_PPCNBase):
    """PPCN's distilled student: (N, 3, H, W) RGB [0, 1] -> (N, 3, H, W) in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        # Receptive field: 3 (1x7/7x1) + 6 (dilated 7-tap) + 1 (3x3) = 10 per axis. Memory: at most 16
        # channels (64 B/pixel float32), about six tensors live.
        self.spec = ModelSpec(receptive_field=10, bytes_per_pixel=384, context="moments")
        self.conv0 = _conv(3, 8, 1, 7)
        self.conv1 = _conv(8, 8, 7, 1)
        self.conv2 = _conv(8, 16, 1, 7, dilation=2)
        self.norm2 = ContextInstanceNorm(16, eps=PPCN_IN_EPS)
        self.conv3 = _conv(16, 8, 7, 1, dilation=2)
        self.norm3 = ContextInstanceNorm(8, eps=PPCN_IN_EPS)
        self.conv4 = _conv(8, 3, 3, 3)

    def network(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W), ``tanh * 0.58 + 0.5``."""
        c0 = _lrelu(self.conv0(self.adjust_contrast(x, stats)))
        c1 = _lrelu(self.conv1(c0))
        c2 = _lrelu(self.norm2(self.conv2(c1), stats))
        c3 = _lrelu(self.norm3(self.conv3(c2), stats)) + c1  # here the activation does precede the add
        return torch.tanh(self.conv4(c3)) * 0.58 + 0.5
