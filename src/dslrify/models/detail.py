"""A light full-resolution detail path on top of a thumbnail model.

``DetailEnhancer`` wraps any enhancement network of the model table (the ``base``; by default the
``guided`` model that ``fast`` uses) and adds what a thumbnail cannot see, pixel by pixel:

    y0 = base(x),   y = y0 + d([x, y0]),

where ``d`` is a small convolutional network (``layers`` 3x3 convolutions, ``width`` channels, ReLU)
run at full resolution on the photo and the base's output. The base carries colour and tone (from a
thumbnail, cheaply); ``d`` does the pixel-level work of a full-resolution network, denoising and
sharpening, within a budget of about a thousand multiply-adds per pixel (``macs_per_pixel``): with
``width`` 8 and 3 layers, 1,224, against about 21,000 for PPCN's teacher at full resolution.

``d``'s last convolution starts at zero, so an untrained detail path is the base itself: training
(``dslrify train`` with ``model.init`` naming the base's checkpoint, or the base's own base, such as
PPCN's teacher for ``guided``) starts from the base's output and learns the residual.

Edges and tiles: ``d``'s input is padded once by reflection (``layers`` pixels; replication on inputs
too small to reflect) and the convolutions are unpadded, so the model handles the photo's edges itself
(the shipped config asks the Enhancer for no extra border) and a tile with ``receptive_field`` pixels
of halo gives exactly the whole-photo result on its core.

Speed: outside autograd the path runs channels-last, and outside grad mode in bfloat16 on CPUs that
multiply it natively (``precision="auto"``; on the shipped `balanced` it changes 3.5 % of 8-bit output
values by one level and none by more, and takes a third off the model's time on a 12 MP photo).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from dslrify.models import base as model_base  # native_bfloat16 looked up at call time (tests replace it)
from dslrify.models.base import EnhancementModel, ModelSpec, load_base, wrapped_network

# The detail path's arithmetic at inference. "auto": bfloat16 on CPUs that multiply it natively
# (AVX512-BF16 or AMX: the convolutions, memory-bound at 6-8 channels, run ~2.5x faster), else float32.
# bfloat16 keeps 8 bits of mantissa, ~0.4 % of the residual's size; the residual is a small correction
# (|d| of a few hundredths), so its error is far below one 8-bit level (docs/models/balanced.md).
PRECISIONS = ("auto", "float32", "bfloat16")


def detail_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The detail path's dtype for ``precision`` (see ``PRECISIONS``) on ``device``."""
    native = device.type == "cpu" and model_base.native_bfloat16()
    return torch.bfloat16 if precision == "bfloat16" or (precision == "auto" and native) else torch.float32


