"""The `bilateral` architecture: a bilateral grid of colour transforms predicted from a thumbnail (HDRNet).

Gharbi et al., "Deep Bilateral Learning for Real-Time Image Enhancement" (SIGGRAPH 2017), adapted:

- **Low resolution.** A network looks at a copy of the photo at most ``context_size`` px on its long
  side (smaller inputs, such as 100x100 training patches, are analysed as they are). Four strided convs
  (features resampled to the grid size, so any aspect ratio gives the same grid), a local path of two
  convs and a global path (two strided convs, pooled features + colour mean/std, MLP) are fused into a
  bilateral grid of 3x4 affine colour transforms, ``(N, 12, D, Gh, Gw)``: ``Gh x Gw`` spatial cells by
  ``D`` tone bins. The grid is resolution-independent: it is the ``context``.
- **Full resolution, pointwise.** A learned guide ``sum_c curve_c((M x + b)_c)`` (a 3x3 colour mix and
  per-channel piecewise-linear curves) places each pixel on the tone axis; the grid is interpolated
  trilinearly at (x, y, tone) and the resulting 3x4 matrix is applied to the pixel. The tone is
  clamped to the first/last bin's centre (HDRNet clips its guide; a sigmoid would squeeze the initial
  guide, the mean intensity, into the middle bins).
- **Residual** (``residual=True``, the default): a 3->8->3 3x3 conv on the input adds local detail
  (sharpening, noise) that no pointwise transform can; its output conv starts at zero. Receptive field
  2 px. At 12 MP it adds ~0.3 s to ~0.5 s (``benchmarks/bilateral_speed.py``): within the budget.

Untrained, the model is the identity. Forward on 2 CPU threads, 12.2 MP: about 0.8 s (0.5 s without the
residual), peak memory the output plus ~35 MB. PyTorch's CPU ``grid_sample`` on 5-D input is scalar and
parallel only over the batch (about 5x slower here), so the slicing is split: the y interpolation is a
matmul of a ``(rows, Gh)`` hat-weight matrix with the grid, and the (x, tone) interpolation a 4-D
``grid_sample`` with one batch entry per image row (vectorised, parallel over rows). Rows go in chunks
of ``CHUNK_PIXELS`` so the 12-channel temporaries stay in cache. ONNX: Conv, Gemm/MatMul, GridSample
4-D (opset 16), Resize, Gather, elementwise; the traced graph is one chunk with dynamic H and W
(``resize_long_side`` needs the exporter's traceable form, as for the U-Net). ``slice_grid_3d`` (5-D
GridSample, opset 20) is the plain reference.

Tiling: the slicing is pointwise given the grid, but a pixel's grid cell depends on its position in the
*whole* photo. ``compute_context`` returns the grid with the photo's size, and a tile must be given its
``origin`` (top-left corner in the photo): then it matches the whole-image output exactly (beyond the
receptive field margin with the residual). A tile of another size without an origin is refused.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dslrify.models.base import EnhancementModel, tile_origin
from dslrify.models.unet import resize_long_side

CHUNK_PIXELS = 1 << 17  # ~131k pixels per row chunk: a 12-channel float chunk (6 MB) stays in L2/L3


class GridContext(NamedTuple):
    """Whole-photo context: the bilateral grid (N, 12, D, Gh, Gw) and the photo's full (height, width)."""

    grid: torch.Tensor
    height: int
    width: int


