"""The paper's discriminator: a PatchGAN that sees the phone photo and a candidate together.

Conditional (pix2pix-style): it judges ``cat(input, candidate)``, so it penalises outputs that are
implausible *for this input* (content changes, artifacts), not just implausible photos.
Shapes: ``(N, 3, H, W)`` + ``(N, 3, H, W)`` in [0, 1] -> ``(N, 1, H/8, W/8)`` logits (one per ~34 px patch).
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """Four strided 4x4 convolutions with instance norm and leaky ReLU, then a 1-channel logit map."""

    def __init__(self, in_channels: int = 6, width: int = 32, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        c = width
        for i in range(1, layers):
            c_out = min(width * 2**i, 8 * width)
            blocks += [
                nn.Conv2d(c, c_out, 4, stride=2 if i < layers - 1 else 1, padding=1),
                nn.InstanceNorm2d(c_out, affine=True),
                nn.LeakyReLU(0.2, True),
            ]
            c = c_out
        blocks.append(nn.Conv2d(c, 1, 4, padding=1))
        self.net = nn.Sequential(*blocks)
        self.in_channels = in_channels

    def forward(self, condition: torch.Tensor, candidate: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for ``candidate`` given ``condition`` (or for ``condition`` alone when unconditional)."""
        x = condition if candidate is None else torch.cat([condition, candidate], dim=1)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"PatchDiscriminator expects {self.in_channels} channels, got {x.shape[1]}")
        return self.net(x * 2 - 1)
