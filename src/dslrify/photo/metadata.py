"""EXIF, XMP and orientation: what is read from a photo's header and carried into the output.

The EXIF (or XMP) orientation is applied on reading and reset to 1 in the EXIF/XMP written out; EXIF
text tags keep their bytes as they were in the file. Damaged EXIF is dropped with one PhotoWarning.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from dslrify.photo.core import _DECODE_ERRORS, PhotoWarning

_ORIENTATION = 0x0112
# TIFF tags describing the pixel layout of the source file: never copied into another file's EXIF.
_TIFF_LAYOUT_TAGS = {
    254,
    255,
    256,
    257,
    258,
    259,
    262,
    266,
    273,
    277,
    278,
    279,
    284,
    317,
    320,
    322,
    323,
    324,
    325,
    338,
    339,
    340,
    341,
    530,
    700,
    34675,
}


# exif_transpose's operations for orientations 2..8, on (H, W, ...) arrays.
_TRANSPOSE: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _metadata(im: Image.Image) -> tuple[bytes | None, bytes | None, int]:
    """Raw EXIF (b"Exif\\0\\0"-prefixed), XMP and the orientation to apply; decodes no pixels.

    (``im.getexif()`` would decode a whole PNG to look for EXIF after the image data.)
    """
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")  # PNG iTXt may come as str
    xmp = xmp.encode() if isinstance(xmp, str) else xmp or None
    try:
        exif, tags = _exif(im)
    except (*_DECODE_ERRORS, UserWarning) as e:  # viewers show such photos: keep the pixels
        reason = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(PhotoWarning(f"its EXIF metadata is damaged and was dropped ({reason})"), stacklevel=2)
        exif, tags = None, Image.Exif()
    orientation = tags.get(_ORIENTATION)
    if orientation is None and xmp and (found := re.search(rb'tiff:Orientation(?:="|>)([0-9])', xmp)):
        orientation = int(found[1])  # as Pillow's getexif() and exif_transpose do
    return exif, xmp, orientation if orientation in _TRANSPOSE else 1


def _exif(im: Image.Image) -> tuple[bytes | None, Image.Exif]:
    """The raw EXIF block and its main tags; raises what Pillow raises or warns on damaged EXIF."""
    exif, tags = im.info.get("exif"), Image.Exif()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # Pillow warns "Corrupt EXIF data" and carries on
        if exif:
            exif = exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif  # WebP: bare
            tags.load(exif)
            for ifd in (0x8769, 0x8825):  # read the sub-IFDs now, so damage there shows here
                tags.get_ifd(ifd)
        elif im.format == "TIFF":  # EXIF tags live in the TIFF's own IFD, among its pixel-layout tags
            tiff_tags = im.getexif()
            for tag, value in tiff_tags.items():
                if tag in (0x8769, 0x8825):
                    tags[tag] = tiff_tags.get_ifd(tag)
                elif tag not in _TIFF_LAYOUT_TAGS:  # text as its bytes, which tobytes() keeps
                    tags[tag] = _raw_text(value) if isinstance(value, str) else value
            exif = tags.tobytes() if len(tags) else None
    return exif, tags


def _exif_orientation_1(exif: bytes) -> bytes:
    """Set Orientation to 1 in place in the raw bytes, so maker notes and offsets stay valid."""
    tiff = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    start = len(exif) - len(tiff)
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        ifd0 = struct.unpack_from(order + "I", tiff, 4)[0]
        for i in range(struct.unpack_from(order + "H", tiff, ifd0)[0]):
            entry = ifd0 + 2 + 12 * i
            tag, kind, count = struct.unpack_from(order + "HHI", tiff, entry)
            if tag == _ORIENTATION and kind == 3 and count == 1:  # SHORT, value inline
                out = bytearray(exif)
                struct.pack_into(order + "H", out, start + entry + 8, 1)
                return bytes(out)
            if tag == _ORIENTATION:
                break  # unusual encoding: let Pillow rewrite the block below
        else:
            return exif  # no tag (the orientation came from XMP): nothing to reset
    except (KeyError, struct.error):
        pass  # unusual layout: let Pillow rewrite the block below
    tags = Image.Exif()
    tags.load(exif)
    tags[_ORIENTATION] = 1
    return tags.tobytes()


def _raw_text(value: str) -> bytes:
    """The bytes of an EXIF text tag as they were in the file (Pillow decodes them as Latin-1).

    Cameras and editors store UTF-8 there ("Café ✓"); written back as bytes it survives unchanged.
    """
    return value.encode("latin-1", "replace")


def _find_png_exif(path: Path, im: Image.Image) -> None:
    """Put an eXIf chunk found after the image data into ``im.info``.

    Pillow finds such a chunk only while decoding the pixels itself, which it does not for 16-bit PNG.
    Walks the chunk headers; reads no image data.
    """
    with open(path, "rb") as f:
        f.seek(8)
        while len(head := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                data = f.read(length)
                if len(data) == length:
                    im.info["exif"] = b"Exif\x00\x00" + data
                return
            if kind == b"IEND":
                return
            f.seek(length + 4, os.SEEK_CUR)  # data and CRC
