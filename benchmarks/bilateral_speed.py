"""Forward time and peak memory of the `bilateral` architecture on a 12.2 MP photo (2848x4272), CPU.

Each configuration runs in its own process (random input, ``torch.inference_mode``, the given thread
count) so that its peak RSS is its own: ``peak`` is the process's peak RSS, ``+fwd`` the part above the
RSS with the input allocated (model, grid, output and temporaries). Times are the median of
``--repeats`` forwards after a warm-up, wall clock and process CPU time. Rows:

- ``final``: the model as shipped (per-row y matmul + 4-D ``grid_sample`` slicing in row chunks, and
  the 3->8->3 full-resolution residual conv in channels_last).
- ``residual nchw``: the same with the residual conv in NCHW.
- ``no residual``: ``residual=False``; the rows below are variants of it (slicing only).
- ``chunk N``: the final slicing with N pixels per chunk (``whole`` = one chunk).
- ``slice 5-D``: ``slice_grid_3d`` (PyTorch's trilinear ``grid_sample``) per chunk / on the whole image.
- ``slice gather``: 4 ``index_select`` lookups of 12-vectors per pixel in the row-interpolated grid.

    python benchmarks/bilateral_speed.py [--threads 2] [--repeats 5] [--only final,no residual]

The machine may be shared: with other processes busy, OpenMP's two threads wait on each other at every
op, so compare rows from one run, repeat, and look at ``cpu`` as well as ``wall``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

H, W = 2848, 4272
CONFIGS = [
    "final",
    "residual nchw",
    "no residual",
    "chunk 32768",
    "chunk 524288",
    "chunk whole",
    "slice gather",
    "slice 5-D",
    "slice 5-D whole",
]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _patch(config: str, model) -> None:
    """Swap in the alternative that ``config`` names (only ever in this child process)."""
    import torch

    from dslrify.models import bilateral

    if config.startswith("chunk"):
        bilateral.CHUNK_PIXELS = 1 << 40 if config.endswith("whole") else int(config.split()[1])
    if config == "slice 5-D whole":
        bilateral.CHUNK_PIXELS = 1 << 40
    if config == "residual nchw":

        class Nchw(torch.nn.Sequential):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return super().forward(x.contiguous())

        model.detail = Nchw(*model.detail)

    def slice_5d(self, x, ctx, grid_rows, oy, ox):
        n, _, r, w = x.shape
        rows = bilateral.cell_coords(oy, r, ctx.height, self.grid_size, x.device)
        cols = bilateral.cell_coords(ox, w, ctx.width, self.grid_size, x.device)
        coef = bilateral.slice_grid_3d(ctx.grid, self.tone(x), rows, cols)  # (N, 12, r, W)
        return coef.view(n, 3, 4, r, w).permute(0, 3, 1, 2, 4)

    def slice_gather(self, x, ctx, grid_rows, oy, ox):
        n, _, r, w = x.shape
        d, gs = self.grid_depth, self.grid_size
        wy = bilateral.hat_weights(bilateral.cell_coords(oy, r, ctx.height, gs, x.device), gs)
        # (N*r*D*Gw, 12) table: the 12 coefficients of each (row, bin, column) contiguous.
        table = torch.matmul(wy, grid_rows).view(n * r, 12, d, gs).permute(0, 2, 3, 1).reshape(-1, 12)
        cx = bilateral.cell_coords(ox, w, ctx.width, gs, x.device).clamp(0, gs - 1)
        x0 = cx.floor().clamp(max=gs - 2)
        fx = (cx - x0).view(1, 1, w, 1)
        cz = ((self.tone(x) + 1) * ((d - 1) / 2)).clamp(0, d - 1)
        z0 = cz.floor().clamp(max=d - 2)
        fz = (cz - z0).unsqueeze(-1)
        base = ((torch.arange(n * r).view(n, r, 1) * d + z0.long()) * gs + x0.long().view(1, 1, w)).view(-1)

        def at(offset: int) -> torch.Tensor:
            return table.index_select(0, base + offset).view(n, r, w, 12)

        lo = torch.lerp(at(0), at(1), fx)
        hi = torch.lerp(at(gs), at(gs + 1), fx)
        return torch.lerp(lo, hi, fz).view(n, r, w, 3, 4).permute(0, 1, 3, 4, 2)

    if config.startswith("slice 5-D"):
        bilateral.BilateralGridEnhancer._slice_rows = slice_5d
    if config == "slice gather":
        bilateral.BilateralGridEnhancer._slice_rows = slice_gather


def child(config: str, threads: int, repeats: int) -> None:
    """Runs in the subprocess: prints one JSON line with median wall/CPU seconds and memory."""
    import torch

    from dslrify.models.bilateral import BilateralGridEnhancer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = BilateralGridEnhancer(residual=config in ("final", "residual nchw")).eval()
    with torch.no_grad():  # a non-identity grid and guide, as after training
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    _patch(config, model)
    x = torch.rand(1, 3, H, W)
    base = _rss()
    walls, cpus = [], []
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            y = model(x)
            if i:  # the first run is a warm-up (oneDNN kernel selection, allocator)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            del y
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "wall": statistics.median(walls),
                "wall_min": min(walls),
                "cpu": statistics.median(cpus),
                "peak": peak,
                "fwd": peak - base,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default=",".join(CONFIGS), help="comma-separated configuration names")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.threads, a.repeats)
        return
    print(f"bilateral forward, {W}x{H} ({H * W / 1e6:.1f} MP), {a.threads} threads, median of {a.repeats}")
    heads = ("wall s", 7), ("min s", 6), ("cpu s", 6), ("peak GB", 8), ("+fwd GB", 8), ("B/px", 5)
    print(f"{'configuration':<16} " + " ".join(f"{name:>{width}}" for name, width in heads))
    for config in a.only.split(","):
        repeats = 1 if config.startswith("slice 5-D") else a.repeats  # seconds each: one is enough
        cmd = [sys.executable, __file__, "--child", config, "--threads", str(a.threads)]
        res = subprocess.run([*cmd, "--repeats", str(repeats)], capture_output=True, text=True, check=False)
        if res.returncode:
            print(f"{config:<16} failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        print(
            f"{config:<16} {r['wall']:7.3f} {r['wall_min']:6.3f} {r['cpu']:6.2f} {r['peak'] / 1e9:8.2f} "
            f"{r['fwd'] / 1e9:8.2f} {r['fwd'] / (H * W):5.0f}"
        )


if __name__ == "__main__":
    main()
