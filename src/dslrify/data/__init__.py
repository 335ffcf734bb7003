"""Paired datasets (phone photo, DSLR target) as torch Datasets, and layout detection.

``dataset[i]`` is ``(input, target)``: (3, H, W) float32 RGB tensors in [0, 1]; ``dataset.name(i)`` and
``dataset.paths(i)`` identify the pair in reports. Nothing is decoded until an item is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from dslrify.data.dped import DPEDDataset, Split, full_size_test_images, locate_phone_dir
from dslrify.data.paired import IMAGE_SUFFIXES, PairDataset, PairFolderDataset
from dslrify.errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "DPEDDataset",
    "PairDataset",
    "PairFolderDataset",
    "full_size_test_images",
    "open_pairs",
]


def open_pairs(path: str | os.PathLike, phone: str | None = None, split: Split = "train") -> PairDataset:
    """Open a paired dataset, recognising its layout from ``path``.

    - ``*.csv``: a list of pairs (columns ``input,target``), see :meth:`PairFolderDataset.from_csv`;
    - a folder with ``input/`` and ``target/``: :class:`PairFolderDataset`;
    - DPED's layout (ROOT or ROOT/PHONE): :class:`DPEDDataset` with ``phone`` (None: the only one there)
      and ``split`` (``"train"`` or ``"test"``; ignored by the other layouts, which have no splits).

    Raises DataError listing what was looked for when none matches.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return PairFolderDataset.from_csv(path)
        raise DataError(f"{path} is a file but not a .csv list of pairs", "give a folder or a .csv file")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder", "check the dataset path")
    if (path / "input").is_dir() or (path / "target").is_dir():
        return PairFolderDataset(path)
    try:
        locate_phone_dir(path, phone)
    except DataError as e:
        raise DataError(
            f"{path}: no paired dataset found. Looked for {path}/input/ + {path}/target/ (pair folders), "
            f"DPED's {path}/PHONE/training_data or test_data/patches ({e.message}), or a .csv file",
            "see `dslrify.data` for the supported layouts",
        ) from e
    return DPEDDataset(path, phone=phone, split=split)
