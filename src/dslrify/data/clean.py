"""Material for the direction of enhancement: patches that are already at DSLR quality.

A model that *matches* photos to DSLR quality must leave such a patch as it is (the identity term of
CycleGAN and WESPE) and bring a synthetic phone-like degradation of it back to it. ``CleanPatches``
serves that material as ``(patch, patch)`` pairs:

- the DSLR targets of the training pairs it is given (in cross-validation, only the training folds'
  pairs: a held-out fold's DSLR patches are never seen);
- optionally, clean photos (not used for evaluation) cut into ``patch``-sized crops at full and at half
  resolution, ``per_photo`` seeded crops each (half at each scale), kept as 8-bit in memory.

All tensors are (3, H, W) float32 RGB in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from dslrify.data.paired import PairDataset, list_images, to_chw
from dslrify.errors import DataError
from dslrify.photo import read_rgb


def cut_patches(photo: Tensor, patch: int, count: int, g: torch.Generator) -> list[Tensor]:
    """``count`` seeded ``patch`` x ``patch`` crops of ``photo`` (3, H, W) (the whole photo if smaller)."""
    h, w = photo.shape[-2:]
    p = min(patch, h, w)
    out = []
    for _ in range(count):
        top = int(torch.randint(h - p + 1, (1,), generator=g))
        left = int(torch.randint(w - p + 1, (1,), generator=g))
        out.append(photo[:, top : top + p, left : left + p])
    return out


class CleanPatches(Dataset):
    """``dataset[i]`` -> ``(patch, patch)``: DSLR targets of ``pairs[indices]``, then clean photo crops.

    ``photos``: a folder of clean photos (None: the DSLR targets only). ``seed`` fixes the crops.
    """

    def __init__(
        self,
        pairs: PairDataset,
        indices: list[int],
        photos: str | os.PathLike | None = None,
        patch: int = 100,
        per_photo: int = 64,
        seed: int = 0,
    ) -> None:
        self.pairs, self.indices = pairs, list(indices)
        self.crops: list[Tensor] = []  # uint8 (3, p, p)
        if photos is not None:
            root = Path(photos)
            if not root.is_dir():
                raise DataError(f"{root}: no such folder of clean photos", "set data.clean_root to a folder")
            names = list_images(root)
            if not names:
                raise DataError(f"{root}: no photos in this folder", "expected .jpg/.png/.tif/.webp files")
            g = torch.Generator().manual_seed(seed)
            for name in names:
                full = to_chw(read_rgb(root / name))[None]
                half = F.interpolate(full, scale_factor=0.5, mode="area")
                for photo, count in ((full[0], per_photo - per_photo // 2), (half[0], per_photo // 2)):
                    crops = cut_patches(photo, patch, count, g)
                    self.crops += [(c * 255).round().to(torch.uint8).clone() for c in crops]

    def __len__(self) -> int:
        return len(self.indices) + len(self.crops)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if i < len(self.indices):
            target = self.pairs[self.indices[i]][1]
        else:
            target = self.crops[i - len(self.indices)].float().div_(255.0)
        return target, target

    def describe(self) -> str:
        return f"{len(self.indices)} DSLR training patches + {len(self.crops)} clean photo crops"
