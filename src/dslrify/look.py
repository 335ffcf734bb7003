"""A look: a model's colour and tone transform as one 3D LUT, to apply anywhere (ffmpeg, Resolve, GIMP).

A ``Look`` holds a lattice table ``(N, N, N, 3)`` indexed ``[r, g, b]``: the output at input
``(r, g, b) / (N - 1)``, both sRGB-encoded RGB in [0, 1] (the photo's own encoding, as ``dslrify
enhance`` applies a model). Between nodes it is interpolated **trilinearly** (ffmpeg's ``lut3d
interp=trilinear``, colour-science's default ``LUT3D.apply``); inputs outside [0, 1] are clamped.

``Look.model()`` is an ``EnhancementModel`` (no receptive field, no context), so ``Enhancer`` applies a
look to photos with all its I/O rules (EXIF, ICC, 16 bit, alpha, naming, atomic writes), and anything
that runs an Enhancer (batches, video) runs a look as a constant transform. ``fit_look`` (in
``dslrify.lookfit``) makes one from a model and photos; ``Look.save`` / ``Look.load`` read and write
``.cube`` and Hald CLUT PNG files (``dslrify.lutfile``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from dslrify.errors import DslrifyError
from dslrify.lutfile import (
    LutFile,
    check_cube_size,
    check_hald_level,
    read_cube,
    read_hald,
    write_cube,
    write_hald,
)
from dslrify.models.base import EnhancementModel, ModelSpec

if TYPE_CHECKING:
    from dslrify.lookfit import FitReport

LutFormat = Literal["cube", "hald"]
INTERPOLATION = "trilinear"
ENCODING = "input and output: sRGB-encoded RGB in [0, 1] (the photo's own encoding)"
DEFAULT_SIZE = 33
_CHUNK_PIXELS = 1 << 18  # pixels looked up at once: bounds the (rows, W, 3) grid to 3 MB
_BAND_PIXELS = 1 << 20  # pixels Pillow looks up at once (a 4 MB RGBX image), one band per thread


def identity_table(size: int) -> np.ndarray:
    """The identity lattice ``(size, size, size, 3)`` float64: node ``[r, g, b]`` holds its own input."""
    axis = np.linspace(0.0, 1.0, size)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def lut_format(
    output: str | os.PathLike, format: str | None, size: int | None, hald_level: int
) -> tuple[LutFormat, int]:
    """The file format and lattice size for writing ``output``; refuses what does not fit.

    ``format`` None: from the extension (``.cube``, ``.png`` for Hald). A Hald CLUT of level L has
    L² entries per side, so ``size``, if given, must be L².
    """
    fmt = _format_of(output, format)
    if fmt == "cube":
        return "cube", check_cube_size(DEFAULT_SIZE if size is None else size)
    n = check_hald_level(hald_level) ** 2
    if size is not None and size != n:
        raise DslrifyError(
            f"--size {size} does not match --hald-level {hald_level} ({n} entries per side)",
            "drop --size: a Hald CLUT's size is its level squared",
        )
    return "hald", n


def _format_of(path: str | os.PathLike, format: str | None) -> LutFormat:
    """``format`` (cube or hald) checked against ``path``'s extension, or taken from it."""
    suffix = Path(path).suffix.lower()
    fmt = format or {".cube": "cube", ".png": "hald"}.get(suffix)
    if fmt not in ("cube", "hald"):
        raise DslrifyError(f"cannot tell the LUT format of {path}", "name it .cube or .png, or pass --format")
    wanted = ".cube" if fmt == "cube" else ".png"
    if suffix != wanted:
        raise DslrifyError(
            f"a {fmt} LUT is written as {wanted}, not {suffix or 'no extension'}", f"name it *{wanted}"
        )
    return "cube" if fmt == "cube" else "hald"


