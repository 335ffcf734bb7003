"""What every enhancement network promises, so that one Enhancer can tile any of them, from many threads.

An enhancement model maps a batch of photos ``x`` of shape ``(N, 3, H, W)``, RGB, float in ``[0, 1]``,
to a tensor of the same shape, clamped to ``[0, 1]``. Its ``spec`` (a frozen ``ModelSpec``) states what
the Enhancer needs to cut a large photo into tiles without changing the result:

- ``receptive_field``: how many pixels on each side an output pixel may depend on. Tiles are cut with
  at least this much halo, which is then thrown away.
- ``context``: how the output depends on the whole photo. ``"none"``: not at all. ``"thumbnail"``: through
  statistics of a small copy of the photo (``compute_context(photo)`` is cheap at any size).
  ``"moments"``: through per-channel means and variances of the network's own activations (instance
  norm); a tiled run measures them exactly, one statistic after the other (``NormProbe``).
- ``needs_origin``: the output also depends on where a tile sits in the photo.

Models are pure: ``forward(x, context, origin)`` depends on its arguments and the weights only, never on
state set on layers, so one model serves many threads at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from dslrify.models.resize import thumbnail_in_bands

ContextKind = Literal["none", "thumbnail", "moments"]
Moments = tuple[torch.Tensor, torch.Tensor]  # (mean, var), each (N, C, 1, 1)


@dataclass(frozen=True)
class ModelSpec:
    """What an architecture needs from the Enhancer (see the module docstring).

    ``size_multiple``: H and W are padded to a multiple of it, and tiles start on multiples of it.
    ``bytes_per_pixel``: peak float32 forward memory per input pixel, used to choose tile sizes.
    ``tileable``: False for models that can only run on the whole photo (an exported ONNX graph).
    ``thumbnail``: for ``"thumbnail"`` models whose context depends only on an area-downsampled copy
    with a long side of at most this many pixels (``context_from_thumbnail``): the Enhancer then makes
    that copy band by band, never the whole photo in float. 0: the context needs the photo itself.
    """

    receptive_field: int = 0
    size_multiple: int = 1
    bytes_per_pixel: int = 1024
    context: ContextKind = "none"
    needs_origin: bool = False
    tileable: bool = True
    thumbnail: int = 0


@dataclass(frozen=True)
class MomentsContext:
    """Whole-photo statistics of a ``"moments"`` model: one ``(mean, var)`` per statistic, in call order.

    ``probe``: when True, the first statistic beyond ``moments`` is not computed but raised as a
    ``NormProbe`` carrying the activation it would be measured on (how tiles measure it exactly).
    """

    moments: tuple[Moments, ...] = ()
    probe: bool = False


class NormProbe(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a forward pass to hand the activation of statistic ``index`` to the caller."""

    def __init__(self, index: int, activation: torch.Tensor) -> None:
        super().__init__(index)
        self.index, self.activation = index, activation


class MomentsPass:
    """One forward pass's view of a ``MomentsContext``: hands out statistics in call order.

    Created afresh by every ``forward`` call (never stored on a layer), so concurrent calls never share
    it. ``context`` None: every statistic is the input's own (the whole-image result). ``record``: own
    statistics, also appended to ``recorded`` (``compute_context`` on a photo that fits).
    """

    def __init__(self, context: MomentsContext | None, record: bool = False) -> None:
        self.context, self.record = context, record
        self.count = 0
        self.recorded: list[Moments] = []

    def __call__(self, x: torch.Tensor) -> Moments:
        """Per-image, per-channel (mean, biased var) over H and W for ``x`` (N, C, H, W)."""
        i = self.count
        self.count += 1
        ctx = self.context
        if ctx is not None and i < len(ctx.moments):
            return ctx.moments[i]
        if ctx is not None and ctx.probe:
            raise NormProbe(i, x)
        if ctx is not None:
            raise ValueError(f"the context holds {len(ctx.moments)} statistics; this model needs more")
        # In float32 at least: under --half the activations are fp16/bf16, whose sums over a photo lose
        # the small steps (and overflow fp16), and a whole run would differ from a tiled one (float32).
        wide = x if x.dtype in (torch.float32, torch.float64) else x.float()
        var, mean = torch.var_mean(wide, dim=(2, 3), keepdim=True, correction=0)
        if self.record:
            self.recorded.append((mean.detach(), var.detach()))
        return mean, var


