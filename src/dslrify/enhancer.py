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
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
from PIL import Image

from dslrify.batch import check_output
from dslrify.errors import DslrifyError, ModelError
from dslrify.models import EnhancementModel
from dslrify.models.base import Moments, MomentsContext, NormProbe, native_bfloat16
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
from dslrify.raw import WHITE_BALANCES
from dslrify.temporal import map_context
from dslrify.zoo import resolve_model

MIN_TILE = 64
# Pointwise and nearly pointwise models (a receptive field of at most LOCAL_FIELD pixels: a tile needs
# little or no halo) run in pieces of about 1 MP: conversion, model and quantisation of a piece stay in
# cache. Run whole, `fast` takes 1.6x the CPU time on the 12 MP photo. The pieces equal the whole run up
# to float rounding (elementwise kernels round by shape): about 3 pixels in 100,000 one 8-bit level apart.
POINTWISE_TILE = 1024
LOCAL_FIELD = 8
# enhance_files decodes the next photo while the model runs, except after a photo larger than this: a
# 61 MP RAW's model run takes up to 2.2 GB and decoding another such RAW 0.9 GB more, so the next one is
# decoded once the model is done (overlapping the encoding only). Peak RSS then stays under 2.5 GB.
ALONE_PIXELS = 30_000_000
Borders = Literal["zero", "reflect"]


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else is checked to exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DslrifyError(f"unknown device {device!r}", "use auto, cpu, cuda, cuda:N or mps") from e
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


