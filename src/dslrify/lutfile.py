"""3D LUT files: Adobe/Resolve ``.cube`` text and Hald CLUT images, read and written.

These are not photos, so they live here rather than in ``dslrify.photo`` (which owns photo formats); a Hald
CLUT is an image, though, so its pixels still go through ``photo.read_photo`` / ``photo.write_photo``
(16-bit PNG, atomic), and ``.cube`` text through ``files.atomic_path``.

A table is a numpy array ``(N, N, N, 3)`` float64 indexed ``[r, g, b]``: the output RGB at the lattice
node ``(r, g, b) / (N - 1)``, sRGB-encoded values in [0, 1].

- ``.cube`` (Adobe Cube LUT Specification 1.0): ``TITLE``, ``#`` comments, ``LUT_3D_SIZE N``,
  ``DOMAIN_MIN 0 0 0``, ``DOMAIN_MAX 1 1 1``, then N³ lines ``R G B`` with R changing fastest.
  Sizes 2..256. Other domains and 1D LUTs are refused, not guessed.
- Hald CLUT (the layout of ImageMagick's ``hald:L``, ffmpeg's ``haldclut`` and darktable): a square
  image of side L³ holding an N = L² lattice; pixel number ``i`` (row-major) is the node
  ``r = i % N, g = i // N % N, b = i // N²``. Levels 2..16. Title and comments go into the PNG's XMP
  (``dc:title``, ``dc:description``).
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dslrify.errors import DslrifyError
from dslrify.files import atomic_path

CUBE_SIZES = range(2, 257)
HALD_LEVELS = range(2, 17)


@dataclass(frozen=True)
class LutFile:
    """What a LUT file holds: the table (see the module docstring), its title and comment lines."""

    table: np.ndarray
    title: str = ""
    comments: tuple[str, ...] = ()


def check_cube_size(size: int) -> int:
    if size not in CUBE_SIZES:
        raise DslrifyError(f"a 3D LUT of size {size} is not valid", "choose a size from 2 to 256, e.g. 33")
    return size


def check_hald_level(level: int) -> int:
    if level not in HALD_LEVELS:
        raise DslrifyError(
            f"a Hald CLUT of level {level} is not valid",
            "choose a level from 2 to 16 (level L holds L² entries per side: 8 gives 64³)",
        )
    return level


def hald_level(size: int) -> int:
    """The Hald level L whose lattice has ``size`` = L² entries per side; refused when there is none."""
    level = round(size**0.5)
    if level * level != size or level not in HALD_LEVELS:
        raise DslrifyError(
            f"a {size}³ LUT cannot be a Hald CLUT (it needs L² entries per side, L from 2 to 16)",
            "use --hald-level, e.g. 8 for 64³",
        )
    return level


def _one_line(text: str) -> str:
    """Text for a one-line field: no control characters (a newline would end a .cube line)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def write_cube(path: str | os.PathLike, lut: LutFile) -> None:
    """Write ``lut`` as a ``.cube`` file, atomically. Values are written with 6 decimals."""
    table = np.asarray(lut.table, dtype=np.float64)
    size = check_cube_size(table.shape[0])
    lines = [f'TITLE "{_one_line(lut.title).replace(chr(34), chr(39))}"']
    lines += [f"# {_one_line(c)}" for c in lut.comments]
    lines += [f"LUT_3D_SIZE {size}", "DOMAIN_MIN 0.0 0.0 0.0", "DOMAIN_MAX 1.0 1.0 1.0"]
    rows = table.transpose(2, 1, 0, 3).reshape(-1, 3)  # [b, g, r]: R changes fastest
    body = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in rows.tolist())
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n" + body + "\n", encoding="utf-8")


