"""Clip files through PyAV: opening and decoding (``Source``), encoding and muxing (``Sink``).

What a written clip keeps, and what is refused, is listed in :mod:`dslrify.video`. Here:

* Pixels: frames are converted to RGB with the clip's own YUV matrix and range (its tags, or FFmpeg's
  guess from the frame size when untagged), and back with the same, so a clip that is not enhanced
  (strength 0) comes back with its colours. 8-bit video becomes uint8 RGB, deeper video uint16 RGB.
* The output stream is opened when the first frame arrives: its size, bit depth, colour tags and
  display rotation are the first frame's. Packets of copied streams that arrive before it wait.
* Both sides run in their own thread and talk through bounded queues (``get_item``/``put_item`` give
  up when the pipeline is stopped); an error is handed on as an item, never printed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import ColorRange

from dslrify.errors import DslrifyError, PhotoError, first_line

DEFAULT_CRF: dict[str, int] = {"libx264": 18, "libx265": 20, "libvpx-vp9": 31, "libsvtav1": 30}
HDR_TRANSFERS = {16: "PQ (SMPTE ST 2084)", 18: "HLG (ARIB STD-B67)"}
_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_KEPT_TAGS = ("creation_time", "language", "title", "handler_name")
END = object()


@dataclass(frozen=True)
class Look:
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


@contextmanager
def video_errors(path: Path, writing: bool = False) -> Iterator[None]:
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


def _look(frame: av.VideoFrame) -> Look:
    """How ``frame`` is stored (its clip's first frame stands for all)."""
    deep = max(c.bits for c in frame.format.components) > 8
    return Look(
        frame.width, frame.height, deep, frame.format.name, int(frame.colorspace), int(frame.color_range),
        int(frame.color_primaries), int(frame.color_trc), int(frame.rotation),
    )  # fmt: skip


def check_sdr(path: Path, transfer: int) -> None:
    """Refuse an HDR transfer (``transfer``: FFmpeg's AVColorTransferCharacteristic) with advice."""
    if transfer in HDR_TRANSFERS:
        raise PhotoError(
            f"{path}: HDR video ({HDR_TRANSFERS[transfer]}) is not supported",
            "the models are trained on SDR photos: export or record the clip as SDR (iPhone: share with "
            "'Most Compatible', or turn off HDR Video) and enhance that",
        )


def _to_tensor(frame: av.VideoFrame, look: Look) -> torch.Tensor:
    """A decoded frame -> (1, 3, H, W) RGB uint8, or uint16 for deep video, via the clip's own matrix."""
    rgb = frame.to_ndarray(
        format="rgb48le" if look.deep else "rgb24",
        src_colorspace=look.matrix,
        dst_colorspace=look.matrix,
        src_color_range=look.range,
        dst_color_range=ColorRange.JPEG,
    )
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()[None]


def _to_frame(pixels: torch.Tensor, look: Look, pix_fmt: str) -> av.VideoFrame:
    """(1, 3, H, W) float in [0, 1] -> a frame in the encoder's ``pix_fmt``, matrix and range."""
    # Rounded and narrowed planar first (the model's layout), then interleaved: the copy moves 1-2 bytes
    # per sample instead of 4.
    if look.deep:
        chw = pixels[0].mul(65535).round_().to(torch.int32).numpy().astype(np.uint16)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(chw.transpose(1, 2, 0)), format="rgb48le")
    else:
        hwc = pixels[0].mul(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous()
        frame = av.VideoFrame.from_ndarray(hwc.numpy(), format="rgb24")
    return frame.reformat(
        format=pix_fmt,
        src_colorspace=look.matrix,
        dst_colorspace=look.matrix,
        src_color_range=ColorRange.JPEG,
        dst_color_range=look.range,
    )


def get_item(q: queue.Queue[Any], stop: threading.Event) -> Any:
    """The next item, or ``END`` once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return END


def put_item(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; returns whether it was put."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class Source:
    """An open input clip: its video stream, the streams to copy, and how many frames it promises."""

    def __init__(self, path: Path, copy_streams: bool, allow_truncated: bool) -> None:
        self.path, self.allow_truncated = path, allow_truncated
        with video_errors(path):
            self.container = av.open(str(path), "r")
        try:
            if not self.container.streams.video:
                raise PhotoError(f"{path}: no video stream in this file", "name a video clip")
            self.video = self.container.streams.video[0]
            self.video.thread_type = "AUTO"  # frame-parallel decoding
            check_sdr(path, int(self.video.codec_context.color_trc))
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
        """Reader thread: ``(frame index, tensor, frame, look)`` and packets to copy, then ``END``."""
        item: Any = END
        try:
            with video_errors(self.path):
                look: Look | None = None
                packets = index = 0
                last = 0.0  # time of the last frame decoded, in seconds
                for packet in self.container.demux([self.video, *self.copied]):
                    if stop.is_set():
                        return
                    if packet.stream is not self.video:
                        if packet.dts is not None and not put_item(out, packet, stop):
                            return
                        continue
                    packets += packet.size > 0
                    for frame in packet.decode():
                        if not isinstance(frame, av.VideoFrame):
                            continue
                        if look is None:
                            look = _look(frame)
                            check_sdr(self.path, look.color_trc)
                        if not put_item(
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
        put_item(out, item, stop)

    def _check_complete(self, packets: int, last: float) -> None:
        """Refuse a clip whose index promises more video than was read: more frames (MP4, MOV), or a
        longer video track (Matroska and WebM's DURATION tag) than the last frame's time."""
        promised: float = self.video.frames
        have: float = packets
        what = "video frames"
        if not promised and (seconds := _seconds(self.video.metadata.get("DURATION", ""))):
            rate = float(self.video.guessed_rate or 30)
            promised, what = seconds, "seconds of video"
            have = last + 3 / rate  # the last frame starts one frame before the end; two more of slack
        if promised and have < promised:
            raise PhotoError(
                f"{self.path}: truncated: {min(have, promised):.3g} of {promised:.3g} {what} are there",
                "copy the clip again, or pass --allow-truncated to enhance what is there",
            )


def _seconds(tag: str) -> float | None:
    """``HH:MM:SS.fraction`` (Matroska's DURATION tag) in seconds; None if it is not one."""
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


class Sink:
    """The output clip, opened when the first frame shows its size, depth, colour tags and rotation."""

    def __init__(
        self, path: Path, fmt: str, source: Source, codec: str | None, crf: int | None, preset: str
    ) -> None:
        self.path, self.fmt, self.source = path, fmt, source
        self.codec, self.crf, self.preset = codec, crf, preset
        self.container: Any = None
        self.stream: Any = None
        self.copies: dict[int, Any] = {}
        self.waiting: list[av.Packet] = []  # packets read before the first frame

    def write(self, items: queue.Queue[Any], stop: threading.Event, failed: list[BaseException]) -> None:
        """Writer thread: encode frames and mux packets until ``END``; errors go to ``failed``."""
        try:
            with video_errors(self.path, writing=True):
                while (item := get_item(items, stop)) is not END:
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

    def _encode(self, pixels: torch.Tensor, pts: int | None, time_base: Fraction | None, look: Look) -> None:
        if self.stream is None:
            self._open(look)
        frame = _to_frame(pixels, look, self.stream.pix_fmt)
        frame.pts, frame.time_base = pts, time_base
        self.container.mux(self.stream.encode(frame))
        while self.waiting:
            self._mux(self.waiting.pop(0))

    def _open(self, look: Look) -> None:
        src, video = self.source.container, self.source.video
        name = self.codec or ("libvpx-vp9" if self.fmt == "webm" else "libx264")
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
        crf = self.crf if self.crf is not None else DEFAULT_CRF.get(name)
        stream.options = _encoder_options(name, crf, self.preset)
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
