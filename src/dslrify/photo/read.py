"""Reading photos: the checks made before decoding (file kind, permissions, pixel limit, forged sizes,
truncation), :func:`read_photo` and its variants, and what a header alone tells (:func:`inspect_photo`,
:func:`capture_time`). Decoders' warnings come out as one PhotoWarning naming the file.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dslrify.errors import PhotoError
from dslrify.photo.core import (
    _DECODE_ERRORS,
    _HEIC_ADVICE,
    _NO_PERMISSION,
    _READ_FORMATS,
    _TRUNCATED,
    DEFAULT_MAX_PIXELS,
    RAW_EXTENSIONS,
    Photo,
    PhotoInfo,
    PhotoWarning,
    _decode_error,
)
from dslrify.photo.decode import (
    _bit_depth,
    _build,
    _heif_available,
    _open,
    _pil_pixels,
    _pillow_settings,
    _read16,
)
from dslrify.photo.metadata import _exif, _find_png_exif, _metadata


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an 8-bit image file as an (H, W, 3) uint8 RGB array (datasets' fast path, no metadata)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError as e:
        raise PhotoError(f"{path}: no such file") from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise PhotoError(f"{path}: cannot decode image ({e})", "the file is damaged or not an image") from e


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
