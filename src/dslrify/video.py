"""Enhancing video clips in process with PyAV (FFmpeg's libraries): decode, enhance, encode, remux.

Rules, in and out:

* Containers: .mp4, .m4v, .mov, .mkv, .webm, in any codec FFmpeg decodes (H.264, HEVC, VP9, AV1). The
  output keeps its input's container; the format is always given to the muxer (the temporary file of
  ``files.atomic_path`` has no extension).
* Encoding: H.264 (libx264, preset ``veryfast``), VP9 (libvpx-vp9) for .webm; ``codec`` picks another
  encoder, ``crf`` its quality (default per encoder, :data:`DEFAULT_CRF`).
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
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import torch
from av.video.reformatter import ColorRange

from dslrify.errors import DslrifyError, PhotoError, first_line
from dslrify.files import atomic_path
from dslrify.temporal import FrameContext

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
DEFAULT_CRF: dict[str, int] = {"libx264": 18, "libx265": 20, "libvpx-vp9": 31, "libsvtav1": 30}
QUEUE_FRAMES = 4
HDR_TRANSFERS = {16: "PQ (SMPTE ST 2084)", 18: "HLG (ARIB STD-B67)"}
_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_KEPT_TAGS = ("creation_time", "language", "title", "handler_name")
_END = object()
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


@dataclass(frozen=True)
class _Look:
    """How a clip's frames are stored, from its first frame: what the output must keep."""

    width: int
    height: int
    deep: bool  # more than 8 bits per sample
    pix_fmt: str
    colorspace: int
    color_range: int
    color_primaries: int
    color_trc: int
    rotation: int

    @property
    def matrix(self) -> str:
        """The YUV matrix (swscale's name): the tagged one, else FFmpeg's guess from the frame size."""
        return _MATRICES.get(self.colorspace, "ITU709" if self.height >= 720 else "ITU601")

    @property
    def range(self) -> ColorRange:
        return ColorRange.JPEG if self.color_range == 2 else ColorRange.MPEG


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_FORMATS


@contextmanager
def _errors(path: Path, writing: bool = False) -> Iterator[None]:
    """FFmpeg's errors as one-line PhotoErrors that say what to do."""
    try:
        yield
    except av.error.FFmpegError as e:
        reason = getattr(e, "strerror", None) or first_line(e)
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, av.error.InvalidDataError):
            raise PhotoError(f"{path}: {reason}", "check the path, its permissions and the free space") from e
        if writing:
            raise PhotoError(f"{path}: cannot encode ({reason})", "try another --codec or --crf") from e
        raise PhotoError(
            f"{path}: damaged or not a video ({reason})", "the file is damaged or incomplete: copy it again"
        ) from e


def _look(frame: av.VideoFrame) -> _Look:
    deep = max(c.bits for c in frame.format.components) > 8
    return _Look(
        frame.width, frame.height, deep, frame.format.name, int(frame.colorspace), int(frame.color_range),
        int(frame.color_primaries), int(frame.color_trc), int(frame.rotation),
    )  # fmt: skip


def _check_sdr(path: Path, transfer: int) -> None:
    if transfer in HDR_TRANSFERS:
        raise PhotoError(
            f"{path}: HDR video ({HDR_TRANSFERS[transfer]}) is not supported",
            "the models are trained on SDR photos: export or record the clip as SDR (iPhone: share with "
            "'Most Compatible', or turn off HDR Video) and enhance that",
        )


def _to_tensor(frame: av.VideoFrame, look: _Look) -> torch.Tensor:
    """A decoded frame -> (1, 3, H, W) RGB uint8, or uint16 for deep video, via the clip's own matrix."""
    rgb = frame.to_ndarray(
        format="rgb48le" if look.deep else "rgb24",
        src_colorspace=look.matrix,
        dst_colorspace=look.matrix,
        src_color_range=look.range,
        dst_color_range=ColorRange.JPEG,
    )
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()[None]


