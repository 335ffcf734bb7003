"""Build a DPED-layout training set from your own phone and DSLR photos of the same scenes.

::

    OUT/PHONE/training_data/{PHONE,canon}/N.jpg       aligned patches of the training photos
    OUT/PHONE/test_data/patches/{PHONE,canon}/N.jpg   patches of the held-out photos
    OUT/report/index.html, report.json, images/       one row per photo pair, review images

The test split is drawn by photo pair (seeded), never by patch: overlapping patches of one scene never
land on both sides. ``dslrify train --set data.root=OUT --set data.phone=PHONE`` reads the result.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dslrify.data.dped import TARGET_FOLDER
from dslrify.data.paired import natural_key
from dslrify.errors import DataError, DslrifyError
from dslrify.pairs.align import Alignment, align_pair, local_error, warp_to_phone
from dslrify.pairs.report import review_images, write_image, write_report
from dslrify.photo import (
    SUPPORTED_EXTENSIONS,
    capture_time,
    from_array,
    read_photo,
    unit_float,
    write_photo,
)

MATCH_MODES = ("name", "time", "order")
MAX_PATCH_ERROR = 1.0  # px of residual shift; see dslrify.pairs.align.local_error
MAX_TIME_GAP = 60.0  # s between a phone and a DSLR shot of the same scene (match="time")


@dataclass
class PairResult:
    """One photo pair: its alignment, split and patch counts (``ok`` False: ``reason`` says why)."""

    phone: str
    dslr: str
    ok: bool = False
    reason: str = ""
    alignment: Alignment | None = None
    split: str = ""  # "train" or "test" once placed
    kept: int = 0
    dropped: int = 0  # local error above the threshold, or contents differ
    flat: int = 0  # kept, but without texture to measure the error on
    first: int = 0  # number of its first patch file in its split
    overlay: str = ""  # review images, relative to OUT/report
    diff: str = ""

    def to_json(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "alignment"}
        d["alignment"] = self.alignment.to_json() if self.alignment else None
        return d


@dataclass
class BuildReport:
    """What :func:`build_dataset` did: pairs (aligned and rejected), photos without partner, totals."""

    out: Path
    name: str
    settings: dict
    pairs: list[PairResult] = field(default_factory=list)
    unpaired: list[dict[str, str]] = field(default_factory=list)  # {"side", "file", "why"}

    @property
    def aligned(self) -> list[PairResult]:
        return [p for p in self.pairs if p.ok]

    @property
    def rejected(self) -> list[PairResult]:
        return [p for p in self.pairs if not p.ok]

    def patches(self, split: str) -> int:
        return sum(p.kept for p in self.aligned if p.split == split)

    def to_json(self) -> dict:
        totals = {
            "aligned": len(self.aligned),
            "rejected": len(self.rejected),
            "unpaired": len(self.unpaired),
            "train_patches": self.patches("train"),
            "test_patches": self.patches("test"),
            "dropped_patches": sum(p.dropped for p in self.pairs),
        }
        return {
            "settings": self.settings,
            "totals": totals,
            "pairs": [p.to_json() for p in self.pairs],
            "unpaired": self.unpaired,
        }

    def summary(self) -> str:
        """A few lines: counts, every rejected pair and every photo without partner, the report's path."""
        test = [p.phone for p in self.aligned if p.split == "test"]
        lines = [
            f"{len(self.aligned)} pairs aligned ({len(self.aligned) - len(test)} train, {len(test)} test"
            + (f": {', '.join(test)}" if test else "")
            + f"); {self.patches('train')} training and {self.patches('test')} test patches, "
            f"{sum(p.dropped for p in self.pairs)} dropped"
        ]
        lines += [f"rejected: {p.phone} + {p.dslr}: {p.reason}" for p in self.rejected]
        lines += [f"no partner: {u['side']} {u['file']} ({u['why']})" for u in self.unpaired]
        lines.append(f"report: {self.out / 'report' / 'index.html'}")
        return "\n".join(lines)


