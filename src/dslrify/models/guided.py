"""A network run on a thumbnail, carried to full resolution by a colour guided filter.

The "fast guided filter" of Wu et al., "Fast End-to-End Trainable Guided Filter" (CVPR 2018), on top of
any dslrify network (by default PPCN's teacher architecture, as in the ``default`` model):

- **Low resolution.** The photo is area-downsampled to at most ``context_size`` px on its long side
  (smaller inputs, such as 100x100 training patches, are used as they are) and the base network
  enhances that thumbnail. A colour guided filter (He et al., "Guided Image Filtering", TPAMI 2013,
  eq. 14) then fits, in every ``(2r+1)^2`` window, the 3x4 affine colour map ``A x + b`` that best turns
  the thumbnail into its enhanced version (ridge ``eps`` on ``A``), and averages the maps of the
  windows covering each pixel. The result, 12 coefficient maps at thumbnail size, is the ``context``.
- **Full resolution, pointwise.** The coefficient maps are interpolated bilinearly at every pixel of
  the photo and applied: ``y = A(p) x + b(p)``. About 25 operations per pixel, band by band, so a
  12 MP photo runs whole in well under a second on two cores and never needs tiles.

What it keeps and loses: on inputs no larger than the thumbnail the output is the base network's own
output up to the local affine fit (on DPED's 100x100 test patches, 44 dB from it: the same PSNR and
SSIM); on large photos it reproduces the base network's colour and tone, locally, but not its
pixel-level processing (denoising, sharpening), which a thumbnail cannot see.

Tiling: the output is pointwise given the context, but a pixel's coefficients depend on its position in
the *whole* photo, so a tile must be given its ``origin`` (as for ``BilateralGridEnhancer``).
Everything is differentiable: ``dslrify train`` can fine-tune the base network through the filter.
ONNX: the base network, CumSum, Concat, elementwise ops and GridSample (opset 16); the 3x3 solve is
written out (adjugate) because ONNX has no matrix inverse.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dslrify.models.base import EnhancementModel, ModelSpec, load_base, tile_origin, wrapped_network
from dslrify.models.resize import resize_long_side, resize_long_side_exportable

CHUNK_PIXELS = 1 << 17  # ~131k pixels per row chunk: a 12-channel float chunk (6 MB) stays in L2/L3

# The 6 distinct entries (k, j) of a symmetric 3x3 matrix, row-major upper triangle.
_PAIRS = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


class GuidedContext(NamedTuple):
    """Whole-photo context: coefficients (N, 12, h, w) on the thumbnail grid, and the photo's (H, W).

    Channels ``3*c + k`` hold ``A[c, k]`` (output channel c, input channel k), channels 9..11 ``b``.
    """

    coef: torch.Tensor
    height: int
    width: int


def cell_coords(start: int, count: int, full: int, cells: int, device: torch.device) -> torch.Tensor:
    """Continuous coordinates on a ``cells``-long thumbnail axis of pixel centres ``start .. start+count-1``
    of a ``full``-px axis. Cell ``i`` is centred on pixel position ``(i + 0.5) * full / cells``
    (align_corners=False convention).
    """
    p = torch.arange(start, start + count, dtype=torch.float32, device=device)
    return (p + 0.5) * (cells / full) - 0.5


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over (2r+1)^2 windows, edges replicated: (N, C, h, w) -> (N, C, h, w).

    Written as differences of cumulative sums (an integral image) rather than ``avg_pool2d`` because
    the guided filter runs in float64 and onnxruntime has no float64 AveragePool or edge Pad; the
    replicate padding is two concatenations for the same reason.
    """
    r, k = radius, 2 * radius + 1
    x = torch.cat([x[:, :, :1].expand(-1, -1, r, -1), x, x[:, :, -1:].expand(-1, -1, r, -1)], 2)
    x = torch.cat([x[..., :1].expand(-1, -1, -1, r), x, x[..., -1:].expand(-1, -1, -1, r)], 3)
    c = F.pad(x.cumsum(2), (0, 0, 1, 0))
    x = c[:, :, k:] - c[:, :, :-k]
    c = F.pad(x.cumsum(3), (1, 0))
    return (c[..., k:] - c[..., :-k]) / (k * k)


