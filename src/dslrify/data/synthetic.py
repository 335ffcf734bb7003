"""Pretraining pairs made from clean photos: (synthetic phone-like degradation, clean patch).

DSLR-like photos are plentiful; phone/DSLR pairs are not. :func:`degrade` turns a clean patch into
what a 2010-era phone camera (DPED's iPhone 3GS) might have made of the same scene: softer optics,
vignetting, a shifted exposure, a colour cast, sensor noise, a different tone curve, duller colours and
strong JPEG compression. :class:`SyntheticPairs` serves such pairs with PairDataset's interface, every
random choice drawn from a generator seeded by ``(seed, index)`` so that item ``i`` never changes.

All tensors are float32 RGB in [0, 1], shaped (3, H, W) or (N, 3, H, W); every step keeps [0, 1].
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from kornia.color import linear_rgb_to_rgb, rgb_to_linear_rgb
from kornia.filters import gaussian_blur2d
from torch import Tensor

from dslrify.data.paired import IMAGE_SUFFIXES, PairDataset, sort_natural, to_chw
from dslrify.errors import DataError, PhotoError
from dslrify.photo import read_rgb

#: Ranges each parameter of :class:`PhoneDegradation` is drawn from (uniformly), for an iPhone 3GS-like
#: camera: a small, cheap lens and sensor, a simple ISP and aggressive JPEG.
RANGES: dict[str, tuple[float, float]] = {
    "sigma": (0.5, 1.5),  # lens blur, Gaussian sigma in pixels of the (downscaled) patch
    "vignette": (0.0, 0.3),  # light lost at normalised radius 1 from the optical centre
    "ev": (-0.6, 0.3),  # exposure error in stops (phones of the time mostly under-expose)
    "gain": (0.8, 1.2),  # white-balance error: red and blue gains relative to green
    "shot": (1e-4, 2e-3),  # Poisson-like noise variance per unit of linear signal
    "read": (5e-4, 3e-3),  # Gaussian read-noise standard deviation in linear light
    "gamma": (0.8, 1.25),  # tone-curve exponent (<1 brightens midtones, >1 darkens them)
    "contrast": (-0.4, 0.3),  # S-curve amount (<0 flatter, >0 punchier)
    "desaturate": (0.0, 0.35),  # share of chroma removed
    "quality": (30, 80),  # JPEG quality
}


# --- the steps --------------------------------------------------------------------------------------


def lens_blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of ``sigma`` pixels (a soft, small lens); (…, 3, H, W) -> same shape."""
    k = 2 * math.ceil(3 * sigma) + 1  # covers +-3 sigma
    flat = x.reshape(-1, *x.shape[-3:])
    return gaussian_blur2d(flat, (k, k), (sigma, sigma), border_type="reflect").reshape(x.shape)


def vignette(x: Tensor, strength: float, center: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """Radial light falloff ``1 - strength * r**2`` (cos^4-like for small angles).

    ``r`` is the distance from ``center`` ((y, x) in units of the half height/width, (0, 0): the
    image centre), scaled so that the image corners are at r = 1 when centred. An off-centre ``center``
    imitates a patch cut from anywhere in the frame: it then shows part of the falloff as a gradient.
    """
    h, w = x.shape[-2:]
    yy = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device)[:, None] - center[0]
    xx = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device)[None, :] - center[1]
    r2 = (yy**2 + xx**2) / 2
    return x * (1 - strength * r2).clamp(0, 1)


def exposure(x: Tensor, ev: float) -> Tensor:
    """Scale linear light by ``2**ev``; over-exposure clips, as a phone's small pixels do."""
    return (x * 2.0**ev).clamp(0, 1)


def white_balance(x: Tensor, gains: Sequence[float]) -> Tensor:
    """Per-channel (R, G, B) gains: a colour cast from a wrong white-balance estimate."""
    g = torch.as_tensor(gains, dtype=x.dtype, device=x.device).reshape(3, 1, 1)
    return (x * g).clamp(0, 1)


def sensor_noise(x: Tensor, shot: float, read: float, g: torch.Generator) -> Tensor:
    """Poisson-Gaussian noise on linear light: variance ``shot * x + read**2``, independent per channel.

    Signal-dependent, so highlights get more absolute noise and shadows a worse signal-to-noise ratio
    (visible after the sRGB curve); per-channel independence gives the chroma noise of a Bayer sensor.
    """
    std = (shot * x + read**2).sqrt()
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
    return (x + std * noise.to(x.device)).clamp(0, 1)


def tone_curve(x: Tensor, gamma: float, contrast: float) -> Tensor:
    """A phone ISP's tone mapping: ``x**gamma``, then an S-curve blend ``y + c * (smoothstep(y) - y)``.

    For ``c`` in [-1, 1] the curve is monotonic and fixes 0, 0.5 and 1, so it stays in [0, 1].
    """
    y = x.clamp(0, 1) ** gamma
    return (y + contrast * (y * y * (3 - 2 * y) - y)).clamp(0, 1)


