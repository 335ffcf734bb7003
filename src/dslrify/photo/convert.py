"""Photos to and from arrays and PIL images, and the samples written out: float results quantised to
the source's depth and layout (gray, alpha), a band of rows at a time.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
from PIL import Image

from dslrify.errors import PhotoError
from dslrify.photo import core
from dslrify.photo.core import _DAMAGED, _GRAY_MODES, _READ_FORMATS, Photo, unit_float
from dslrify.photo.decode import _build, _pil_pixels, _pillow_settings


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
        rows = max(1, core._BAND_PIXELS // max(w, 1))
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
