"""Decoding pixels: Pillow's settings, HEIF, 16-bit PNG/TIFF at full precision, CMYK and palette to RGB,
and the :class:`~dslrify.photo.Photo` made from the samples (oriented upright, alpha split off).
"""

from __future__ import annotations

import functools
import io
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch
from PIL import Image, ImageCms, ImageFile, UnidentifiedImageError

from dslrify.errors import PhotoError
from dslrify.photo import core
from dslrify.photo.core import (
    _DAMAGED,
    _DECODE_ERRORS,
    _HEIC_ADVICE,
    _NO_PERMISSION,
    Photo,
    PhotoWarning,
    _decode_error,
)
from dslrify.photo.metadata import _TRANSPOSE, _exif_orientation_1, _metadata

_pillow_limit_lock = threading.Lock()


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
    rows = max(1, core._BAND_PIXELS // max(w, 1))
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