def desaturate(x: Tensor, amount: float) -> Tensor:
    """Move colours ``amount`` of the way towards their grey (Rec.601 luma): duller colours."""
    luma = (0.299 * x[..., 0:1, :, :] + 0.587 * x[..., 1:2, :, :] + 0.114 * x[..., 2:3, :, :]).clamp(0, 1)
    return luma + (1 - amount) * (x - luma)  # a convex blend of values in [0, 1]


def jpeg(x: Tensor, quality: int) -> Tensor:
    """Encode as JPEG at ``quality`` (4:2:0 chroma) and decode: blocking, ringing, colour bleeding.

    OpenCV encodes in memory here, outside :mod:`dslrify.photo` (the only module that reads users'
    photos): this is a synthetic degradation, not photo I/O, and needs no metadata or colour handling.
    """
    flat = x.reshape(-1, *x.shape[-3:]).detach().cpu()
    out = torch.empty_like(flat)
    for i, img in enumerate(flat):
        u8 = (img.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if decoded is None:
            raise RuntimeError("OpenCV could not decode the JPEG it encoded")
        out[i] = to_chw(decoded[..., ::-1])
    return out.reshape(x.shape).to(x.device, x.dtype)


# --- the whole camera --------------------------------------------------------------------------------


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=g))


@dataclass(frozen=True)
class PhoneDegradation:
    """One draw of every step's parameters (ranges in :data:`RANGES`); :meth:`apply` runs the camera."""

    sigma: float
    vignette: float
    center: tuple[float, float]
    ev: float
    gains: tuple[float, float, float]
    shot: float
    read: float
    gamma: float
    contrast: float
    desaturate: float
    quality: int

    @classmethod
    def sample(cls, g: torch.Generator) -> PhoneDegradation:
        """Draw each parameter uniformly from its range, in a fixed order (so a seed fixes the draw)."""
        r = RANGES
        return cls(
            sigma=_uniform(g, *r["sigma"]),
            vignette=_uniform(g, *r["vignette"]),
            center=(_uniform(g, -1, 1), _uniform(g, -1, 1)),
            ev=_uniform(g, *r["ev"]),
            gains=(_uniform(g, *r["gain"]), 1.0, _uniform(g, *r["gain"])),
            shot=_uniform(g, *r["shot"]),
            read=_uniform(g, *r["read"]),
            gamma=_uniform(g, *r["gamma"]),
            contrast=_uniform(g, *r["contrast"]),
            desaturate=_uniform(g, *r["desaturate"]),
            quality=int(torch.randint(int(r["quality"][0]), int(r["quality"][1]) + 1, (1,), generator=g)),
        )

    def apply(self, clean: Tensor, g: torch.Generator) -> Tensor:
        """(…, 3, H, W) clean sRGB in [0, 1] -> degraded, same shape; ``g`` draws the noise."""
        # Optics and sensor act on light, so those steps run in linear RGB; the ISP's run on sRGB.
        lin = rgb_to_linear_rgb(clean.clamp(0, 1))
        lin = lens_blur(lin, self.sigma).clamp(0, 1)
        lin = vignette(lin, self.vignette, self.center)
        lin = exposure(lin, self.ev)
        lin = sensor_noise(lin, self.shot, self.read, g)
        lin = white_balance(lin, self.gains)  # gains applied after capture, so they scale the noise too
        x = linear_rgb_to_rgb(lin).clamp(0, 1)
        x = tone_curve(x, self.gamma, self.contrast)
        x = desaturate(x, self.desaturate)
        return jpeg(x, self.quality)


def degrade(clean: Tensor, g: torch.Generator) -> Tensor:
    """A phone-like version of ``clean`` ((3, H, W) or (N, 3, H, W) in [0, 1]), same shape, in [0, 1].

    Each image of a batch gets its own :class:`PhoneDegradation` draw; all randomness comes from ``g``.
    """
    if clean.ndim not in (3, 4) or clean.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (N, 3, H, W), got {tuple(clean.shape)}")
    if clean.ndim == 3:
        return PhoneDegradation.sample(g).apply(clean, g)
    return torch.stack([PhoneDegradation.sample(g).apply(img, g) for img in clean])


# --- the dataset -------------------------------------------------------------------------------------