class LookModel(EnhancementModel):
    """A 3D LUT as an enhancement model: a per-pixel trilinear lookup.

    8-bit pixels on the CPU go through Pillow's C ``Color3DLUT`` (trilinear, fixed point: within
    0.54/255 of the exact value, rounded to 8 bit): several times faster than ``grid_sample``, whose CPU
    kernel for 5-D inputs is not vectorised. That is ``enhance_native`` for a photo's own uint8 pixels
    (``Enhancer`` then skips float altogether), and ``enhance`` for float inputs whose every value is a
    multiple of 1/255 (as ``photo.unit_float`` makes them from uint8). Anything else (16-bit photos,
    other float tensors, a GPU) goes through ``grid_sample`` in row chunks.
    """

    lut: torch.Tensor  # (1, 3, N, N, N): [0, channel, b, g, r], a buffer (moves with .to(device))

    def __init__(self, table: np.ndarray, label: str = "look") -> None:
        super().__init__()
        # Input float (12 bytes a pixel) + output (12) + a chunk's grid: far below a network's needs.
        self.spec = ModelSpec(receptive_field=0, bytes_per_pixel=32, context="none")
        table = np.clip(np.ascontiguousarray(table, dtype=np.float64), 0, 1)
        lut = torch.from_numpy(table.astype(np.float32))
        # grid_sample's 5-D input is (N, C, D, H, W) and its grid's last axis is (x, y, z) = (W, H, D):
        # with D = b, H = g, W = r, a pixel's (r, g, b) is its own grid coordinate.
        self.register_buffer("lut", lut.permute(3, 2, 1, 0).unsqueeze(0).contiguous())
        # Pillow's table: R changes fastest, then G, then B.
        self._pillow = ImageFilter.Color3DLUT(table.shape[0], table.transpose(2, 1, 0, 3).reshape(-1, 3))
        self.label = label

    def enhance(self, x: torch.Tensor, context: Any, origin: tuple[int, int] | None) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W): the LUT's value at each pixel's colour."""
        if x.device.type == "cpu" and not x.requires_grad:
            codes = x.float().mul(255).round_()
            if torch.equal(codes.div(255), x):  # as photo.unit_float made them from uint8
                looked = self._pillow_8bit(codes.to(torch.uint8))
                return torch.empty(looked.shape, dtype=torch.float32).copy_(looked).div_(255)
        return self._enhance_float(x)

    def enhance_native(self, pixels: torch.Tensor) -> torch.Tensor | None:
        """(N, 3, H, W) uint8 on the CPU -> (N, 3, H, W) uint8 (channels-last strides): what ``enhance``
        gives for ``unit_float(pixels)``, times 255, exactly (Pillow's 8-bit output). None for anything
        else (uint16, float, a look moved to a GPU): those take ``enhance``."""
        if pixels.dtype != torch.uint8 or pixels.device.type != "cpu" or self.lut.device.type != "cpu":
            return None
        return self._pillow_8bit(pixels)

    def _pillow_8bit(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 -> (N, 3, H, W) uint8 (channels-last strides) through Pillow's filter, in
        bands of rows on as many threads as torch uses (the filter releases the GIL).

        A band is read from the planes as Pillow images sharing their memory (``frombuffer``), merged
        into Pillow's RGBX layout, filtered, and written interleaved into the result: ``write_photo``
        then copies it into the encoder's layout in one memcpy. Bands of ~1 MP keep each of Pillow's
        buffers in one 4 MB allocation that the allocator reuses, where whole-photo images (48 MB at
        12 MP) would be fresh memory every time (~12,000 page faults each, ~15 ms).
        """
        n, _, h, w = pixels.shape
        # numpy's buffer rather than torch's: numpy asks for huge pages (~700 page faults at 12 MP, not
        # ~9,000).
        out = np.empty((n, h, w, 3), np.uint8)
        rows = max(1, _BAND_PIXELS // max(w, 1))
        bands = [(i, y, min(y + rows, h)) for i in range(n) for y in range(0, h, rows)]

        def band(where: tuple[int, int, int]) -> None:
            i, y0, y1 = where
            planes = pixels[i, :, y0:y1].numpy()
            rgb = Image.merge(
                "RGB",
                [
                    Image.frombuffer("L", (w, y1 - y0), np.ascontiguousarray(plane), "raw", "L", 0, 1)
                    for plane in planes
                ],
            )
            out[i, y0:y1] = np.asarray(rgb.filter(self._pillow))

        threads = min(torch.get_num_threads(), len(bands))
        if threads > 1:
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dslrify-look") as pool:
                for _ in pool.map(band, bands):  # raises a band's error
                    pass
        else:
            for where in bands:
                band(where)
        return torch.from_numpy(out).permute(0, 3, 1, 2)

    def _enhance_float(self, x: torch.Tensor) -> torch.Tensor:
        lut = self.lut
        n, _, h, w = x.shape
        out = torch.empty((n, 3, h, w), dtype=torch.float32, device=x.device)
        rows = max(1, _CHUNK_PIXELS // max(w, 1))
        for i in range(n):
            for y0 in range(0, h, rows):
                grid = x[i : i + 1, :, y0 : y0 + rows].permute(0, 2, 3, 1).float().mul(2).sub_(1)
                looked = F.grid_sample(
                    lut, grid.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=True
                )
                out[i : i + 1, :, y0 : y0 + rows] = looked[:, :, 0]
        return out


@dataclass(frozen=True)
class Look:
    """A 3D LUT look (see the module docstring). ``fit``: the fit errors, when made by ``fit_look``."""

    table: np.ndarray  # (N, N, N, 3) float64, [r, g, b] -> RGB in [0, 1]
    title: str = "dslrify look"
    comments: tuple[str, ...] = ()
    fit: FitReport | None = None

    @property
    def size(self) -> int:
        return int(self.table.shape[0])

    @classmethod
    def identity(cls, size: int = DEFAULT_SIZE) -> Look:
        return cls(identity_table(check_cube_size(size)), "identity", (describe(),))

    def blend(self, strength: float) -> Look:
        """The look at ``strength``: 0 the identity, 1 itself (as ``Enhancer``'s strength, per node)."""
        if not 0.0 <= strength <= 1.0:
            raise DslrifyError(f"strength must be between 0 and 1, got {strength}", "use a value from 0 to 1")
        ident = identity_table(self.size)
        return replace(self, table=ident + strength * (self.table - ident))

    def model(self) -> LookModel:
        return LookModel(self.table, label=f"look {self.title}")

    @overload
    def apply(self, image: torch.Tensor) -> torch.Tensor: ...
    @overload
    def apply(self, image: np.ndarray) -> np.ndarray: ...
    @overload
    def apply(self, image: Image.Image) -> Image.Image: ...
    def apply(
        self, image: torch.Tensor | np.ndarray | Image.Image
    ) -> torch.Tensor | np.ndarray | Image.Image:
        """Apply the look. A tensor (N, 3, H, W) float in [0, 1] (or uint8/uint16) gives float32 in
        [0, 1]; a PIL image or numpy array gives the same type back (as ``Enhancer.enhance``)."""
        if isinstance(image, torch.Tensor):
            from dslrify.photo import unit_float

            with torch.inference_mode():
                return self.model()(unit_float(image))
        from dslrify.enhancer import Enhancer

        return Enhancer(self.model(), device="cpu").enhance(image)

    def save(self, path: str | os.PathLike, format: LutFormat | None = None) -> Path:
        """Write the look as ``.cube`` text or a 16-bit Hald CLUT PNG (from the extension), atomically."""
        lut = LutFile(self.table, self.title, self.comments)
        (write_cube if _format_of(path, format) == "cube" else write_hald)(path, lut)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Look:
        """Read a ``.cube`` file or a Hald CLUT image (PNG, TIFF...)."""
        path = Path(path)
        if not path.is_file():
            raise DslrifyError(f"{path}: no such LUT file", "give a .cube file or a Hald CLUT PNG")
        lut = read_cube(path) if path.suffix.lower() == ".cube" else read_hald(path)
        return cls(lut.table, lut.title or path.stem, lut.comments)


def describe() -> str:
    """The comment line every look file carries: how to apply it."""
    return f"interpolation: {INTERPOLATION}; {ENCODING}"