class ContextInstanceNorm(nn.Module):
    """Instance norm whose statistics may come from elsewhere (the whole photo, for a tile).

    ``y = scale * (x - mean) / sqrt(var + eps) + shift``; shapes ``(N, C, H, W)``. ``forward(x, stats)``
    takes a ``MomentsPass`` (or nothing: the input's own statistics, biased variance as TensorFlow's
    ``tf.nn.moments``).
    """

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(channels)) if affine else None
        self.shift = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor, stats: MomentsPass | None = None) -> torch.Tensor:
        mean, var = (stats or MomentsPass(None))(x)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.scale is not None and self.shift is not None:
            y = y * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)
        return y


class EnhancementModel(nn.Module):
    """Base class: ``forward(x, context=None, origin=None)`` maps NCHW RGB [0,1] to NCHW RGB [0,1].

    Subclasses set ``self.spec`` in ``__init__`` and implement ``enhance``; ``forward`` clamps its
    result to [0, 1], the documented range (DPED's and PPCN's ``tanh * 0.58 + 0.5`` reaches about
    -0.08 and 1.08). ``context`` is whatever ``compute_context`` returned for the whole photo (None: the
    input is the whole photo); ``origin`` is the (y, x) of the input's first pixel in that photo.
    """

    spec: ModelSpec

    def forward(
        self, x: torch.Tensor, context: Any = None, origin: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        y = self.enhance(x, context, origin)
        if y is x or (torch.is_grad_enabled() and y.requires_grad):
            return y.clamp(0, 1)
        return y.clamp_(0, 1)  # in place when nothing needs the unclamped tensor: no 12 MP copy

    def enhance(self, x: torch.Tensor, context: Any, origin: tuple[int, int] | None) -> torch.Tensor:
        """The network itself, unclamped (see ``forward``)."""
        raise NotImplementedError

    def compute_context(self, x: torch.Tensor) -> Any:
        """Whole-photo context for ``forward`` from the whole photo ``x`` (N, 3, H, W); None if none."""
        return None

    def enhance_native(self, pixels: torch.Tensor) -> torch.Tensor | None:
        """A shortcut for a photo's own pixels: (N, 3, H, W) uint8/uint16 -> the same dtype, each value
        what ``forward(unit_float(pixels))`` gives, rounded to that depth; or None (the default) where
        there is none. Only for pointwise models (``receptive_field`` 0, no context, no origin): the
        Enhancer then runs it on the whole photo, untiled, whenever the strength is 1."""
        return None

    def context_from_thumbnail(self, small: torch.Tensor, height: int, width: int) -> Any:
        """The context of a ``height`` x ``width`` photo from its thumbnail ``small`` (N, 3, h, w), the
        photo area-downsampled to a long side of ``spec.thumbnail``; only models that declare one."""
        raise NotImplementedError(f"{type(self).__name__} takes its context from the whole photo")

    def context_from_pixels(self, x: torch.Tensor, convert: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        """``compute_context(convert(x))`` for the whole photo given as native pixels ``x`` (N, 3, H, W),
        uint8/uint16 or float, with ``convert`` turning any part of them into float [0, 1] on the model's
        device. Models declaring ``spec.thumbnail`` make the thumbnail band by band (the photo never
        exists whole in float: 1.2 GB at 100 MP); others may convert only what they need.
        """
        if self.spec.thumbnail:
            small = thumbnail_in_bands(x, self.spec.thumbnail, convert)
            return self.context_from_thumbnail(small, x.shape[-2], x.shape[-1])
        return self.compute_context(convert(x))

    def export_module(self) -> nn.Module:
        """The module that ``dslrify export`` traces: ``(N, 3, H, W) -> (N, 3, H, W)``, whole image.

        The default is the model itself with no context; architectures with size-dependent Python
        (thumbnails, padding) return a traceable wrapper.
        """
        return _WholeImage(self)

    def init_from(self, model: EnhancementModel, config: dict[str, Any]) -> bool:
        """Take the weights of a trained checkpoint of another architecture (``model.init``).

        ``config`` is that checkpoint's ``config.json``. Returns False when it does not fit; only wrapper
        architectures (a network inside, such as ``guided``) accept one.
        """
        return False


class MomentsModel(EnhancementModel):
    """An EnhancementModel whose whole-photo dependence is instance-norm-like statistics.

    Subclasses implement ``network(x, stats)``, taking every statistic from ``stats`` (a
    ``MomentsPass``) in a fixed order. ``compute_context`` records them on a photo in one pass; a tiled
    run measures them with ``MomentsContext(probe=True)`` (see ``Enhancer``).
    """

    def network(self, x: torch.Tensor, stats: MomentsPass) -> torch.Tensor:
        raise NotImplementedError

    def enhance(self, x: torch.Tensor, context: Any, origin: tuple[int, int] | None) -> torch.Tensor:
        if context is not None and not isinstance(context, MomentsContext):
            raise TypeError(f"{type(self).__name__} takes a MomentsContext, got {type(context).__name__}")
        return self.network(x, MomentsPass(context))

    def compute_context(self, x: torch.Tensor) -> MomentsContext:
        """Every statistic of one forward pass over the whole photo ``x`` (N, 3, H, W)."""
        stats = MomentsPass(None, record=True)
        self.network(x, stats)
        return MomentsContext(tuple(stats.recorded))


class _WholeImage(nn.Module):
    """``model(x)`` with no context: models without size-dependent Python trace as they are."""

    def __init__(self, model: EnhancementModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def wrapped_network(base: str, base_args: dict[str, Any], kind: type[EnhancementModel]) -> EnhancementModel:
    """The network that a wrapper architecture (``guided``, ``detail``, ``matched``) wraps: ``base`` of the
    model table built with ``base_args``; refused unless it is an enhancement network of another kind."""
    from dslrify.models import build_model  # the table imports the wrappers

    net = build_model(base, base_args)
    if not isinstance(net, EnhancementModel) or isinstance(net, kind):
        name = kind.__name__.removesuffix("Enhancer").lower()
        raise ValueError(f"base {base!r} must be an enhancement network (not a {name} one)")
    return net


def load_base(
    net: nn.Module, base: str, base_args: dict[str, Any], model: nn.Module, config: dict[str, Any]
) -> bool:
    """Load ``model`` into a wrapper's ``net`` when its checkpoint ``config`` is ``base`` with ``base_args``
    (``model.init`` naming the wrapped network's checkpoint); False when it is something else."""
    if config.get("architecture") != base or config.get("args", {}) != base_args:
        return False
    net.load_state_dict(model.state_dict())
    return True


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (elsewhere oneDNN emulates it, slower than float32)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence looked up softly
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def tile_origin(x: torch.Tensor, height: int, width: int, origin: tuple[int, int] | None) -> tuple[int, int]:
    """Where tile ``x`` (N, C, h, w) sits in a ``height`` x ``width`` photo: ``origin``, or (0, 0) for the
    whole photo. For models whose output depends on a pixel's position (``needs_origin``): a tile
    without its position would use the wrong part of the context, so it is refused, never guessed.
    """
    h, w = x.shape[-2:]
    if origin is not None:
        return origin
    if (h, w) != (height, width):
        raise ValueError(
            f"a {h}x{w} tile of a {height}x{width} photo needs its position: "
            "call forward(tile, context, origin=(y0, x0))"
        )
    return (0, 0)
