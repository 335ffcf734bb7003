"""A folder of photos without targets (for distillation from a teacher, or unpaired losses).

``PhotoFolder(root)[i]`` is ``(photo, photo)``: the same (3, H, W) float32 RGB tensor in [0, 1] twice, so
it plugs in wherever a pair dataset does; the training loop replaces the second with a teacher's output.
Names are listed at construction; nothing is decoded until an item is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from dslrify.data.pairs import list_images, to_chw
from dslrify.errors import DataError
from dslrify.photo import read_rgb


class PhotoFolder(Dataset):
    """Every image directly inside ``root`` (jpg, png, tif, webp), in natural order."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such folder of photos")
        self.names = list_images(self.root)
        if not self.names:
            raise DataError(f"{self.root}: no photos in this folder", "expected .jpg/.png/.tif/.webp files")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x = to_chw(read_rgb(self.root / self.names[i]))
        return x, x

    def name(self, i: int) -> str:
        return self.names[i]

    def paths(self, i: int) -> tuple[Path, Path]:
        return self.root / self.names[i], self.root / self.names[i]
