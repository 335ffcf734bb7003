"""The server's work, run in its thread pools: check an upload, render a photo, make view copies, zip.

Every photo read goes through ``photo.read_photo`` / ``photo.inspect_photo`` and every write through
``photo.write_photo`` / ``photo.write_image`` (atomic: a browser never fetches a half-written file).
Messages name the photo as uploaded, never the server's temporary path.
"""

from __future__ import annotations

import dataclasses
import time
import zipfile
from pathlib import Path

from dslrify.errors import PhotoError
from dslrify.files import atomic_path
from dslrify.photo import Photo, PhotoInfo, inspect_photo, read_photo, unit_float, write_image, write_photo
from dslrify.serve.state import EXTENSIONS, Item, ServeState

PREVIEW_SIDE = 1600  # long side of the screen-size previews, in pixels
_BROWSER_FORMATS = {"JPEG", "PNG", "WEBP"}


def _renamed(e: PhotoError, path: Path, name: str) -> PhotoError:
    """``e`` with the temporary ``path`` replaced by the name the user knows."""
    return PhotoError(e.message.replace(str(path), name), e.advice)


def check_upload(path: Path, name: str, max_pixels: int) -> PhotoInfo:
    """Format and upright size from the header only; PhotoError for anything read_photo would refuse."""
    try:
        return inspect_photo(path, max_pixels=max_pixels)
    except PhotoError as e:
        raise _renamed(e, path, name) from e


def _read(path: Path, name: str, max_pixels: int) -> Photo:
    """The decoded photo; any failure to decode it is the upload's fault, so a PhotoError (400)."""
    try:
        return read_photo(path, max_pixels=max_pixels)
    except PhotoError as e:
        raise _renamed(e, path, name) from e
    except MemoryError:
        raise
    except Exception as e:
        # A decoder's own error that read_photo let through (zlib.error from a corrupt deflate TIFF,
        # struct.error, ...): the upload is at fault, so the answer is a 400 that names it.
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        advice = "the file is damaged; export it again"
        raise PhotoError(f"{name}: cannot decode image ({first})", advice) from e


def render(state: ServeState, item: Item, model: str, strength: float) -> float:
    """Enhance ``item`` with ``model`` at ``strength``: full-size result + two previews. Returns seconds."""
    start = time.perf_counter()
    enhancer = state.enhancer(model)
    photo = _read(item.original, item.name, state.max_pixels)
    y = enhancer.enhance_tensor(photo.pixels, strength=strength)
    write_photo(item.folder / f"result{EXTENSIONS[item.format]}", photo, y, quality=95)  # EXIF, ICC, XMP
    write_image(item.folder / "preview_result.jpg", y, icc_profile=photo.icc_profile, max_side=PREVIEW_SIDE)
    original_preview = item.folder / "preview_original.jpg"
    if not original_preview.exists():
        write_image(
            original_preview, unit_float(photo.pixels), icc_profile=photo.icc_profile, max_side=PREVIEW_SIDE
        )
    # The full-size "view" copy belongs to the previous render: drop it (made again on demand).
    (item.folder / "full_result.jpg").unlink(missing_ok=True)
    return time.perf_counter() - start


def full_view(item: Item, kind: str, max_pixels: int) -> Path:
    """A full-resolution file a browser can show (for the 100% zoom): the file itself or a JPEG copy."""
    src = item.original if kind == "original" else item.result
    assert src is not None  # the route checked that a result exists
    if item.format in _BROWSER_FORMATS:
        return src
    dst = item.folder / f"full_{kind}.jpg"
    if not dst.exists():
        photo = _read(src, item.name, max_pixels)
        write_photo(dst, dataclasses.replace(photo, alpha=None), quality=92)  # a view copy: 8-bit JPEG
    return dst


def write_zip(files: list[tuple[Path, str]], dst: Path) -> None:
    """A zip of ``files`` (path, name inside), written atomically."""
    # Stored, not deflated: JPEG/WebP are compressed already, and deflating 12 MP PNGs costs seconds.
    with atomic_path(dst) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
        for path, name in files:
            zf.write(path, name)


def zip_entries(items: list[Item]) -> list[tuple[Path, str]]:
    """(result path, unique name) of every enhanced item: two IMG_0001.jpg never overwrite each other."""
    files, used = [], set()
    for item in items:
        if item.result is None:
            continue
        stem, suffix = Path(item.download_name).stem, Path(item.download_name).suffix
        name, n = item.download_name, 1
        while name in used:
            n += 1
            name = f"{stem}_{n}{suffix}"
        used.add(name)
        files.append((item.result, name))
    return files
