"""Camera RAW and DNG input: LibRaw (rawpy) develops the file into the sRGB photo the model expects.

The model was trained on sRGB photos with a tone curve, so a RAW is developed into one, always the
same way (the same file gives the same pixels):

* white balance: the camera's as-shot multipliers (``white_balance="camera"``, the default; LibRaw uses
  daylight ones when the file has none), or LibRaw's grey-world estimate (``"auto"``);
* colour: the camera's matrix to sRGB primaries (``output_color=sRGB``), then the sRGB curve
  (``gamma=(2.4, 12.92)``), not LibRaw's BT.709 default (2.222, 4.5);
* brightness: as shot (``no_auto_bright=True``: no histogram stretch), the white level as the file
  states it (``adjust_maximum_thr=0``: not lowered to the brightest value found);
* highlights: clipped (``highlight_mode=Clip``): a channel over the white level is cut to white, so
  blown skies come out white rather than magenta;
* demosaicing: LibRaw's default (AHD for Bayer sensors), no noise reduction;
* depth: 16 bits per channel (``output_bps=16``): ``Photo.pixels`` is uint16, ``bit_depth`` 16;
* orientation: the RAW's own (LibRaw applies its flip, the ``user_flip`` default); the EXIF written out
  has no orientation, so the result is upright everywhere.

The result is a :class:`~dslrify.photo.Photo` with ``format="RAW"`` and no ICC profile (untagged means
sRGB). Enhancing a RAW gives exactly the pixels that enhancing this development saved as a 16-bit TIFF
gives. dslrify never writes RAW: a RAW input is written as JPEG unless ``--ext`` says otherwise
(``--ext tif``: 16-bit TIFF).

EXIF: rawpy exposes none, so it is read with ``exifread`` (pure Python, reads TIFF-based RAWs: DNG,
CR2, NEF, ARW, ORF, RW2, PEF, SRW, and the JPEG inside a RAF). The camera (Make, Model, Software,
DateTime, Artist, Copyright), the whole EXIF sub-IFD but the maker note (exposure, lens, capture time)
and the GPS IFD are carried into the output. CR3 and other non-TIFF RAWs keep no EXIF.

Memory (``benchmarks/raw_memory.py``): while LibRaw develops, its raw buffer (2 bytes a pixel), its
working image (8) and its 16-bit result (6) are held; they are freed before the pixels (6 bytes a
pixel) go to the model. Measured on a 61 MP DNG: 1.15 GB peak RSS developing it (13 s on 2 cores),
2.2 GB enhancing it to JPEG with the fast model (2.1 GB with the default one), 2.4 GB for a folder of
them (``Enhancer.enhance_files`` decodes the next one after a large photo's model run). A RAW counts
its pixels once against ``max_pixels``.

Errors: an unsupported camera or compression, a truncated or damaged file is a one-line PhotoError.
LibRaw reads no partial RAW, so ``allow_truncated`` does not apply.
"""

from __future__ import annotations

import io
import struct
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import rawpy
import torch
from PIL import Image, TiffImagePlugin

from dslrify.errors import PhotoError
from dslrify.photo import (
    _ALWAYS_PLAUSIBLE,
    _MAX_PIXELS_PER_BYTE,
    Photo,
    PhotoInfo,
    PhotoWarning,
    _check_file,
)

WHITE_BALANCES = ("camera", "auto")
_COPY_AGAIN = "copy it from the camera or card again"
_UNSUPPORTED = "convert it to DNG (Adobe DNG Converter) or export a 16-bit TIFF from your RAW editor"
# Main-IFD tags describing the camera and the shot (not the RAW's pixel layout, nor its orientation).
_MAIN_TAGS = (270, 271, 272, 305, 306, 315, 33432)
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_SKIPPED_EXIF = {0x927C, 0xA005}  # the maker note (its offsets only hold in the RAW) and Interop
_MAX_TAG_BYTES = 4096  # longer values (a UserComment essay) would crowd JPEG's 64 kB EXIF