def _list_photos(root: Path) -> list[str]:
    """Image files under ``root`` (subfolders too), as naturally sorted relative paths; opens none."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder", "give a folder of clean, DSLR-like photos")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(folder).relative_to(root)
        found += [
            (rel / f).as_posix()
            for f in files
            if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")
        ]
    return sort_natural(found)


def _item_seed(seed: int, i: int) -> int:
    """The generator seed of item ``i``: distinct for every ``i`` < 2**32 of one ``seed``.

    torch's CPU generator keeps only the low 32 bits of a seed (``2**32 + 1`` seeds like ``1``), so
    ``(seed, i)`` is folded into 32 bits: a bijection in ``i``, with the golden-ratio multiplier putting
    the ranges of different seeds far apart.
    """
    return (i + seed * 0x9E3779B9) % 2**32


class SyntheticPairs(PairDataset):
    """``dataset[i]`` -> ``(degraded, clean)``, each (3, patch, patch) float32 RGB in [0, 1].

    Item ``i`` is a patch of photo ``i // pairs_per_photo`` under ``root`` (subfolders included): the
    photo is area-downscaled by a factor drawn in ``scale`` (a 12 MP DSLR photo at 100% is far sharper
    than a DPED Canon patch; a quarter to half size matches that scale), a ``patch``-pixel square is
    cut at a random place, and :func:`degrade` makes the input from it. Scale, place and degradation
    come from a generator seeded by ``(seed, i)``, so an item is the same in every worker and run.

    Construction only lists file names. Decoded photos are kept in a small per-worker LRU cache of
    ``cache_size`` photos, stored already downscaled to ``scale[1]`` (4-16x less memory than full size).
    """

    def __init__(
        self,
        root: str | Path,
        patch: int = 100,
        pairs_per_photo: int = 64,
        seed: int = 0,
        scale: tuple[float, float] = (0.25, 0.5),
        cache_size: int = 3,
    ) -> None:
        if patch < 1 or pairs_per_photo < 1 or cache_size < 1:
            raise ValueError("patch, pairs_per_photo and cache_size must be positive")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        self.root = Path(root)
        self.photos = _list_photos(self.root)
        if not self.photos:
            raise DataError(f"{self.root} has no photos", f"expected {', '.join(IMAGE_SUFFIXES)} files")
        self.patch, self.pairs_per_photo, self.seed = patch, pairs_per_photo, seed
        self.scale, self.cache_size = (float(scale[0]), float(scale[1])), cache_size
        # path -> (photo downscaled to `cached scale`, that scale, smaller side at full size)
        self._cache: OrderedDict[Path, tuple[np.ndarray, float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.photos) * self.pairs_per_photo

    def paths(self, i: int) -> tuple[Path, Path]:
        """(photo, photo): input and target both come from the same file."""
        photo = self.root / self.photos[self._check(i) // self.pairs_per_photo]
        return photo, photo

    def name(self, i: int) -> str:
        """``PHOTO_K``: the photo's relative path without extension, and the patch number ``K`` in it."""
        photo, k = divmod(self._check(i), self.pairs_per_photo)
        return f"{os.path.splitext(self.photos[photo])[0]}_{k}"

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        path = self.paths(i)[0]
        image, cached_scale, short = self._photo(path)
        g = torch.Generator().manual_seed(_item_seed(self.seed, i))
        # Never scale below what still holds a whole patch (a small photo is then used larger).
        s = max(_uniform(g, *self.scale), self.patch / short)
        h, w = image.shape[:2]
        crop = min(round(self.patch * cached_scale / s), h, w)  # patch size at the cached scale
        top = int(torch.randint(h - crop + 1, (1,), generator=g))
        left = int(torch.randint(w - crop + 1, (1,), generator=g))
        cut = image[top : top + crop, left : left + crop]
        if crop != self.patch:
            cut = cv2.resize(cut, (self.patch, self.patch), interpolation=cv2.INTER_AREA)
        clean = to_chw(cut)
        return degrade(clean, g), clean

    def _check(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} pairs")
        return i

    def _photo(self, path: Path) -> tuple[np.ndarray, float, int]:
        """(photo area-downscaled to the cached scale (H, W, 3) uint8, that scale, full-size short side)."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        try:
            full = read_rgb(path)
        except PhotoError as e:
            raise DataError(e.message, e.advice or "replace or remove this photo") from e
        h, w = full.shape[:2]
        short = min(h, w)
        if short < self.patch:
            raise DataError(
                f"{path} is {w}x{h}, smaller than a {self.patch}-pixel patch",
                "remove it or use a smaller patch size",
            )
        # The largest scale an item can ask for; results do not depend on what is cached.
        cached_scale = min(1.0, max(self.scale[1], self.patch / short))
        size = (max(self.patch, round(w * cached_scale)), max(self.patch, round(h * cached_scale)))
        small = full if size == (w, h) else cv2.resize(full, size, interpolation=cv2.INTER_AREA)
        self._cache[path] = entry = (small, cached_scale, short)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry

    def __getstate__(self) -> dict:
        # Workers start with an empty cache instead of receiving pickled photos from the parent.
        return {**self.__dict__, "_cache": OrderedDict()}

    def __repr__(self) -> str:
        return f"SyntheticPairs({len(self.photos)} photos x {self.pairs_per_photo} = {len(self)} pairs)"
