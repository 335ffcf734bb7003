"""Paired-image datasets: a lazy base class, input/target folders, and CSV lists of pairs.

Every dataset here returns ``(input, target)`` as CHW float32 RGB tensors in [0, 1]. Construction only
lists file names (``os.scandir``) and never opens an image, so that a 160,000-pair dataset is ready at
once; images are decoded in ``__getitem__``, where size mismatches and damaged files are reported.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from dslrify.errors import DataError, PhotoError
from dslrify.photo import SUPPORTED_EXTENSIONS, read_rgb

#: File name endings taken as images (compared lower-case): the formats dslrify.photo reads, as everywhere.
IMAGE_SUFFIXES = tuple(SUPPORTED_EXTENSIONS)


def natural_key(name: str) -> tuple:
    """Sort key that orders ``2.jpg`` before ``10.jpg`` (numbers compared as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


def sort_natural(names: Iterable[str]) -> list[str]:
    """``names`` in natural order; fast path for DPED's all-numeric names (160k of them per folder)."""
    try:
        return sorted(names, key=lambda n: (int(os.path.splitext(n)[0]), n))
    except ValueError:
        return sorted(names, key=natural_key)


def list_images(folder: Path, sort: bool = True) -> list[str]:
    """Names of the image files directly in ``folder``, naturally sorted; opens none of them."""
    try:
        with os.scandir(folder) as entries:
            names = [
                e.name
                for e in entries
                if e.name.lower().endswith(IMAGE_SUFFIXES) and not e.name.startswith(".") and e.is_file()
            ]
    except FileNotFoundError as e:
        raise DataError(f"{folder}: no such folder", "check the dataset path") from e
    except NotADirectoryError as e:
        raise DataError(f"{folder}: not a folder", "check the dataset path") from e
    return sort_natural(names) if sort else names


def describe_unpaired(names: Iterable[str], where: str) -> str:
    """'3 files in X have no partner: a, b, c' with at most 5 names listed."""
    names = sort_natural(names)
    shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
    return f"{len(names)} file(s) in {where} have no partner: {shown}"


def to_chw(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    # Copy: Pillow's arrays may be read-only, which torch.from_numpy warns about.
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float().div_(255.0)


def read_pair(input_path: Path, target_path: Path) -> tuple[Tensor, Tensor]:
    """Decode one pair as CHW float32 [0, 1] tensors; DataError names a damaged file or a size mismatch."""
    try:
        inp, tgt = read_rgb(input_path), read_rgb(target_path)
    except PhotoError as e:
        raise DataError(e.message, e.advice or "replace or remove this pair") from e
    if inp.shape != tgt.shape:
        raise DataError(
            f"{input_path} is {inp.shape[1]}x{inp.shape[0]} but its target {target_path} is "
            f"{tgt.shape[1]}x{tgt.shape[0]}",
            "input and target of a pair must be aligned images of the same size",
        )
    return to_chw(inp), to_chw(tgt)


class PairDataset(Dataset):
    """Pairs of image files given as lists; base of every paired dataset in dslrify.

    ``dataset[i]`` -> ``(input, target)``, each ``(3, H, W)`` float32 RGB in [0, 1]. Subclasses that
    store pairs differently override ``__len__``, :meth:`paths` and :meth:`name`.
    """

    def __init__(self, inputs: list[Path], targets: list[Path], names: list[str]) -> None:
        self._inputs, self._targets, self._names = inputs, targets, names

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        input_path, target_path = self.paths(i)
        return read_pair(input_path, target_path)

    def paths(self, i: int) -> tuple[Path, Path]:
        """(input path, target path) of pair ``i``."""
        return self._inputs[i], self._targets[i]

    def name(self, i: int) -> str:
        """A short name of pair ``i`` for reports and file names, unique within the dataset."""
        return self._names[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} pairs)"


class PairFolderDataset(PairDataset):
    """Pairs from ``ROOT/input/NAME.ext`` and ``ROOT/target/NAME.ext``, matched by file stem.

    Extensions may differ between the two folders (``a.jpg`` with ``a.png``). Files without a partner
    are an error at construction (up to 5 are named); nothing is decoded until an item is read.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        inputs = self._by_stem(self.root / "input")
        targets = self._by_stem(self.root / "target")
        missing = [inputs[s] for s in inputs.keys() - targets.keys()]
        missing += [targets[s] for s in targets.keys() - inputs.keys()]
        if missing:
            raise DataError(
                describe_unpaired(missing, f"{self.root}/input and {self.root}/target"),
                "every input/NAME needs a target/NAME with the same name (any image extension)",
            )
        if not inputs:
            raise DataError(f"{self.root}/input has no images", f"expected {', '.join(IMAGE_SUFFIXES)} files")
        stems = sort_natural(inputs)
        super().__init__(
            [self.root / "input" / inputs[s] for s in stems],
            [self.root / "target" / targets[s] for s in stems],
            stems,
        )

    @staticmethod
    def _by_stem(folder: Path) -> dict[str, str]:
        found: dict[str, str] = {}
        for name in list_images(folder):
            stem = os.path.splitext(name)[0]
            if stem in found:
                raise DataError(
                    f"{folder} has both {found[stem]} and {name}",
                    "pairs are matched by name without extension: keep one of them",
                )
            found[stem] = name
        return found

    @classmethod
    def from_csv(cls, csv_path: str | os.PathLike) -> PairFolderDataset:
        """Pairs listed in a CSV file with columns ``input,target`` (a header row is required).

        Relative paths are resolved against the CSV file's folder. Every listed file must exist (checked
        at construction by name, without opening it).
        """
        csv_path = Path(csv_path)
        try:
            with open(csv_path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or not {"input", "target"} <= set(reader.fieldnames):
                    raise DataError(
                        f"{csv_path}: header is {reader.fieldnames}, expected columns input,target",
                        "the first line must name the columns, e.g. 'input,target'",
                    )
                rows = [(row["input"], row["target"]) for row in reader]
        except FileNotFoundError as e:
            raise DataError(f"{csv_path}: no such file", "check the path of the CSV file") from e
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{csv_path}: not a readable CSV file ({e})", "save it as UTF-8 CSV") from e
        if not rows:
            raise DataError(f"{csv_path} lists no pairs", "add lines 'input_path,target_path'")
        base = csv_path.parent
        inputs, targets, names, missing = [], [], [], []
        for line, (inp, tgt) in enumerate(rows, start=2):
            if not inp or not tgt:
                raise DataError(f"{csv_path}, line {line}: empty input or target", "fill in both columns")
            pair = (base / inp, base / tgt)  # an absolute path stays absolute
            missing += [str(p) for p in pair if not p.is_file()]
            inputs.append(pair[0])
            targets.append(pair[1])
            # Relative path of the input (unique in practice, unlike a bare stem) names the pair.
            names.append(os.path.splitext(inp)[0].replace("\\", "/").lstrip("/"))
        if missing:
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
            raise DataError(
                f"{csv_path} lists {len(missing)} missing file(s): {shown}",
                "relative paths are resolved against the CSV file's folder",
            )
        dataset = cls.__new__(cls)  # same class, but filled from the list rather than from folders
        PairDataset.__init__(dataset, inputs, targets, names)
        dataset.root = base
        return dataset