def _to_frame(pixels: torch.Tensor, look: _Look, pix_fmt: str) -> av.VideoFrame:
    """(1, 3, H, W) float in [0, 1] -> a frame in the encoder's ``pix_fmt``, matrix and range."""
    hwc = pixels[0].permute(1, 2, 0)
    if look.deep:
        frame = av.VideoFrame.from_ndarray(
            hwc.mul(65535).round_().numpy().astype(np.uint16), format="rgb48le"
        )
    else:
        frame = av.VideoFrame.from_ndarray(hwc.mul(255).round_().numpy().astype(np.uint8), format="rgb24")
    return frame.reformat(
        format=pix_fmt,
        src_colorspace=look.matrix,
        dst_colorspace=look.matrix,
        src_color_range=ColorRange.JPEG,
        dst_color_range=look.range,
    )


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    """The next item, or ``_END`` once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return _END


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Source:
    """An open input clip: its video stream, the streams to copy, and how many frames it promises."""

    def __init__(self, path: Path, copy_streams: bool, allow_truncated: bool) -> None:
        self.path, self.allow_truncated = path, allow_truncated
        with _errors(path):
            self.container = av.open(str(path), "r")
        try:
            if not self.container.streams.video:
                raise PhotoError(f"{path}: no video stream in this file", "name a video clip")
            self.video = self.container.streams.video[0]
            self.video.thread_type = "AUTO"  # frame-parallel decoding
            _check_sdr(path, int(self.video.codec_context.color_trc))
            kinds = ("audio", "subtitle") if copy_streams else ()
            self.copied = [s for s in self.container.streams if s.type in kinds]
            rate = self.video.average_rate or self.video.guessed_rate
            duration, time_base = self.video.duration, self.video.time_base
            seconds = float(duration * time_base) if duration and time_base else None
            self.expected: int | None = self.video.frames or (
                round(seconds * rate) if seconds and rate else None
            )
        except BaseException:
            self.container.close()
            raise

    def read(self, out: queue.Queue[Any], stop: threading.Event) -> None:
        """Reader thread: ``(frame index, tensor, frame, look)`` and packets to copy, then ``_END``."""
        item: Any = _END
        try:
            with _errors(self.path):
                look: _Look | None = None
                packets = index = 0
                last = 0.0  # time of the last frame decoded, in seconds
                for packet in self.container.demux([self.video, *self.copied]):
                    if stop.is_set():
                        return
                    if packet.stream is not self.video:
                        if packet.dts is not None and not _put(out, packet, stop):
                            return
                        continue
                    packets += packet.size > 0
                    for frame in packet.decode():
                        if not isinstance(frame, av.VideoFrame):
                            continue
                        if look is None:
                            look = _look(frame)
                            _check_sdr(self.path, look.color_trc)
                        if not _put(
                            out, (index, _to_tensor(frame, look), frame.pts, frame.time_base, look), stop
                        ):
                            return
                        index += 1
                        last = max(last, float(frame.time or 0.0))
                if not self.allow_truncated:
                    self._check_complete(packets, last)
                if index == 0:
                    raise PhotoError(f"{self.path}: no frame could be decoded", "the file is damaged")
        except BaseException as e:  # handed to the caller's thread, which raises it
            item = e
        _put(out, item, stop)

    def _check_complete(self, packets: int, last: float) -> None:
        """Refuse a clip whose index promises more video than was read: more frames (MP4, MOV), or a
        longer video track (Matroska and WebM's DURATION tag) than the last frame's time."""
        promised, what = self.video.frames, "video frames"
        have: float = packets
        if not promised and (seconds := _seconds(self.video.metadata.get("DURATION", ""))):
            rate = float(self.video.guessed_rate or 30)
            promised, what = seconds, "seconds of video"
            have = last + 3 / rate  # the last frame starts one frame before the end; two more of slack
        if promised and have < promised:
            raise PhotoError(
                f"{self.path}: truncated: {min(have, promised):.4g} of {promised:.4g} {what} are there",
                "copy the clip again, or pass --allow-truncated to enhance what is there",
            )


def _seconds(tag: str) -> float | None:
    """``HH:MM:SS.fraction`` (Matroska's DURATION tag) in seconds; None if it is not one."""
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _frames(
    enhancer: Enhancer, source: _Source, options: VideoOptions
) -> Iterator[tuple[EnhancedFrame, _Look] | av.Packet]:
    """Run the reader thread and the model: enhanced frames (with their decoded frame) and packets to
    copy, in file order. Closing the generator stops the reader."""
    items: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
    stop = threading.Event()
    reader = threading.Thread(target=source.read, args=(items, stop), name="dslrify-decode", daemon=True)
    reader.start()
    context = FrameContext(enhancer, every=options.context_every, smoothing=options.smoothing)
    try:
        while (item := _get(items, stop)) is not _END:
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
    source = _Source(Path(src), copy_streams=False, allow_truncated=enhancer.allow_truncated)
    try:
        for item in _frames(enhancer, source, options or VideoOptions()):
            if not isinstance(item, av.Packet):
                yield item[0]
    finally:
        source.container.close()


class _Sink:
    """The output clip, opened when the first frame shows its size, depth, colour tags and rotation."""

    def __init__(self, path: Path, fmt: str, source: _Source, options: VideoOptions) -> None:
        self.path, self.fmt, self.source, self.options = path, fmt, source, options
        self.container: Any = None
        self.stream: Any = None
        self.copies: dict[int, Any] = {}
        self.waiting: list[av.Packet] = []  # packets read before the first frame

    def write(self, items: queue.Queue[Any], stop: threading.Event, failed: list[BaseException]) -> None:
        """Writer thread: encode frames and mux packets until ``_END``; errors go to ``failed``."""
        try:
            with _errors(self.path, writing=True):
                while (item := _get(items, stop)) is not _END:
                    if isinstance(item, av.Packet):
                        self._mux(item)
                    else:
                        self._encode(*item)
                if stop.is_set():
                    return
                if self.stream is not None:
                    self.container.mux(self.stream.encode(None))
                for packet in self.waiting:
                    self._mux(packet)
        except BaseException as e:
            failed.append(e)
            stop.set()

    def _mux(self, packet: av.Packet) -> None:
        if self.stream is None:
            self.waiting.append(packet)
            return
        packet.stream = self.copies[packet.stream.index]
        self.container.mux(packet)

    def _encode(self, enhanced: EnhancedFrame, look: _Look) -> None:
        if self.stream is None:
            self._open(look)
        frame = _to_frame(enhanced.pixels, look, self.stream.pix_fmt)
        frame.pts, frame.time_base = enhanced.pts, enhanced.time_base
        self.container.mux(self.stream.encode(frame))
        while self.waiting:
            self._mux(self.waiting.pop(0))

    def _open(self, look: _Look) -> None:
        src, video = self.source.container, self.source.video
        name = self.options.codec or ("libvpx-vp9" if self.fmt == "webm" else "libx264")
        codec = check_encoder(name)
        formats = [f.name for f in codec.video_formats or ()]
        wanted = [look.pix_fmt, "yuv420p10le" if look.deep else "yuv420p"]
        pix_fmt = next((f for f in wanted if f in formats), None)
        if pix_fmt is None:
            depth = "10-bit" if look.deep else "8-bit"
            raise DslrifyError(
                f"{self.path.name}: the {name} encoder cannot write this {depth} video",
                "choose --codec libx264 or libx265 (8 and 10 bit), or libsvtav1 for .webm",
            )
        self.container = av.open(str(self.path), "w", format=self.fmt)
        self.container.metadata.update(
            {
                k: v
                for k, v in src.metadata.items()
                if k not in ("encoder", "major_brand", "minor_version", "compatible_brands")
            }
        )
        rate = video.average_rate or video.guessed_rate or Fraction(30)
        stream = self.container.add_stream(name, rate=rate)
        stream.width, stream.height, stream.pix_fmt = look.width, look.height, pix_fmt
        stream.time_base = stream.codec_context.time_base = video.time_base
        if video.sample_aspect_ratio:
            stream.sample_aspect_ratio = video.sample_aspect_ratio
        cc = stream.codec_context
        cc.colorspace, cc.color_range = look.colorspace, look.color_range
        cc.color_primaries, cc.color_trc = look.color_primaries, look.color_trc
        crf = self.options.crf if self.options.crf is not None else DEFAULT_CRF.get(name)
        stream.options = _encoder_options(name, crf, self.options.preset)
        stream.metadata.update({k: v for k, v in video.metadata.items() if k in _KEPT_TAGS})
        if look.rotation:
            stream.set_display_rotation(look.rotation)
        for s in self.source.copied:
            self.copies[s.index] = self.container.add_stream_from_template(s)
            self.copies[s.index].metadata.update(s.metadata)
        self.stream = stream


def check_encoder(name: str) -> av.Codec:
    """The video encoder called ``name``, or a DslrifyError that names the usual ones."""
    try:
        codec = av.codec.Codec(name, "w")
    except (av.error.FFmpegError, ValueError) as e:
        raise DslrifyError(
            f"--codec {name}: no such encoder in this FFmpeg", "try libx264, libx265, libvpx-vp9 or libsvtav1"
        ) from e
    if codec.type != "video":
        raise DslrifyError(
            f"--codec {name} is a {codec.type} encoder", "choose a video encoder such as libx264"
        )
    return codec


def _encoder_options(name: str, crf: int | None, preset: str) -> dict[str, str]:
    """The encoder's private options for a quality (crf) and speed (preset)."""
    options = {} if crf is None else {"crf": str(crf)}
    if name in ("libx264", "libx265"):
        options["preset"] = preset
    if name == "libx264":
        # No B-frames: x264 codes them at a coarser quantiser, and the mean colour then pulses every other
        # frame (tripling the flicker measure of a clip enhanced with strength 0); ~25% larger files.
        options["x264-params"] = "bframes=0"
    if name == "libx265":
        options["x265-params"] = "log-level=error"
    if name == "libvpx-vp9":
        options.update({"b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"})
    return options


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
    source = _Source(src, copy_streams=True, allow_truncated=enhancer.allow_truncated)
    try:
        with atomic_path(dst) as tmp:
            sink = _Sink(tmp, fmt, source, options)
            _pipe(_frames(enhancer, source, options), sink, source.expected, on_frame)
    finally:
        source.container.close()
    return dst


def _pipe(frames: Iterator[Any], sink: _Sink, expected: int | None, on_frame: OnFrame | None) -> None:
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
            if not _put(items, item, stop):
                break
            if not isinstance(item, av.Packet):
                done += 1
                if on_frame:
                    on_frame(done, expected)
        _put(items, _END, stop)
    except BaseException:
        stop.set()
        raise
    finally:
        frames.close()  # type: ignore[attr-defined]
        writer.join()
        if sink.container is not None:
            try:
                sink.container.close()  # writes the index; the output is removed anyway after an error
            except av.error.FFmpegError as e:
                failed.append(e)
    if failed:
        with _errors(sink.path, writing=True):
            raise failed[0]
    if sink.container is None:
        raise PhotoError(f"{sink.source.path}: no frame could be decoded", "the file is damaged")