def guided_coefficients(guide: torch.Tensor, target: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Colour guided filter: per-pixel affine maps with ``target ~ A guide + b``, averaged over windows.

    ``guide`` and ``target`` (N, 3, h, w) -> coefficients (N, 12, h, w) in ``GuidedContext``'s layout.
    ``eps`` regularises ``A`` towards 0 where the guide is flat (there the map is a constant colour).
    """
    dtype = guide.dtype
    # float64 (not on MPS, which has none): variances are differences of means of squares, and the
    # solve divides by them; in float32 the coefficients of a near-flat window move by ~1e-4 when the
    # input moves by 1e-7, which an ONNX export (another summation order) would show.
    wide = torch.float32 if guide.device.type == "mps" else torch.float64
    guide, target = guide.to(wide), target.to(wide)
    g = [guide[:, k] for k in range(3)]
    products = [g[k] * g[j] for k, j in _PAIRS] + [g[k] * target[:, c] for k in range(3) for c in range(3)]
    means = box_filter(torch.cat([guide, target, torch.stack(products, 1)], 1), radius)
    mean_g, mean_t, second = means[:, :3], means[:, 3:6], means[:, 6:]
    s = {
        pair: second[:, i] - mean_g[:, pair[0]] * mean_g[:, pair[1]] + (eps if pair[0] == pair[1] else 0.0)
        for i, pair in enumerate(_PAIRS)
    }
    a, b, c, d, e, f = (s[p] for p in _PAIRS)
    # Inverse of the symmetric covariance [[a b c] [b d e] [c e f]] by its adjugate (no ONNX op for it).
    adj = {
        (0, 0): d * f - e * e,
        (0, 1): c * e - b * f,
        (0, 2): b * e - c * d,
        (1, 1): a * f - c * c,
        (1, 2): b * c - a * e,
        (2, 2): a * d - b * b,
    }
    adj.update({(j, k): v for (k, j), v in list(adj.items())})
    det = a * adj[(0, 0)] + b * adj[(0, 1)] + c * adj[(0, 2)]
    cov = [[second[:, 6 + 3 * k + ch] - mean_g[:, k] * mean_t[:, ch] for ch in range(3)] for k in range(3)]
    coef_a = [
        sum(adj[(k, j)] * cov[j][ch] for j in range(3)) / det for ch in range(3) for k in range(3)
    ]  # A[ch, k] at index 3 * ch + k
    coef_b = [mean_t[:, ch] - sum(coef_a[3 * ch + k] * mean_g[:, k] for k in range(3)) for ch in range(3)]
    return box_filter(torch.stack(coef_a + coef_b, 1), radius).to(dtype)


def apply_coefficients(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``y = A x + b`` per pixel: ``x`` (N, 3, r, W), ``coef`` (N, 12, r, W) -> (N, 3, r, W)."""
    y = coef[:, 9:12] + coef[:, 0:9:3] * x[:, 0:1]
    return y.addcmul_(coef[:, 1:9:3], x[:, 1:2]).addcmul_(coef[:, 2:9:3], x[:, 2:3])


class GuidedEnhancer(EnhancementModel):
    """A base network on a <= ``context_size`` px thumbnail, transferred by a colour guided filter.

    ``x`` (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]. ``base``/``base_args``: any architecture
    of the model table (its weights are the ones that matter: start from a trained checkpoint with
    ``model.init``). ``radius`` and ``eps``: the filter's window radius (thumbnail pixels) and ridge.
    ``border``: pixels of mirrored border the network sees around the thumbnail (``enhance_thumbnail``).
    """

    def __init__(
        self,
        base: str = "ppcn-teacher",
        base_args: dict[str, Any] | None = None,
        context_size: int = 256,
        radius: int = 1,
        eps: float = 1e-4,
        border: int = 0,
    ) -> None:
        super().__init__()
        self.base, self.base_args = base, dict(base_args or {})
        self.net = wrapped_network(base, self.base_args, GuidedEnhancer)
        self.context_size, self.radius, self.eps = context_size, radius, eps
        if border < 0:
            raise ValueError(f"border must be >= 0 pixels, got {border}")
        self.border = border
        # Pointwise at full resolution, but a pixel's coefficients depend on where the tile sits in the
        # photo. Memory: the float32 input and output (24 B/px) plus row-chunk temporaries.
        self.spec = ModelSpec(
            bytes_per_pixel=36, context="thumbnail", needs_origin=True, thumbnail=context_size
        )

    def init_from(self, model: EnhancementModel, config: dict[str, Any]) -> bool:
        """Start from a trained checkpoint of the base architecture (``model.init`` in a config), or of a
        ``guided`` model around the same network whose filter settings (which hold no weights) differ."""
        args = config.get("args", {})
        if config.get("architecture") == "guided" and isinstance(model, GuidedEnhancer):
            if (args.get("base", "ppcn-teacher"), args.get("base_args", {})) != (self.base, self.base_args):
                return False
            self.net.load_state_dict(model.net.state_dict())
            return True
        return load_base(self.net, self.base, self.base_args, model, config)

    def compute_context(self, x: torch.Tensor) -> GuidedContext:
        """(N, 3, H, W) whole photo -> coefficient maps from its thumbnail, and H, W."""
        return self.context_from_thumbnail(resize_long_side(x, self.context_size), x.shape[-2], x.shape[-1])

    def context_from_thumbnail(self, small: torch.Tensor, height: int, width: int) -> GuidedContext:
        """Coefficient maps fitted on the thumbnail ``small`` of a ``height`` x ``width`` photo."""
        coef = guided_coefficients(small, self.enhance_thumbnail(small), self.radius, self.eps)
        return GuidedContext(coef, height, width)

    def enhance_thumbnail(self, small: torch.Tensor) -> torch.Tensor:
        """The network on the thumbnail (N, 3, h, w) -> (N, 3, h, w), with ``border`` pixels of mirrored
        photo around it while it runs: a network with zero padding darkens or tints a frame of its own
        receptive field, which the filter would carry to the photo's edges (as the Enhancer's mirrored
        borders do for full-resolution models)."""
        b = min(self.border, small.shape[-2] - 1, small.shape[-1] - 1)
        if b <= 0:
            return self.net(small)
        return self.net(F.pad(small, (b, b, b, b), mode="reflect"))[..., b:-b, b:-b]

    def _rows(self, x: torch.Tensor, ctx: GuidedContext, oy: int, ox: int) -> torch.Tensor:
        """Rows ``x`` (N, 3, r, W) whose first pixel is at (oy, ox) of the photo -> (N, 3, r, W)."""
        n, _, r, w = x.shape
        hs, ws = ctx.coef.shape[-2:]
        if (hs, ws) == (ctx.height, ctx.width) and not torch.jit.is_tracing():
            coef = ctx.coef[:, :, oy : oy + r, ox : ox + w]  # the thumbnail is the photo: no resampling
        else:
            # Bilinear at pixel centres (align_corners=False convention), clamped at the borders.
            u = cell_coords(ox, w, ctx.width, ws, x.device).to(x.dtype) * (2 / max(ws - 1, 1)) - 1
            v = cell_coords(oy, r, ctx.height, hs, x.device).to(x.dtype) * (2 / max(hs - 1, 1)) - 1
            where = torch.stack([u.view(1, w).expand(r, w), v.view(r, 1).expand(r, w)], -1)
            coef = F.grid_sample(ctx.coef, where.expand(n, r, w, 2), "bilinear", "border", True)
        return apply_coefficients(x, coef)

    def _rows_separable(self, x: torch.Tensor, ctx: GuidedContext, oy: int, ox: int) -> torch.Tensor:
        """``_rows`` for inference on large photos, the same numbers up to float rounding, faster.

        Bilinear interpolation is linear in the coefficients, so ``A(f) x + b(f)`` between two
        coefficient rows is the blend of the two rows' outputs. The x interpolation is done once per
        coefficient row (thumbnail height x photo width, small), and every band of photo rows between
        two coefficient rows applies those two rows, broadcast, and blends: no 12-channel map at full
        resolution, ~25 operations per pixel. Python loops over the bands, so not for tracing.
        """
        n, _, h, w = x.shape
        hs, ws = ctx.coef.shape[-2:]
        i0, i1, fy = _neighbours(cell_coords(oy, h, ctx.height, hs, x.device).to(x.dtype), hs)
        first, last = int(i0[0]), int(i1[-1])  # only the coefficient rows these photo rows lie between
        j0, j1, fx = _neighbours(cell_coords(ox, w, ctx.width, ws, x.device).to(x.dtype), ws)
        # Columns gathered as whole slices (columns first in memory): gathering single elements along the
        # last axis is several times slower, and this is the costliest step on a video frame.
        coef = ctx.coef[:, :, first : last + 1].permute(3, 0, 1, 2).contiguous()  # (ws, N, 12, rows)
        cols = torch.lerp(coef.index_select(0, j0), coef.index_select(0, j1), fx.view(-1, 1, 1, 1))
        cols = cols.permute(1, 2, 3, 0).contiguous()  # (N, 12, rows, w)
        starts = [0, *((i0[1:] != i0[:-1]).nonzero().flatten() + 1).tolist(), h]
        out = torch.empty_like(x)
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            k0, k1 = int(i0[a]) - first, int(i1[a]) - first
            band = x[:, :, a:b]
            y0 = apply_coefficients(band, cols[:, :, k0 : k0 + 1])
            y1 = apply_coefficients(band, cols[:, :, k1 : k1 + 1])
            torch.lerp(y0, y1, fy[a:b].view(1, 1, -1, 1), out=out[:, :, a:b])
        return out

    def enhance(
        self, x: torch.Tensor, context: GuidedContext | None, origin: tuple[int, int] | None
    ) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W). ``x`` may be a tile at ``origin`` (y, x) of the context's photo."""
        ctx = self.compute_context(x) if context is None else context
        h, w = x.shape[-2:]
        origin = tile_origin(x, ctx.height, ctx.width, origin)
        # Autograd (training, or a caller differentiating through the model) and tracing need the plain
        # ops; a frozen model in grad mode (``load_model``) still takes the banded path and its memory.
        needs_grad = torch.is_grad_enabled() and (x.requires_grad or ctx.coef.requires_grad)
        if needs_grad or torch.jit.is_tracing() or h * w <= CHUNK_PIXELS:
            return self._rows(x, ctx, *origin)
        return self._rows_separable(x, ctx, *origin)

    def export_module(self) -> nn.Module:
        return _GuidedForExport(self)


class _GuidedForExport(nn.Module):
    """``GuidedEnhancer.forward(x)`` with its thumbnail made by ``resize_long_side_exportable``.

    The model sizes its thumbnail with Python arithmetic (frozen by a tracer); here the thumbnail
    follows the input, the coefficients are computed from it as the model does (a thumbnail is never
    resized again: its long side is at most ``context_size``), then given the full photo's size so that
    they are resampled (GridSample) at full resolution.
    """

    def __init__(self, model: GuidedEnhancer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1]."""
        small = resize_long_side_exportable(x, self.model.context_size)
        context = self.model.compute_context(small)._replace(height=x.shape[-2], width=x.shape[-1])
        return self.model(x, context)


def _neighbours(coord: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Continuous positions on a ``size`` axis -> (left index, right index, weight of the right one).

    Positions are clamped to ``[0, size - 1]`` first (``grid_sample``'s border padding).
    """
    c = coord.clamp(0, size - 1)
    left = c.floor().clamp(max=max(size - 2, 0)).long()
    right = (left + 1).clamp(max=size - 1)
    return left, right, c - left
