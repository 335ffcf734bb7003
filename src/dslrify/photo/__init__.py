"""Reading and writing photos: the only module that opens or saves image files.

Rules, in and out:

* Formats: JPEG, PNG, TIFF and WebP; HEIC/HEIF with the optional ``pillow-heif``
  (``pip install 'dslrify[heic]'``). The output format comes from the destination's extension.
  Camera RAW and DNG files (``RAW_EXTENSIONS``) are read only, developed by :mod:`dslrify.raw`.
* Orientation: the EXIF (or XMP) orientation is applied on reading, as ``PIL.ImageOps.exif_transpose``
  does, and reset to 1 in the EXIF/XMP written out, so the result is upright in every viewer.
* Metadata: EXIF, XMP and the ICC profile are carried into the output. 16-bit TIFF output keeps only
  the main EXIF tags (camera, date, software), not the EXIF sub-IFD (tifffile cannot write it).
* Colour: pixels are processed in the source's own encoding and written back with the same embedded
  ICC profile, wide-gamut ones included (Adobe RGB, Display P3, ProPhoto). Nothing is converted to
  sRGB, so no colour is clipped and a colour-managed viewer shows the result as it shows the source.
* Bit depth: 16-bit PNG/TIFF are read at full precision (OpenCV/tifffile: Pillow reads 16-bit RGB PNG
  as 8 bit), kept as uint16 and written back at 16 bit as PNG/TIFF. JPEG/WebP output is 8 bit.
* Grayscale (L, LA, I;16, 1): given to the model as RGB (gray repeated) and written back as grayscale,
  the Rec.601 luma of the result (as ``convert("L")``). 16-bit gray+alpha PNG is written as RGBA.
* CMYK (JPEG/TIFF): converted to RGB through its ICC profile when it has one (the output is then
  tagged sRGB), else with Pillow's naive conversion (output untagged); always written as RGB.
* Palette (P, PA): converted to RGB, or RGBA when it has transparency; written as RGB(A).
* Alpha: never given to the model; passed through untouched, and dropped for JPEG (no alpha there).
* Limits: a photo of more than ``max_pixels`` (16-bit ones count twice) is refused from its header,
  before decoding, as is one whose header claims far more pixels than its file size can hold.
  A truncated file is refused unless ``allow_truncated``.
* Memory: ``Photo.pixels`` keeps the source's 8 or 16 bits; :func:`unit_float` makes float a tile at a
  time, and writing converts float results a band of rows at a time.
* Damage that viewers tolerate is repaired with one :class:`PhotoWarning` (damaged EXIF dropped, an
  unusable CMYK profile ignored); anything else is a one-line PhotoError.
* Writes are atomic (``files.atomic_path``): a temporary file in the destination folder, then a rename;
  the format is always given to the encoder, never guessed from the temporary's name.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import tifffile
import torch
from PIL import Image, ImageCms, ImageFile, PngImagePlugin, UnidentifiedImageError

from dslrify.errors import PhotoError
from dslrify.files import atomic_path

# Peak RSS stays under 2 GB on a CPU up to this size. Measured per pixel, over a ~0.25 GB process:
# reading 8-bit ~10 bytes (Pillow's RGBX buffer 4 + its array 3 + our uint8 tensor 3), writing ~13
# (source 3 + result 3 + encoder copies); 100 MP: 0.25 + 1.3 = 1.55 GB. While a model runs: source +
# result 6 bytes + the Enhancer's 0.75 GB of tiles: 0.25 + 0.6 + 0.75 = 1.6 GB. 16-bit pixels count
# twice (reading ~13, writing 16-bit PNG ~31 bytes a pixel): 50 MP at 16 bit, 0.25 + 1.55 = 1.8 GB.
DEFAULT_MAX_PIXELS = 100_000_000
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".heic": "HEIF",
    ".heif": "HEIF",
}
# Camera RAW and DNG files: read (developed by LibRaw, see dslrify.raw), never written.
RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl"}
    | {".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".mos", ".mrw", ".erf", ".kdc", ".dcr", ".mef", ".raw"}
)
READ_EXTENSIONS = frozenset(SUPPORTED_EXTENSIONS) | RAW_EXTENSIONS
_READ_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "WEBP": "WEBP", "HEIF": "HEIF"}
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B"}
_ORIENTATION = 0x0112
_HEIC_ADVICE = "pip install 'dslrify[heic]'"
_DAMAGED = "the file is damaged, truncated or not an image; copy or export it again"
_TRUNCATED = "copy or export it again; --allow-truncated decodes what is there"
_NO_PERMISSION = "you lack permission to read it; check its owner and permissions (ls -l)"
# TIFF tags describing the pixel layout of the source file: never copied into another file's EXIF.
_TIFF_LAYOUT_TAGS = {
    254,
    255,
    256,
    257,
    258,
    259,
    262,
    266,
    273,
    277,
    278,
    279,
    284,
    317,
    320,
    322,
    323,
    324,
    325,
    338,
    339,
    340,
    341,
    530,
    700,
    34675,
}
_pillow_limit_lock = threading.Lock()
_BAND_PIXELS = 1 << 20  # pixels converted to float at once when writing (12 MB of float32 RGB)


@dataclass
class Photo:
    """A decoded photo: pixels for the model plus everything needed to write it back faithfully."""

    # (1, 3, H, W) RGB, EXIF orientation applied, at the source's own depth: torch.uint8 for 8-bit
    # photos, torch.uint16 for 16-bit ones (float32 in [0, 1] only from float arrays). unit_float()
    # gives the model's float32 in [0, 1]; convert per tile, not the whole photo at once.
    pixels: torch.Tensor
    alpha: np.ndarray | None = None  # (H, W) in its source dtype, oriented, untouched
    bit_depth: int = 8  # 8 or 16, of the source
    format: str = ""  # "JPEG", "PNG", "TIFF", "WEBP", "HEIF", "RAW"; "" for in-memory images
    mode: str = "RGB"  # source mode: "RGB", "RGBA", "L", "LA", "CMYK", "I;16", "P", ...
    exif: bytes | None = None  # raw EXIF (b"Exif\0\0" + TIFF header ...), Orientation reset to 1
    icc_profile: bytes | None = None
    xmp: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[-1]), int(self.pixels.shape[-2])


class PhotoWarning(UserWarning):
    """Something about a photo was repaired or dropped while reading it (one line, with the path)."""


def unit_float(t: torch.Tensor) -> torch.Tensor:
    """``t`` as float32 in [0, 1]: uint8 / 255, uint16 / 65535; a float tensor passes through as float32.

    For the model, a tile at a time (a whole 100 MP photo in float32 is 1.2 GB).
    """
    if t.dtype == torch.uint8:
        return t.to(torch.float32).div_(255)
    if t.dtype == torch.uint16:
        return t.to(torch.float32).div_(65535)
    if t.is_floating_point():
        return t.to(torch.float32)
    raise TypeError(f"pixels must be uint8, uint16 or float, got {t.dtype}")


def format_for_extension(ext: str) -> str:
    """The output format for a file extension (".jpg" -> "JPEG"); PhotoError when unsupported."""
    fmt = SUPPORTED_EXTENSIONS.get("." + ext.lower().lstrip("."))
    if fmt is None:
        raise PhotoError(
            f"unsupported photo extension {ext!r}", f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return fmt


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8-bit image file as an (H, W, 3) uint8 RGB array (datasets' fast path, no metadata)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as e:
        raise PhotoError(f"{path}: no such file") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise PhotoError(f"{path}: cannot decode image ({e})", "the file is damaged or not an image") from e


@dataclass(frozen=True)
class PhotoInfo:
    """What a photo's header says: format ("JPEG", "PNG", "TIFF", "WEBP", "HEIF"), upright size, depth."""

    format: str
    width: int  # after the EXIF orientation, as read_photo returns it
    height: int
    bit_depth: int  # 8 or 16


