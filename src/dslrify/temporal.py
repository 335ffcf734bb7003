"""Temporal stability for video: one model context carried from frame to frame, and a flicker measure.

Enhancing each frame of a clip as a photo flickers: what a model computes from the whole photo (the
``fast`` model's guided-filter coefficients from its thumbnail, instance-norm statistics for
``default``) jumps with noise, small motions and exposure steps. :class:`FrameContext` instead:

- computes a frame's context (``Enhancer.context_of``) every ``every`` frames only, the *target*;
- moves the context actually used towards the target on every frame by an exponential moving
  average with time constant ``smoothing`` seconds (``weight = 1 - exp(-dt / smoothing)``), so that a
  variable frame rate smooths by time, not by frame count;
- moves both with the picture: the global translation from frame to frame (phase correlation of
  small grey copies) shifts every spatial map of a context (the guided filter's coefficient grid), so
  that a pan does not smear one frame's colour map over the next frame's content;
- starts afresh at a scene cut: a frame that differs from the previous one by more than ``cut`` in
  its colours (histograms of a 64 px thumbnail) or its layout (a 16 px thumbnail) gets its own context
  at once (:func:`cut_distance`).

Contexts are explicit objects (``GuidedContext``, ``MomentsContext``, or any tuple/named tuple/tensor
nesting of tensors): they are blended here, never through state on the model's layers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dslrify.photo import unit_float

if TYPE_CHECKING:
    from dslrify.enhancer import Enhancer

HISTOGRAM_BINS = 16
SIGNATURE_SIZE = 64  # long side of the thumbnail whose colour histograms are compared
LAYOUT_SIZE = 16  # long side of the thumbnail compared pixel by pixel: coarse, so that motion barely counts
MOTION_SIZE = 128  # long side of the grey thumbnail whose translation is measured
# Histograms (3, BINS), layout thumbnail (3, h, w), grey motion thumbnail (h, w).
Signature = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def map_context(fn: Callable[..., torch.Tensor], context: Any, *others: Any) -> Any:
    """``fn(t, *matching)`` for every tensor ``t`` of ``context``, with the tensors at the same place in
    ``others`` (None where their structure differs). Tensors, tuples (named tuples included), lists
    and dataclasses are walked; other values (sizes, flags) are kept. None maps to None."""
    if isinstance(context, torch.Tensor):
        return fn(context, *(o if isinstance(o, torch.Tensor) else None for o in others))
    if isinstance(context, (tuple, list)):
        parts = [o if type(o) is type(context) and len(o) == len(context) else None for o in others]
        items = [
            map_context(fn, c, *(None if p is None else p[i] for p in parts)) for i, c in enumerate(context)
        ]
        if isinstance(context, list):
            return items
        return type(context)(*items) if hasattr(context, "_fields") else type(context)(items)
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        changes = {
            f.name: map_context(fn, getattr(context, f.name), *(getattr(o, f.name, None) for o in others))
            for f in dataclasses.fields(context)
        }
        return dataclasses.replace(context, **changes)
    return context


def blend_context(old: Any, new: Any, weight: float) -> Any:
    """``old + weight * (new - old)`` for every tensor of two contexts of the same structure (a tensor
    without a counterpart of its shape in ``old``, as after a change of frame size, is ``new``'s)."""

    def blend(n: torch.Tensor, o: torch.Tensor | None) -> torch.Tensor:
        return n if o is None or o.shape != n.shape else torch.lerp(o, n.to(o.dtype), weight)

    return map_context(blend, new, old)


def shift_context(context: Any, dx: float, dy: float) -> Any:
    """``context`` moved with the picture by ``dx`` of the frame's width and ``dy`` of its height: every
    spatial map (a 4-D tensor at least 2x2, such as guided coefficients) is resampled bilinearly, its
    edges repeated; statistics (1x1) and other values are unchanged."""
    if dx == 0 and dy == 0:
        return context

    def move(t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 4 or min(t.shape[-2:]) < 2:
            return t
        n, _, h, w = t.shape
        # Pixel centres in grid_sample's [-1, 1] (align_corners=False), sampled where the content was.
        xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=t.dtype) - 2 * dx
        ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=t.dtype) - 2 * dy
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).expand(n, h, w, 2)
        return F.grid_sample(t, grid, "bilinear", "border", align_corners=False)

    return map_context(move, context)


