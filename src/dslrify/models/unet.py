"""The paper's reading: a conditional translation network that predicts a correction of its input.

``ResidualUNet`` = a global branch that looks at a small copy of the whole photo (its colour, tone and
white balance) and a local encoder-decoder with skip connections that looks at detail. The global branch
yields a vector ``g`` that (a) sets a per-image 3x4 colour matrix applied to the input and (b) modulates
the decoder (FiLM). The local branch adds a residual, so an untrained network is close to the identity
and the network only has to learn what differs between phone and DSLR.

Shapes: ``x`` (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]; any H, W (padded internally to a
multiple of ``2**depth``). Context: ``g`` of shape (N, global_width), computed from a copy of the photo
resized to at most ``context_size`` pixels on its long side, so tiles of a large photo share it.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from dslrify.models.base import EnhancementModel, ModelSpec
from dslrify.models.resize import resize_long_side, resize_long_side_exportable


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
    )


class GlobalBranch(nn.Module):
    """Strided convolutions + average pooling: (N, 3, h, w) -> (N, width) image descriptor."""

    def __init__(self, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for c_out in (width // 2, width, width, width):
            layers += [nn.Conv2d(c, c_out, 3, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = c_out
        self.features = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(2 * width + 6, width), nn.LeakyReLU(0.2, inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        # Mean and max of the features plus the raw per-channel mean/std: exposure and white balance
        # are global facts that the pooled colour statistics state directly.
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), stats], dim=1)
        return self.mlp(pooled)


class ResidualUNet(EnhancementModel):
    """Global colour transform + U-Net residual. See the module docstring for shapes."""

    def __init__(self, width: int = 16, depth: int = 3, global_width: int = 32, context_size: int = 256):
        super().__init__()
        self.depth = depth
        self.context_size = context_size
        # Receptive field: two 3x3 convs per level on each side of the bottleneck, at stride 2**level,
        # plus strided convs; measured by gradient in the tests, rounded up.
        self.spec = ModelSpec(
            receptive_field=8 * 2**depth,
            size_multiple=2**depth,
            bytes_per_pixel=1024,
            context="thumbnail",
            thumbnail=context_size,
        )
        self.global_branch = GlobalBranch(global_width)
        self.colour = nn.Linear(global_width, 12)  # 3x3 matrix + offset, a correction of the identity
        nn.init.zeros_(self.colour.weight)
        nn.init.zeros_(self.colour.bias)

        chans = [width * 2**i for i in range(depth + 1)]
        self.head = _conv_block(3, chans[0])
        self.down = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1) for i in range(depth)
        )
        self.enc = nn.ModuleList(_conv_block(chans[i + 1], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in range(depth))
        self.dec = nn.ModuleList(_conv_block(2 * chans[i], chans[i]) for i in range(depth))
        # FiLM: the global vector scales and shifts each decoder level.
        film = [nn.Linear(global_width, 2 * chans[i]) for i in range(depth)]
        for f in film:
            nn.init.zeros_(f.weight)
            nn.init.zeros_(f.bias)
        self.film = nn.ModuleList(film)
        self.tail = nn.Conv2d(chans[0], 3, 3, padding=1)
        assert self.tail.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def compute_context(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) whole photo -> (N, global_width) descriptor from a <= context_size copy."""
        return self.global_branch(resize_long_side(x, self.context_size))

    def context_from_thumbnail(self, small: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N, global_width) descriptor from the photo's <= context_size thumbnail ``small``."""
        return self.global_branch(small)

    def enhance(
        self, x: torch.Tensor, context: torch.Tensor | None, origin: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W); ``context`` the whole photo's global vector (N, global_width)."""
        g = self.compute_context(x) if context is None else context
        n, _, h, w = x.shape
        m = self.spec.size_multiple
        ph, pw = (-h) % m, (-w) % m
        xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x

        # Global colour: y = x + (A x + b), A and b predicted per image (zero at initialisation).
        ab = self.colour(g).view(n, 3, 4)
        base = xp + torch.einsum("nij,njhw->nihw", ab[:, :, :3], xp) + ab[:, :, 3, None, None]

        feats = [self.head(xp)]
        for down, enc in zip(self.down, self.enc, strict=True):
            feats.append(enc(down(feats[-1])))
        y = feats[-1]
        for i in reversed(range(self.depth)):
            y = self.dec[i](torch.cat([self.up[i](y), feats[i]], dim=1))
            gamma, beta = self.film[i](g).chunk(2, dim=1)
            y = y * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        out = base + self.tail(y)
        return out[:, :, :h, :w]

    def export_module(self) -> nn.Module:
        return _UNetForExport(self)


class _UNetForExport(nn.Module):
    """``ResidualUNet.forward(x)`` with its two size-dependent steps made traceable.

    The thumbnail is ``resize_long_side_exportable`` (Python ``round``/``max`` would be frozen by a
    tracer) and the reflect padding is always applied (by 0 to ``size_multiple - 1`` pixels), so the
    model itself only ever sees multiples of its size multiple and takes its no-padding branch for
    every input size. Same numbers as the model up to float summation order.
    """

    def __init__(self, model: ResidualUNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        hw = torch._shape_as_tensor(x)[-2:]
        pad = (-hw) % self.model.spec.size_multiple
        g = self.model.global_branch(resize_long_side_exportable(x, self.model.context_size))
        # F.pad takes 0-d tensors (graph values under tracing); its stubs only list ints.
        xp = F.pad(x, cast(tuple[int, ...], (0, pad[1], 0, pad[0])), mode="reflect")
        return self.model(xp, g)[:, :, : hw[0], : hw[1]]