def inspect_photo(
    path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, *, allow_truncated: bool = False
) -> PhotoInfo:
    """The format, upright size and bit depth of a photo from its header (no pixels decoded).

    Raises the PhotoError that :func:`read_photo` would for a missing, empty, unreadable, unsupported,
    too large or (without ``allow_truncated``) implausibly small file.
    """
    path = Path(path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        from dslrify.raw import inspect_raw  # rawpy loads for RAW files only

        return inspect_raw(path, max_pixels)
    with _opened(path, max_pixels, allow_truncated) as (im, fmt, bits):
        orientation = _metadata(im)[2]  # damaged EXIF: orientation 1, as read_photo
        # Pillow gives a TIFF's size already turned by its orientation: take the stored one.
        stored = getattr(im, "tag_v2", {})  # TIFF tags: ImageWidth, ImageLength
        w, h = (stored.get(256, im.width), stored.get(257, im.height)) if fmt == "TIFF" else im.size
        return PhotoInfo(fmt, *((h, w) if orientation in (5, 6, 7, 8) else (w, h)), bits)


def capture_time(path: str | os.PathLike) -> datetime | None:
    """When the photo was taken: EXIF DateTimeOriginal (+ SubSecTimeOriginal), else DateTime.

    None without either, or when the file or its EXIF cannot be read. Reads the header only.
    """
    try:
        with _opened(Path(path), max_pixels=sys.maxsize, allow_truncated=True) as (im, _, _):
            tags = _exif(im)[1]
            sub = tags.get(0x8769)  # a TIFF's own IFD gives the Exif sub-IFD as a dict already
            sub = sub if isinstance(sub, dict) else tags.get_ifd(0x8769)
    except (PhotoError, UserWarning, *_DECODE_ERRORS):
        return None
    text, subsec = sub.get(0x9003) or tags.get(0x0132), sub.get(0x9291) if sub.get(0x9003) else None
    try:
        t = datetime.strptime(str(text).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except (TypeError, ValueError):
        return None
    digits = "".join(c for c in str(subsec or "") if c.isdigit())
    return t.replace(microsecond=int((digits + "000000")[:6])) if digits else t


def read_photo(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    allow_truncated: bool = False,
    raw_wb: str = "camera",
) -> Photo:
    """Decode a photo file, oriented upright, with its metadata (see the module docstring for rules).

    A file whose data ends early, or whose header claims far more pixels than its size can hold, is
    refused as truncated unless ``allow_truncated`` (then the missing part decodes as padding).
    Repairs (damaged EXIF dropped, an unusable CMYK profile ignored) and the decoder's own warnings
    come out as one :class:`PhotoWarning`. RAW and DNG files are developed by LibRaw
    (:mod:`dslrify.raw`, white balance ``raw_wb``: "camera" or "auto").
    """
    path = Path(path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        from dslrify.raw import read_raw  # rawpy loads for RAW files only

        return read_raw(path, max_pixels, raw_wb)
    with _opened(path, max_pixels, allow_truncated) as (im, fmt, bits):
        try:
            if bits == 16:
                arr, icc = _read16(path, fmt), im.info.get("icc_profile")
            else:
                arr, icc = _pil_pixels(im)  # TIFF: Pillow applies and deletes the orientation itself
            return _build(arr, im.mode, fmt, im, icc)
        except PhotoError as e:
            raise PhotoError(f"{path}: {e.message}", e.advice) from e
        except _DECODE_ERRORS as e:
            raise _decode_error(path, e) from e


def read_photo_bytes(
    data: bytes,
    name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    allow_truncated: bool = False,
    raw_wb: str = "camera",
) -> Photo:
    """:func:`read_photo` for a file's bytes read elsewhere (another process, an object store): the same
    rules, checks and errors, which name ``name`` (its path or URI; its extension picks the reader).

    The bytes pass through a private temporary file, because the readers of RAW, 16-bit PNG and TIFF
    (LibRaw, OpenCV, tifffile) and the header checks take a path; a page-cache write costs a few
    milliseconds against the model's second.
    """
    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="dslrify-") as folder:
        path = Path(folder) / f"photo{suffix}"
        path.write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                photo = read_photo(path, max_pixels, allow_truncated=allow_truncated, raw_wb=raw_wb)
            except PhotoError as e:
                raise PhotoError(e.message.replace(str(path), name), e.advice) from e
    for w in caught:  # the same warnings, naming the photo rather than the temporary file
        warnings.warn_explicit(
            type(w.message)(str(w.message).replace(str(path), name)), w.category, w.filename, w.lineno
        )
    return photo


# What decoders raise on damaged data: Pillow (OSError, SyntaxError, EOFError, and AssertionError or
# IndexError from its plugins, e.g. a palette PNG without PLTE), tifffile (zlib.error and ValueError on
# corrupt deflate strips), struct.error from short headers, OpenCV's cv2.error.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    AssertionError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    cv2.error,
)


def _decode_error(path: Path, e: BaseException) -> PhotoError:
    """The one-line PhotoError for a decoder's exception: truncated data named as such."""
    reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, EOFError) or "truncated" in reason.lower():
        return PhotoError(f"{path} is truncated (its data ends early)", _TRUNCATED)
    return PhotoError(f"{path}: cannot decode image ({reason})", _DAMAGED)