def read_cube(path: str | os.PathLike) -> LutFile:
    """Read a 3D ``.cube`` file (see the module docstring for what is accepted)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DslrifyError(f"cannot read {path}: {e.strerror or e}", "check the path") from e
    title, comments, size, values = "", [], 0, []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        key, _, rest = line.partition(" ")
        if key == "TITLE":
            title = rest.strip().strip('"')
        elif key == "LUT_3D_SIZE":
            size = int(rest) if rest.strip().isdigit() else 0
            check_cube_size(size)
        elif key in ("DOMAIN_MIN", "DOMAIN_MAX", "LUT_3D_INPUT_RANGE"):
            want = {"DOMAIN_MIN": [0.0] * 3, "DOMAIN_MAX": [1.0] * 3, "LUT_3D_INPUT_RANGE": [0.0, 1.0]}[key]
            if [float(v) for v in rest.split()] != want:
                raise DslrifyError(f"{path}: {key} {rest.strip()} is not supported", "dslrify reads [0, 1]")
        elif key == "LUT_1D_SIZE":
            raise DslrifyError(f"{path} is a 1D LUT", "dslrify reads 3D LUTs (LUT_3D_SIZE)")
        else:
            try:
                values.append([float(v) for v in line.split()])
            except ValueError:
                raise DslrifyError(f"{path}, line {number}: cannot read {line[:40]!r}", _CUBE) from None
            if len(values[-1]) != 3:
                raise DslrifyError(f"{path}, line {number}: expected 3 numbers", _CUBE)
    if not size or len(values) != size**3:
        raise DslrifyError(f"{path}: expected LUT_3D_SIZE and size³ rows, got {len(values)} rows", _CUBE)
    table = np.asarray(values, dtype=np.float64).reshape(size, size, size, 3).transpose(2, 1, 0, 3)
    return LutFile(np.ascontiguousarray(table), title, tuple(comments))


_CUBE = "is it a .cube file (Adobe Cube LUT Specification 1.0)?"


def write_hald(path: str | os.PathLike, lut: LutFile) -> None:
    """Write ``lut`` as a 16-bit Hald CLUT PNG (through photo.write_photo, atomic), title in its XMP."""
    from dslrify.photo import from_array, write_photo

    table = np.asarray(lut.table, dtype=np.float64)
    level = hald_level(table.shape[0])
    side = level**3
    image = np.rint(np.clip(table, 0, 1).transpose(2, 1, 0, 3).reshape(side, side, 3) * 65535)
    photo, _ = from_array(image.astype(np.uint16))
    photo.xmp = _xmp(lut.title, lut.comments)
    write_photo(path, photo, format="png")


def read_hald(path: str | os.PathLike) -> LutFile:
    """Read a Hald CLUT image (8 or 16 bit, any format read_photo reads)."""
    from dslrify.photo import read_photo

    photo = read_photo(path)
    w, h = photo.size
    level = round(w ** (1 / 3))
    if w != h or level**3 != w or level not in HALD_LEVELS:
        raise DslrifyError(
            f"{path}: a {w}x{h} image is not a Hald CLUT (a square of side L³, L from 2 to 16)",
            "give a .cube file or a Hald CLUT image such as one written by `dslrify look --format hald`",
        )
    pixels = photo.pixels[0].permute(1, 2, 0).numpy().astype(np.float64)
    pixels /= 65535.0 if photo.bit_depth == 16 else 255.0
    n = level * level
    table = np.ascontiguousarray(pixels.reshape(n, n, n, 3).transpose(2, 1, 0, 3))
    title, comments = _from_xmp(photo.xmp)
    return LutFile(table, title, comments)


def _xmp(title: str, comments: tuple[str, ...]) -> bytes:
    esc = [html.escape(_one_line(t)) for t in (title, *comments)]
    description = "&#10;".join(esc[1:])
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">{esc[0]}</rdf:li></rdf:Alt></dc:title>'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt>'
        "</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def _from_xmp(xmp: bytes | None) -> tuple[str, tuple[str, ...]]:
    text = (xmp or b"").decode("utf-8", "replace")

    def field(tag: str) -> str:
        found = re.search(rf"<dc:{tag}>.*?<rdf:li[^>]*>(.*?)</rdf:li>", text, re.S)
        return html.unescape(found[1]) if found else ""

    return field("title"), tuple(line for line in field("description").split("\n") if line)
