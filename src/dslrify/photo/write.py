"""Writing photos: :func:`write_photo` (atomic, ``files.atomic_path``), :func:`encode_photo` (bytes for
object stores), :func:`write_image` (previews), and the encoders with their metadata (16-bit PNG by
OpenCV, 16-bit TIFF by tifffile). The format is always given to the encoder, never guessed.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import tifffile
import torch
from PIL import Image, PngImagePlugin

from dslrify.errors import PhotoError
from dslrify.files import atomic_path
from dslrify.photo.convert import _compose, _quantize_rgb8
from dslrify.photo.core import _HEIC_ADVICE, SUPPORTED_EXTENSIONS, Photo, format_for_extension
from dslrify.photo.decode import _heif_available
from dslrify.photo.metadata import _ORIENTATION, _raw_text


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
