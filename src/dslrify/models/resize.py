"""Area downsampling to a thumbnail, in an eager form and in a traceable (ONNX-exportable) form.

Thumbnail branches (``unet``'s global branch, ``guided``'s low-resolution network) look at the photo
shrunk so that its long side is at most ``size`` pixels. ``resize_long_side`` computes the thumbnail's
size with Python arithmetic, which a tracer would freeze at the traced size; the exportable form keeps
that arithmetic in the graph so the exported thumbnail follows the input's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F


def resize_long_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsample (N, C, H, W) so that max(H, W) <= size; smaller inputs are returned as they are."""
    h, w = x.shape[-2:]
    long = max(h, w)
    if long <= size:
        return x
    scale = size / long
    return F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")


def thumbnail_in_bands(
    x: torch.Tensor, size: int, convert: Callable[[torch.Tensor], torch.Tensor], rows: int = 256
) -> torch.Tensor:
    """``resize_long_side(convert(x), size)`` without ``convert(x)`` ever existing whole.

    ``x`` (N, C, H, W) in any dtype (a photo's uint8 pixels); ``convert`` turns a band of rows into
    float. Area averaging is separable: each band of ``rows`` rows is averaged over the output's column
    bins, then the row bins are summed across bands by the area matrix. Same bins and output size as
    ``resize_long_side``; values equal up to float summation order (~1e-7).
    """
    h, w = x.shape[-2:]
    if max(h, w) <= size:
        return convert(x)
    scale = size / max(h, w)
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    row_bins = None
    total: torch.Tensor | None = None
    for start in range(0, h, rows):
        band = convert(x[:, :, start : start + rows])
        if row_bins is None:
            row_bins = area_matrix(h, out_h, band.dtype).to(band.device)  # (out_h, H)
        cols = F.adaptive_avg_pool2d(band, (band.shape[-2], out_w))  # column bins only
        with torch.autocast(band.device.type, enabled=False):  # in the photo's float, even under --half
            part = torch.matmul(row_bins[:, start : start + band.shape[-2]], cols)
        total = part if total is None else total + part
    assert total is not None
    return total


def area_matrix(n: torch.Tensor | int, size: torch.Tensor | int, dtype: torch.dtype) -> torch.Tensor:
    """(size, n) matrix ``P`` with ``P @ v`` = ``adaptive_avg_pool1d(v, size)`` for a length-``n`` ``v``.

    Bin ``i`` averages ``v[floor(i*n/size) : ceil((i+1)*n/size)]``, PyTorch's (and so ``mode="area"``'s)
    rule. ``n`` and ``size`` may be 0-d int64 tensors: under tracing they stay graph values (Range,
    integer Div), so the pooling follows the input's size instead of being frozen at the traced one.
    """
    # torch.arange takes 0-d tensors (graph values under tracing); its stubs only list numbers.
    i = torch.arange(cast(int, size), dtype=torch.int64)
    start = torch.div(i * n, size, rounding_mode="floor")
    end = torch.div((i + 1) * n + size - 1, size, rounding_mode="floor")
    j = torch.arange(cast(int, n), dtype=torch.int64)
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


def resize_long_side_exportable(x: torch.Tensor, size: int) -> torch.Tensor:
    """``resize_long_side`` without Python control flow on the image size (traceable).

    (N, C, H, W) -> (N, C, h, w) area-downsampled so that max(h, w) <= ``size``; same output size
    (float64 arithmetic and round-half-to-even, as Python's ``round``) and the same bins. Inputs
    already small enough get ``scale = 1``, i.e. identity bins, instead of a branch. The sums are
    matrix products rather than pooling windows, so values differ from PyTorch's only by float32
    summation order (about 1e-7).
    """
    hw = torch._shape_as_tensor(x)[-2:]  # traced as a Shape op, so it follows the input
    hw_f = hw.to(torch.float64)
    scale = torch.clamp(size / hw_f.max(), max=1.0)
    out = torch.clamp(torch.round(hw_f * scale), min=1).to(torch.int64)
    rows = area_matrix(hw[0], out[0], x.dtype)  # (h, H)
    cols = area_matrix(hw[1], out[1], x.dtype)  # (w, W)
    # Height first: for landscape photos the shorter output side makes the large product the cheaper.
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
