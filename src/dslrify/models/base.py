"""What every enhancement network promises, so that the Enhancer can tile any of them.

An enhancement model maps a batch of photos ``x`` of shape ``(N, 3, H, W)``, RGB, float in ``[0, 1]``,
to a tensor of the same shape and range. Two facts let the Enhancer cut a large photo into tiles
without changing the result:

- ``receptive_field``: how many pixels on each side an output pixel may depend on. Tiles are cut with
  at least this much halo, which is then thrown away.
- whole-image statistics (instance norm, a global branch): ``compute_context(x)`` computes them once
  from the whole photo (or a downsampled copy of it) and ``forward(tile, context)`` uses them, so every
  tile sees the same global look.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn


class ContextInstanceNorm(nn.Module):
    """Instance norm whose statistics can be recorded on one image and reused on another.

    ``y = scale * (x - mean) / sqrt(var + eps) + shift`` with per-image, per-channel ``mean``/``var``
    over H and W (biased variance, as TensorFlow's ``tf.nn.moments``). Shapes: ``(N, C, H, W)``.
    While ``recorded`` is a list, each call appends its statistics; while ``fixed`` is set, those
    statistics are used instead of the input's own (this is how tiles share the whole photo's look).
    """

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(channels)) if affine else None
        self.shift = nn.Parameter(torch.zeros(channels)) if affine else None
        self.recorded: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.fixed: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            mean, var = self.fixed
        else:
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
            if self.recorded is not None:
                self.recorded.append((mean.detach(), var.detach()))
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.scale is not None:
            y = y * self.scale.view(1, -1, 1, 1) + self.shift.view(1, -1, 1, 1)
        return y


class EnhancementModel(nn.Module):
    """Base class: ``forward(x, context=None)`` maps NCHW RGB [0,1] to NCHW RGB [0,1].

    Subclasses set ``receptive_field`` (pixels each side), ``size_multiple`` (H and W are padded to a
    multiple of it; tiles start on multiples of it) and ``bytes_per_pixel`` (peak float32 forward memory
    per input pixel, used to choose tile sizes). A model whose only whole-image statistics come from
    ``ContextInstanceNorm`` layers needs nothing more: ``compute_context`` records them.
    """

    receptive_field: ClassVar[int] = 0
    size_multiple: ClassVar[int] = 1
    bytes_per_pixel: ClassVar[int] = 1024
    # True when compute_context makes its own small copy of the photo (a thumbnail branch), so it can be
    # given the whole full-resolution photo cheaply; False when it runs the network (instance norm) and
    # the Enhancer must hand it a downsampled copy of a photo too large to run whole.
    context_from_thumbnail: ClassVar[bool] = False
    # False for models that can only run on the whole photo (an exported ONNX graph takes no context).
    tileable: ClassVar[bool] = True
    # True when forward also needs a tile's position in the photo: forward(tile, context, origin=(y0, x0)).
    tile_origin: ClassVar[bool] = False

    def init_from(self, model: EnhancementModel, config: dict[str, Any]) -> bool:
        """Take the weights of a trained checkpoint of another architecture (``model.init``).

        ``config`` is that checkpoint's ``config.json``. Returns False when it does not fit; only wrapper
        architectures (a network inside, such as ``guided``) accept one.
        """
        return False

    @property
    def uses_global_context(self) -> bool:
        """True when the output depends on whole-image statistics (tiles need a shared context)."""
        return any(isinstance(m, ContextInstanceNorm) for m in self.modules())

    def compute_context(self, x: torch.Tensor) -> Any:
        """Whole-image statistics of ``x`` (N, 3, H, W) that ``forward`` accepts as ``context``.

        The default records every ``ContextInstanceNorm``'s statistics during one forward pass.
        ``x`` may be a downsampled copy of the photo when the full photo is too large.
        """
        norms = [m for m in self.modules() if isinstance(m, ContextInstanceNorm)]
        if not norms:
            return None
        for m in norms:
            m.recorded = []
        try:
            self.forward(x)
            return [m.recorded[0] for m in norms]
        finally:
            for m in norms:
                m.recorded = None

    @contextmanager
    def _context_applied(self, context: Any) -> Iterator[None]:
        """Make every ``ContextInstanceNorm`` use the statistics in ``context`` (from compute_context)."""
        norms = [m for m in self.modules() if isinstance(m, ContextInstanceNorm)]
        if context is None or not norms:
            yield
            return
        if len(context) != len(norms):
            raise ValueError(f"context has {len(context)} entries, model has {len(norms)} norm layers")
        for m, stats in zip(norms, context, strict=True):
            m.fixed = stats
        try:
            yield
        finally:
            for m in norms:
                m.fixed = None

    def forward(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        with self._context_applied(context):
            return self.enhance(x)

    def enhance(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The network itself: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        raise NotImplementedError


def tile_origin(x: torch.Tensor, height: int, width: int, origin: tuple[int, int] | None) -> tuple[int, int]:
    """Where tile ``x`` (N, C, h, w) sits in a ``height`` x ``width`` photo: ``origin``, or (0, 0) for the
    whole photo. For models whose output depends on a pixel's position (``tile_origin = True``): a tile
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
