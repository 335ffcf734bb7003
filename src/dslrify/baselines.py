"""Reference points that are not networks: the identity, and a classical automatic correction.

Each baseline maps (N, 3, H, W) RGB in [0, 1] to the same shape, like a model, so ``evaluate`` and the
benchmarks treat them alike. ``auto_levels`` is a photo app's one-tap "auto levels": a per-image white
point stretch (the brightest value, or the ``1 - clip`` quantile, becomes white). Among four classical
variants (with/without grey-world white balance, black-point stretch, clipping 0/0.1/1 %) it scored best
on the 198 DPED *training* pairs (18.42 dB against 17.62 for the identity), so it was chosen there, not on
the test pairs. It learns nothing: it shows how much of a model's gain is plain global exposure.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dslrify.errors import DslrifyError


def identity(x: Tensor) -> Tensor:
    """The phone photo itself."""
    return x


def auto_levels(x: Tensor, clip: float = 0.0) -> Tensor:
    """Per-image white-point stretch: ``x / quantile(x, 1 - clip)`` over all channels, clipped to [0, 1].

    (N, 3, H, W) in [0, 1] -> same. One quantile for all three channels keeps the colour balance.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"auto_levels expects (N, 3, H, W), got {tuple(x.shape)}")
    flat = x.flatten(1)
    white = flat.amax(dim=1) if clip == 0 else torch.quantile(flat, 1 - clip, dim=1)
    return (x / white.clamp_min(1e-3).view(-1, 1, 1, 1)).clamp(0, 1)


BASELINES: dict[str, Callable[[Tensor], Tensor]] = {"identity": identity, "auto-levels": auto_levels}


def get_baseline(name: str) -> Callable[[Tensor], Tensor]:
    """A baseline by name; an unknown name lists the valid ones."""
    if name not in BASELINES:
        raise DslrifyError(f"unknown baseline {name!r}", f"valid baselines: {', '.join(BASELINES)}")
    return BASELINES[name]
