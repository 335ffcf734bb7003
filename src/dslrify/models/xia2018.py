"""The generator of Xia et al.'s own preliminary code for "Low-Quality-to-DSLR Translation" (2018):
``resnet()`` in bdseal/Low-Quality-to-DSLR-Translation ``models.py`` (TensorFlow 1, no released weights).

An EDSR-style residual network at full resolution (the source cites EDSR-Tensorflow and DPED, and
keeps DPED's 64 channels with EDSR's 32 blocks):

- conv 9x9 -> ``channels`` (no activation); its output is kept for a long skip;
- ``blocks`` residual blocks, each ``x + relu(IN(conv3x3(relu(IN(conv3x3(x))))))``; instance norm as
  DPED's ``_instance_norm`` (``tf.nn.moments`` over H, W, biased variance, eps 1e-3, learned scale and
  shift);
- two conv 3x3 (no activation), plus the long skip;
- conv 9x9 -> 3; output ``tanh(.) * 0.5 + 0.5``.

All convolutions are stride 1 with TF "SAME" padding (``k // 2`` for odd kernels) and a bias.
"""

from __future__ import annotations

import torch
from torch import nn

from dslrify.models.base import ModelSpec, MomentsPass
from dslrify.models.dped import DPEDGenerator


class Xia2018Generator(DPEDGenerator):
    """Xia et al.'s 2018 generator: (N, 3, H, W) RGB [0, 1] -> (N, 3, H, W) in [0, 1], any H, W.

    DPED's generator layer for layer (the source says it grew from it: ``dped paper: num_layers=4``),
    with 32 residual blocks instead of 4, no ReLU after the first 9x9 and the two 3x3 convolutions, a
    long skip from the first convolution, and ``tanh * 0.5 + 0.5`` instead of DPED's ``* 0.58``.
    Its residual block is DPED's exactly (``x + relu(IN(conv(relu(IN(conv(x))))))``, eps 1e-3).

    Differences from the source, each forced or harmless:

    - The first convolution takes 3 input channels. The source declares its weights as
      ``[9, 9, 36, 64]`` (36 input channels), which cannot run on the RGB patches its own training script
      feeds it; 3 is the only width that trains on RGB.
    - The source computes ``input - mean(input)`` (EDSR's preprocessing) and then never uses it: the
      first convolution reads the raw input. So does this one.

    Weights start as in the source (truncated normal, std 0.01, cut at two std; biases 0.01), so that a
    run from scratch starts where the authors' did: output about 0.5 grey everywhere.
    ``channels`` and ``blocks`` default to the source's 64 and 32: ``18 (blocks + 1) c^2 + (6 blocks +
    489) c + 3`` parameters, 2,476,611 at the defaults.
    """

    def __init__(self, channels: int = 64, blocks: int = 32) -> None:
        if channels < 1 or blocks < 0:
            raise ValueError(f"channels must be >= 1 and blocks >= 0, got {channels} and {blocks}")
        super().__init__(channels, blocks)
        # Receptive field, exactly: every conv is stride 1, so a k x k conv widens it by k // 2 on each
        # side and the widest path adds them up: 4 (head 9x9) + 2 x blocks (two 3x3 per block) + 2 (the two
        # 3x3 after the blocks) + 4 (tail 9x9) = 10 + 2 x blocks (74 at the defaults). The long skip and
        # the residual adds take shorter paths. Memory: float32 at ``channels`` is 4c B/pixel per tensor;
        # about seven are live at once (DPED's six, see dped.py, plus the long skip).
        self.spec = ModelSpec(
            receptive_field=10 + 2 * blocks, bytes_per_pixel=28 * channels, context="moments"
        )
        self._init_as_source()

    def _init_as_source(self) -> None:
        """The source's ``weight_variable`` and ``bias_variable``: N(0, 0.01) truncated at 2 std, 0.01."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)
                assert module.bias is not None
                nn.init.constant_(module.bias, 0.01)

    def network(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W), ``tanh * 0.5 + 0.5`` (in [0, 1] already)."""
        skip = self.head(x)
        h = skip
        for block in self.blocks:
            h = block(h, stats)
        h = self.conv11(self.conv10(h)) + skip
        return torch.tanh(self.tail(h)) * 0.5 + 0.5