def hat_weights(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Linear-interpolation weights (len(coord), size) for continuous positions, clamped to the ends."""
    c = coord.clamp(0, size - 1)
    return (1 - (c[:, None] - torch.arange(size, dtype=c.dtype, device=c.device)).abs()).clamp(min=0)


def cell_coords(start: int, count: int, full: int, cells: int, device: torch.device) -> torch.Tensor:
    """Continuous grid coordinates of pixel centres ``start .. start+count-1`` of a ``full``-px axis.

    Cell ``i`` is centred on pixel position ``(i + 0.5) * full / cells`` (align_corners=False convention).
    """
    p = torch.arange(start, start + count, dtype=torch.float32, device=device)
    return (p + 0.5) * (cells / full) - 0.5


def slice_grid_3d(grid: torch.Tensor, tone: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
    """Reference slicing with one 5-D ``grid_sample`` (trilinear): (N, 12, H, W) coefficients.

    ``grid`` (N, 12, D, Gh, Gw); ``tone`` (N, H, W) the normalised tone coordinate (-1: first bin's
    centre, 1: last one's, clamped beyond); ``rows``/``cols`` continuous cell coordinates (H,) and (W,).
    Scalar and single-threaded on CPU, and 12 full-resolution channels: for tests and benchmarks.
    """
    n, _, d, gh, gw = grid.shape
    h, w = tone.shape[-2:]
    u = (cols * (2 / (gw - 1)) - 1).view(1, 1, w).expand(n, h, w)
    v = (rows * (2 / (gh - 1)) - 1).view(1, h, 1).expand(n, h, w)
    sample = torch.stack([u, v, tone], dim=-1).unsqueeze(1)
    return F.grid_sample(grid, sample, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]


class BilateralGridEnhancer(EnhancementModel):
    """Thumbnail network -> bilateral grid of affine colour transforms, sliced at full resolution.

    ``x`` (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) in [0, 1], any H, W. Untrained, it is the identity.
    """

    tile_origin = True  # the grid cell of a pixel depends on where the tile sits in the photo

    context_from_thumbnail = True
    size_multiple = 1
    # Measured at 12.2 MP (benchmarks/bilateral_speed.py): ~16 B/px above the input, the float32 output
    # (12 B/px) plus chunk temporaries; margin for smaller photos. A single-chunk run (autograd,
    # tracing/ONNX) needs ~65 B/px.
    bytes_per_pixel = 24

    def __init__(
        self,
        width: int = 64,
        grid_depth: int = 8,
        grid_size: int = 16,
        context_size: int = 256,
        curve_knots: int = 16,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.grid_depth, self.grid_size, self.context_size = grid_depth, grid_size, context_size
        self.residual = residual
        act = nn.LeakyReLU(0.2, inplace=True)
        # Four stride-2 convs: a 256 px thumbnail becomes the 16x16 grid (HDRNet's "splat" layers).
        chans = (3, width // 8, width // 4, width // 2, width)
        self.splat = nn.Sequential(
            *(m for i in range(4) for m in (nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1), act))
        )
        self.local = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1), act, nn.Conv2d(width, width, 3, 1, 1))
        self.global_convs = nn.Sequential(
            nn.Conv2d(width, width, 3, 2, 1), act, nn.Conv2d(width, width, 3, 2, 1), act
        )
        self.global_mlp = nn.Sequential(
            nn.Linear(2 * width + 6, 2 * width),
            act,
            nn.Linear(2 * width, width),
            act,
            nn.Linear(width, width),
        )
        self.to_grid = nn.Conv2d(width, 12 * grid_depth, 1)
        nn.init.zeros_(self.to_grid.weight)  # untrained = identity transform in every cell
        nn.init.zeros_(self.to_grid.bias)
        eye = torch.eye(3, 4).reshape(12, 1, 1, 1).repeat(1, grid_depth, 1, 1)
        self.register_buffer("identity", eye, persistent=False)  # (12, D, 1, 1), not a weight

        # Guide: colour mix (identity) then per-channel curves on uniform knots (each x/3: mean intensity).
        self.mix = nn.Parameter(torch.eye(3))
        self.mix_bias = nn.Parameter(torch.zeros(3))
        self.curves = nn.Parameter(torch.linspace(0, 1, curve_knots + 1).repeat(3, 1) / 3)

        if residual:
            self.detail = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), act, nn.Conv2d(8, 3, 3, 1, 1))
            nn.init.zeros_(self.detail[2].weight)
            nn.init.zeros_(self.detail[2].bias)

    @property
    def receptive_field(self) -> int:  # type: ignore[override]
        return 2 if self.residual else 0

    @property
    def uses_global_context(self) -> bool:
        return True

    # -- low resolution ------------------------------------------------------------------------
    def compute_context(self, x: torch.Tensor) -> GridContext:
        """(N, 3, H, W) whole photo -> its bilateral grid from a <= ``context_size`` px copy, and H, W."""
        small = resize_long_side(x, self.context_size)
        f = self.splat(small)
        # Resample to the grid size: thumbnails of any aspect (and 100 px patches) give the same grid.
        f = F.interpolate(f, size=(self.grid_size, self.grid_size), mode="bilinear", align_corners=False)
        g = self.global_convs(f)
        var, mean = torch.var_mean(small, dim=(2, 3), correction=0)  # a 1x1 input has std 0, not NaN
        stats = torch.cat([mean, (var + 1e-6).sqrt()], dim=1)  # + eps: finite gradient for flat images
        g = self.global_mlp(torch.cat([g.mean(dim=(2, 3)), g.amax(dim=(2, 3)), stats], dim=1))
        fused = F.leaky_relu(self.local(f) + g[:, :, None, None], 0.2)
        n = x.shape[0]
        grid = self.to_grid(fused).view(n, 12, self.grid_depth, self.grid_size, self.grid_size)
        return GridContext(grid + self.identity, x.shape[-2], x.shape[-1])

    # -- full resolution -----------------------------------------------------------------------
    def _guide_tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The guide's parameters folded into grid_sample coordinates (see ``_slice_rows``).

        Returns the colour mix and bias giving curve coordinates in [-1, 1] for [0, 1] inputs, and the
        curves (1, 1, 3, K+1) scaled so that their sum is the guide's normalised coordinate in the grid's
        tone axis: bin d is centred on guide (d + 0.5) / D.
        """
        d = self.grid_depth
        mix, bias = 2 * self.mix, (2 * self.mix_bias - 1)[:, None]
        curves = self.curves * (2 * d / (d - 1)) - (1 + 1 / (d - 1)) / 3
        return mix, bias, curves[None, None]

    def tone(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, r, W) in [0, 1] -> (N, r, W) normalised tone coordinate: curves of a colour mix, summed.

        The three curves are one ``grid_sample`` lookup in a (3, K+1) table (a row per channel).
        """
        n, _, r, w = x.shape
        mix, bias, curves = self._guide_tables()
        m = torch.baddbmm(bias, mix.expand(n, 3, 3), x.reshape(n, 3, r * w))  # (N, 3, r*W) in [-1, 1]
        chan = torch.tensor([-1.0, 0.0, 1.0], device=x.device).view(1, 3, 1).expand(n, 3, r * w)
        where = torch.stack([m, chan], dim=-1)
        return (
            F.grid_sample(curves.expand(n, 1, 3, -1), where, "bilinear", "border", True)
            .view(n, 3, r, w)
            .sum(1)
        )

    def _slice_rows(
        self, x: torch.Tensor, ctx: GridContext, grid_rows: torch.Tensor, oy: int, ox: int
    ) -> torch.Tensor:
        """Rows of the photo ``x`` (N, 3, r, W) starting at (oy, ox) -> coefficients (N, r, 3, 4, W).

        ``grid_rows`` is the grid as (N, Gh, 12*D*Gw). Every step is one vectorised op over the chunk.
        """
        n, _, r, w = x.shape
        d, gs = self.grid_depth, self.grid_size
        z = self.tone(x)
        # y interpolation for every row at once: (r, Gh) hat weights @ grid -> (N * r, 12, D, Gw).
        wy = hat_weights(cell_coords(oy, r, ctx.height, gs, x.device), gs)
        rows = torch.matmul(wy, grid_rows).view(n * r, 12, d, gs)
        # (x, tone) interpolation: a 4-D grid_sample with one batch entry per row (vectorised, parallel).
        u = cell_coords(ox, w, ctx.width, gs, x.device) * (2 / (gs - 1)) - 1
        where = torch.stack([u.view(1, 1, w).expand(n, r, w), z], dim=-1)
        coef = F.grid_sample(rows, where.view(n * r, 1, w, 2), "bilinear", "border", True)
        return coef.view(n, r, 3, 4, w)

    def _rows(
        self,
        x: torch.Tensor,
        ctx: GridContext,
        grid_rows: torch.Tensor,
        r0: int,
        r1: int,
        oy: int,
        ox: int,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Output rows [r0, r1) of ``x`` (N, 3, r1 - r0, W), written into ``out`` when given (no grad)."""
        xc = x[:, :, r0:r1]
        c = self._slice_rows(xc, ctx, grid_rows, oy + r0, ox)
        xr = xc.transpose(1, 2).unsqueeze(3)  # (N, r, 3, 1, W): input channel k is xr[:, :, k]
        # y = A x + b per pixel, in the coefficients' (N, r, 3, W) layout; out is viewed the same way.
        view = None if out is None else out[:, :, r0:r1].transpose(1, 2)
        y = torch.addcmul(c[:, :, :, 3], c[:, :, :, 0], xr[:, :, 0], out=view)
        y = y.addcmul_(c[:, :, :, 1], xr[:, :, 1]).addcmul_(c[:, :, :, 2], xr[:, :, 2])
        if self.residual:
            a, b = max(0, r0 - 2), min(x.shape[2], r1 + 2)
            # Zero padding at the true top/bottom only; the halo rows' outputs are discarded.
            # channels_last: oneDNN's 3- and 8-channel 3x3 convs run ~4x faster than in NCHW here.
            halo = x[:, :, a:b].contiguous(memory_format=torch.channels_last)
            y += self.detail(halo)[:, :, r0 - a : r1 - a].transpose(1, 2)
        return y.clamp_(0, 1).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: GridContext | None = None, origin: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H, W). ``x`` may be a tile at ``origin`` (y, x) of the context's photo."""
        ctx = self.compute_context(x) if context is None else context
        n, _, h, w = x.shape
        oy, ox = tile_origin(x, ctx.height, ctx.width, origin)
        gs = self.grid_size
        grid_rows = ctx.grid.permute(0, 3, 1, 2, 4).reshape(n, gs, 12 * self.grid_depth * gs)
        step = max(1, CHUNK_PIXELS // max(1, w))
        if torch.is_grad_enabled() or torch.jit.is_tracing() or h <= step:
            return self._rows(x, ctx, grid_rows, 0, h, oy, ox)  # one piece: autograd, tracing see plain ops
        out = torch.empty_like(x)
        for r0 in range(0, h, step):
            self._rows(x, ctx, grid_rows, r0, min(h, r0 + step), oy, ox, out=out)
        return out
