"""Evaluate enhancement models on paired data with DPED's protocol, with confidence intervals.

Protocol (as in DPED, Ignatov et al. 2017, and the PIRM 2018 challenge): a model maps phone images
``(N, 3, H, W)`` float32 RGB in [0, 1] to images of the same shape; its output is clamped to [0, 1] and
rounded to 8 bit (:func:`dslrify.metrics.quantize_8bit`), then compared with the DSLR target per pair.
Summaries are means over pairs; PSNR and SSIM carry 95% percentile-bootstrap intervals, and
:meth:`EvaluationResult.compare` gives paired differences between two models on the same pairs.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.table import Table
from torch import Tensor

from dslrify.errors import ModelError
from dslrify.files import atomic_path
from dslrify.metrics import (
    Interval,
    bootstrap_ci,
    delta_e2000,
    ms_ssim,
    paired_difference,
    psnr,
    quantize_8bit,
    ssim,
)
from dslrify.photo import write_image

Model = Callable[[Tensor], Tensor]
#: Per-pair metrics, in report order. delta_e is lower-is-better; the others higher-is-better.
METRICS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "psnr": psnr,
    "ssim": ssim,
    "ms_ssim": ms_ssim,
    "delta_e": delta_e2000,
}
PROTOCOL = "output clamped to [0,1] and rounded to 8 bit; PSNR/SSIM(7-tap)/MS-SSIM/CIEDE2000 per pair, RGB"


@dataclass(frozen=True)
class ModelSummary:
    """One model's means over ``n`` pairs; ``*_ci`` are 95% bootstrap intervals; speed excludes warm-up."""

    model: str
    n: int
    psnr: float
    psnr_ci: tuple[float, float]
    ssim: float
    ssim_ci: tuple[float, float]
    ms_ssim: float
    delta_e: float
    images_per_s: float
    megapixels_per_s: float
    seconds: float