def list_photos(folder: str | os.PathLike, what: str) -> list[Path]:
    """The photos directly in ``folder``, in natural order; DataError when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{what} folder {folder}: no such folder", f"give the folder of your {what} photos")
    found = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".")
    ]
    if not found:
        raise DataError(f"{what} folder {folder} has no photos", f"use {', '.join(SUPPORTED_EXTENSIONS)}")
    return sorted(found, key=lambda p: natural_key(p.name))


def match_photos(
    phones: list[Path], dslrs: list[Path], match: str = "name", max_time_gap: float = MAX_TIME_GAP
) -> tuple[list[tuple[Path, Path]], list[dict[str, str]]]:
    """Pair the photos: same stem (``name``), nearest capture time (``time``, one to one, closest first,
    at most ``max_time_gap`` s apart) or sorted order (``order``). Returns (pairs, photos without partner)."""
    if match not in MATCH_MODES:
        raise DslrifyError(f"unknown matching {match!r}", f"choose one of {', '.join(MATCH_MODES)}")
    pairs: list[tuple[Path, Path]] = []
    if match == "order":
        pairs = list(zip(phones, dslrs, strict=False))  # the longer list's rest is unpaired
    elif match == "name":
        phone_stems, dslr_stems = _stem_map(phones), _stem_map(dslrs)
        pairs = [(p, dslr_stems[s]) for s, p in phone_stems.items() if s in dslr_stems]
    else:
        times = {p: capture_time(p) for p in phones + dslrs}
        gaps = sorted(
            (abs((times[p] - times[d]).total_seconds()), i, j)  # type: ignore[operator]
            for i, p in enumerate(phones)
            for j, d in enumerate(dslrs)
            if times[p] and times[d]
        )
        used_p: set[int] = set()
        used_d: set[int] = set()
        for gap, i, j in gaps:
            if gap <= max_time_gap and i not in used_p and j not in used_d:
                used_p.add(i)
                used_d.add(j)
                pairs.append((phones[i], dslrs[j]))
        pairs.sort(key=lambda pd: natural_key(pd[0].name))
    paired = {p for pair in pairs for p in pair}
    unpaired = []
    for side, paths in (("phone", phones), ("dslr", dslrs)):
        for p in paths:
            if p in paired:
                continue
            if match == "name":
                why = f"no {'DSLR' if side == 'phone' else 'phone'} photo named {p.stem}.*"
            elif match == "order":
                why = f"{len(phones)} phone and {len(dslrs)} DSLR photos: nothing left to pair it with"
            elif times[p] is None:
                why = "no EXIF capture time (DateTimeOriginal)"
            else:
                why = f"no partner shot within {max_time_gap:g} s (are both cameras' clocks set alike?)"
            unpaired.append({"side": side, "file": p.name, "why": why})
    return pairs, unpaired


def _stem_map(paths: list[Path]) -> dict[str, Path]:
    stems: dict[str, Path] = {}
    for p in paths:
        key = p.stem.lower()
        if key in stems:
            raise DataError(
                f"{p.parent} holds two photos named {p.stem}: {stems[key].name} and {p.name}",
                "keep one of them, or use --match time or --match order",
            )
        stems[key] = p
    return stems


def load_rgb(path: Path) -> np.ndarray:
    """A photo as (H, W, 3) uint8 RGB, upright (its EXIF orientation applied by dslrify.photo)."""
    px = unit_float(read_photo(path).pixels)[0]  # (3, H, W) float32 in [0, 1]
    return (px.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def cut_patches(
    phone: np.ndarray, warped: np.ndarray, valid: np.ndarray, patch: int, stride: int, max_error: float
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """Grid positions (x, y) of the kept and the dropped patches, and how many kept ones were flat.

    The grid starts at the corner of the valid region's bounding box (the common field of view), and
    only patches lying wholly in the valid region count.
    """
    ys, xs = np.nonzero(valid)
    if len(ys) == 0:
        return [], [], 0
    # integral image of invalid pixels: a patch is wholly valid when its sum is 0
    bad = np.pad((~valid).astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    kept, dropped, flat = [], [], 0
    for y in range(int(ys.min()), int(ys.max()) - patch + 2, stride):
        for x in range(int(xs.min()), int(xs.max()) - patch + 2, stride):
            y1, x1 = y + patch, x + patch
            if bad[y1, x1] - bad[y, x1] - bad[y1, x] + bad[y, x]:
                continue
            err = local_error(phone[y:y1, x:x1], warped[y:y1, x:x1])
            if err > max_error:  # nan (flat) compares False: kept
                dropped.append((x, y))
            else:
                kept.append((x, y))
                flat += math.isnan(err)
    return kept, dropped, flat


def _write_patch(path: Path, rgb: np.ndarray) -> None:
    write_photo(path, from_array(np.ascontiguousarray(rgb))[0], quality=95)


def build_dataset(
    phone_dir: str | os.PathLike,
    dslr_dir: str | os.PathLike,
    out: str | os.PathLike,
    name: str = "phone",
    patch: int = 100,
    stride: int = 50,
    test_fraction: float = 0.1,
    match: str = "name",
    seed: int = 0,
    max_patch_error: float = MAX_PATCH_ERROR,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> BuildReport:
    """Pair, align and cut the photos of ``phone_dir`` and ``dslr_dir`` into DPED's layout under ``out``.

    ``patch``/``stride`` in phone pixels; ``test_fraction`` of the aligned photo pairs (at least one when
    above 0 and two or more pairs align) go to the test split, drawn with ``seed``; a patch whose residual
    shift exceeds ``max_patch_error`` px is dropped. ``log`` receives one line per photo pair. Pairs that
    cannot be aligned are reported and skipped; DataError when none can be, or when ``out`` already
    holds this dataset (``overwrite=True`` replaces it).
    """
    say = log or (lambda line: None)
    if patch < 16 or stride < 1:
        raise DslrifyError(f"patch {patch} / stride {stride} px", "use a patch of 16 px or more, stride >= 1")
    if not 0 <= test_fraction < 1:
        raise DslrifyError(f"test fraction {test_fraction}", "give a fraction in [0, 1), e.g. 0.1")
    if not name or name == TARGET_FOLDER or any(c in name for c in "/\\") or name.startswith("."):
        raise DslrifyError(f"phone name {name!r} cannot be a folder name here", "use e.g. --name pixel7")
    out, phones, dslrs = Path(out), list_photos(phone_dir, "phone"), list_photos(dslr_dir, "DSLR")
    pairs, unpaired = match_photos(phones, dslrs, match)
    if not pairs:
        raise DataError(f"no photo pairs found by {match} in {phone_dir} and {dslr_dir}", _MATCH_ADVICE)
    root, report_dir = out / name, out / "report"
    existing = [p for p in (root, report_dir) if p.is_dir() and any(p.iterdir())]
    if existing and not overwrite:
        raise DataError(f"{existing[0]} already exists", "choose another -o or --name, or pass --overwrite")
    for p in existing:
        shutil.rmtree(p)  # stale patches would mix with the new ones
    settings = {"phone_dir": str(phone_dir), "dslr_dir": str(dslr_dir), "name": name, "patch": patch,
                "stride": stride, "test_fraction": test_fraction, "match": match, "seed": seed,
                "max_patch_error": max_patch_error}  # fmt: skip
    report = BuildReport(out, name, settings, unpaired=unpaired)
    staging = root / ".staging"
    for i, (p_path, d_path) in enumerate(pairs):
        report.pairs.append(
            _process_pair(i, p_path, d_path, staging, report_dir, patch, stride, max_patch_error)
        )
        say(_line(report.pairs[-1]))
    _place(report, staging, root, name, test_fraction, seed)
    shutil.rmtree(staging, ignore_errors=True)
    write_report(report.to_json(), report_dir)
    if not report.aligned:
        raise DataError(
            f"none of the {len(pairs)} photo pairs could be aligned (see {report_dir / 'index.html'})",
            "check that each pair shows the same scene, shot from the same place (a tripod helps)",
        )
    return report


def _process_pair(
    i: int,
    p_path: Path,
    d_path: Path,
    staging: Path,
    report_dir: Path,
    patch: int,
    stride: int,
    max_err: float,
) -> PairResult:
    """Read, align, warp and cut pair ``i``: patches to ``staging/i``, review images to ``report_dir``."""
    result = PairResult(p_path.name, d_path.name)
    try:
        phone, dslr = load_rgb(p_path), load_rgb(d_path)
    except DslrifyError as e:
        result.reason = f"cannot read: {e}"
        return result
    a = result.alignment = align_pair(phone, dslr)
    result.ok, result.reason = a.ok, a.reason
    if not a.ok:
        return result
    warped, valid = warp_to_phone(dslr, a, phone.shape)
    kept, dropped, result.flat = cut_patches(phone, warped, valid, patch, stride, max_err)
    result.kept, result.dropped = len(kept), len(dropped)
    for side in ("phone", "dslr"):
        (staging / str(i) / side).mkdir(parents=True, exist_ok=True)
    for k, (x, y) in enumerate(kept):
        _write_patch(staging / str(i) / "phone" / f"{k}.jpg", phone[y : y + patch, x : x + patch])
        _write_patch(staging / str(i) / "dslr" / f"{k}.jpg", warped[y : y + patch, x : x + patch])
    overlay, diff = review_images(phone, warped, valid, [(x, y, patch) for x, y in dropped])
    result.overlay, result.diff = (f"images/{i}_{p_path.stem}_{kind}.jpg" for kind in ("overlay", "diff"))
    write_image(report_dir / result.overlay, overlay)
    write_image(report_dir / result.diff, diff)
    return result


def _line(r: PairResult) -> str:
    """The one-line summary of a pair for the console."""
    if not r.ok:
        return f"rejected {r.phone} + {r.dslr}: {r.reason}"
    a = r.alignment
    assert a is not None
    return (
        f"{r.phone} + {r.dslr}: {a.inliers} inliers, reprojection {a.reprojection_error:.2f} px, "
        f"ECC {a.ecc:.3f}, {r.kept} patches kept, {r.dropped} dropped"
        + (f" ({r.reason})" if r.reason else "")
    )


_MATCH_ADVICE = "name the two photos of a scene alike, or try --match time (EXIF clocks) or --match order"


def choose_test(n: int, fraction: float, seed: int) -> set[int]:
    """Indices of the photo pairs (of ``n``) held out for testing: ``round(n * fraction)``, at least one
    when ``fraction`` > 0 and ``n`` >= 2, never all of them; drawn with ``seed``."""
    if fraction <= 0 or n < 2:
        return set()
    k = min(n - 1, max(1, round(n * fraction)))
    return {int(j) for j in np.random.default_rng(seed).permutation(n)[:k]}


def _place(
    report: BuildReport, staging: Path, root: Path, name: str, test_fraction: float, seed: int
) -> None:
    """Choose the test photos (seeded, by photo pair) and move staged patches into DPED's folders."""
    aligned = [i for i, p in enumerate(report.pairs) if p.ok]
    test = {aligned[j] for j in choose_test(len(aligned), test_fraction, seed)}
    counters = {"train": 0, "test": 0}
    folders = {"train": root / "training_data", "test": root / "test_data" / "patches"}
    for i in aligned:
        result = report.pairs[i]
        result.split = "test" if i in test else "train"
        result.first = counters[result.split]
        dst = folders[result.split]
        (dst / name).mkdir(parents=True, exist_ok=True)
        (dst / TARGET_FOLDER).mkdir(parents=True, exist_ok=True)
        for k in range(result.kept):
            n = counters[result.split] + k
            os.replace(staging / str(i) / "phone" / f"{k}.jpg", dst / name / f"{n}.jpg")
            os.replace(staging / str(i) / "dslr" / f"{k}.jpg", dst / TARGET_FOLDER / f"{n}.jpg")
        counters[result.split] += result.kept