class DetailPath(nn.Module):
    """``d``: photo and base output (N, 3, H, W) each, in [0, 1] -> residual (N, 3, H, W), unbounded.

    Receptive field ``layers`` pixels on each side (3x3 convolutions).
    """

    def __init__(self, width: int = 8, layers: int = 3) -> None:
        super().__init__()
        if layers < 1 or width < 1:
            raise ValueError(f"a detail path needs layers >= 1 and width >= 1, got {layers} and {width}")
        sizes = [6] + [width] * (layers - 1) + [3]
        convs = [nn.Conv2d(a, b, 3) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        with torch.no_grad():  # start as the identity on the base's output
            nn.init.zeros_(convs[-1].weight)
            nn.init.zeros_(cast(torch.Tensor, convs[-1].bias))
        self.convs = nn.ModuleList(convs)
        self.layers = layers

    def macs_per_pixel(self) -> int:
        """Multiply-adds per output pixel."""
        return sum(p.numel() for name, p in self.convs.named_parameters() if name.endswith("weight"))

    def forward(self, x: torch.Tensor, y0: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``dtype``: the convolutions' arithmetic outside autograd (None: the input's); the residual is
        returned in the input's dtype. In training and tracing it is always the input's."""
        h = torch.cat([x, y0], 1) - 0.5
        mode = "reflect" if min(h.shape[-2:]) > self.layers else "replicate"
        h = F.pad(h, (self.layers,) * 4, mode=mode)
        inplace = not (torch.is_grad_enabled() and (h.requires_grad or self.convs[0].weight.requires_grad))
        fast = inplace and not torch.jit.is_tracing()
        out_dtype, dtype = h.dtype, (dtype if fast and dtype is not None else h.dtype)
        if fast:
            # Outside autograd: channels-last runs these few-channel convolutions ~2x faster on a CPU.
            h = h.to(dtype, memory_format=torch.channels_last)  # one copy for both
        for i, conv in enumerate(cast(list[nn.Conv2d], self.convs)):
            # The weights are cast per call (a few thousand numbers), so the module itself stays float32.
            h = F.conv2d(h, conv.weight.to(dtype), cast(torch.Tensor, conv.bias).to(dtype))
            if i < len(self.convs) - 1:
                h = torch.relu_(h) if inplace else torch.relu(h)
        return h.to(out_dtype, memory_format=torch.contiguous_format)


class DetailEnhancer(EnhancementModel):
    """``base(x) + d([x, base(x)])``: a base model plus a full-resolution detail path (module doc).

    ``x`` (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]. ``base``/``base_args``: any enhancement
    architecture of the model table; its context, origin and thumbnail needs are the model's.
    ``precision``: the detail path's arithmetic at inference (``PRECISIONS``); grad mode (training, also
    of a gate around this frozen model), tracing and ONNX exports are float32 whatever it says.
    """

    def __init__(
        self,
        base: str = "guided",
        base_args: dict[str, Any] | None = None,
        width: int = 8,
        layers: int = 3,
        precision: str = "auto",
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.base, self.base_args = base, dict(base_args or {})
        net = wrapped_network(base, self.base_args, DetailEnhancer)
        if net.spec.context == "moments":
            # Its statistics would be measured on tiles of the base only; not needed by any base here.
            raise ValueError(f"base {base!r} uses instance-norm statistics; use a thumbnail or local model")
        self.net, self.detail = net, DetailPath(width, layers)
        b = net.spec
        self.spec = ModelSpec(
            receptive_field=b.receptive_field + layers,
            size_multiple=b.size_multiple,
            # The base's, plus float32 [x, y0] padded, two hidden maps and the residual.
            bytes_per_pixel=b.bytes_per_pixel + 4 * (6 + 2 * width + 3),
            context=b.context,
            needs_origin=b.needs_origin,
            tileable=b.tileable,
            thumbnail=b.thumbnail,
        )

    def init_from(self, model: EnhancementModel, config: dict[str, Any]) -> bool:
        """Start from a checkpoint of the base (or whatever the base itself accepts, e.g. its network)."""
        if load_base(self.net, self.base, self.base_args, model, config):
            return True
        return self.net.init_from(model, config)

    def compute_context(self, x: torch.Tensor) -> Any:
        return self.net.compute_context(x)

    def context_from_thumbnail(self, small: torch.Tensor, height: int, width: int) -> Any:
        return self.net.context_from_thumbnail(small, height, width)

    def context_from_pixels(self, x: torch.Tensor, convert: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        return self.net.context_from_pixels(x, convert)

    def enhance(self, x: torch.Tensor, context: Any, origin: tuple[int, int] | None) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W), unclamped; ``x`` may be a tile at ``origin`` (as the base's)."""
        y0 = self.net(x, context, origin)  # clamped to [0, 1]
        # Reduced precision at inference only: in grad mode (training, and stages that train something
        # else around a frozen detail path) it is float32 on every machine.
        dtype = None if torch.is_grad_enabled() else detail_dtype(self.precision, x.device)
        residual = self.detail(x, y0, dtype)
        if torch.is_grad_enabled() and residual.requires_grad:
            return y0 + residual
        return residual.add_(y0)

    def export_module(self) -> nn.Module:
        return _DetailForExport(self)


class _DetailForExport(nn.Module):
    """The base's export module (it sizes its thumbnail from the input), then the detail path."""

    def __init__(self, model: DetailEnhancer) -> None:
        super().__init__()
        self.model, self.base = model, model.net.export_module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        y0 = self.base(x)
        return (y0 + self.model.detail(x, y0)).clamp(0, 1)


__all__ = ["PRECISIONS", "DetailEnhancer", "DetailPath", "detail_dtype"]