def development(white_balance: str = "camera") -> dict[str, Any]:
    """LibRaw's parameters for developing a RAW (``rawpy.RawPy.postprocess``), as the docstring states."""
    if white_balance not in WHITE_BALANCES:
        raise PhotoError(
            f"unknown RAW white balance {white_balance!r}", f"use one of {', '.join(WHITE_BALANCES)}"
        )
    return {
        "use_camera_wb": white_balance == "camera",
        "use_auto_wb": white_balance == "auto",
        "output_color": rawpy.ColorSpace.sRGB,
        "gamma": (2.4, 12.92),
        "no_auto_bright": True,
        "adjust_maximum_thr": 0.0,
        "highlight_mode": rawpy.HighlightMode.Clip,
        "output_bps": 16,
    }


def inspect_raw(path: Path, max_pixels: int) -> PhotoInfo:
    """The upright size of a RAW's developed image from its header (nothing decoded); PhotoError as
    :func:`read_raw` gives for a missing, unsupported, too large or implausibly small file."""
    _check_file(path)
    with _opened(path, max_pixels) as raw:
        return PhotoInfo("RAW", *_upright_size(raw), 16)


def read_raw(path: Path, max_pixels: int, white_balance: str = "camera") -> Photo:
    """Develop a RAW or DNG file into a 16-bit sRGB Photo, upright, with its EXIF (module docstring)."""
    params = development(white_balance)
    _check_file(path)
    with _opened(path, max_pixels) as raw:
        try:
            rgb = raw.postprocess(**params)  # (H, W, 3) uint16, oriented
        except (rawpy.LibRawError, MemoryError) as e:
            raise _error(path, e) from e
    # LibRaw's buffers are freed: one copy into the model's (1, 3, H, W) layout.
    pixels = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    del rgb
    return Photo(pixels, None, 16, "RAW", "RGB", read_exif(path), None, None)


class _opened:
    """rawpy.imread with the header checks made before anything is decoded; closes LibRaw on exit."""

    def __init__(self, path: Path, max_pixels: int) -> None:
        try:
            self.raw = rawpy.imread(str(path))
        except (rawpy.LibRawError, MemoryError) as e:
            raise _error(path, e) from e
        try:
            w, h = self.raw.sizes.raw_width, self.raw.sizes.raw_height
            if w * h > max_pixels:
                raise PhotoError(
                    f"{path} is a {w} x {h} = {w * h:,} pixel RAW, more than the limit of {max_pixels:,}",
                    "raise --max-pixels if you trust this file",
                )
            size = path.stat().st_size
            if w * h > max(_MAX_PIXELS_PER_BYTE * size, _ALWAYS_PLAUSIBLE):
                raise PhotoError(
                    f"{path} claims {w} x {h} pixels in only {size:,} bytes: it is truncated or forged",
                    _COPY_AGAIN,
                )
        except BaseException:
            self.raw.close()
            raise

    def __enter__(self) -> rawpy.RawPy:
        return self.raw

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def _upright_size(raw: rawpy.RawPy) -> tuple[int, int]:
    """(width, height) of LibRaw's developed image: its crop of the sensor, turned by its flip."""
    w, h = raw.sizes.width, raw.sizes.height
    return (h, w) if raw.sizes.flip & 4 else (w, h)  # flip bit 4: transposed (90 degree turns)


def _error(path: Path, e: BaseException) -> PhotoError:
    """The one-line PhotoError for what LibRaw raised."""
    if isinstance(e, rawpy.LibRawFileUnsupportedError):
        return PhotoError(
            f"{path} is not a RAW file LibRaw can read (an unsupported camera, format or compression)",
            _UNSUPPORTED,
        )
    if isinstance(e, rawpy.LibRawIOError):
        return PhotoError(f"{path} is truncated or unreadable (its data ends early)", _COPY_AGAIN)
    if isinstance(e, MemoryError | rawpy.LibRawTooBigError | rawpy.LibRawUnsufficientMemoryError):
        return PhotoError(f"{path}: not enough memory to develop this RAW", "close other programs")
    reason = str(e).strip("b'\" ") or type(e).__name__
    return PhotoError(f"{path}: cannot decode RAW ({reason})", f"the file is damaged; {_COPY_AGAIN}")


