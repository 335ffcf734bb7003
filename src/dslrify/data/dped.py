"""DPED (Ignatov et al., ICCV 2017) in its own folder layout, from a small slice to all 160k pairs.

::

    ROOT/PHONE/training_data/PHONE/N.jpg    phone patch (100x100)   split="train"
    ROOT/PHONE/training_data/canon/N.jpg    the aligned Canon 70D patch
    ROOT/PHONE/test_data/patches/PHONE/N.jpg                         split="test"
    ROOT/PHONE/test_data/patches/canon/N.jpg
    ROOT/PHONE/test_data/full_size_test_images/*                     phone photos, no target

PHONE is ``iphone``, ``sony``, ``blackberry`` or any other folder name. ``root`` may be ROOT or ROOT/PHONE.
DPED is released for non-commercial research use only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from dslrify.data.paired import PairDataset, describe_unpaired, list_images
from dslrify.errors import DataError

Split = Literal["train", "test"]
TARGET_FOLDER = "canon"
_SPLIT_DIRS: dict[str, tuple[str, ...]] = {"train": ("training_data",), "test": ("test_data", "patches")}


def _has_dped_splits(folder: Path) -> bool:
    return (folder / "training_data").is_dir() or (folder / "test_data").is_dir()


def _phone_folders(folder: Path) -> list[str]:
    """Sub-folders of ``folder`` laid out as DPED's ROOT/PHONE."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir() and _has_dped_splits(Path(e.path)))
    except OSError:
        return []


def locate_phone_dir(root: str | os.PathLike, phone: str | None) -> tuple[Path, str]:
    """Find ROOT/PHONE for ``root`` given as ROOT or ROOT/PHONE: returns (that folder, phone folder name).

    ``phone=None`` picks the only phone present. Raises DataError saying what was looked for.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder", "give the DPED root folder (the one holding e.g. iphone/)")
    if phone is not None and _has_dped_splits(root / phone):
        return root / phone, phone
    if _has_dped_splits(root):  # root is ROOT/PHONE itself
        return root, phone if phone is not None else root.name
    found = _phone_folders(root)
    if phone is None and len(found) == 1:
        return root / found[0], found[0]
    if phone is None and found:
        raise DataError(f"{root} holds several phones: {', '.join(found)}", "choose one with phone=...")
    wanted = f"{root}/{phone or 'PHONE'}"
    raise DataError(
        f"{root} is not a DPED folder: looked for {wanted}/training_data or {wanted}/test_data"
        + (f" (phones present: {', '.join(found)})" if found else ""),
        "give the folder that holds iphone/ (or sony/, blackberry/) as unpacked from DPED",
    )


class DPEDDataset(PairDataset):
    """DPED phone/DSLR patch pairs: ``dataset[i]`` -> ``(phone, canon)``, each (3, H, W) float32 in [0, 1].

    Lazy: construction lists the two folders with ``os.scandir`` (no image is opened, so the full
    dataset is ready in about a second); images are decoded in ``__getitem__``. Pairs are matched by file
    name and sorted numerically (``2.jpg`` before ``10.jpg``); a file without a partner is an error.
    """

    def __init__(self, root: str | os.PathLike, phone: str | None = "iphone", split: Split = "train") -> None:
        if split not in _SPLIT_DIRS:
            raise DataError(f"unknown DPED split {split!r}", "use split='train' or split='test'")
        phone_dir, phone_name = locate_phone_dir(root, phone)
        split_dir = phone_dir.joinpath(*_SPLIT_DIRS[split])
        if phone is None or not (split_dir / phone_name).is_dir():
            phone_name = self._only_phone_in(split_dir, phone_name)
        self.root, self.phone, self.split = phone_dir, phone_name, split
        input_dir, target_dir = split_dir / phone_name, split_dir / TARGET_FOLDER
        inputs, targets = list_images(input_dir), list_images(target_dir, sort=False)
        unpaired = set(inputs).symmetric_difference(targets)
        if unpaired:
            raise DataError(
                describe_unpaired(unpaired, f"{input_dir} and {target_dir}"),
                "each phone patch needs the Canon patch of the same name; re-extract the dataset",
            )
        if not inputs:
            raise DataError(f"{input_dir} has no images", "check that the DPED archive was fully unpacked")
        # Only the file names are kept (not 2 x 160k Path objects): cheap in memory and in DataLoader
        # workers, which copy what they touch.
        self._input_dir, self._target_dir, self._files = input_dir, target_dir, inputs

    def __len__(self) -> int:
        return len(self._files)

    def paths(self, i: int) -> tuple[Path, Path]:
        """(phone patch path, Canon patch path) of pair ``i``."""
        return self._input_dir / self._files[i], self._target_dir / self._files[i]

    def name(self, i: int) -> str:
        """The pair's file name without extension, e.g. ``"12"``."""
        return os.path.splitext(self._files[i])[0]

    @staticmethod
    def _only_phone_in(split_dir: Path, wanted: str) -> str:
        """The single non-canon folder of ``split_dir`` (the phone's), when ``wanted`` is not there."""
        try:
            with os.scandir(split_dir) as entries:
                others = sorted(e.name for e in entries if e.is_dir() and e.name != TARGET_FOLDER)
        except OSError as e:
            raise DataError(f"{split_dir}: no such folder", "this DPED split is missing; unpack it") from e
        if len(others) == 1:
            return others[0]
        raise DataError(
            f"{split_dir} has no phone folder {wanted!r} (found: {', '.join(others) or 'none'})",
            "pass phone= with the folder name of the phone patches",
        )

    def __repr__(self) -> str:
        return (
            f"DPEDDataset({str(self.root)!r}, phone={self.phone!r}, split={self.split!r}, {len(self)} pairs)"
        )


def full_size_test_images(root: str | os.PathLike, phone: str | None = "iphone") -> list[Path]:
    """Paths of DPED's full-size phone test photos (``test_data/full_size_test_images/*``), no targets."""
    phone_dir, _ = locate_phone_dir(root, phone)
    folder = phone_dir / "test_data" / "full_size_test_images"
    names = list_images(folder)
    if not names:
        raise DataError(f"{folder} has no images", "check that the DPED test data was fully unpacked")
    return [folder / n for n in names]