def motion(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """How far the picture moved from grey thumbnail ``a`` to ``b`` (h, w): ``(dx, dy)`` as fractions of
    the width and height, by phase correlation; (0, 0) when the match is weak (no clear translation)."""
    h, w = a.shape
    if a.shape != b.shape or min(h, w) < 8:
        return 0.0, 0.0
    window = cv2.createHanningWindow((w, h), cv2.CV_64F)
    (dx, dy), response = cv2.phaseCorrelate(a.double().numpy(), b.double().numpy(), window)
    if response < 0.1 or not np.isfinite([dx, dy]).all():
        return 0.0, 0.0
    return dx / w, dy / h


def _shrink(x: torch.Tensor, side: int) -> torch.Tensor:
    """(1, 3, H, W) -> (3, h, w) float, area-averaged to a long side of ``side`` px."""
    h, w = x.shape[-2:]
    scale = side / max(h, w)
    return F.adaptive_avg_pool2d(x, (max(1, round(h * scale)), max(1, round(w * scale))))[0]


def signature(x: torch.Tensor) -> Signature:
    """What a cut is detected from, for frame ``x`` (1, 3, H, W): per-channel colour histograms of a
    ``SIGNATURE_SIZE`` px copy (3, BINS), each summing to 1, and a ``LAYOUT_SIZE`` px copy. Cheap at any
    size: a large frame is subsampled to ~256 px before it is averaged down."""
    h, w = x.shape[-2:]
    small = _shrink(unit_float(x[:, :, :: max(1, h // 256), :: max(1, w // 256)]), SIGNATURE_SIZE)
    bins = (small.clamp(0, 1) * (HISTOGRAM_BINS - 1e-3)).long().flatten(1)  # (3, pixels)
    hist = torch.zeros(3, HISTOGRAM_BINS).scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float32))
    grey = _shrink(
        unit_float(x[:, :, :: max(1, h // 512), :: max(1, w // 512)]).mean(1, keepdim=True), MOTION_SIZE
    )
    return hist / bins.shape[1], _shrink(small[None], LAYOUT_SIZE), grey[0]


def cut_distance(a: Signature, b: Signature) -> float:
    """How different two frames' signatures are, 0..1: the larger of half the L1 distance of their
    histograms (0: same colours, 1: none in common) and twice the mean absolute difference of their
    layout thumbnails (a new scene with the same colours elsewhere, such as a negative)."""
    colours = float((a[0] - b[0]).abs().sum(1).mean() / 2)
    layout = float((a[1] - b[1]).abs().mean() * 2) if a[1].shape == b[1].shape else 1.0
    return max(colours, layout)


class FrameContext:
    """The context to enhance each frame of one clip with (see the module docstring).

    ``every``: frames between two context computations (1: every frame); ``smoothing``: time constant
    in seconds (0: no smoothing); ``cut``: histogram distance above which a frame starts a new scene.
    Call it once per frame, in order; ``cuts`` lists the indices of frames that started a scene.
    """

    def __init__(self, enhancer: Enhancer, every: int = 8, smoothing: float = 0.25, cut: float = 0.4) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0 seconds, got {smoothing}")
        self.enhancer, self.every, self.smoothing, self.cut = enhancer, every, smoothing, cut
        self.cuts: list[int] = []
        self._index = -1
        self._since = 0
        self._time = 0.0
        self._signature: Signature | None = None
        self._target: Any = None
        self._moved = (0.0, 0.0)  # how far the picture moved since the target was computed
        self._current: Any = None

    def __call__(self, x: torch.Tensor, time: float) -> Any:
        """Context for frame ``x`` (1, 3, H, W; uint8, uint16 or float) shown at ``time`` seconds."""
        self._index += 1
        sig, last = signature(x), self._signature
        self._signature = sig
        if last is None or cut_distance(sig, last) > self.cut:
            self.cuts.append(self._index)
            self._target = self._current = self.enhancer.context_of(x)
            self._since, self._moved = 0, (0.0, 0.0)
        else:
            self._since += 1
            dx, dy = motion(last[2], sig[2])
            if self._since >= self.every:
                self._target = self.enhancer.context_of(x)
                self._since, self._moved = 0, (0.0, 0.0)
            else:
                self._moved = (self._moved[0] + dx, self._moved[1] + dy)
            dt = max(time - self._time, 0.0)
            weight = 1.0 if self.smoothing == 0 else 1.0 - math.exp(-dt / self.smoothing)
            with torch.inference_mode():
                target = shift_context(self._target, *self._moved)  # resampled once from where computed
                self._current = blend_context(shift_context(self._current, dx, dy), target, weight)
        self._time = time
        return self._current


def lab_means(frames: torch.Tensor) -> torch.Tensor:
    """Mean L*, a*, b* of each frame: (T, 3, H, W) RGB in [0, 1] (or uint8/uint16) -> (T, 3)."""
    from kornia.color import rgb_to_lab

    return torch.stack([rgb_to_lab(unit_float(f[None])).mean(dim=(0, 2, 3)) for f in frames])


def flicker(means: torch.Tensor) -> float:
    """Flicker of a clip from its per-frame mean L*a*b* (T, 3): the RMS over time (and the three
    channels) of their second difference. A steady change (a fade, an exposure ramp) scores 0."""
    if means.shape[0] < 3:
        return 0.0
    second = means[2:] - 2 * means[1:-1] + means[:-2]
    return float(second.double().square().mean().sqrt())
