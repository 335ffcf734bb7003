"""A folder of photos without targets (for distillation from a teacher, or unpaired losses).

``PhotoFolder(root)[i]`` is ``(photo, photo)``: the same (3, H, W) float32 RGB tensor in [0, 1] twice, so
it plugs in wherever a pair dataset does; the training loop replaces the second with a teacher's output.
Names are listed at construction; nothing is decoded until an item is read.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from dslrify.data.paired import list_images, to_chw
from dslrify.errors import DataError
from dslrify.photo import read_rgb


class PhotoFolder(Dataset):
    """Every image directly inside ``root`` (jpg, png, tif, webp), in natural order."""

    def __init__(self, root: str | os.PathLike, cache_size: int = 128) -> None:
        self.root = Path(root)
        # Decoded photos are kept (per loader worker): training draws many crops from each photo.
        self.cache_size = cache_size
        self._cache: OrderedDict[int, Tensor] = OrderedDict()
        if not self.root.is_dir():
            raise DataError(f"{self.root}: no such folder of photos")
        self.names = list_images(self.root)
        if not self.names:
            raise DataError(f"{self.root}: no photos in this folder", "expected .jpg/.png/.tif/.webp files")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if i in self._cache:
            self._cache.move_to_end(i)
            x = self._cache[i]
        else:
            x = to_chw(read_rgb(self.root / self.names[i]))
            if self.cache_size:
                self._cache[i] = x
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return x, x

    def name(self, i: int) -> str:
        return self.names[i]

    def paths(self, i: int) -> tuple[Path, Path]:
        return self.root / self.names[i], self.root / self.names[i]
