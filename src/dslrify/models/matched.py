"""Quality matching: move a photo only as far as it is from DSLR quality.

``MatchedEnhancer`` wraps any enhancement network ``f`` of the model table (the ``base``) and returns

    y = x + s * (f(x) - x),   s = gate(x) in [0, 1] per image,

where the gate is a small network that looks at the whole photo and estimates how far it is from DSLR
quality: 0 for a photo that is already there (the output is the input), 1 for a phone photo like the
ones ``f`` was trained on (the output is ``f``'s). This is what "matching" a photo to DSLR quality asks
for, and what a fixed network cannot do: it applies one look to every photo.

**What the gate sees.** The cues that tell a phone photo from a DSLR one are noise, blur and JPEG
blocking at the pixel level, which a thumbnail hides. So the gate's features are taken at full
resolution: two 3x3 convolutions (replicate padding) produce ``FEATURES`` maps; together with the RGB
input they are summarised over the *whole photo* by their per-channel mean and (log) variance, and a
small MLP turns those ``2 * (3 + FEATURES)`` numbers into ``s``. Global colour statistics are part of
it (the RGB means and variances).

**A sample, on large photos** (``gate_grid``, optional): the mean and variance of a local feature over
millions of pixels are estimated just as well from a few hundred thousand of them, at a hundredth of
the cost (on a 12 MP photo the dense features cost more than the whole guided filter). With
``gate_grid = G`` the statistics are taken at ``min(H, G)`` rows times ``min(W, G)`` columns, one in
each of that many equal strips of the photo, at an offset within its strip from the golden-ratio
sequence (so the samples do not line up with the 8-pixel JPEG block grid or other periodic structure).
Each sample's features are exactly the dense ones at that pixel (``gate_mosaic``: its 5x5
neighbourhood, replicate padding as in the dense convolutions). A photo no larger than ``G`` on both
sides is therefore measured whole, as in training; ONNX exports compute the same sample.

**Whole-photo statistics, exactly, when tiling.** Means and variances over the photo are exactly what
the ``"moments"`` context measures tile by tile. So with a base that already uses it (PPCN's networks,
instance norm) the gate's statistic is simply the first one of the wrapper's ``MomentsPass``, and the
Enhancer measures it over tile cores like the base's own. With any other base (``guided``: a thumbnail
context) the wrapper's context is ``"thumbnail"``-kind: ``compute_context`` measures the gate's
statistic on the whole photo at full resolution, band by band (bounded memory), and adds the base's own
context.

**Highlight protection** (``highlight_knee``, optional): where the output is brighter than the input,
the brightening is rolled off softly above the knee (never below the input), so a highlight with detail
in the input is not pushed into flat white. ``f``'s output is clamped to [0, 1] first, so with a knee
of 0.8 no pixel is brightened past 0.953 unless the input was already there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from dslrify.models.base import (
    EnhancementModel,
    ModelSpec,
    Moments,
    MomentsModel,
    MomentsPass,
    load_base,
    wrapped_network,
)

FEATURES = 8  # learned full-resolution feature maps of the gate
GATE_FIELD = 2  # the gate's receptive field: two 3x3 convolutions
BAND_PIXELS = 1 << 20  # rows per band when measuring the gate on a large photo outside autograd
LOG_VAR_FLOOR = 1e-6  # log(var + floor): flat inputs give finite features
GOLDEN = 0.6180339887498949  # frac(i * GOLDEN): the offsets of the gate's samples within their strips


class MatchedContext(NamedTuple):
    """Context of a ``"thumbnail"``-kind matched model: the gate's statistic and the base's context."""

    gate: Moments
    base: Any


class QualityGate(nn.Module):
    """Whole-photo features -> strength ``s`` in (0, 1) per image.

    ``features(x)``: (N, 3, H, W) -> (N, 3 + FEATURES, H, W), local (receptive field ``GATE_FIELD``);
    ``strength((mean, var))``: per-channel statistics of those features over the photo -> (N, 1, 1, 1).
    """

    def __init__(self, hidden: int = 16, start: float = 3.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, FEATURES, 3, padding=1, padding_mode="replicate")
        self.conv2 = nn.Conv2d(FEATURES, FEATURES, 3, padding=1, padding_mode="replicate")
        self.fc1 = nn.Linear(2 * (3 + FEATURES), hidden)
        self.fc2 = nn.Linear(hidden, 1)
        with torch.no_grad():  # start near s = 1 (sigmoid(start)): the base's output, as it was trained
            self.fc2.weight.mul_(0.1)
            self.fc2.bias.fill_(start)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x - 0.5), 0.1)
        h = F.leaky_relu(self.conv2(h), 0.1)
        return torch.cat([x, h], 1)

    def sampled_features(self, mosaic: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``features`` at the sampled pixels only: ``mosaic`` (N, 3, 5k, 5l) from ``gate_mosaic`` (float,
        [0, 1]) and its ``rows`` (k, 3) / ``cols`` (l, 3) -> (N, 3 + FEATURES, k, l).

        Each 5x5 block is one sample's neighbourhood. The first convolution at the block's inner 3x3
        pixels is one matrix product per sample (75 -> 72 numbers); ``rows``/``cols`` then pick, per
        sample, the hidden rows and columns that the dense convolutions' replicate padding would use at
        the photo's edges, and the second convolution is another product (72 -> 8): the same numbers as
        ``features(photo)`` at those pixels, at about 20x less work than convolving the mosaic.
        """
        n, c, k5, l5 = mosaic.shape
        k, m, f = k5 // 5, l5 // 5, FEATURES
        blocks = mosaic.view(n, c, k, 5, m, 5).permute(0, 2, 4, 1, 3, 5)  # (N, k, m, 3, 5, 5)
        # conv1 as a (75, 72) matrix: its response to each of the 75 unit inputs of a 5x5 block.
        b1, b2 = self.conv1.bias, self.conv2.bias
        assert b1 is not None and b2 is not None
        basis = torch.eye(c * 25, dtype=mosaic.dtype, device=mosaic.device).view(c * 25, c, 5, 5)
        w1 = F.conv2d(basis, self.conv1.weight).flatten(1)  # (75, F*3*3), output index (o, a, b)
        h = blocks.reshape(n, k, m, c * 25) @ w1 - 0.5 * w1.sum(0)  # the features see x - 0.5
        h = F.leaky_relu(h.view(n, k, m, f, 3, 3) + b1.view(f, 1, 1), 0.1)
        h = h.gather(4, rows.view(1, k, 1, 1, 3, 1).expand(n, k, m, f, 3, 3))
        h = h.gather(5, cols.view(1, 1, m, 1, 1, 3).expand(n, k, m, f, 3, 3))
        h = F.leaky_relu(h.reshape(n, k, m, f * 9) @ self.conv2.weight.flatten(1).T + b2, 0.1)
        return torch.cat([blocks[..., 2, 2], h], 3).permute(0, 3, 1, 2)

    def strength(self, stats: Moments) -> torch.Tensor:
        mean, var = stats
        z = torch.cat([mean.flatten(1), torch.log(var.flatten(1) + LOG_VAR_FLOOR)], 1)
        return torch.sigmoid(self.fc2(F.leaky_relu(self.fc1(z), 0.1))).view(-1, 1, 1, 1)


