"""The :class:`Photo` type and what every part of :mod:`dslrify.photo` shares: the formats and their
extensions, the pixel limit, the one-line advice of its errors and the decoders' exceptions.

See :mod:`dslrify.photo` for the rules photos are read and written by.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from dslrify.errors import PhotoError

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
_HEIC_ADVICE = "pip install 'dslrify[heic]'"
_DAMAGED = "the file is damaged, truncated or not an image; copy or export it again"
_TRUNCATED = "copy or export it again; --allow-truncated decodes what is there"
_NO_PERMISSION = "you lack permission to read it; check its owner and permissions (ls -l)"
# Pixels converted to float at once when writing (12 MB of float32 RGB), and decoded at once when
# reading. Read as ``core._BAND_PIXELS`` where used, so that a test may set it here.
_BAND_PIXELS = 1 << 20


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


@dataclass(frozen=True)
class PhotoInfo:
    """What a photo's header says: format ("JPEG", "PNG", "TIFF", "WEBP", "HEIF"), upright size, depth."""

    format: str
    width: int  # after the EXIF orientation, as read_photo returns it
    height: int
    bit_depth: int  # 8 or 16


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
