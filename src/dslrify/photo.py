"""Reading and writing photos: the only module that opens or saves image files.

Rules, in and out:

* Formats: JPEG, PNG, TIFF and WebP; HEIC/HEIF with the optional ``pillow-heif``
  (``pip install 'dslrify[heic]'``). The output format comes from the destination's extension.
* Orientation: the EXIF (or XMP) orientation is applied on reading, as ``PIL.ImageOps.exif_transpose``
  does, and reset to 1 in the EXIF/XMP written out, so the result is upright in every viewer.
* Metadata: EXIF, XMP and the ICC profile are carried into the output. 16-bit TIFF output keeps only
  the main EXIF tags (camera, date, software), not the EXIF sub-IFD (tifffile cannot write it).
* Colour: pixels are processed in the source's own encoding and written back with the same embedded
  ICC profile, wide-gamut ones included (Adobe RGB, Display P3, ProPhoto). Nothing is converted to
  sRGB, so no colour is clipped and a colour-managed viewer shows the result as it shows the source.
* Bit depth: 16-bit PNG/TIFF are read at full precision (OpenCV/tifffile: Pillow reads 16-bit RGB PNG
  as 8 bit), processed in float and written back at 16 bit as PNG/TIFF. JPEG/WebP output is 8 bit.
* Grayscale (L, LA, I;16, 1): given to the model as RGB (gray repeated) and written back as grayscale,
  the Rec.601 luma of the result (as ``convert("L")``). 16-bit gray+alpha PNG is written as RGBA.
* CMYK (JPEG/TIFF): converted to RGB through its ICC profile when it has one (the output is then
  tagged sRGB), else with Pillow's naive conversion (output untagged); always written as RGB.
* Palette (P, PA): converted to RGB, or RGBA when it has transparency; written as RGB(A).
* Alpha: never given to the model; passed through untouched, and dropped for JPEG (no alpha there).
* Limits: a photo of more than ``max_pixels`` is refused from its header, before decoding.
* Writes are atomic: a temporary file in the destination folder, then ``os.replace``.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import tifffile
import torch
from PIL import Image, ImageCms, PngImagePlugin, UnidentifiedImageError

from dslrify.errors import PhotoError
from dslrify.files import atomic_path

DEFAULT_MAX_PIXELS = 200_000_000
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
_READ_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "WEBP": "WEBP", "HEIF": "HEIF"}
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B"}
_ORIENTATION = 0x0112
_HEIC_ADVICE = "pip install 'dslrify[heic]'"
_DAMAGED = "the file is damaged, truncated or not an image; copy or export it again"
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


@dataclass
class Photo:
    """A decoded photo: pixels for the model plus everything needed to write it back faithfully."""

    pixels: torch.Tensor  # (1, 3, H, W) float32 RGB in [0, 1], EXIF orientation applied
    alpha: np.ndarray | None = None  # (H, W) in its source dtype, oriented, untouched
    bit_depth: int = 8  # 8 or 16, of the source
    format: str = ""  # "JPEG", "PNG", "TIFF", "WEBP", "HEIF"; "" for in-memory images
    mode: str = "RGB"  # source mode: "RGB", "RGBA", "L", "LA", "CMYK", "I;16", "P", ...
    exif: bytes | None = None  # raw EXIF (b"Exif\0\0" + TIFF header ...), Orientation reset to 1
    icc_profile: bytes | None = None
    xmp: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.pixels.shape[-1]), int(self.pixels.shape[-2])


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


def inspect_photo(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> PhotoInfo:
    """The format, upright size and bit depth of a photo from its header (no pixels decoded).

    Raises the PhotoError that :func:`read_photo` would for a missing, empty, unreadable, unsupported or
    too large file.
    """
    path = Path(path)
    with _opened(path, max_pixels) as (im, fmt):
        try:
            bits = _bit_depth(path, im, fmt)
            orientation = _metadata(im)[2]
        except PhotoError as e:
            raise PhotoError(f"{path}: {e.message}", e.advice) from e
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            raise PhotoError(f"{path}: cannot decode image ({e})", _DAMAGED) from e
        w, h = im.size
        return PhotoInfo(fmt, *((h, w) if orientation in (5, 6, 7, 8) else (w, h)), bits)


def read_photo(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Photo:
    """Decode a photo file, oriented upright, with its metadata (see the module docstring for rules)."""
    path = Path(path)
    with _opened(path, max_pixels) as (im, fmt):
        try:
            if _bit_depth(path, im, fmt) == 16:
                arr, icc = _read16(path, fmt), im.info.get("icc_profile")
            else:
                arr, icc = _pil_pixels(im)  # TIFF: Pillow applies and deletes the orientation itself
            return _build(arr, im.mode, fmt, im, icc)
        except PhotoError as e:
            raise PhotoError(f"{path}: {e.message}", e.advice) from e
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
            raise PhotoError(f"{path}: cannot decode image ({e})", _DAMAGED) from e


@contextmanager
def _opened(path: Path, max_pixels: int) -> Iterator[tuple[Image.Image, str]]:
    """The opened image (header read, no pixels) and its format, after every check made before decoding.

    Pillow's own pixel limit is off meanwhile (``max_pixels`` governs), for the decode in the block too.
    """
    if not path.exists():
        raise PhotoError(f"{path}: no such file", "check the path")
    if path.is_dir():
        raise PhotoError(f"{path} is a folder, not a photo", "give the path of an image file")
    if path.stat().st_size == 0:
        raise PhotoError(f"{path} is empty (0 bytes)", "the copy or download did not finish; copy it again")
    heif = _heif_available()  # registers the HEIF opener on first use
    if path.suffix.lower() in (".heic", ".heif") and not heif:
        raise PhotoError(f"{path}: reading HEIC/HEIF needs the pillow-heif package", _HEIC_ADVICE)
    with _own_pixel_limit(), _open(path, heif) as im:
        fmt = _READ_FORMATS.get(im.format or "")
        if fmt is None:
            raise PhotoError(
                f"{path} is a {im.format} image, which dslrify does not read", "convert it to PNG"
            )
        w, h = im.size
        if w * h > max_pixels:  # from the header: nothing decoded yet
            raise PhotoError(
                f"{path} is {w} x {h} = {w * h:,} pixels, more than the limit of {max_pixels:,}",
                "raise --max-pixels if you trust this file",
            )
        yield im, fmt


def from_pil(image: Image.Image) -> Photo:
    """A Photo from a PIL image (its EXIF orientation applied; 16-bit only for I;16 gray)."""
    try:
        with _own_pixel_limit():
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
    try:
        fmt = format_for_extension(path.suffix if format is None else format)
    except PhotoError as e:
        raise PhotoError(f"cannot write {path}: {e.message}", e.advice) from e
    if fmt == "HEIF" and not _heif_available():
        raise PhotoError(f"cannot write {path}: HEIC/HEIF needs the pillow-heif package", _HEIC_ADVICE)
    if path.is_dir():
        raise PhotoError(f"cannot write {path}: it is a folder", "give a file name for the output")
    bits16 = photo.bit_depth == 16 and fmt in ("PNG", "TIFF")
    arr = _compose(photo, pixels, np.dtype(np.uint16 if bits16 else np.uint8), keep_alpha=fmt != "JPEG")
    _atomic_write(path, lambda f: _encode(f, arr, photo, fmt, quality, path))


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
def _own_pixel_limit() -> Iterator[None]:
    """Pillow's decompression-bomb limit (89 MP) off meanwhile, so that ``max_pixels`` governs.

    Pillow checks when opening and again when decoding TIFF, hence around both. The lock keeps
    concurrent readers from restoring each other's ``None``.
    """
    with _pillow_limit_lock:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open(path: Path, heif: bool) -> Image.Image:
    """Image.open (reads the header only), with errors that say what is wrong."""
    try:
        return Image.open(path)
    except UnidentifiedImageError as e:
        with open(path, "rb") as f:
            head = f.read(12)
        if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1") and not heif:
            raise PhotoError(
                f"{path} is a HEIC/HEIF photo; reading it needs pillow-heif", _HEIC_ADVICE
            ) from e
        raise PhotoError(f"{path} is not a photo dslrify can read", _DAMAGED) from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise PhotoError(f"{path}: cannot open image ({e})", _DAMAGED) from e


def _bit_depth(path: Path, im: Image.Image, fmt: str) -> int:
    """8 or 16: the depth of the stored samples (Pillow's mode hides it for 16-bit RGB)."""
    if fmt == "PNG":
        with open(path, "rb") as f:
            return 16 if f.read(25)[24:25] == b"\x10" else 8  # IHDR bit-depth byte
    if fmt == "TIFF":
        bits = im.tag_v2.get(258, 8)
        sample_format = im.tag_v2.get(339, 1)  # 1: unsigned integer; 2: signed; 3: float
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
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        return arr
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        arr = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            arr = 65535 - arr
        elif page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
            raise PhotoError(
                f"16-bit {page.photometric.name} TIFF is not supported", "convert it to RGB first"
            )
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
    return np.asarray(im), icc


@functools.cache
def _srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """CMYK -> RGB through the embedded profile (result tagged sRGB), else Pillow's naive formula."""
    if not icc:
        return np.asarray(im.convert("RGB")), None
    try:
        cmyk = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        rgb = ImageCms.profileToProfile(im, cmyk, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, TypeError) as e:
        raise PhotoError(f"its CMYK colour profile cannot be used ({e})", "convert it to RGB first") from e
    return np.asarray(rgb), _srgb_profile()


def _build(
    arr: np.ndarray, mode: str, fmt: str, im: Image.Image | None, icc: bytes | None, bits: int = 0
) -> Photo:
    """Orient ``arr`` ((H, W[, 2|3|4]) samples), split off alpha, make the model's float tensor."""
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
    # One copy: (H, W, C) any dtype/strides -> contiguous (C, H, W) float32; no float64 on the way.
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
    pixels = torch.from_numpy(chw)[None]
    if arr.dtype != np.float32:
        pixels.div_(np.iinfo(arr.dtype).max)
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
    exif, tags = im.info.get("exif"), Image.Exif()
    if exif:
        exif = exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif  # WebP stores it bare
        tags.load(exif)
    elif im.format == "TIFF":  # EXIF tags live in the TIFF's own IFD, among its pixel-layout tags
        tiff_tags = im.getexif()
        for tag, value in tiff_tags.items():
            if tag not in _TIFF_LAYOUT_TAGS:
                tags[tag] = tiff_tags.get_ifd(tag) if tag in (0x8769, 0x8825) else value
        exif = tags.tobytes() if len(tags) else None
    orientation = tags.get(_ORIENTATION)
    if orientation is None and xmp and (found := re.search(rb'tiff:Orientation(?:="|>)([0-9])', xmp)):
        orientation = int(found[1])  # as Pillow's getexif() and exif_transpose do
    return exif, xmp, orientation or 1


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
    """(1, 3, H, W) float -> (H, W[, C]) ``dtype`` array in the source's layout (gray, alpha)."""
    px = photo.pixels if pixels is None else pixels
    if px.ndim != 4 or px.shape[:2] != (1, 3):
        raise ValueError(f"pixels must have shape (1, 3, H, W), got {tuple(px.shape)}")
    x = px.detach()[0].to("cpu", torch.float32).numpy()  # (3, H, W): float maths on contiguous memory
    h, w = x.shape[1:]
    if photo.mode in _GRAY_MODES:
        # Rec.601 luma (as PIL's convert("L")) written as g + wr (r - g) + wb (b - g): exactly g for gray
        r, g, b = x
        out = _quantize(g + np.float32(0.299) * (r - g) + np.float32(0.114) * (b - g), dtype)
    elif dtype == np.uint8:
        out = _quantize_rgb8(torch.from_numpy(x))
    else:
        out = _quantize(x, dtype).transpose(1, 2, 0)  # (H, W, 3) view; copied once below
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
            f.write(_png16(arr, exif, icc, xmp))
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
        if xmp:
            tags[700] = xmp
        kw["exif"] = tags
    else:
        kw.update({k: v for k, v in (("exif", exif), ("xmp", xmp)) if v})
    try:
        Image.fromarray(arr).save(f, format=fmt, **kw)
    except ValueError as e:  # e.g. "EXIF data is too long" for JPEG's 64 kB marker
        raise PhotoError(f"cannot write {path} as {fmt}: {e}", "write PNG or TIFF instead") from e


def _png16(arr: np.ndarray, exif: bytes | None, icc: bytes | None, xmp: bytes | None) -> bytes:
    """16-bit PNG by OpenCV (Pillow cannot), with iCCP/eXIf/iTXt chunks inserted after IHDR."""
    if arr.ndim == 3 and arr.shape[2] == 2:  # OpenCV writes no gray+alpha: expand to RGBA
        arr = arr[..., [0, 0, 0, 1]]
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
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
    png = buf.tobytes()
    return png[:33] + extra + png[33:]  # 33 = signature (8) + IHDR chunk (4 + 4 + 13 + 4)


def _tiff16(f: BinaryIO, arr: np.ndarray, exif: bytes | None, icc: bytes | None, xmp: bytes | None) -> None:
    """16-bit TIFF by tifffile with ICC (34675), XMP (700) and the main EXIF tags."""
    extratags = [(700, "B", len(xmp), xmp, True)] if xmp else []
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        # ASCII tags of the main IFD: description, make, model, software, date, artist, copyright
        for tag in (270, 271, 272, 305, 306, 315, 33432):
            if isinstance(tags.get(tag), str):
                extratags.append((tag, "s", 0, tags[tag], True))
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