class MatchedEnhancer(MomentsModel):
    """``x + s * (base(x) - x)`` with ``s`` a learned whole-photo quality estimate (see the module doc).

    ``x`` (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]. ``base``/``base_args``: any enhancement
    architecture of the model table; start from its trained checkpoint with ``model.init`` (and train
    only the gate with ``model.freeze: [net.]``). ``highlight_knee``: None (off) or the level in (0, 1)
    above which brightening is rolled off. ``gate_grid``: None (the gate measures every pixel) or the
    number of rows and columns it samples on a larger photo (see the module doc).
    """

    def __init__(
        self,
        base: str = "ppcn-teacher",
        base_args: dict[str, Any] | None = None,
        highlight_knee: float | None = None,
        hidden: int = 16,
        gate_grid: int | None = None,
    ) -> None:
        super().__init__()
        self.base, self.base_args = base, dict(base_args or {})
        net = wrapped_network(base, self.base_args, MatchedEnhancer)
        if highlight_knee is not None and not 0.0 < highlight_knee < 1.0:
            raise ValueError(f"highlight_knee must be in (0, 1) or None, got {highlight_knee}")
        self.net, self.knee = net, highlight_knee
        b = net.spec
        self.gate = QualityGate(hidden)
        self.gate_grid = gate_grid
        if b.context == "moments" and gate_grid is not None:
            # Its statistic is one of the base's moments, measured over tile cores with them.
            raise ValueError("gate_grid needs a base without instance-norm statistics (e.g. guided)")
        if gate_grid is not None and gate_grid < 1:
            raise ValueError(f"gate_grid must be a positive number of rows, got {gate_grid}")
        # Moments base: the gate's statistic is one more moment, measured over tile cores like the base's,
        # so tiles need the gate's receptive field as halo too. Otherwise the gate is measured whole in
        # compute_context and the base's own spec decides tiling.
        self.moments = b.context == "moments"
        self.spec = ModelSpec(
            receptive_field=max(b.receptive_field, GATE_FIELD) if self.moments else b.receptive_field,
            size_multiple=b.size_multiple,
            # The dense gate holds its features (float32, ~3 copies) at full resolution; a sample does not.
            bytes_per_pixel=b.bytes_per_pixel + (4 * 3 * (3 + FEATURES) if gate_grid is None else 0),
            context="moments" if self.moments else "thumbnail",
            needs_origin=b.needs_origin,
            tileable=b.tileable,
        )

    def init_from(self, model: EnhancementModel, config: dict[str, Any]) -> bool:
        """Start from a trained checkpoint of the base architecture (``model.init`` in a config)."""
        return load_base(self.net, self.base, self.base_args, model, config)

    # -- the two halves ---------------------------------------------------------------------------
    def mix(self, x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``x + s (y - x)`` with ``y`` the base's output in [0, 1], then highlight protection."""
        # In x's dtype: under half-precision autocast (the Enhancer's --half) the base's convolutions and
        # the gate return fp16/bf16, and the blend and roll-off are done in the photo's float32.
        out = torch.lerp(x, y.to(x.dtype), s.to(x.dtype))  # exactly x at s = 0 and exactly y at s = 1
        if self.knee is None:
            return out
        k = self.knee
        if (torch.is_grad_enabled() and out.requires_grad) or torch.jit.is_tracing():  # export: no out=
            rolled = torch.where(out > k, k + (1 - k) * torch.tanh((out - k) / (1 - k)), out)
            return torch.maximum(rolled, torch.minimum(x, out))  # only brightening is rolled off
        # The same numbers in place, outside autograd: the knee is a third of `fast`'s time per pixel.
        # Above the knee: k + (1 - k) tanh((out - k) / (1 - k)); below it: out (tanh(0) = 0).
        low = torch.minimum(x, out)
        above = (out - k).clamp_(min=0).div_(1 - k).tanh_().mul_(1 - k)
        rolled = above.add_(out.clamp_(max=k))  # `out` is ours (lerp's result)
        return torch.maximum(rolled, low, out=rolled)

    def gate_moments(self, x: torch.Tensor) -> Moments:
        """Per-channel (mean, biased var) of the gate's features over the whole photo ``x`` (N, 3, H, W).

        In bands of rows (with the gate's halo, cut off again) when nothing needs gradients: the same
        numbers as one pass, in bounded memory.
        """
        n, _, h, w = x.shape
        if self.gate_grid is not None and max(h, w) > self.gate_grid:
            return self.sampled_moments(x, lambda t: t)
        training = torch.is_grad_enabled() and any(p.requires_grad for p in self.gate.parameters())
        if training or h * w <= BAND_PIXELS:
            var, mean = torch.var_mean(self.gate.features(x), dim=(2, 3), keepdim=True, correction=0)
            return mean, var
        rows = max(1, BAND_PIXELS // w)
        total = torch.zeros(n, 3 + FEATURES, dtype=torch.float64, device=x.device)
        square = torch.zeros_like(total)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a0, a1 = max(0, r0 - GATE_FIELD), min(h, r1 + GATE_FIELD)
            core = self.gate.features(x[:, :, a0:a1])[:, :, r0 - a0 : r1 - a0].double()
            total += core.sum(dim=(2, 3))
            square += core.square().sum(dim=(2, 3))
        mean = total / (h * w)
        var = (square / (h * w) - mean.square()).clamp_min(0)
        return mean.float()[..., None, None], var.float()[..., None, None]

    def sampled_moments(self, x: torch.Tensor, convert: Callable[[torch.Tensor], torch.Tensor]) -> Moments:
        """(mean, biased var) of the gate's features at its ``gate_grid`` sample of ``x`` (N, 3, H, W):
        native pixels of any dtype, which ``convert`` turns into float [0, 1] (only the sample is)."""
        assert self.gate_grid is not None
        mosaic, rows, cols = gate_mosaic(x, self.gate_grid)
        var, mean = torch.var_mean(
            self.gate.sampled_features(convert(mosaic), rows, cols), dim=(2, 3), keepdim=True, correction=0
        )
        return mean, var

    # -- moments base (PPCN): the gate's statistic first, then the base's --------------------------
    def network(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        assert isinstance(self.net, MomentsModel)
        s = self.gate.strength(stats(self.gate.features(x)))
        return self.mix(x, self.net.network(x, stats).clamp(0, 1), s)

    # -- any other base: a thumbnail-kind context -------------------------------------------------
    def compute_context(self, x: torch.Tensor) -> Any:
        """(N, 3, H, W) whole photo -> its ``MomentsContext`` (moments base) or ``MatchedContext``."""
        if self.moments:
            return super().compute_context(x)
        return MatchedContext(self.gate_moments(x), self.net.compute_context(x))

    def context_from_pixels(self, x: torch.Tensor, convert: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        """``compute_context(convert(x))`` without converting the whole photo when the gate samples it
        and the base takes a thumbnail: ``x`` (N, 3, H, W) native pixels, ``convert`` -> float [0, 1]."""
        if self.moments or self.gate_grid is None:
            return super().context_from_pixels(x, convert)
        small = max(x.shape[-2:]) <= self.gate_grid  # measured whole, as in training
        gate = self.gate_moments(convert(x)) if small else self.sampled_moments(x, convert)
        return MatchedContext(gate, self.net.context_from_pixels(x, convert))

    def enhance(self, x: torch.Tensor, context: Any, origin: tuple[int, int] | None) -> torch.Tensor:
        if self.moments:
            return super().enhance(x, context, origin)
        if context is None:
            context = MatchedContext(self.gate_moments(x), None)
        if not isinstance(context, MatchedContext):
            raise TypeError(f"MatchedEnhancer takes a MatchedContext, got {type(context).__name__}")
        y = self.net(x, context.base, origin)  # clamped to [0, 1]
        return self.mix(x, y, self.gate.strength(context.gate))

    def strength(self, x: torch.Tensor) -> torch.Tensor:
        """The gate's ``s`` (N,) for whole photos ``x`` (N, 3, H, W): 0 = already DSLR quality."""
        return self.gate.strength(self.gate_moments(x)).flatten()

    def export_module(self) -> nn.Module:
        return super().export_module() if self.moments else _MatchedForExport(self)


class _MatchedForExport(nn.Module):
    """A thumbnail-kind matched model as one traceable graph: the gate over the whole input, and the
    base's own export module (which sizes its thumbnail from the input)."""

    def __init__(self, model: MatchedEnhancer) -> None:
        super().__init__()
        self.model, self.base = model, model.net.export_module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        model = self.model
        if model.gate_grid is None:
            f = model.gate.features(x)
        else:  # the same sample as the eager model; a small input is sampled whole, as it measures it
            f = model.gate.sampled_features(*gate_mosaic(x, model.gate_grid))
        mean = f.mean(dim=(2, 3), keepdim=True)
        var = (f - mean).square().mean(dim=(2, 3), keepdim=True)  # two passes, as var_mean (no cancellation)
        s = model.gate.strength((mean, var))
        return model.mix(x, self.base(x), s).clamp(0, 1)


def sample_positions(size: torch.Tensor, grid: int) -> torch.Tensor:
    """The ``min(size, grid)`` sampled positions along an axis of ``size`` pixels (0-d int64 tensor, so
    that a tracer keeps it a graph value): one per equal strip, at offset ``frac(i * GOLDEN)`` of the
    strip's width; every position when ``size <= grid``."""
    k = torch.clamp(size, max=grid)
    i = torch.arange(cast(int, k), dtype=torch.int64)  # arange takes 0-d tensors (graph values)
    start = torch.div(i * size, k, rounding_mode="floor")
    width = torch.div((i + 1) * size, k, rounding_mode="floor") - start
    offset = torch.remainder(i.to(torch.float64) * GOLDEN, 1.0)
    return start + torch.floor(offset * width.to(torch.float64)).to(torch.int64)


def gate_mosaic(x: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels the gate needs for its sample of ``x`` (N, C, H, W), any dtype.

    Returns the mosaic (N, C, 5k, 5l) of the 5x5 neighbourhoods of the k x l sampled pixels (rows and
    columns outside the photo replicated, as the gate's padding does), and for ``sampled_features``
    which of the three hidden rows (k, 3) and columns (l, 3) around each sample the dense second
    convolution reads: ``clamp(p + d) - p + 1`` for ``d`` in -1, 0, 1 (0, 1, 2 inside the photo).
    """
    size = torch._shape_as_tensor(x)[-2:]  # a Shape op under tracing: follows the input's size
    picked = []
    for axis in (0, 1):
        n = size[axis]
        p = sample_positions(n, grid)[:, None]
        near = (p + torch.arange(-2, 3)).clamp(min=0).minimum(n - 1)  # (k, 5)
        hidden = (p + torch.arange(-1, 2)).clamp(min=0).minimum(n - 1) - p + 1  # (k, 3)
        picked.append((near.flatten(), hidden))
    (rows5, rows3), (cols5, cols3) = picked
    return x[:, :, rows5[:, None], cols5[None, :]], rows3, cols3


__all__ = ["MatchedContext", "MatchedEnhancer", "QualityGate", "gate_mosaic", "sample_positions"]