# --- EXIF ---------------------------------------------------------------------------------------------


def read_exif(path: Path) -> bytes | None:
    """EXIF (b"Exif\\0\\0" + TIFF) with the RAW's camera, shot and GPS tags, read by exifread; None when
    the file has none that exifread finds. Damaged EXIF is dropped with one PhotoWarning."""
    import exifread  # imported here: only RAWs need it

    with open(path, "rb") as f:
        try:
            head = f.read(92)
            if head[:2] in (b"II", b"MM"):  # TIFF-based RAW
                stream: BinaryIO = f
            elif head.startswith(b"FUJIFILMCCD-RAW"):  # RAF: its EXIF is in the JPEG it holds
                offset, length = struct.unpack(">II", head[84:92])
                f.seek(offset)
                stream = io.BytesIO(f.read(length))
            else:
                return None
            tags = exifread.process_file(stream, details=False, extract_thumbnail=False)
            exif = _to_pillow(tags)
            return exif.tobytes() if len(exif) else None
        except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError, struct.error, OSError) as e:
            reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
            warnings.warn(
                PhotoWarning(f"{path}: its EXIF metadata is damaged and was dropped ({reason})"), stacklevel=3
            )
            return None


def _to_pillow(tags: dict[str, Any]) -> Image.Exif:
    """exifread's tags -> a Pillow Exif of the main camera tags, the EXIF sub-IFD and the GPS IFD."""
    exif, sub, gps = Image.Exif(), {}, {}
    for key, tag in tags.items():
        group, main = key.split(" ", 1)[0], key.startswith("Image ")
        if not hasattr(tag, "field_type") or (value := _value(tag, main)) is None:
            continue
        if main and tag.tag in _MAIN_TAGS:
            exif[tag.tag] = value
        elif group == "EXIF" and tag.tag not in _SKIPPED_EXIF and not key.startswith("EXIF SubIFD"):
            sub[tag.tag] = value
        elif group == "GPS":
            gps[tag.tag] = value
    if sub:
        exif[_EXIF_IFD] = sub
    if gps:
        exif[_GPS_IFD] = gps
    return exif


def _value(tag: Any, main: bool = False) -> object | None:
    """An exifread tag's value as Pillow writes it with the same TIFF type; None to skip it.

    Pillow knows the types of the main tags, and guesses those of the sub-IFDs from the value: text
    as str (ASCII), BYTE and UNDEFINED as bytes, rationals as IFDRational, integers as int.
    """
    kind, values = int(tag.field_type), tag.values
    if kind == 2:  # ASCII; main tags as their bytes, which keeps UTF-8 text (a str is written as ASCII)
        text = values if isinstance(values, str) else bytes(values).decode("latin-1")
        return (text.encode("utf-8") if main else text) if len(text) <= _MAX_TAG_BYTES else None
    if kind in (1, 7):  # BYTE, UNDEFINED
        data = values if isinstance(values, bytes) else bytes(int(v) & 0xFF for v in values)
        return data if len(data) <= _MAX_TAG_BYTES else None
    if not isinstance(values, list) or not values or len(values) > _MAX_TAG_BYTES // 8:
        return None
    if kind in (5, 10):  # RATIONAL, SRATIONAL
        out: list[object] = [
            TiffImagePlugin.IFDRational(Fraction(v).numerator, Fraction(v).denominator) for v in values
        ]
    elif kind in (3, 4, 6, 8, 9):  # integers
        out = [int(v) for v in values]
    else:  # floats, IFD pointers, proprietary
        return None
    return out[0] if len(out) == 1 else tuple(out)