HALF_DTYPES = (torch.float16, torch.bfloat16)  # what --half's autocast computes in


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
        borders: Borders | None = None,
        allow_truncated: bool = False,
        raw_wb: str = "camera",
    ) -> None:
        if tile is not None and tile < 0:
            raise DslrifyError(f"tile must be >= 0, got {tile}")
        if threads is not None:
            if threads < 1:
                raise DslrifyError(f"threads must be at least 1, got {threads}", "omit it to use every core")
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        if isinstance(model, EnhancementModel):
            self.model, self.config = model, dict[str, Any]()
            self.name = getattr(model, "label", type(model).__name__)
        else:
            self.model, self.config, self.name = resolve_model(model)
        self.model = self.model.to(self.device).eval()
        # How the photo's own edges are treated: "reflect" pads the photo by the receptive field with its
        # mirror image, so that no output pixel sees a convolution's zero padding (no frame around the
        # photo); "zero" runs the model as trained and released (imported DPED/PPCN are scored so). The
        # checkpoint's config.json says which, unless asked here.
        borders = borders or self.config.get("borders", "zero")
        if borders not in ("zero", "reflect"):
            raise DslrifyError(f"unknown border mode {borders!r}", "use 'zero' or 'reflect'")
        self.borders: Borders = borders
        self.tile = tile
        self.last_tile: int | None = None
        self.strength = _check_strength(strength)
        self.max_pixels = max_pixels
        self.allow_truncated = allow_truncated  # decode what a truncated file holds instead of refusing it
        if raw_wb not in WHITE_BALANCES:
            raise DslrifyError(
                f"RAW white balance {raw_wb!r} is unknown", f"use {' or '.join(WHITE_BALANCES)}"
            )
        self.raw_wb = raw_wb  # for RAW and DNG inputs (dslrify.raw)
        # Half-precision autocast: fp16 on CUDA; bfloat16 on CPUs that multiply it natively (AVX512-BF16 or
        # AMX: about twice as fast for the full-resolution networks; elsewhere it is emulated, slower than
        # float32, so refused). Convolutions gain; instance-norm statistics are taken in float32
        # (MomentsPass), contexts are handed out in float32, and outputs are blended in float32.
        if half and not (self.device.type == "cuda" or (self.device.type == "cpu" and native_bfloat16())):
            raise DslrifyError(
                f"--half needs a CUDA device or a CPU with native bfloat16 (AVX512-BF16 or AMX); "
                f"this {self.device.type} has neither",
                "drop --half (it would be slower here), or use --device cuda",
            )
        if half and not any(p.is_floating_point() for p in self.model.parameters()):
            raise DslrifyError(
                f"--half is for PyTorch networks; {self.name} has none (an ONNX model or a look)",
                "drop --half: such a model runs as it is",
            )
        self.half = half
        self._autocast = (self.device.type, torch.float16 if self.device.type == "cuda" else torch.bfloat16)

    # -- tensors ------------------------------------------------------------------------------
    def enhance_tensor(
        self, x: torch.Tensor, *, strength: float | None = None, context: Any = None
    ) -> torch.Tensor:
        """(N, 3, H, W) RGB -> (N, 3, H, W) float32 in [0, 1], on the CPU (big outputs never sit on a GPU).

        ``x`` is float in [0, 1], or uint8 / uint16 (a photo's native pixels, converted tile by tile).
        ``strength`` overrides the Enhancer's own for this call (0: the input, 1: the model's output).
        ``context``: one photo's whole-photo context from :meth:`context_of` (possibly smoothed over
        video frames) used instead of the photo's own; None: computed from ``x``.
        Safe to call from several threads at once on one Enhancer.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W), got {tuple(x.shape)}")
        if context is not None and x.shape[0] != 1:
            raise ValueError("a context belongs to one photo: pass a batch of one")
        strength = self.strength if strength is None else _check_strength(strength)
        return _cat([self._enhance_one(x[i : i + 1], strength, context) for i in range(x.shape[0])])

    def enhance_pixels(self, x: torch.Tensor, *, strength: float | None = None) -> torch.Tensor:
        """``enhance_tensor`` for a photo's native pixels: (1, 3, H, W) uint8 or uint16 in, the same dtype
        out, quantised tile by tile (a 100 MP photo never exists in float32 whole). Float in, float out.
        Rounds as ``write_photo`` does, so writing the result gives the same bytes as writing floats.
        A pointwise model with a native path (a look, at strength 1) maps the pixels without float.
        """
        strength = self.strength if strength is None else _check_strength(strength)
        out_dtype = x.dtype if x.dtype in (torch.uint8, torch.uint16) else torch.float32
        return _cat([self._enhance_one(x[i : i + 1], strength, None, out_dtype) for i in range(x.shape[0])])

    def context_of(self, x: torch.Tensor) -> Any:
        """The whole-photo context that :meth:`enhance_tensor` computes for ``x`` (1, 3, H, W), or None
        for a model without one; a caller may hold, blend or reuse it (video frames)."""
        spec, (h, w) = self.model.spec, x.shape[-2:]
        if spec.context == "none" or not spec.tileable:
            return None
        pad = self._border(h, w)
        ph, pw = h + 2 * pad, w + 2 * pad
        tile = self._choose_tile(h, w)
        with torch.inference_mode(), torch.autocast(*self._autocast, enabled=self.half):
            if spec.context == "moments" and tile is not None:
                tiles = plan_tiles(ph, pw, tile, spec.receptive_field, spec.size_multiple)
                context = self._moments_by_tiles(x, pad, tiles)
            elif spec.context == "thumbnail" and not pad:
                context = self.model.context_from_pixels(x, self._to_float)
            else:
                context = self.model.compute_context(self._crop(x, pad, 0, ph, 0, pw))
        if not self.half:
            return context
        # float32 whatever autocast produced: a caller blends contexts over video frames, and a running
        # average in fp16/bf16 rounds small steps away (an exposure change would never settle).
        return map_context(lambda t: t.float() if t.dtype in HALF_DTYPES else t, context)

    def _enhance_one(
        self, x: torch.Tensor, strength: float, context: Any = None, out_dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        native = self._native(x, strength, context)
        if native is not None:
            self.last_tile = None
            return native if native.dtype == out_dtype else unit_float(native)  # float wanted: exact
        tile = self._choose_tile(*x.shape[-2:])
        while True:
            try:
                with torch.inference_mode(), torch.autocast(*self._autocast, enabled=self.half):
                    y = self._run(x, tile, _Finish(strength, out_dtype), context)
                break
            except torch.OutOfMemoryError:
                # Only CUDA reports OOM as an exception we can recover from: retry with smaller tiles.
                if self.device.type != "cuda" or (tile is not None and tile <= MIN_TILE):
                    raise
                torch.cuda.empty_cache()
                tile = max(MIN_TILE, (tile or max(x.shape[-2:])) // 2)
        # What the last photo ran with (None: whole), for reports; with several threads, any one of them.
        self.last_tile = tile
        return y

    def _native(self, x: torch.Tensor, strength: float, context: Any) -> torch.Tensor | None:
        """A pointwise model's own result for native pixels (``EnhancementModel.enhance_native``), or
        None where the float path runs. Pointwise, it needs no tiles, borders or context; a strength
        below 1 blends in float, as every other model does."""
        spec = self.model.spec
        pointwise = spec.receptive_field == 0 and spec.context == "none" and not spec.needs_origin
        if not pointwise or strength != 1.0 or context is not None or x.is_floating_point():
            return None
        with torch.inference_mode():
            return self.model.enhance_native(x.cpu())

    def _pixel_budget(self, whole: bool = False) -> float:
        """How many pixels the model can run on at once within a share of the free memory.

        On a CPU the activations are capped as well, so that a 12 MP photo stays within about 2 GB of
        RSS (the photo, its output and the codec take ~0.7 GB more): 0.75 GB for tiles; ``whole``:
        1.5 GB for running a photo in one piece (photos up to about 1 MP even for DPED's generator).
        """
        share = 0.5 if self.device.type == "cuda" else 0.25
        budget = available_memory(self.device) * share
        if self.device.type == "cpu":
            budget = min(budget, (1.5 if whole else 0.75) * 1024**3)
        return budget / self.model.spec.bytes_per_pixel

    def _choose_tile(self, height: int, width: int) -> int | None:
        """None = run whole. Auto: the largest tile whose activations fit a share of free memory."""
        spec = self.model.spec
        if self.tile == 0 or not spec.tileable:
            return None
        if self.tile is not None:
            return self.tile if max(height, width) > self.tile else None
        if spec.receptive_field <= LOCAL_FIELD and spec.context != "moments":
            return POINTWISE_TILE if max(height, width) > POINTWISE_TILE else None
        if height * width <= self._pixel_budget(whole=True):
            return None
        side = int(math.sqrt(self._pixel_budget())) - 2 * spec.receptive_field
        return max(MIN_TILE, side)

    def _border(self, height: int, width: int) -> int:
        """Pixels of mirrored border added on each side (0 for ``borders="zero"``)."""
        if self.borders == "zero":
            return 0
        return max(0, min(self.model.spec.receptive_field, height - 1, width - 1))

    def _run(self, x: torch.Tensor, tile: int | None, finish: _Finish, context: Any = None) -> torch.Tensor:
        """(1, 3, H, W) -> (1, 3, H, W) on the CPU: whole, or tile by tile with a shared context (the
        caller's, e.g. a video frame's smoothed one, or the photo's own); each piece blended with its
        input and quantised by ``finish``.

        Works on the photo with its mirrored border (``_border``) as if it were the photo: coordinates
        below are in that padded frame, and only the photo's own pixels are written out.
        """
        model, spec = self.model, self.model.spec
        h, w = x.shape[-2:]
        pad = self._border(h, w)
        ph, pw = h + 2 * pad, w + 2 * pad
        if context is None and spec.context == "thumbnail" and not pad:
            # From the native pixels, whole or tiled alike: a thumbnail is made band by band, a sample
            # converts only itself. (A caller may give its own: a video frame's smoothed context.)
            context = model.context_from_pixels(x, self._to_float)
        if tile is None:
            y = model(self._crop(x, pad, 0, ph, 0, pw), context).float().cpu()
            return finish(y[:, :, pad : pad + h, pad : pad + w] if pad else y, x).contiguous()
        tiles = plan_tiles(ph, pw, tile, spec.receptive_field, spec.size_multiple)
        if context is not None:
            pass  # given by the caller, or made above
        elif spec.context == "thumbnail":
            context = model.compute_context(self._crop(x, pad, 0, ph, 0, pw))  # it shrinks it itself
        elif spec.context == "moments":
            context = self._moments_by_tiles(x, pad, tiles)
        out = torch.empty(x.shape, dtype=finish.dtype)
        for t in tiles:
            # The part of the tile's core that lies on the photo itself (not on the mirrored border).
            y0, y1, x0, x1 = max(t.y0, pad), min(t.y1, pad + h), max(t.x0, pad), min(t.x1, pad + w)
            if y0 >= y1 or x0 >= x1:
                continue
            origin = (t.cy0, t.cx0) if spec.needs_origin else None
            y = model(self._crop(x, pad, t.cy0, t.cy1, t.cx0, t.cx1), context, origin).float().cpu()
            core = (slice(None), slice(None), slice(y0 - pad, y1 - pad), slice(x0 - pad, x1 - pad))
            out[core] = finish(y[:, :, y0 - t.cy0 : y1 - t.cy0, x0 - t.cx0 : x1 - t.cx0], x[core])
        return out

    def _to_float(self, pixels: torch.Tensor) -> torch.Tensor:
        """Any part of a photo's native pixels -> float32 [0, 1] on the model's device."""
        return unit_float(pixels.to(self.device))

    def _crop(self, x: torch.Tensor, pad: int, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        """Rows y0:y1, columns x0:x1 of the photo with a mirrored border of ``pad`` pixels (coordinates
        in that padded frame), as float32 [0, 1] on the model's device. Only the crop is copied."""
        h, w = x.shape[-2:]
        rows, cols = _mirrored(y0 - pad, y1 - pad, h), _mirrored(x0 - pad, x1 - pad, w)
        crop = x[:, :, rows] if isinstance(rows, torch.Tensor) else x[:, :, rows[0] : rows[1]]
        crop = crop[..., cols] if isinstance(cols, torch.Tensor) else crop[..., cols[0] : cols[1]]
        return unit_float(crop.to(self.device))

    def _moments_by_tiles(self, x: torch.Tensor, pad: int, tiles: list[Tile]) -> MomentsContext:
        """The whole photo's statistics (instance norm), measured exactly over tiles.

        Statistic k depends on the activations before it, which depend on statistics 0..k-1, so they
        are measured one after the other: each round runs every tile up to the first unknown statistic
        (``NormProbe``), sums its activation and square over the tile's core (where the tile equals the
        whole-photo run) in float64, and turns the sums into a mean and a biased variance. A model with
        K statistics costs K partial passes before the real one (about 2.5x the compute for PPCN).
        """
        model = self.model
        known: list[Moments] = []
        while True:
            sums: tuple[torch.Tensor, torch.Tensor] | None = None
            for t in tiles:
                crop = self._crop(x, pad, t.cy0, t.cy1, t.cx0, t.cx1)
                try:
                    model.enhance(crop, MomentsContext(tuple(known), probe=True), None)
                except NormProbe as probe:
                    a = probe.activation
                    if a.shape[-2:] != crop.shape[-2:]:
                        raise ModelError(
                            f"{self.name}: a statistic is taken at {a.shape[-2]}x{a.shape[-1]}, not at the "
                            "photo's resolution, so tiles cannot measure it",
                            "run the photo whole with --tile 0",
                        ) from None
                    core = a[:, :, t.y0 - t.cy0 : t.y1 - t.cy0, t.x0 - t.cx0 : t.x1 - t.cx0].double()
                    s = (core.sum(dim=(2, 3)), core.square().sum(dim=(2, 3)))
                    sums = s if sums is None else (sums[0] + s[0], sums[1] + s[1])
                    continue
                return MomentsContext(tuple(known))  # a whole pass needed no more: all are known
            assert sums is not None
            n = (x.shape[-2] + 2 * pad) * (x.shape[-1] + 2 * pad)
            mean = sums[0] / n
            var = (sums[1] / n - mean.square()).clamp_min(0)
            known.append((mean.float()[..., None, None], var.float()[..., None, None]))

    # -- images -------------------------------------------------------------------------------
    @overload
    def enhance(self, image: np.ndarray) -> np.ndarray: ...
    @overload
    def enhance(self, image: Image.Image) -> Image.Image: ...
    def enhance(self, image: np.ndarray | Image.Image) -> np.ndarray | Image.Image:
        """Enhance a PIL image or a numpy array (HxWx3/4 or HxW; uint8, uint16 or float in [0,1]).

        Returns the same type, mode, dtype and layout; alpha is passed through untouched.
        """
        if isinstance(image, np.ndarray):
            photo, dtype = from_array(image)
            return to_array(photo, self.enhance_tensor(photo.pixels), dtype)
        if isinstance(image, Image.Image):
            photo = from_pil(image)
            return to_pil(photo, self.enhance_tensor(photo.pixels))
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")

    def enhance_file(
        self, src: str | os.PathLike, dst: str | os.PathLike, *, quality: int = 95, overwrite: bool = False
    ) -> Path:
        """Read ``src``, enhance it, write ``dst`` (format from its extension) keeping EXIF/ICC/XMP."""
        src, dst = Path(src), Path(dst)
        check_output(src, dst, overwrite)
        photo = read_photo(
            src, max_pixels=self.max_pixels, allow_truncated=self.allow_truncated, raw_wb=self.raw_wb
        )
        write_photo(dst, photo, self.enhance_pixels(photo.pixels), quality=quality)
        return dst

    def enhance_video(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        *,
        crf: int | None = None,
        codec: str | None = None,
        overwrite: bool = False,
        on_frame: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Enhance the clip ``src`` into ``dst`` (same container), temporally smoothed, keeping timing,
        rotation, audio and tags; see :mod:`dslrify.video` (and ``enhanced_frames`` for pipelines)."""
        from dslrify.video import VideoOptions, enhance_video

        options = VideoOptions(crf=crf, codec=codec)
        return enhance_video(self, src, dst, options=options, overwrite=overwrite, on_frame=on_frame)

    def enhance_files(
        self,
        jobs: Iterable[tuple[Path, Path]],
        *,
        quality: int = 95,
        overwrite: bool = False,
        on_done: Callable[[Path, Path, BaseException | None, float], None] | None = None,
    ) -> Generator[tuple[Path, Path, BaseException | None], None, None]:
        """Enhance many files; decoding the next photo and encoding the last overlap the model's work.

        Yields ``(src, dst, error)`` per job in order; an error (DslrifyError) does not stop the batch.
        """
        jobs = list(jobs)
        with ThreadPoolExecutor(max_workers=1) as reader, ThreadPoolExecutor(max_workers=1) as writer:

            def read(job: tuple[Path, Path]) -> Photo:
                check_output(job[0], job[1], overwrite)
                return read_photo(
                    job[0],
                    max_pixels=self.max_pixels,
                    allow_truncated=self.allow_truncated,
                    raw_wb=self.raw_wb,
                )

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
                    out = self.enhance_pixels(photo.pixels)
                    result = writer.submit(write_photo, job[1], photo, out, quality=quality)
                    del photo, out  # the writer's now; else they would live through the next model run
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
    def _finish(
        pending: tuple[tuple[Path, Path], Future[Any], float],
        on_done: Callable[[Path, Path, BaseException | None, float], None] | None,
    ) -> tuple[Path, Path, BaseException | None]:
        (src, dst), future, start = pending
        error = None
        try:
            future.result()
        except DslrifyError as e:
            error = e
        if on_done:
            on_done(src, dst, error, time.perf_counter() - start)
        return src, dst, error


@dataclass(frozen=True)
class _Finish:
    """What happens to each piece of output: blended with its input (``strength``), then stored as
    ``dtype`` (uint8/uint16: rounded as ``photo.write_photo`` rounds, half to even)."""

    strength: float
    dtype: torch.dtype

    def __call__(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y`` (N, 3, h, w) float32 model output for input pixels ``x`` (any dtype), same shape."""
        if self.strength != 1.0:
            y = torch.lerp(unit_float(x), y, self.strength)
        if self.dtype == torch.float32:
            return y
        top = 255 if self.dtype == torch.uint8 else 65535
        return y.clamp(0, 1).mul_(top).round_().to(self.dtype)


def _cat(pieces: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along the batch, without copying a lone photo (12 MP: 146 MB of float32)."""
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def _mirrored(start: int, stop: int, size: int) -> tuple[int, int] | torch.Tensor:
    """Indices ``start..stop-1`` of an axis of ``size`` mirrored at its ends (``F.pad``'s "reflect":
    -1 -> 1, size -> size - 2); a plain (start, stop) range when nothing falls outside."""
    if start >= 0 and stop <= size:
        return (start, stop)
    i = torch.arange(start, stop).abs()
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise DslrifyError(f"strength must be between 0 and 1, got {strength}", "use a value from 0 to 1")
    return float(strength)