@dataclass
class EvaluationResult:
    """Summaries per model, plus every per-pair value (``values[model][metric]`` has shape ``(n,)``)."""

    summaries: list[ModelSummary]
    values: dict[str, dict[str, np.ndarray]]
    pair_names: list[str]
    pair_paths: list[tuple[str, str]]

    def summary(self, model: str) -> ModelSummary:
        """The summary of ``model``; KeyError names the models evaluated."""
        for s in self.summaries:
            if s.model == model:
                return s
        raise KeyError(f"no model {model!r} in this evaluation (have: {', '.join(self.values)})")

    def to_json(self) -> dict[str, Any]:
        """Summaries as JSON-ready data (PSNR of a perfect output is ``inf``, written as Infinity)."""
        return {
            "protocol": PROTOCOL,
            "models": [
                {
                    "model": s.model,
                    "psnr": s.psnr,
                    "psnr_ci": list(s.psnr_ci),
                    "ssim": s.ssim,
                    "ssim_ci": list(s.ssim_ci),
                    "ms_ssim": s.ms_ssim,
                    "delta_e": s.delta_e,
                    "images_per_s": s.images_per_s,
                    "megapixels_per_s": s.megapixels_per_s,
                    "n": s.n,
                }
                for s in self.summaries
            ],
        }

    def per_image_rows(self) -> list[dict[str, str | float]]:
        """One row per (model, pair), ready for ``csv.DictWriter``: model, pair, input, target, metrics."""
        rows: list[dict[str, str | float]] = []
        for model, metrics in self.values.items():
            for i, name in enumerate(self.pair_names):
                row: dict[str, str | float] = {
                    "model": model,
                    "pair": name,
                    "input": self.pair_paths[i][0],
                    "target": self.pair_paths[i][1],
                }
                row.update({m: float(metrics[m][i]) for m in METRICS})
                rows.append(row)
        return rows

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path`` (atomically)."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def write_csv(self, path: str | Path) -> None:
        """Write the summary table, one row per model, as CSV (atomically)."""
        _write_rows(Path(path), self.to_json()["models"])

    def write_per_image_csv(self, path: str | Path) -> None:
        """Write :meth:`per_image_rows` as CSV (atomically)."""
        _write_rows(Path(path), self.per_image_rows())

    def table(self, title: str) -> Table:
        """The summary as a rich table: PSNR and SSIM with their 95% intervals, MS-SSIM, ΔE00, speed, n."""
        table = Table(title=title)
        for col in ("model", "PSNR dB (95% CI)", "SSIM (95% CI)", "MS-SSIM", "ΔE00", "images/s", "n"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for s in self.summaries:
            table.add_row(
                s.model,
                f"{s.psnr:.2f} ({s.psnr_ci[0]:.2f}–{s.psnr_ci[1]:.2f})",
                f"{s.ssim:.4f} ({s.ssim_ci[0]:.4f}–{s.ssim_ci[1]:.4f})",
                f"{s.ms_ssim:.4f}",
                f"{s.delta_e:.2f}",
                f"{s.images_per_s:.1f}",
                str(s.n),
            )
        return table

    def comparison_lines(self) -> list[str]:
        """One line per model after the first: its paired PSNR/SSIM difference from the first, 95% CI."""
        names = [s.model for s in self.summaries]
        lines = []
        for other in names[1:]:
            d = self.compare(other, names[0])
            lines.append(
                f"{other} − {names[0]}: PSNR {d['psnr'].mean:+.2f} dB "
                f"({d['psnr'].low:+.2f} to {d['psnr'].high:+.2f}), "
                f"SSIM {d['ssim'].mean:+.4f} ({d['ssim'].low:+.4f} to {d['ssim'].high:+.4f}), paired, 95% CI"
            )
        return lines

    def compare(self, a: str, b: str, n_boot: int = 2000, seed: int = 0) -> dict[str, Interval]:
        """Paired differences ``a - b`` per metric over the same pairs, with 95% bootstrap intervals.

        Positive PSNR/SSIM/MS-SSIM differences, and negative delta_e ones, mean ``a`` is better; an
        interval that excludes 0 means the difference is unlikely to be luck of the test set.
        """
        for name in (a, b):
            self.summary(name)  # KeyError naming the models evaluated
        va, vb = self.values[a], self.values[b]
        return {m: paired_difference(va[m], vb[m], n_boot=n_boot, seed=seed) for m in METRICS}


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


class Pairs(Protocol):
    """What ``evaluate`` reads: ``len()`` pairs, item ``i`` an ``(input, target)`` of (3, H, W) in [0, 1]."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]: ...


def _two_paths(paths: Sequence[object]) -> tuple[str, str]:
    first, second = paths
    return str(first), str(second)


def _batches(dataset: Pairs, batch_size: int) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """Consecutive pairs stacked into batches of up to ``batch_size``; a size change starts a new batch."""
    indices: list[int] = []
    inputs: list[Tensor] = []
    targets: list[Tensor] = []
    for i in range(len(dataset)):
        x, y = dataset[i]
        if inputs and (x.shape != inputs[0].shape or len(inputs) == batch_size):
            yield indices, torch.stack(inputs), torch.stack(targets)
            indices, inputs, targets = [], [], []
        indices.append(i)
        inputs.append(x)
        targets.append(y)
    if inputs:
        yield indices, torch.stack(inputs), torch.stack(targets)


def _run(name: str, model: Model, x: Tensor) -> tuple[Tensor, float]:
    """Model output ``(N, 3, H, W)`` on the CPU as float32, and the seconds the call took."""
    with torch.inference_mode():
        start = time.perf_counter()
        out = model(x)
        if isinstance(out, Tensor) and out.is_cuda:
            torch.cuda.synchronize(out.device)  # CUDA calls return before the work is done
        seconds = time.perf_counter() - start
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ModelError(
            f"model {name!r} returned {got} for input {tuple(x.shape)}", "it must keep the shape"
        )
    out = out.detach().float().cpu()
    if not torch.isfinite(out).all():
        raise ModelError(
            f"model {name!r} returned NaN or inf values", "check its weights and input range [0,1]"
        )
    return out, seconds


def make_strip(inp: Tensor, output: Tensor, target: Tensor, gap: int = 4) -> np.ndarray:
    """Side-by-side ``input | output | target`` as (H, 3W + 2*gap, 3) uint8, white gaps; CHW [0, 1] in."""
    h = inp.shape[-2]
    white = torch.ones(3, h, gap)
    strip = torch.cat([inp, white, output, white, target], dim=-1)
    return (quantize_8bit(strip) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_strip(path: Path, inp: Tensor, output: Tensor, target: Tensor) -> None:
    """Write the comparison strip of one pair as PNG (lossless, so it shows exactly what was scored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, make_strip(inp, output, target))


def _slug(text: str) -> str:
    """A file-name-safe version of a model or pair name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "unnamed"


def evaluate(
    models: dict[str, Model],
    dataset: Pairs,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    save_images: Path | None = None,
) -> EvaluationResult:
    """Score each model on every pair of ``dataset`` (items ``(input, target)``, (3, H, W) in [0, 1]).

    ``models`` maps names to callables ``(N, 3, H, W) -> (N, 3, H, W)`` (the identity baseline is
    ``lambda x: x``); modules must be in eval mode. Each pair is decoded once and given to every model.
    Each model gets one untimed warm-up call on the first batch, so speed excludes one-off start-up
    costs. ``progress(done, total)`` is called after each batch. ``save_images``: a folder that receives
    ``MODEL/PAIR.png`` strips (input | output | target). Prints nothing.
    """
    if not models:
        raise ValueError("no models to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for name, model in models.items():
        if isinstance(model, torch.nn.Module) and model.training:
            raise ModelError(f"model {name!r} is in training mode", "call model.eval() before evaluating it")
    total = len(dataset)
    if total == 0:
        raise ValueError("the dataset has no pairs")

    per_model: dict[str, dict[str, list[Tensor]]] = {m: {k: [] for k in METRICS} for m in models}
    seconds = dict.fromkeys(models, 0.0)
    pixels, done = 0, 0
    for batch_no, (indices, x, y) in enumerate(_batches(dataset, batch_size)):
        for name, model in models.items():
            if batch_no == 0:
                _run(name, model, x)  # warm-up: lazy initialisation, allocator, kernel selection
            out, took = _run(name, model, x)
            seconds[name] += took
            out = quantize_8bit(out)
            for metric, fn in METRICS.items():
                per_model[name][metric].append(fn(out, y).double())
            if save_images is not None:
                for j, i in enumerate(indices):
                    pair = _slug(getattr(dataset, "name", str)(i))
                    save_strip(Path(save_images) / _slug(name) / f"{pair}.png", x[j], out[j], y[j])
        pixels += x.shape[0] * x.shape[2] * x.shape[3]
        done += len(indices)
        if progress is not None:
            progress(done, total)

    values = {m: {k: torch.cat(v).numpy() for k, v in d.items()} for m, d in per_model.items()}
    summaries = []
    for name, v in values.items():
        p, s = bootstrap_ci(v["psnr"]), bootstrap_ci(v["ssim"])
        secs = seconds[name]
        summaries.append(
            ModelSummary(
                model=name,
                n=total,
                psnr=p.mean,
                psnr_ci=(p.low, p.high),
                ssim=s.mean,
                ssim_ci=(s.low, s.high),
                ms_ssim=float(v["ms_ssim"].mean()),
                delta_e=float(v["delta_e"].mean()),
                images_per_s=total / secs if secs > 0 else math.inf,
                megapixels_per_s=pixels / 1e6 / secs if secs > 0 else math.inf,
                seconds=secs,
            )
        )
    paths_of = getattr(dataset, "paths", None)
    return EvaluationResult(
        summaries=summaries,
        values=values,
        pair_names=[str(getattr(dataset, "name", str)(i)) for i in range(total)],
        pair_paths=[_two_paths(paths_of(i)) if paths_of else ("", "") for i in range(total)],
    )


def load_models(names: list[str], baselines: list[str], device: str = "auto") -> dict[str, Model]:
    """Baselines (see :mod:`dslrify.baselines`) then models by name or folder, each built once.

    A model is labelled with its name; two checkpoint folders with the same name keep their paths.
    """
    from dslrify.baselines import get_baseline
    from dslrify.enhancer import Enhancer

    models: dict[str, Model] = {b: get_baseline(b) for b in baselines}
    for name in names:
        enhancer = Enhancer(name, device=device)
        models[enhancer.name if enhancer.name not in models else name] = enhancer.enhance_tensor
    return models
