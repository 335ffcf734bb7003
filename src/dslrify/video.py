"""Enhancing video clips in process with PyAV (FFmpeg's libraries): decode, enhance, encode, remux.

Rules, in and out:

* Containers: .mp4, .m4v, .mov, .mkv, .webm, in any codec FFmpeg decodes (H.264, HEVC, VP9, AV1). The
  output keeps its input's container; the format is always given to the muxer (the temporary file of
  ``files.atomic_path`` has no extension).
* Encoding: H.264 (libx264, preset ``veryfast``), VP9 (libvpx-vp9) for .webm; ``codec`` picks another
  encoder, ``crf`` its quality (default per encoder, :data:`dslrify.video_io.DEFAULT_CRF`).
* Kept: resolution, frame rate and every frame's timestamp (a variable frame rate stays variable), the
  display rotation, the colour tags (matrix, range, primaries, transfer), the creation time and other
  container tags, and every audio and subtitle stream, copied packet for packet. Data streams (camera
  telemetry) are dropped.
* Bit depth: 8-bit video goes through the model as 8-bit RGB and comes out 8-bit; 10-bit (and deeper)
  goes through 16-bit RGB and comes out 10-bit (``yuv420p10le``, or the input's own layout).
* HDR (PQ or HLG transfer) is refused with advice: the models are trained on SDR photos, and their
  output is not an HDR grade.
* Damage: a clip FFmpeg cannot open or decode, or whose index promises more video than the file holds
  (truncated), is a one-line PhotoError and leaves no output; ``allow_truncated`` enhances what is there.
* Flow: a reader thread decodes, the caller's thread runs the model, a writer thread encodes and
  muxes; queues of :data:`QUEUE_FRAMES` frames between them, so memory does not grow with the clip.
* Temporal stability: each frame's model context comes from :class:`dslrify.temporal.FrameContext`.
* Files: :mod:`dslrify.video_io` opens, decodes, encodes and muxes them.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import torch

from dslrify.errors import DslrifyError, PhotoError
from dslrify.files import atomic_path
from dslrify.temporal import FrameContext
from dslrify.video_io import END, Look, Sink, Source, get_item, put_item, video_errors

if TYPE_CHECKING:
    from dslrify.enhancer import Enhancer

#: Video extensions and the muxer that writes each.
VIDEO_FORMATS: dict[str, str] = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
}
QUEUE_FRAMES = 4  # frames waiting between the threads: decoded ahead, and enhanced for the encoder
OnFrame = Callable[[int, "int | None"], None]  # (frames done, frames expected or None)


@dataclass(frozen=True)
class VideoOptions:
    """How clips are encoded and smoothed: ``crf`` None = the encoder's default in ``DEFAULT_CRF``;
    ``codec`` None = libx264, or libvpx-vp9 for .webm; ``context_every``/``smoothing``: see
    :class:`~dslrify.temporal.FrameContext`."""

    crf: int | None = None
    codec: str | None = None
    preset: str = "veryfast"
    context_every: int = 8
    smoothing: float = 0.25


@dataclass(frozen=True)
class EnhancedFrame:
    """One enhanced frame: ``pixels`` (1, 3, H, W) float32 RGB in [0, 1] (before display rotation),
    shown at ``time`` seconds (``pts`` in the stream's ``time_base``)."""

    index: int
    time: float
    pts: int | None
    time_base: Fraction | None
    pixels: torch.Tensor


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video clip (by its extension, as photos are recognised)."""
    return Path(path).suffix.lower() in VIDEO_FORMATS


def _frames(
    enhancer: Enhancer, source: Source, options: VideoOptions
) -> Generator[tuple[EnhancedFrame, Look] | av.Packet, None, None]:
    """Run the reader thread and the model: enhanced frames (with how their clip stores frames) and
    packets to copy, in file order. Closing the generator stops the reader."""
    items: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
    stop = threading.Event()
    reader = threading.Thread(target=source.read, args=(items, stop), name="dslrify-decode", daemon=True)
    reader.start()
    context = FrameContext(enhancer, every=options.context_every, smoothing=options.smoothing)
    try:
        while (item := get_item(items, stop)) is not END:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, av.Packet):
                yield item
                continue
            index, pixels, pts, time_base, look = item
            rate = source.video.guessed_rate or 30
            time = float(pts * time_base) if pts is not None and time_base else index / float(rate)
            out = enhancer.enhance_tensor(pixels, context=context(pixels, time))
            yield EnhancedFrame(index, time, pts, time_base, out), look
    finally:
        stop.set()
        reader.join()


def enhanced_frames(
    enhancer: Enhancer, src: str | os.PathLike, options: VideoOptions | None = None
) -> Iterator[EnhancedFrame]:
    """Enhance a clip frame by frame for a pipeline: yields :class:`EnhancedFrame` in display order,
    temporally smoothed as :func:`enhance_video` does; decoding runs ahead in a thread."""
    source = Source(Path(src), copy_streams=False, allow_truncated=enhancer.allow_truncated)
    try:
        for item in _frames(enhancer, source, options or VideoOptions()):
            if not isinstance(item, av.Packet):
                yield item[0]
    finally:
        source.container.close()


def enhance_video(
    enhancer: Enhancer,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    options: VideoOptions | None = None,
    overwrite: bool = False,
    on_frame: OnFrame | None = None,
) -> Path:
    """Enhance the clip ``src`` into ``dst`` (same container as ``dst``'s extension), keeping timing,
    rotation, tags, audio and subtitles (see the module docstring). ``on_frame(done, expected)`` after
    each frame. The output appears whole or not at all."""
    from dslrify.batch import check_output  # batch plans videos too: it imports this module

    src, dst = Path(src), Path(dst)
    fmt = VIDEO_FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise DslrifyError(f"{dst}: not a video extension", f"use one of {', '.join(VIDEO_FORMATS)}")
    check_output(src, dst, overwrite)
    options = options or VideoOptions()
    source = Source(src, copy_streams=True, allow_truncated=enhancer.allow_truncated)
    try:
        with atomic_path(dst) as tmp:
            sink = Sink(tmp, fmt, source, options.codec, options.crf, options.preset)
            _pipe(_frames(enhancer, source, options), sink, source.expected, on_frame)
    finally:
        source.container.close()
    return dst


def _pipe(
    frames: Generator[tuple[EnhancedFrame, Look] | av.Packet, None, None],
    sink: Sink,
    expected: int | None,
    on_frame: OnFrame | None,
) -> None:
    """Feed the writer thread from ``frames``; raise the first error of either side."""
    items: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
    stop, failed = threading.Event(), list[BaseException]()
    writer = threading.Thread(
        target=sink.write, args=(items, stop, failed), name="dslrify-encode", daemon=True
    )
    writer.start()
    done = 0
    try:
        for item in frames:
            if isinstance(item, av.Packet):
                if not put_item(items, item, stop):
                    break
                continue
            frame, look = item
            if not put_item(items, (frame.pixels, frame.pts, frame.time_base, look), stop):
                break
            done += 1
            if on_frame:
                on_frame(done, expected)
        put_item(items, END, stop)
    except BaseException:
        stop.set()
        raise
    finally:
        frames.close()
        writer.join()
        if sink.container is not None:
            try:
                sink.container.close()  # writes the index; the output is removed anyway after an error
            except av.error.FFmpegError as e:
                failed.append(e)
    if failed:
        with video_errors(sink.path, writing=True):
            raise failed[0]
    if sink.container is None:
        raise PhotoError(f"{sink.source.path}: no frame could be decoded", "the file is damaged")
