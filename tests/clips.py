"""Small test clips written with PyAV: frames from a function, optional rotation, audio, timestamps.

Every clip is at most 320x240 and 2 s. ``write_clip(path, frames, ...)`` takes an iterable of HxWx3
uint8 (or uint16 for ``deep``) RGB arrays; ``pts`` (in ``1/TIME_BASE`` s) makes the frame rate variable.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

TIME_BASE = Fraction(1, 90000)
FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".m4v": "mp4"}


def write_clip(
    path: Path,
    frames: Iterable[np.ndarray],
    *,
    rate: int = 25,
    pts: Sequence[int] | None = None,
    rotation: int = 0,
    audio: float = 0.0,
    deep: bool = False,
    codec: str | None = None,
    transfer: int | None = None,
    creation_time: str | None = None,
    faststart: bool = False,
) -> Path:
    """Write ``frames`` to ``path`` (container from the extension): H.264 (VP9 for .webm), near-lossless,
    with ``audio`` seconds of a 440 Hz tone in AAC (Opus for .webm) when it is > 0."""
    fmt = FORMATS[path.suffix.lower()]
    frames = list(frames)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        if creation_time:
            out.metadata["creation_time"] = creation_time
        video = _video(out, fmt, frames, rate, rotation, deep, codec, transfer) if frames else None
        sound = out.add_stream("libopus" if fmt == "webm" else "aac", rate=48000) if audio > 0 else None
        if video is not None:
            step = round(1 / (rate * TIME_BASE))
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if deep else "rgb24")
                frame.pts, frame.time_base = (pts[i] if pts is not None else i * step), TIME_BASE
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
        if sound is not None:
            _audio(out, sound, audio)
    return path


def _video(
    out: av.container.OutputContainer,
    fmt: str,
    frames: list[np.ndarray],
    rate: int,
    rotation: int,
    deep: bool,
    codec: str | None,
    transfer: int | None,
) -> av.video.stream.VideoStream:
    h, w = frames[0].shape[:2]
    name = codec or ("libvpx-vp9" if fmt == "webm" else "libx264")
    video = out.add_stream(name, rate=rate)
    video.width, video.height = w, h
    video.pix_fmt = "yuv420p10le" if deep else "yuv420p"
    video.time_base = video.codec_context.time_base = TIME_BASE
    video.options = {"crf": "10", "preset": "ultrafast"} if name == "libx264" else {"crf": "10", "b": "0"}
    if transfer is not None:
        video.codec_context.color_trc = transfer
        video.codec_context.color_primaries = 9
        video.codec_context.colorspace = 9
    if rotation:
        video.set_display_rotation(rotation)
    return video


def _audio(out: av.container.OutputContainer, sound: av.audio.stream.AudioStream, seconds: float) -> None:
    rate = 48000
    samples = round(seconds * rate)
    wave = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
    for start in range(0, samples, 960):
        a = av.AudioFrame.from_ndarray(wave[start : start + 960][None], format="flt", layout="mono")
        a.sample_rate, a.pts = rate, start
        out.mux(sound.encode(a))
    out.mux(sound.encode(None))


def clip_bytes(ext: str, frames: Iterable[np.ndarray], audio_seconds: float = 0.0, **kw: Any) -> bytes:
    """The bytes of a clip written by :func:`write_clip` (for the input generator)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_clip(Path(tmp) / f"clip{ext}", frames, audio=audio_seconds, **kw).read_bytes()


def scene(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A colourful HxWx3 uint8 scene with edges and gradients (a stand-in for a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin((xx + yy) / 9 + seed)], -1)
    for _ in range(6):
        y0, x0 = rng.integers(0, h - 20), rng.integers(0, w - 20)
        img[y0 : y0 + rng.integers(8, 40), x0 : x0 + rng.integers(8, 40)] = rng.random(3)
    return (img.clip(0, 1) * 255).astype(np.uint8)


def photo_strip(path: Path | None, h: int, w: int) -> np.ndarray:
    """A wide strip to pan over: the photo at ``path`` scaled to height ``h`` (a generated scene
    when ``path`` is None), at least ``2 * w`` wide."""
    if path is None:
        return np.concatenate([scene(h, w, 1), scene(h, w, 2)], axis=1)
    with Image.open(path) as im:
        im = im.convert("RGB")
        im = im.resize((max(2 * w, round(im.width * h / im.height)), h), Image.Resampling.BOX)
        return np.asarray(im)


def pan(strip: np.ndarray, w: int, count: int, ramp: tuple[float, float] = (1.0, 1.0)) -> list[np.ndarray]:
    """``count`` frames ``w`` wide moving left to right over ``strip``, exposure ramped ``ramp[0]`` ->
    ``ramp[1]`` (a gain on linear-ish values)."""
    span = strip.shape[1] - w
    gains = np.linspace(*ramp, count)
    return [
        (strip[:, round(i * span / max(count - 1, 1)) :][:, :w].astype(np.float32) * g)
        .clip(0, 255)
        .astype(np.uint8)
        for i, g in enumerate(gains)
    ]


def noisy(image: np.ndarray, count: int, sigma: float = 6.0, seed: int = 0) -> list[np.ndarray]:
    """``count`` frames of one still ``image`` with fresh sensor-like noise (Gaussian, brightness-
    dependent: shot noise grows with the signal) in every frame."""
    rng = np.random.default_rng(seed)
    base = image.astype(np.float32)
    out = []
    for _ in range(count):
        noise = rng.normal(0, 1, base.shape) * (sigma * (0.5 + base / 255))
        out.append((base + noise).clip(0, 255).astype(np.uint8))
    return out


def decoded(path: Path) -> tuple[list[np.ndarray], list[float], int]:
    """Every frame of ``path`` as HxWx3 uint8 RGB, its time in seconds, and the display rotation."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames], frames[0].rotation


def packets(path: Path, kind: str) -> list[tuple[bytes, int | None]]:
    """The payload and pts (in seconds x 1e6) of every packet of the first ``kind`` stream."""
    with av.open(str(path)) as c:
        stream = next(s for s in c.streams if s.type == kind)
        return [
            (bytes(p), None if p.pts is None else round(p.pts * p.time_base * 1_000_000))
            for p in c.demux(stream)
            if p.size
        ]