def _check_file(path: Path) -> None:
    """PhotoError unless ``path`` is a regular, non-empty file that we may read; opens nothing.

    ``stat`` first, so that a FIFO is refused rather than opened (opening one waits for a writer).
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise PhotoError(f"{path} is a symbolic link to a missing file", "check the link") from None
        raise PhotoError(f"{path}: no such file", "check the path") from None
    except PermissionError:
        raise PhotoError(f"{path}: permission denied", _NO_PERMISSION) from None
    except (OSError, RuntimeError) as e:  # ELOOP (a symlink loop), ENAMETOOLONG, ...
        reason = "it is a symbolic link loop" if "loop" in str(e).lower() else str(e).splitlines()[0]
        raise PhotoError(f"{path} cannot be opened: {reason}", "check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise PhotoError(f"{path} is a folder, not a photo", "give the path of an image file")
    if not stat.S_ISREG(st.st_mode):
        raise PhotoError(
            f"{path} is not a regular file (a pipe, socket or device)", "give the path of an image file"
        )
    if st.st_size == 0:
        raise PhotoError(f"{path} is empty (0 bytes)", "the copy or download did not finish; copy it again")


@contextmanager
def _opened(
    path: Path, max_pixels: int, allow_truncated: bool = False
) -> Iterator[tuple[Image.Image, str, int]]:
    """The opened image (header read, no pixels), its format and bit depth, after every check made
    before decoding. A 16-bit photo counts twice against ``max_pixels`` (it takes twice the memory).

    Meanwhile Pillow's own pixel limit is off (``max_pixels`` governs), truncated data is decoded only
    with ``allow_truncated``, and warnings are collected, during the decode in the block too; they come
    out as one PhotoWarning when the block succeeds.
    """
    _check_file(path)
    heif = _heif_available()  # registers the HEIF opener on first use
    if path.suffix.lower() in (".heic", ".heif") and not heif:
        raise PhotoError(f"{path}: reading HEIC/HEIF needs the pillow-heif package", _HEIC_ADVICE)
    with _pillow_settings(allow_truncated), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _open(path, heif) as im:
            fmt = _READ_FORMATS.get(im.format or "")
            if fmt is None:
                raise PhotoError(
                    f"{path} is a {im.format} image, which dslrify does not read", "convert it to PNG"
                )
            try:
                bits = _bit_depth(path, im, fmt)
            except PhotoError as e:
                raise PhotoError(f"{path}: {e.message}", e.advice) from e
            w, h = im.size
            if w * h * (bits // 8) > max_pixels:  # from the header: nothing decoded yet
                twice = "; at 16 bits they count twice" if bits == 16 else ""
                raise PhotoError(
                    f"{path} is {w} x {h} = {w * h:,} pixels{twice}, more than the limit of {max_pixels:,}",
                    "raise --max-pixels if you trust this file",
                )
            size = path.stat().st_size
            if w * h > max(_MAX_PIXELS_PER_BYTE * size, _ALWAYS_PLAUSIBLE) and not allow_truncated:
                raise PhotoError(
                    f"{path} claims {w} x {h} pixels in only {size:,} bytes: it is truncated or forged",
                    _TRUNCATED,
                )
            if fmt == "PNG" and "exif" not in im.info:
                _find_png_exif(path, im)
            yield im, fmt, bits
    _fold_warnings(path, caught)


# No camera photo compresses below ~100 pixels per byte: JPEG needs ~2 bits or more per 8x8 block even
# where the image is flat (<= 256 px/byte), deflate compresses at most 1032:1 (<= 1032 px/byte for an
# 8-bit grey PNG). A header claiming more than 2000 pixels per byte of file is a truncated or forged
# file whose missing data the decoder would pad, at full memory cost. Up to 4 MP always passes: cheap.
_MAX_PIXELS_PER_BYTE = 2000
_ALWAYS_PLAUSIBLE = 4_000_000


def _fold_warnings(path: Path, caught: list[warnings.WarningMessage]) -> None:
    """Re-issue the collected UserWarnings (ours and the decoders') as one PhotoWarning naming ``path``."""
    notes: list[str] = []
    for w in sorted(caught, key=lambda w: not issubclass(w.category, PhotoWarning)):  # ours first
        if not issubclass(w.category, UserWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            continue
        note = " ".join(str(w.message).split()).rstrip(".")
        if note and note not in notes:
            notes.append(note)
    if notes:
        more = f" (and {len(notes) - 3} more)" if len(notes) > 3 else ""
        warnings.warn(PhotoWarning(f"{path}: {'; '.join(notes[:3])}{more}"), stacklevel=4)


def _find_png_exif(path: Path, im: Image.Image) -> None:
    """Put an eXIf chunk found after the image data into ``im.info``.

    Pillow finds such a chunk only while decoding the pixels itself, which it does not for 16-bit PNG.
    Walks the chunk headers; reads no image data.
    """
    with open(path, "rb") as f:
        f.seek(8)
        while len(head := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                data = f.read(length)
                if len(data) == length:
                    im.info["exif"] = b"Exif\x00\x00" + data
                return
            if kind == b"IEND":
                return
            f.seek(length + 4, os.SEEK_CUR)  # data and CRC


def from_pil(image: Image.Image) -> Photo:
    """A Photo from a PIL image (its EXIF orientation applied; 16-bit only for I;16 gray)."""
    try:
        with _pillow_settings():
            arr, icc = _pil_pixels(image)
        return _build(arr, image.mode, _READ_FORMATS.get(image.format or "", ""), image, icc)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        name = getattr(image, "filename", "") or "the image"
        raise PhotoError(f"{name}: cannot decode image ({e})", _DAMAGED) from e


def to_pil(photo: Photo, pixels: torch.Tensor | None = None) -> Image.Image:
    """A PIL image of the same kind as the source (RGB, RGBA, L, LA, I;16) with metadata in ``.info``.

    16-bit colour becomes 8 bit (Pillow has no 16-bit RGB mode); CMYK and palette sources become RGB(A).
    Pillow does not save ``.info`` by itself: pass ``exif=im.info.get("exif")`` etc. to ``save``.
    """
    gray16 = photo.bit_depth == 16 and photo.mode in _GRAY_MODES and photo.alpha is None
    im = Image.fromarray(_compose(photo, pixels, np.dtype(np.uint16 if gray16 else np.uint8), True))
    for key, value in (("exif", photo.exif), ("icc_profile", photo.icc_profile), ("xmp", photo.xmp)):
        if value:
            im.info[key] = value
    return im


def from_array(arr: np.ndarray) -> tuple[Photo, np.dtype]:
    """A Photo from an (H, W), (H, W, 3) or (H, W, 4) uint8/uint16/float32-in-[0, 1] array, and its dtype.

    float32 counts as 16 bit: written to PNG/TIFF at 16 bit.
    """
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        raise PhotoError(
            f"array dtype {arr.dtype} is not supported", "pass uint8, uint16 or float32 in [0, 1]"
        )
    mode = {(2, 0): "L", (3, 3): "RGB", (3, 4): "RGBA"}.get((arr.ndim, arr.shape[2] if arr.ndim == 3 else 0))
    if mode is None:
        raise PhotoError(f"array of shape {arr.shape} is not a photo", "pass (H, W), (H, W, 3) or (H, W, 4)")
    return _build(arr, mode, "", None, None, bits=8 if arr.dtype == np.uint8 else 16), arr.dtype


def to_array(
    photo: Photo, pixels: torch.Tensor | None = None, dtype: np.dtype | type = np.uint8
) -> np.ndarray:
    """The photo as an array of ``dtype`` in the layout of the source (gray: (H, W), alpha: 4th channel)."""
    return _compose(photo, pixels, np.dtype(dtype), True)


def write_photo(
    path: str | os.PathLike,
    photo: Photo,
    pixels: torch.Tensor | None = None,
    *,
    format: str | None = None,
    quality: int = 95,
) -> None:
    """Write ``pixels`` ((1, 3, H, W) float in [0, 1], default ``photo.pixels``) with ``photo``'s metadata.

    The format is ``format`` or the one of ``path``'s extension; ``quality`` applies to JPEG, WebP and
    HEIF. The file appears at ``path`` complete or not at all.
    """
    path = Path(path)
    fmt = _output_format(path, format)
    if path.is_dir():
        raise PhotoError(f"cannot write {path}: it is a folder", "give a file name for the output")
    if _is_link_loop(path):
        raise PhotoError(
            f"cannot write {path}: it is a symbolic link loop", "remove the link or choose another name"
        )
    arr = _output_array(photo, pixels, fmt)
    _atomic_write(path, lambda f: _encode(f, arr, photo, fmt, quality, path))


def encode_photo(photo: Photo, pixels: torch.Tensor | None = None, *, name: str, quality: int = 95) -> bytes:
    """The bytes :func:`write_photo` would write to a file called ``name`` (format from its extension).

    For object stores, which take an object whole in one put and have no rename (``dslrify.cluster``).
    """
    fmt = _output_format(Path(name), None)
    arr = _output_array(photo, pixels, fmt)
    buffer = io.BytesIO()
    _encode(buffer, arr, photo, fmt, quality, Path(name))
    return buffer.getvalue()


def _output_format(path: Path, format: str | None) -> str:
    """The encoder's format name for writing ``path`` (``format`` overrides its extension)."""
    try:
        fmt = format_for_extension(path.suffix if format is None else format)
    except PhotoError as e:
        raise PhotoError(f"cannot write {path}: {e.message}", e.advice) from e
    if fmt == "HEIF" and not _heif_available():
        raise PhotoError(f"cannot write {path}: HEIC/HEIF needs the pillow-heif package", _HEIC_ADVICE)
    return fmt


def _output_array(photo: Photo, pixels: torch.Tensor | None, fmt: str) -> np.ndarray:
    """The samples to encode as ``fmt``: 16 bit for a 16-bit photo into PNG/TIFF, alpha unless JPEG."""
    bits16 = photo.bit_depth == 16 and fmt in ("PNG", "TIFF")
    return _compose(photo, pixels, np.dtype(np.uint16 if bits16 else np.uint8), keep_alpha=fmt != "JPEG")


def write_image(
    path: str | os.PathLike,
    image: np.ndarray | torch.Tensor,
    *,
    icc_profile: bytes | None = None,
    quality: int = 90,
    max_side: int | None = None,
) -> None:
    """Write a preview or comparison image: JPEG, PNG or WebP by ``path``'s extension, atomically.

    ``image`` is an (H, W, 3) uint8 array or a (1, 3, H, W) float tensor in [0, 1]. With ``max_side``,
    a larger image is first shrunk (area averaging: no aliasing) so that its longer side is ``max_side``.
    ``icc_profile`` is embedded so that browsers show the colours of the source.
    """
    path = Path(path)
    fmt = SUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if fmt not in ("JPEG", "PNG", "WEBP"):
        raise PhotoError(f"cannot write {path}: previews are JPEG, PNG or WebP", "use .jpg, .png or .webp")
    if isinstance(image, torch.Tensor):
        if image.ndim != 4 or image.shape[:2] != (1, 3):
            raise ValueError(f"image tensor must have shape (1, 3, H, W), got {tuple(image.shape)}")
        arr = _quantize_rgb8(image.detach()[0].to("cpu", torch.float32))
    elif image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        arr = np.ascontiguousarray(image)
    else:
        raise ValueError(f"image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    h, w = arr.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        arr = cv2.resize(arr, size, interpolation=cv2.INTER_AREA)
    kw: dict = {"icc_profile": icc_profile} if icc_profile else {}
    if fmt != "PNG":
        kw["quality"] = quality
    _atomic_write(path, lambda f: Image.fromarray(arr).save(f, format=fmt, **kw))


# --- decoding ------------------------------------------------------------------------------------------


@functools.cache
def _heif_available() -> bool:
    """Register pillow-heif's opener with Pillow, once, if it is installed (it is an optional extra)."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@contextmanager
def _pillow_settings(allow_truncated: bool = False) -> Iterator[None]:
    """Pillow's decompression-bomb limit (89 MP) off meanwhile, so that ``max_pixels`` governs, and
    ``LOAD_TRUNCATED_IMAGES`` set to ``allow_truncated``.

    Pillow checks the limit when opening and again when decoding TIFF, hence around both. The lock keeps
    concurrent readers from restoring each other's settings (and their warnings apart).
    """
    with _pillow_limit_lock:
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = None, allow_truncated
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _open(path: Path, heif: bool) -> Image.Image:
    """Image.open (reads the header only), with errors that say what is wrong."""
    try:
        return Image.open(path)
    except PermissionError as e:
        raise PhotoError(f"{path}: permission denied", _NO_PERMISSION) from e
    except UnidentifiedImageError as e:
        with open(path, "rb") as f:
            head = f.read(12)
        if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1") and not heif:
            raise PhotoError(
                f"{path} is a HEIC/HEIF photo; reading it needs pillow-heif", _HEIC_ADVICE
            ) from e
        raise PhotoError(f"{path} is not a photo dslrify can read", _DAMAGED) from e
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as e:
        raise _decode_error(path, e) from e


def _bit_depth(path: Path, im: Image.Image, fmt: str) -> int:
    """8 or 16: the depth of the stored samples (Pillow's mode hides it for 16-bit RGB)."""
    if fmt == "PNG":
        with open(path, "rb") as f:
            return 16 if f.read(25)[24:25] == b"\x10" else 8  # IHDR bit-depth byte
    if fmt == "TIFF":
        tags = getattr(im, "tag_v2", {})
        bits = tags.get(258, 8)
        sample_format = tags.get(339, 1)  # 1: unsigned integer; 2: signed; 3: float
        bits = max(bits) if isinstance(bits, tuple) else int(bits)
        if bits > 16 or max(sample_format if isinstance(sample_format, tuple) else (sample_format,)) != 1:
            raise PhotoError(f"{bits}-bit or floating-point TIFF is not supported", "save it as 8- or 16-bit")
        return 16 if bits > 8 else 8
    return 8


def _read16(path: Path, fmt: str) -> np.ndarray:
    """Full-precision uint16 samples of a 16-bit PNG (OpenCV) or TIFF (tifffile), RGB order."""
    if fmt == "PNG":
        # imdecode rather than imread: imread fails on non-ASCII paths on Windows. IMREAD_UNCHANGED
        # keeps 16 bits and alpha and does not apply the EXIF orientation (we do that ourselves).
        arr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ValueError("OpenCV could not decode the 16-bit PNG")
        if arr.ndim == 3:  # in place: no second copy of the photo
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB, dst=arr)
        return arr
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        arr = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        photometric = tifffile.PHOTOMETRIC(page.photometric)
        if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            arr = 65535 - arr
        elif photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
            raise PhotoError(f"16-bit {photometric.name} TIFF is not supported", "convert it to RGB first")
    return arr.astype(np.uint16, copy=False)


def _pil_pixels(im: Image.Image) -> tuple[np.ndarray, bytes | None]:
    """Decode a PIL image to (H, W[, C]) uint8 (uint16 for I;16) and the ICC profile that now applies."""
    im.load()  # decodes; raises on truncated data (LOAD_TRUNCATED_IMAGES stays False)
    icc = im.info.get("icc_profile") or None
    if im.mode == "CMYK":
        return _cmyk_to_rgb(im, icc)
    if im.mode in ("P", "PA") or (im.mode in ("RGB", "L") and "transparency" in im.info):
        im = im.convert(("LA" if im.mode == "L" else "RGBA") if im.has_transparency_data else "RGB")
    elif im.mode in ("1", "YCbCr"):
        im = im.convert("L" if im.mode == "1" else "RGB")
    elif im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), icc  # native byte order for I;16B
    elif im.mode not in ("RGB", "RGBA", "L", "LA"):
        raise PhotoError(f"{im.mode} images are not supported", "convert it to RGB first")
    return _array(im), icc


def _array(im: Image.Image) -> np.ndarray:
    """``np.asarray(im)``, made band by band for a large image: ``np.asarray`` of a whole 12 MP photo
    goes through Pillow's ``tobytes`` (a list of 64 kB pieces, then their join), 2 x 36 MB of fresh
    memory and ~18,000 page faults; bands of ~1 MP reuse their memory and take half the time (0.025 s)."""
    w, h = im.size
    rows = max(1, _BAND_PIXELS // max(w, 1))
    if h <= rows:
        return np.asarray(im)
    first = np.asarray(im.crop((0, 0, w, rows)))
    out = np.empty((h, *first.shape[1:]), first.dtype)  # numpy's: huge pages where the OS has them
    out[:rows] = first
    for y in range(rows, h, rows):
        out[y : y + rows] = np.asarray(im.crop((0, y, w, min(y + rows, h))))
    return out


@functools.cache
def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """CMYK -> RGB through the embedded profile (result tagged sRGB), else Pillow's naive formula.

    A profile that cannot convert CMYK (corrupt, or made for RGB) gets the naive formula and a warning.
    """
    if icc:
        try:
            cmyk = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            rgb = ImageCms.profileToProfile(im, cmyk, ImageCms.createProfile("sRGB"), outputMode="RGB")
            return np.asarray(rgb), _srgb_profile()
        except (ImageCms.PyCMSError, OSError, TypeError, ValueError) as e:
            warnings.warn(  # collected and re-issued by _fold_warnings, naming the file
                PhotoWarning(f"its CMYK colour profile cannot be used ({e}); converted without it"),
                stacklevel=2,
            )
    return np.asarray(im.convert("RGB")), None


def _build(
    arr: np.ndarray, mode: str, fmt: str, im: Image.Image | None, icc: bytes | None, bits: int = 0
) -> Photo:
    """Orient ``arr`` ((H, W[, 2|3|4]) samples), split off alpha, make the (1, 3, H, W) pixel tensor."""
    exif, xmp, orientation = _metadata(im) if im is not None else (None, None, 1)
    if orientation in _TRANSPOSE:
        arr = _TRANSPOSE[orientation](arr)
        exif = exif and _exif_orientation_1(exif)
        xmp = xmp and re.sub(rb'(tiff:Orientation="|<tiff:Orientation>)[0-9]', rb"\g<1>1", xmp)
    alpha = None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        alpha, arr = np.ascontiguousarray(arr[..., -1]), arr[..., :-1]
    if arr.ndim == 2:
        arr = arr[..., None]
    # One copy: (H, W, C) any strides -> contiguous (C, H, W) at the source's depth (uint8: 3 bytes a
    # pixel where float32 took 12).
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
    pixels = torch.from_numpy(chw if chw.flags.writeable else chw.copy())[None]  # Pillow's are read-only
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1).contiguous()
    return Photo(
        pixels, alpha, bits or (16 if arr.dtype == np.uint16 else 8), fmt, mode, exif, icc or None, xmp
    )


# exif_transpose's operations for orientations 2..8, on (H, W, ...) arrays.
_TRANSPOSE: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _metadata(im: Image.Image) -> tuple[bytes | None, bytes | None, int]:
    """Raw EXIF (b"Exif\\0\\0"-prefixed), XMP and the orientation to apply; decodes no pixels.

    (``im.getexif()`` would decode a whole PNG to look for EXIF after the image data.)
    """
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")  # PNG iTXt may come as str
    xmp = xmp.encode() if isinstance(xmp, str) else xmp or None
    try:
        exif, tags = _exif(im)
    except (*_DECODE_ERRORS, UserWarning) as e:  # viewers show such photos: keep the pixels
        reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(PhotoWarning(f"its EXIF metadata is damaged and was dropped ({reason})"), stacklevel=2)
        exif, tags = None, Image.Exif()
    orientation = tags.get(_ORIENTATION)
    if orientation is None and xmp and (found := re.search(rb'tiff:Orientation(?:="|>)([0-9])', xmp)):
        orientation = int(found[1])  # as Pillow's getexif() and exif_transpose do
    return exif, xmp, orientation if orientation in _TRANSPOSE else 1


def _exif(im: Image.Image) -> tuple[bytes | None, Image.Exif]:
    """The raw EXIF block and its main tags; raises what Pillow raises or warns on damaged EXIF."""
    exif, tags = im.info.get("exif"), Image.Exif()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Pillow warns "Corrupt EXIF data" and carries on
        if exif:
            exif = exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif  # WebP: bare
            tags.load(exif)
            for ifd in (0x8769, 0x8825):  # read the sub-IFDs now, so damage there shows here
                tags.get_ifd(ifd)
        elif im.format == "TIFF":  # EXIF tags live in the TIFF's own IFD, among its pixel-layout tags
            tiff_tags = im.getexif()
            for tag, value in tiff_tags.items():
                if tag in (0x8769, 0x8825):
                    tags[tag] = tiff_tags.get_ifd(tag)
                elif tag not in _TIFF_LAYOUT_TAGS:  # text as its bytes, which tobytes() keeps
                    tags[tag] = _raw_text(value) if isinstance(value, str) else value
            exif = tags.tobytes() if len(tags) else None
    return exif, tags


def _exif_orientation_1(exif: bytes) -> bytes:
    """Set Orientation to 1 in place in the raw bytes, so maker notes and offsets stay valid."""
    tiff = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    start = len(exif) - len(tiff)
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        ifd0 = struct.unpack_from(order + "I", tiff, 4)[0]
        for i in range(struct.unpack_from(order + "H", tiff, ifd0)[0]):
            entry = ifd0 + 2 + 12 * i
            tag, kind, count = struct.unpack_from(order + "HHI", tiff, entry)
            if tag == _ORIENTATION and kind == 3 and count == 1:  # SHORT, value inline
                out = bytearray(exif)
                struct.pack_into(order + "H", out, start + entry + 8, 1)
                return bytes(out)
            if tag == _ORIENTATION:
                break  # unusual encoding: let Pillow rewrite the block below
        else:
            return exif  # no tag (the orientation came from XMP): nothing to reset
    except (KeyError, struct.error):
        pass  # unusual layout: let Pillow rewrite the block below
    tags = Image.Exif()
    tags.load(exif)
    tags[_ORIENTATION] = 1
    return tags.tobytes()


# --- encoding ------------------------------------------------------------------------------------------


def _compose(photo: Photo, pixels: torch.Tensor | None, dtype: np.dtype, keep_alpha: bool) -> np.ndarray:
    """(1, 3, H, W) pixels -> (H, W[, C]) ``dtype`` array in the source's layout (gray, alpha).

    ``pixels`` is float in [0, 1] (clipped), or integer at the photo's own depth (uint8 or uint16).
    Float maths runs on bands of rows, so the temporaries stay small whatever the photo's size.
    """
    px = photo.pixels if pixels is None else pixels
    if px.ndim != 4 or px.shape[:2] != (1, 3):
        raise ValueError(f"pixels must have shape (1, 3, H, W), got {tuple(px.shape)}")
    if not px.is_floating_point() and px.dtype != photo.pixels.dtype:
        raise ValueError(f"integer pixels must be {photo.pixels.dtype} like the photo's, got {px.dtype}")
    px = px.detach()[0]
    h, w = px.shape[1:]
    gray = photo.mode in _GRAY_MODES
    if not gray and px.dtype == {np.uint8: torch.uint8, np.uint16: torch.uint16}.get(dtype.type):
        out = np.empty((h, w, 3), dtype)  # a copy of its own, which the encoder may reorder in place
        out[...] = px.cpu().permute(1, 2, 0).numpy()
    else:
        out = np.empty((h, w) if gray else (h, w, 3), dtype)
        rows = max(1, _BAND_PIXELS // max(w, 1))
        for y in range(0, h, rows):
            x = unit_float(px[:, y : y + rows].cpu()).numpy()  # (3, rows, W) float32
            if gray:
                # Rec.601 luma (as PIL's convert("L")) as g + wr (r - g) + wb (b - g): exactly g for gray
                r, g, b = x
                out[y : y + rows] = _quantize(
                    g + np.float32(0.299) * (r - g) + np.float32(0.114) * (b - g), dtype
                )
            elif dtype == np.uint8:
                out[y : y + rows] = _quantize_rgb8(torch.from_numpy(x))
            else:
                out[y : y + rows] = _quantize(x, dtype).transpose(1, 2, 0)
    if keep_alpha and photo.alpha is not None:
        if photo.alpha.shape != (h, w):
            raise PhotoError(
                f"the result is {w} x {h} but the alpha channel is "
                f"{photo.alpha.shape[1]} x {photo.alpha.shape[0]}",
                "resize the alpha channel too, or drop it (photo.alpha = None)",
            )
        alpha = photo.alpha
        if alpha.dtype != dtype:  # e.g. 16-bit alpha into 8-bit WebP
            unit = alpha / np.float32(np.iinfo(alpha.dtype).max) if alpha.dtype.kind == "u" else alpha
            alpha = _quantize(unit, dtype)
        return np.dstack([out, alpha])
    return np.ascontiguousarray(out)


def _quantize_rgb8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8: the same numbers as ``_quantize``, in torch.

    The common 8-bit case runs on torch's threads (numpy's clip/rint/astype use one core): at 12 MP it
    is the largest cost of writing a JPEG after the encoder itself.
    """
    q = x.clamp(0, 1).mul_(255).round_()  # round half to even, like np.rint
    out = torch.empty((x.shape[1], x.shape[2], 3), dtype=torch.uint8)
    out.copy_(q.permute(1, 2, 0))  # dtype and layout in one pass
    return out.numpy()


def _quantize(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """[0, 1] float -> ``dtype``: round(clip(x, 0, 1) * max), in float32 (float32 output: clip only)."""
    buf = np.clip(x, 0.0, 1.0)  # float32 in, float32 out
    if dtype.kind == "f":
        return buf.astype(dtype, copy=False)
    buf *= np.iinfo(dtype).max
    np.rint(buf, out=buf)
    return buf.astype(dtype)


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run ``write`` on a temporary file next to ``path``, then rename it onto ``path`` (atomic_path)."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            write(f)
    except OSError as e:
        reason = {
            FileNotFoundError: f"folder {path.parent} does not exist",
            NotADirectoryError: f"{path.parent} is not a folder",
        }
        raise PhotoError(
            f"cannot write {path}: {reason.get(type(e), e.strerror or e)}",
            "choose an existing output folder you can write to, with free space",
        ) from e


def _encode(f: BinaryIO, arr: np.ndarray, photo: Photo, fmt: str, quality: int, path: Path) -> None:
    """Encode ``arr`` ((H, W[, C]) uint8/uint16) as ``fmt`` into ``f`` with the photo's metadata."""
    exif, icc, xmp = photo.exif, photo.icc_profile, photo.xmp
    if arr.dtype == np.uint16:
        if fmt == "PNG":
            _png16(f, arr, exif, icc, xmp)
        else:
            _tiff16(f, arr, exif, icc, xmp)
        return
    kw: dict = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        kw.update(quality=quality, **({"subsampling": 0} if quality >= 90 else {}))  # 4:4:4 keeps detail
    elif fmt in ("WEBP", "HEIF"):
        kw["quality"] = quality
    if fmt == "PNG":
        kw["compress_level"] = 3  # on photos ~3x faster than Pillow's default 6, ~10% larger
        if xmp:
            kw["pnginfo"] = info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        if exif:
            kw["exif"] = exif
    elif fmt == "TIFF":
        tags = Image.Exif()  # Pillow writes these into the TIFF's own IFD (XMP is tag 700)
        if exif:
            tags.load(exif)
            for tag, value in list(tags.items()):
                if isinstance(value, str):  # as bytes, or Pillow would write non-ASCII text as "?"
                    tags[tag] = _raw_text(value)
        if xmp:
            tags[700] = xmp
        kw["exif"] = tags
    else:
        kw.update({k: v for k, v in (("exif", exif), ("xmp", xmp)) if v})
    try:
        Image.fromarray(arr).save(f, format=fmt, **kw)
    except ValueError as e:  # e.g. "EXIF data is too long" for JPEG's 64 kB marker
        raise PhotoError(f"cannot write {path} as {fmt}: {e}", "write PNG or TIFF instead") from e


def _is_link_loop(path: Path) -> bool:
    """Whether following the symbolic link ``path`` runs in a circle (ELOOP)."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def _raw_text(value: str) -> bytes:
    """The bytes of an EXIF text tag as they were in the file (Pillow decodes them as Latin-1).

    Cameras and editors store UTF-8 there ("Café ✓"); written back as bytes it survives unchanged.
    """
    return value.encode("latin-1", "replace")


def _png16(f: BinaryIO, arr: np.ndarray, exif: bytes | None, icc: bytes | None, xmp: bytes | None) -> None:
    """16-bit PNG by OpenCV (Pillow cannot) into ``f``, with iCCP/eXIf/iTXt chunks after IHDR."""
    if arr.ndim == 3 and arr.shape[2] == 2:  # OpenCV writes no gray+alpha: expand to RGBA
        arr = arr[..., [0, 0, 0, 1]]
    if arr.ndim == 3:  # in place: ``arr`` is write_photo's own copy (6 bytes a pixel saved)
        code = cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
        arr = cv2.cvtColor(arr, code, dst=arr) if arr.flags.owndata else cv2.cvtColor(arr, code)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise OSError("OpenCV could not encode the 16-bit PNG")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    extra = b""
    if icc:
        extra += chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))
    if xmp:
        extra += chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    png = buf.reshape(-1).data  # a memoryview: no copy of the encoded photo
    f.write(png[:33])  # 33 = signature (8) + IHDR chunk (4 + 4 + 13 + 4)
    f.write(extra)
    f.write(png[33:])


def _tiff16(f: BinaryIO, arr: np.ndarray, exif: bytes | None, icc: bytes | None, xmp: bytes | None) -> None:
    """16-bit TIFF by tifffile with ICC (34675), XMP (700) and the main EXIF tags."""
    extratags: list[tuple[int, str, int, Any, bool]] = [(700, "B", len(xmp), xmp, True)] if xmp else []
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        # ASCII tags of the main IFD: description, make, model, software, date, artist, copyright
        for tag in (270, 271, 272, 305, 306, 315, 33432):
            if isinstance(tags.get(tag), str):
                extratags.append((tag, "s", 0, _raw_text(tags[tag]), True))
        extratags.append((_ORIENTATION, "H", 1, 1, True))
    tifffile.imwrite(
        f,
        arr,
        photometric="minisblack" if arr.ndim == 2 or arr.shape[2] == 2 else "rgb",
        extrasamples=["unassalpha"] if arr.ndim == 3 and arr.shape[2] in (2, 4) else None,
        iccprofile=icc,
        extratags=extratags,
        compression="zlib",
        metadata=None,
        software=False,
    )
