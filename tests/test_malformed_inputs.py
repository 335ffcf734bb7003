"""Every generated input (tests/inputs_gen.py) gets a clean answer from photo I/O and the fast model.

Valid photos round-trip with the right size, orientation, alpha, bit depth, ICC profile and EXIF;
invalid ones are a one-line PhotoError; nothing else escapes, no input changes, no file is left over.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dslrify
import raw_gen  # noqa: F401  (adds the bad RAW and DNG cases to CASES)
from dslrify.errors import PhotoError
from dslrify.photo import PhotoWarning, inspect_photo, read_photo, unit_float, write_photo
from inputs_gen import CASES, EITHER, INVALID, Case, Valid, pattern

OUTPUT_EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "HEIF": ".heic"}
# exif_transpose's operations, as Pillow names them (an implementation independent of dslrify.photo's)
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@pytest.fixture(scope="module")
def enhancer() -> dslrify.Enhancer:
    return dslrify.Enhancer("fast", device="cpu")


def test_the_generator_covers_enough_inputs():
    assert len(CASES) >= 200
    assert len({c.name for c in CASES}) == len(CASES)
    kinds = [c.expect if isinstance(c.expect, str) else "valid" for c in CASES]
    assert min(kinds.count(k) for k in ("valid", INVALID, EITHER)) >= 30


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry of ``folder`` (recursively) with its kind and, for regular files, content hash."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            mode = path.lstat().st_mode
            rel = str(path.relative_to(folder))
            if stat.S_ISREG(mode):
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "special"
    return found


def luma_quadrants(arr: np.ndarray) -> np.ndarray:
    """Mean grey level at the centre of each quadrant of an (H, W, 3) array."""
    h, w = arr.shape[:2]
    centres = [(h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
    weights = np.array([0.299, 0.587, 0.114])
    return np.array([arr[y, x, :3].astype(float) @ weights for y, x in centres])


def expected_upright(orientation: int) -> np.ndarray:
    image = Image.fromarray(pattern())
    return np.asarray(image.transpose(TRANSPOSE[orientation]) if orientation in TRANSPOSE else image)


def exif_make(exif: bytes | None) -> str | None:
    if not exif:
        return None
    tags = Image.Exif()
    tags.load(exif)
    make = tags.get(271)
    return make.encode("latin-1").decode("utf-8", "replace") if isinstance(make, str) else None


def one_line(e: BaseException, path: Path) -> None:
    assert "\n" not in str(e) and str(e).strip(), repr(str(e))
    assert str(path) in str(e) or path.name in str(e)


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "photo"], ids=lambda c: c.name)
def test_generated_input(case: Case, tmp_path: Path, enhancer: dslrify.Enhancer) -> None:
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    src = case.build(inputs)
    before = snapshot(inputs)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            photo, error = read_photo(src), None
        except PhotoError as e:  # anything else fails the test with its traceback
            photo, error = None, e
        try:
            info, info_error = inspect_photo(src), None
        except PhotoError as e:
            info, info_error = None, e
    assert all(issubclass(w.category, PhotoWarning) for w in caught), [str(w.message) for w in caught]
    assert all("\n" not in str(w.message) for w in caught)
    if info_error is not None:
        assert error is not None, f"inspect_photo refused what read_photo read: {info_error}"

    if case.expect == INVALID:
        assert error is not None, "an invalid input was read"
    if error is not None:
        assert not isinstance(case.expect, Valid), f"a valid input was refused: {error}"
        one_line(error, src)
    else:
        assert photo is not None and info is not None
        assert (info.format, (info.width, info.height), info.bit_depth) == (
            photo.format,
            photo.size,
            photo.bit_depth,
        )
        if isinstance(case.expect, Valid):
            check_valid(case.expect, photo, len(caught))
        elif case.expect == EITHER:
            assert photo.size[0] > 0 and photo.size[1] > 0
        round_trip(photo, outputs, enhancer, case.expect)

    assert snapshot(inputs) == before, "an input was modified, or a file was left beside it"


def check_valid(expect: Valid, photo, warned: int) -> None:
    assert photo.size == expect.size
    assert (photo.alpha is not None) == expect.alpha
    assert photo.bit_depth == expect.bit_depth
    assert str(photo.pixels.dtype) == ("torch.uint16" if expect.bit_depth == 16 else "torch.uint8")
    assert photo.icc_profile == expect.icc
    if expect.make is not None:
        assert exif_make(photo.exif) == expect.make
    assert (warned > 0) == expect.warns
    if expect.pattern:
        got = (unit_float(photo.pixels)[0].permute(1, 2, 0).numpy() * 255).round()
        assert np.abs(luma_quadrants(got) - luma_quadrants(expected_upright(expect.orientation))).max() < 40


def round_trip(photo, outputs: Path, enhancer: dslrify.Enhancer, expect: Valid | str) -> None:
    """Enhance with the fast model, write in the photo's own format, read the result back and check it."""
    dst = outputs / f"result{OUTPUT_EXT[photo.format]}"
    result = enhancer.enhance_tensor(unit_float(photo.pixels))
    assert result.shape == photo.pixels.shape
    try:
        write_photo(dst, photo, result)
    except PhotoError as e:  # e.g. EXIF too long for JPEG: one line, and nothing written
        one_line(e, dst)
        assert list(outputs.iterdir()) == []
        return
    assert [p.name for p in outputs.iterdir()] == [dst.name], "a temporary or stray file was left"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # our own output reads without any repair
        again = read_photo(dst)
    assert again.size == photo.size and again.format == photo.format
    keeps_alpha = photo.format in ("PNG", "TIFF", "WEBP")
    assert (again.alpha is not None) == (photo.alpha is not None and keeps_alpha)
    deep = photo.bit_depth == 16 and photo.format in ("PNG", "TIFF")
    assert again.bit_depth == (16 if deep else 8)
    assert again.icc_profile == photo.icc_profile
    if isinstance(expect, Valid) and expect.make is not None and photo.format != "HEIF":
        assert exif_make(again.exif) == expect.make
    if again.exif:
        tags = Image.Exif()
        tags.load(again.exif)
        assert tags.get(274, 1) == 1  # upright in every viewer
