"""``Enhancer``: the one engine behind the CLI, the web page and the Python API.

It owns everything between a decoded photo and a model: device choice, tiling of photos too large to
run whole (halo >= the model's receptive field, whole-image statistics computed once and shared by
every tile), strength blending, and a batch pipeline whose decoding and encoding overlap compute.
Models never know about tiles.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dslrify.errors import DslrifyError, OutputExistsError, PhotoError
from dslrify.models import EnhancementModel
from dslrify.photo import (
    DEFAULT_MAX_PIXELS,
    Photo,
    from_array,
    from_pil,
    read_photo,
    to_array,
    to_pil,
    unit_float,
    write_photo,
)
from dslrify.zoo import resolve_model

ImageT = TypeVar("ImageT")
MIN_TILE = 64
# enhance_files decodes the next photo while the model runs, except after a photo larger than this: a
# 61 MP RAW's model run takes up to 2.2 GB and decoding another such RAW 0.9 GB more, so the next one is
# decoded once the model is done (overlapping the encoding only). Peak RSS then stays under 2.5 GB.
ALONE_PIXELS = 30_000_000


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else is checked to exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DslrifyError(
            "--device cuda was asked for, but PyTorch sees no CUDA GPU", "use --device cpu or auto"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DslrifyError("--device mps was asked for, but MPS is not available", "use --device cpu or auto")
    return dev


def available_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device`` (MemAvailable on Linux CPUs, free memory on CUDA)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3  # a cautious guess where /proc is absent (macOS, Windows)


@dataclass(frozen=True)
class Tile:
    """Core region [y0:y1, x0:x1] written to the output, computed from the input crop [cy0:cy1, cx0:cx1]."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def plan_tiles(height: int, width: int, tile: int, halo: int, multiple: int = 1) -> list[Tile]:
    """Cover an image with ``tile``-sized cores, each read with ``halo`` pixels of context.

    Core and halo sizes are rounded to ``multiple`` so every crop starts on the model's pooling grid
    (then a tile sees exactly what the whole-image run sees within the halo).
    """
    tile = max(multiple, tile // multiple * multiple)
    halo = math.ceil(halo / multiple) * multiple
    tiles = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            tiles.append(
                Tile(
                    y0,
                    y1,
                    x0,
                    x1,
                    max(0, y0 - halo),
                    min(height, y1 + halo),
                    max(0, x0 - halo),
                    min(width, x1 + halo),
                )
            )
    return tiles


class Enhancer:
    """Enhance photos with one model.

    ``model``: a name from ``dslrify models``, a checkpoint folder, or an ``EnhancementModel``.
    ``tile``: core tile size in pixels; ``None`` chooses from free memory, ``0`` never tiles.
    ``strength``: 0 returns the input, 1 the model's output, in between a linear blend.
    """

    def __init__(
        self,
        model: str | os.PathLike | EnhancementModel = "default",
        device: str | torch.device = "auto",
        tile: int | None = None,
        strength: float = 1.0,
        threads: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        half: bool = False,
        raw_wb: str = "camera",
    ) -> None:
        if not 0.0 <= strength <= 1.0:
            raise DslrifyError(f"strength must be between 0 and 1, got {strength}")
        if tile is not None and tile < 0:
            raise DslrifyError(f"tile must be >= 0, got {tile}")
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        if isinstance(model, EnhancementModel):
            self.model, self.config = model, {}
            self.name = getattr(model, "label", type(model).__name__)
        else:
            self.model, self.config, self.name = resolve_model(model)
        self.model = self.model.to(self.device).eval()
        self.tile = tile
        self.last_tile: int | None = None
        self.strength = strength
        self.max_pixels = max_pixels
        from dslrify.raw import WHITE_BALANCES

        if raw_wb not in WHITE_BALANCES:
            raise DslrifyError(
                f"RAW white balance {raw_wb!r} is unknown", f"use {' or '.join(WHITE_BALANCES)}"
            )
        self.raw_wb = raw_wb  # for RAW and DNG inputs (dslrify.raw)
        # fp16 autocast on CUDA only: convolutions gain, while norms and reductions stay float32 under
        # autocast's own rules. On CPU it would be slower and less exact, so it is refused there.
        if half and self.device.type != "cuda":
            raise DslrifyError("--half needs a CUDA device", "use --device cuda, or drop --half")
        self.half = half

    # -- tensors ------------------------------------------------------------------------------
    def enhance_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB, float in [0, 1] or a photo's uint8/uint16 pixels -> float32 in [0, 1], same
        shape, on the CPU (big outputs never sit on a GPU)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W), got {tuple(x.shape)}")
        return torch.cat([self._enhance_one(x[i : i + 1]) for i in range(x.shape[0])])

    def _enhance_one(self, x: torch.Tensor) -> torch.Tensor:
        # A Photo's uint8/uint16 pixels stay so (2-4x smaller than float32) until each tile is run:
        # unit_float scales them to [0, 1] there.
        tile = self._choose_tile(*x.shape[-2:])
        while True:
            try:
                with torch.inference_mode(), torch.autocast("cuda", torch.float16, enabled=self.half):
                    y = self._run(x, tile)
                break
            except torch.OutOfMemoryError:
                # Only CUDA reports OOM as an exception we can recover from: retry with smaller tiles.
                if self.device.type != "cuda" or (tile is not None and tile <= MIN_TILE):
                    raise
                torch.cuda.empty_cache()
                tile = max(MIN_TILE, (tile or max(x.shape[-2:])) // 2)
        self.last_tile = tile  # what the last photo actually ran with (None: whole), for reports
        if self.strength != 1.0:
            y = torch.lerp(unit_float(x).to(y.device), y, self.strength)
        return y

    def _pixel_budget(self, whole: bool = False) -> float:
        """How many pixels the model can run on at once within a share of the free memory.

        On a CPU the activations are capped as well, so that a 12 MP photo stays within about 2 GB of
        RSS (the photo, its output and the codec take ~0.7 GB more): 0.75 GB for tiles and for the
        downsampled copy that whole-image statistics come from; ``whole``: 1.5 GB for running a photo in
        one piece. The larger cap keeps photos up to about 1 MP untiled even for DPED's generator
        (1.5 kB per pixel): then instance-norm statistics come from the photo itself, not from a copy,
        and the result is exactly the model's.
        """
        share = 0.5 if self.device.type == "cuda" else 0.25
        budget = available_memory(self.device) * share
        if self.device.type == "cpu":
            budget = min(budget, (1.5 if whole else 0.75) * 1024**3)
        return budget / self.model.bytes_per_pixel

    def _choose_tile(self, height: int, width: int) -> int | None:
        """None = run whole. Auto: the largest tile whose activations fit a share of free memory."""
        if self.tile == 0 or not self.model.tileable:
            return None
        if self.tile is not None:
            return self.tile if max(height, width) > self.tile else None
        if height * width <= self._pixel_budget(whole=True):
            return None
        side = int(math.sqrt(self._pixel_budget())) - 2 * self.model.receptive_field
        return max(MIN_TILE, side)

    def _run(self, x: torch.Tensor, tile: int | None) -> torch.Tensor:
        model, dev = self.model, self.device
        if tile is None:
            return model(unit_float(x).to(dev)).float().cpu()
        h, w = x.shape[-2:]
        context = None
        if model.uses_global_context:
            # Thumbnail branches downsample by themselves; networks that must run to measure their
            # statistics (instance norm) get the whole photo when it fits, else an area-downsampled copy.
            # The whole photo in float exists only meanwhile: freed before the output is allocated.
            whole = unit_float(x)
            src = whole if model.context_from_thumbnail else _shrink_to(whole, self._pixel_budget())
            context = model.compute_context(src.to(dev))
            del whole, src
        out = torch.empty(x.shape, dtype=torch.float32)
        for t in plan_tiles(h, w, tile, model.receptive_field, model.size_multiple):
            crop = unit_float(x[:, :, t.cy0 : t.cy1, t.cx0 : t.cx1]).to(dev)
            where = {"origin": (t.cy0, t.cx0)} if model.tile_origin else {}
            y = model(crop, context, **where).float().cpu()
            out[:, :, t.y0 : t.y1, t.x0 : t.x1] = y[
                :, :, t.y0 - t.cy0 : t.y1 - t.cy0, t.x0 - t.cx0 : t.x1 - t.cx0
            ]
        return out

    # -- images -------------------------------------------------------------------------------
    def enhance(self, image: ImageT) -> ImageT:
        """Enhance a PIL image or a numpy array (HxWx3/4 or HxW; uint8, uint16 or float in [0,1]).

        Returns the same type, mode, dtype and layout; alpha is passed through untouched.
        """
        if isinstance(image, np.ndarray):
            photo, dtype = from_array(image)
            return to_array(photo, self.enhance_tensor(photo.pixels), dtype)  # type: ignore[return-value]
        if isinstance(image, Image.Image):
            photo = from_pil(image)
            return to_pil(photo, self.enhance_tensor(photo.pixels))  # type: ignore[return-value]
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")

    def enhance_file(
        self, src: str | os.PathLike, dst: str | os.PathLike, *, quality: int = 95, overwrite: bool = False
    ) -> Path:
        """Read ``src``, enhance it, write ``dst`` (format from its extension) keeping EXIF/ICC/XMP."""
        src, dst = Path(src), Path(dst)
        check_output(src, dst, overwrite)
        photo = read_photo(src, max_pixels=self.max_pixels, raw_wb=self.raw_wb)
        write_photo(dst, photo, self.enhance_tensor(photo.pixels), quality=quality)
        return dst

    def enhance_files(
        self,
        jobs: Iterable[tuple[Path, Path]],
        *,
        quality: int = 95,
        overwrite: bool = False,
        on_done: Callable[[Path, Path, BaseException | None, float], None] | None = None,
    ) -> Iterator[tuple[Path, Path, BaseException | None]]:
        """Enhance many files; decoding the next photo and encoding the last overlap the model's work.

        Yields ``(src, dst, error)`` per job in order; an error (DslrifyError) does not stop the batch.
        """
        jobs = list(jobs)
        with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:

            def read(job: tuple[Path, Path]) -> Photo:
                check_output(job[0], job[1], overwrite)
                return read_photo(job[0], max_pixels=self.max_pixels, raw_wb=self.raw_wb)

            pending_read: Future[Photo] | None = reader.submit(read, jobs[0]) if jobs else None
            pending_write: tuple[tuple[Path, Path], Future[Any], float] | None = None
            for i, job in enumerate(jobs):
                start = time.perf_counter()
                assert pending_read is not None
                photo_future, pending_read = pending_read, None
                following = jobs[i + 1] if i + 1 < len(jobs) else None
                result: Future[Any] | None = None
                error: BaseException | None = None
                try:
                    photo = photo_future.result()
                    if following is not None and photo.size[0] * photo.size[1] <= ALONE_PIXELS:
                        pending_read = reader.submit(read, following)
                    out = self.enhance_tensor(photo.pixels)
                    result = writer.submit(write_photo, job[1], photo, out, quality=quality)
                    del photo, out  # the writer's; else they would live through the next model run
                except DslrifyError as e:
                    error = e
                if following is not None and pending_read is None:  # after a large photo's model run
                    pending_read = reader.submit(read, following)
                if pending_write is not None:
                    yield self._finish(pending_write, on_done)
                    pending_write = None
                if result is not None:
                    pending_write = (job, result, start)
                else:
                    if on_done:
                        on_done(job[0], job[1], error, time.perf_counter() - start)
                    yield job[0], job[1], error
            if pending_write is not None:
                yield self._finish(pending_write, on_done)

    @staticmethod
    def _finish(pending, on_done) -> tuple[Path, Path, BaseException | None]:
        (src, dst), future, start = pending
        error = None
        try:
            future.result()
        except DslrifyError as e:
            error = e
        if on_done:
            on_done(src, dst, error, time.perf_counter() - start)
        return src, dst, error


def check_output(src: Path, dst: Path, overwrite: bool) -> None:
    """Refuse to write over the input, or over an existing file without ``overwrite``."""
    if dst.resolve() == src.resolve():
        raise PhotoError(
            f"{dst}: the output would replace its input", "use -o OUT_DIR or a non-empty --suffix"
        )
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} already exists", "pass --overwrite to replace it")


def _shrink_to(x: torch.Tensor, max_pixels: float) -> torch.Tensor:
    """Area-downsample (N, C, H, W) to at most ``max_pixels`` pixels (whole-image statistics source)."""
    h, w = x.shape[-2:]
    if h * w <= max_pixels:
        return x
    s = math.sqrt(max_pixels / (h * w))
    return F.interpolate(x, size=(max(1, int(h * s)), max(1, int(w * s))), mode="area")
