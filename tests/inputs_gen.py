"""Generated unusual and malformed inputs: a list of named cases, each a builder of one tiny file.

A case builds its input in a given folder and says what reading it must give: ``Valid`` (the photo's
upright size, alpha, bit depth, ICC profile, EXIF text), ``INVALID`` (a one-line PhotoError) or
``EITHER`` (damage a decoder may or may not notice: a PhotoError, or a photo of the stated size).
Other input kinds (video, RAW) add their cases to ``CASES`` with :func:`case`.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageCms

W, H = 24, 16  # every generated photo, stored size (before its EXIF orientation)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE = "Café ✓"  # UTF-8 in an ASCII tag, as phones write it


@dataclass(frozen=True)
class Valid:
    """What a valid input reads as: upright (width, height), alpha, bit depth, metadata to keep."""

    size: tuple[int, int]
    orientation: int = 1  # the EXIF orientation stored, which reading applies
    alpha: bool = False
    bit_depth: int = 8
    icc: bytes | None = None
    make: str | None = None  # EXIF Make that must survive reading and writing
    pattern: bool = True  # the quadrant colours are checked (False: colours change, e.g. CMYK)
    warns: bool = False  # a PhotoWarning is expected (a repair)


INVALID = "invalid"
EITHER = "either"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]  # writes the input into a folder, returns its path
    expect: Valid | str  # Valid, INVALID or EITHER
    kind: str = "photo"  # or "video": read by dslrify.video, tested in test_video.py


CASES: list[Case] = []


def case(name: str, expect: Valid | str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    """Register a builder under ``name`` (decorator)."""

    def register(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
        CASES.append(Case(name, build, expect))
        return build

    return register


def add(name: str, build: Callable[[Path], Path], expect: Valid | str, kind: str = "photo") -> None:
    CASES.append(Case(name, build, expect, kind))


# --- pixels and metadata ------------------------------------------------------------------------------


def pattern(h: int = H, w: int = W) -> np.ndarray:
    """Four flat quadrants with distinct colours and distinct grey levels: any rotation or flip shows."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (255, 0, 0)
    img[: h // 2, w // 2 :] = (0, 255, 0)
    img[h // 2 :, : w // 2] = (0, 0, 255)
    img[h // 2 :, w // 2 :] = (255, 255, 255)
    return img


def upright(orientation: int) -> tuple[int, int]:
    return (H, W) if orientation in (5, 6, 7, 8) else (W, H)


def exif_tags(orientation: int | None = None, make: str = MAKE) -> Image.Exif:
    """EXIF with a UTF-8 Make (as bytes: Pillow would write a str's non-ASCII characters as "?")."""
    exif = Image.Exif()
    exif[271] = make.encode()
    exif[306] = "2024:05:01 12:00:00"
    if orientation is not None:
        exif[274] = orientation
    return exif


def exif_bytes(orientation: int | None = None, make: str = MAKE) -> bytes:
    return exif_tags(orientation, make).tobytes()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pil_bytes(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png16_bytes(arr: np.ndarray, exif: bytes | None = None, late: bool = False) -> bytes:
    """A 16-bit PNG by OpenCV, RGB(A) order in ``arr``, with an eXIf chunk before or after IDAT."""
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    png = cv2.imencode(".png", arr)[1].tobytes()
    if exif is None:
        return png
    extra = chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))
    at = png.rindex(b"IEND") - 4 if late else 33
    return png[:at] + extra + png[at:]


def _tiff16(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def to16(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.uint16) * 257


def writer(name: str, data: Callable[[], bytes]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data())
        return path

    return build


# --- valid photos ---------------------------------------------------------------------------------------

EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}

# EXIF orientations 1-8 in every format that carries EXIF, 8 and 16 bit.
for _o in range(1, 9):
    for _fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        _kw = {"quality": 95} if _fmt in ("JPEG", "WEBP") else {}
        add(
            f"orientation{_o}-{_fmt.lower()}",
            writer(
                f"o{_o}{EXT[_fmt]}",
                lambda f=_fmt, o=_o, kw=_kw: pil_bytes(
                    Image.fromarray(pattern()), f, exif=exif_tags(o), **kw
                ),
            ),
            Valid(upright(_o), _o, make=MAKE),
        )
    add(
        f"orientation{_o}-png16",
        writer(f"o{_o}.png", lambda o=_o: png16_bytes(to16(pattern()), exif_bytes(o))),
        Valid(upright(_o), _o, bit_depth=16, make=MAKE),
    )
    add(
        f"orientation{_o}-tiff16",
        writer(f"o{_o}.tif", lambda o=_o: _tiff16(to16(pattern()), extratags=[(274, "H", 1, o, True)])),
        Valid(upright(_o), _o, bit_depth=16),
    )
    add(
        f"orientation{_o}-png16-exif-after-data",
        writer(f"o{_o}.png", lambda o=_o: png16_bytes(to16(pattern()), exif_bytes(o), late=True)),
        Valid(upright(_o), _o, bit_depth=16, make=MAKE),
    )


def _with_alpha(image: Image.Image) -> Image.Image:
    """Half-transparent (an opaque alpha channel may be dropped by the encoder, as WebP does)."""
    image.putalpha(128)
    return image


_MODES = {  # mode -> (image, alpha kept, check the quadrant colours)
    "L": (lambda: Image.fromarray(pattern()).convert("L"), False, True),
    "LA": (lambda: _with_alpha(Image.fromarray(pattern()).convert("LA")), True, True),
    "RGBA": (lambda: _with_alpha(Image.fromarray(pattern()).convert("RGBA")), True, True),
    "P": (lambda: Image.fromarray(pattern()).convert("P"), False, True),
    "1": (lambda: Image.fromarray(pattern()).convert("1"), False, False),
}
for _mode, (_make, _alpha, _check) in _MODES.items():
    for _fmt in ("PNG", "TIFF", "WEBP", "JPEG"):
        if (_fmt == "JPEG" and _mode not in ("L",)) or (_fmt == "WEBP" and _mode in ("P", "1", "LA", "L")):
            continue  # modes the format cannot store
        add(
            f"mode-{_mode}-{_fmt.lower()}",
            writer(f"m{EXT[_fmt]}", lambda m=_make, f=_fmt: pil_bytes(m(), f)),
            Valid((W, H), alpha=_alpha, pattern=_check),
        )


def _palette_transparent() -> bytes:
    im = Image.fromarray(pattern()).convert("P")
    return pil_bytes(im, "PNG", transparency=0)


add("palette-transparency-png", writer("pt.png", _palette_transparent), Valid((W, H), alpha=True))
add(
    "gray-16bit-png",
    writer("g16.png", lambda: png16_bytes(to16(pattern()[..., 1]))),
    Valid((W, H), bit_depth=16, pattern=False),
)
add(
    "gray-16bit-tiff",
    writer("g16.tif", lambda: pil_bytes(Image.fromarray(to16(pattern()[..., 1])), "TIFF")),
    Valid((W, H), bit_depth=16, pattern=False),
)
for _comp in (None, "zlib"):  # LZW would need imagecodecs
    for _ch in (3, 4):

        def _t16(comp: str | None = _comp, ch: int = _ch) -> bytes:
            arr = to16(np.dstack([pattern(), np.full((H, W), 200, np.uint8)])[..., :ch])
            buf = io.BytesIO()
            tifffile.imwrite(
                buf, arr, compression=comp, photometric="rgb", extrasamples=[2] if ch == 4 else None
            )
            return buf.getvalue()

        add(
            f"rgb{_ch}-16bit-tiff-{_comp or 'raw'}",
            writer("t16.tif", _t16),
            Valid((W, H), alpha=_ch == 4, bit_depth=16),
        )
add(
    "rgba-16bit-png",
    writer("a16.png", lambda: png16_bytes(to16(np.dstack([pattern(), np.full((H, W), 77, np.uint8)])))),
    Valid((W, H), alpha=True, bit_depth=16),
)
for _fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
    add(
        f"icc-{_fmt.lower()}",
        writer(
            f"icc{EXT[_fmt]}", lambda f=_fmt: pil_bytes(Image.fromarray(pattern()), f, icc_profile=SRGB_ICC)
        ),
        Valid((W, H), icc=SRGB_ICC),
    )
add(
    "jpeg-progressive-420",
    writer(
        "prog.jpg", lambda: pil_bytes(Image.fromarray(pattern()), "JPEG", progressive=True, subsampling=2)
    ),
    Valid((W, H)),
)
add(
    "webp-lossless",
    writer("ll.webp", lambda: pil_bytes(Image.fromarray(pattern()), "WEBP", lossless=True)),
    Valid((W, H)),
)
for _fmt in ("JPEG", "TIFF"):
    add(
        f"cmyk-{_fmt.lower()}",
        writer(f"c{EXT[_fmt]}", lambda f=_fmt: pil_bytes(Image.fromarray(pattern()).convert("CMYK"), f)),
        Valid((W, H), pattern=False),
    )
add(
    "cmyk-jpeg-rgb-profile",
    writer(
        "c.jpg", lambda: pil_bytes(Image.fromarray(pattern()).convert("CMYK"), "JPEG", icc_profile=SRGB_ICC)
    ),
    Valid((W, H), pattern=False, warns=True),
)
add(
    "cmyk-jpeg-garbage-profile",
    writer(
        "c.jpg",
        lambda: pil_bytes(Image.fromarray(pattern()).convert("CMYK"), "JPEG", icc_profile=b"junk" * 40),
    ),
    Valid((W, H), pattern=False, warns=True),
)
for _name, _fmt, _ext in [
    ("jpeg-named-png", "JPEG", ".png"),
    ("png-named-jpg", "PNG", ".jpg"),
    ("webp-named-tif", "WEBP", ".tif"),
    ("tiff-named-jpeg", "TIFF", ".jpeg"),
    ("png-upper-case-ext", "PNG", ".PNG"),
    ("jpeg-no-extension", "JPEG", ""),
]:
    add(
        _name,
        writer(
            f"wrong{_ext}",
            lambda f=_fmt: (
                pil_bytes(Image.fromarray(pattern()), f, quality=95)
                if f != "PNG"
                else pil_bytes(Image.fromarray(pattern()), f)
            ),
        ),
        Valid((W, H)),
    )
add(
    "one-pixel-png",
    writer("1.png", lambda: pil_bytes(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG")),
    Valid((1, 1), pattern=False),
)
add(
    "one-row-jpeg",
    writer("row.jpg", lambda: pil_bytes(Image.new("RGB", (300, 1), (9, 99, 199)), "JPEG")),
    Valid((300, 1), pattern=False),
)
add(
    "name-with-spaces-and-unicode",
    writer("ça va ✓ [x].png", lambda: pil_bytes(Image.fromarray(pattern()), "PNG")),
    Valid((W, H)),
)


def _damaged_exif(where: int, value: bytes) -> Callable[[], bytes]:
    def build() -> bytes:
        data = bytearray(pil_bytes(Image.fromarray(pattern()), "JPEG", quality=95, exif=exif_bytes(6)))
        tiff = data.index(b"Exif\x00\x00") + 6
        data[tiff + where : tiff + where + len(value)] = value
        return bytes(data)

    return build


add("jpeg-exif-bad-byte-order", writer("e.jpg", _damaged_exif(0, b"XX")), Valid((W, H), warns=True))
add(
    "jpeg-exif-bad-ifd-offset",
    writer("e.jpg", _damaged_exif(4, b"\x00\xff\xff\x00")),
    Valid((W, H), warns=True),
)
add("jpeg-exif-bad-entry-count", writer("e.jpg", _damaged_exif(8, b"\xff\xff")), Valid((W, H), warns=True))


# --- damaged, truncated and unreadable files ---------------------------------------------------------

_BASES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg": (".jpg", lambda: pil_bytes(Image.fromarray(pattern()), "JPEG", quality=95, exif=exif_bytes(6))),
    "jpeg-progressive": (".jpg", lambda: pil_bytes(Image.fromarray(pattern()), "JPEG", progressive=True)),
    "png": (".png", lambda: pil_bytes(Image.fromarray(pattern()), "PNG")),
    "png-palette": (".png", lambda: pil_bytes(Image.fromarray(pattern()).convert("P"), "PNG")),
    "png16": (".png", lambda: png16_bytes(to16(pattern()))),
    "tiff": (".tif", lambda: pil_bytes(Image.fromarray(pattern()), "TIFF")),
    "tiff-deflate": (
        ".tif",
        lambda: pil_bytes(Image.fromarray(pattern()), "TIFF", compression="tiff_adobe_deflate"),
    ),
    "tiff16-deflate": (".tif", lambda: _tiff16_deflate()),
    "webp": (".webp", lambda: pil_bytes(Image.fromarray(pattern()), "WEBP")),
    "webp-lossless": (".webp", lambda: pil_bytes(Image.fromarray(pattern()), "WEBP", lossless=True)),
}


def _tiff16_deflate() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    tifffile.imwrite(buf, rng.integers(0, 65536, (H, W, 3), np.uint16), compression="zlib")
    return buf.getvalue()


def _cut(data: Callable[[], bytes], fraction: float) -> Callable[[], bytes]:
    return lambda: data()[: max(1, int(len(data()) * fraction))]


def _flip(data: Callable[[], bytes], seed: int) -> Callable[[], bytes]:
    def build() -> bytes:
        raw = bytearray(data())
        rng = np.random.default_rng(seed)
        for at in rng.integers(len(raw) // 8, len(raw), 4):  # past the first header bytes
            raw[at] ^= 0xFF
        return bytes(raw)

    return build


for _base, (_ext, _data) in _BASES.items():
    for _fraction in (0.05, 0.3, 0.5, 0.75):
        add(
            f"{_base}-truncated-{int(_fraction * 100)}pct",
            writer(f"cut{_ext}", _cut(_data, _fraction)),
            INVALID,
        )
    # the last tenth may hold only the end marker (PNG's IEND): then the image data is complete
    add(f"{_base}-truncated-90pct", writer(f"cut{_ext}", _cut(_data, 0.9)), EITHER)
    add(f"{_base}-last-byte-missing", writer(f"cut{_ext}", lambda d=_data: d()[:-1]), EITHER)
    for _seed in range(3):
        add(f"{_base}-bytes-flipped-{_seed}", writer(f"flip{_ext}", _flip(_data, _seed)), EITHER)
    add(
        f"{_base}-magic-broken",
        writer(f"magic{_ext}", lambda d=_data: b"\x00\x00\x00\x00" + d()[4:]),
        INVALID,
    )
    add(f"{_base}-doubled", writer(f"twice{_ext}", lambda d=_data: d() + d()), EITHER)


def _png_without_plte() -> bytes:
    data = _BASES["png-palette"][1]()
    at = data.index(b"PLTE") - 4
    return data[:at] + data[at + 12 + struct.unpack(">I", data[at : at + 4])[0] :]


def claim_jpeg(w: int, h: int) -> bytes:
    """A tiny JPEG whose frame header (SOF0) claims ``w`` x ``h`` (its data are for a small pattern)."""
    data = bytearray(pil_bytes(Image.fromarray(pattern()), "JPEG", quality=50))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


def claim_png(w: int, h: int, depth: int = 8, color: int = 2) -> bytes:
    """A PNG whose header claims ``w`` x ``h`` (``depth`` bits, colour type ``color``), one short IDAT."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _claim_tiff(w: int, h: int) -> bytes:
    data = bytearray(pil_bytes(Image.fromarray(pattern()), "TIFF"))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        tags = tif.pages[0].tags
        for tag, value in ((256, w), (257, h)):
            t = tags[tag]
            struct.pack_into("<H" if t.dtype == 3 else "<I", data, t.valueoffset, value)
    return bytes(data)


def _claim_webp(w: int, h: int) -> bytes:
    data = bytearray(pil_bytes(Image.fromarray(pattern()), "WEBP", lossless=True))
    # VP8L header: signature byte 0x2f, then 14 bits width-1, 14 bits height-1
    at = data.index(b"VP8L") + 8
    bits = (w - 1) | ((h - 1) << 14)
    struct.pack_into("<I", data, at + 1, bits | (struct.unpack_from("<I", data, at + 1)[0] & ~0x0FFFFFFF))
    return bytes(data)


for _side in (7000, 10000):
    add(f"jpeg-claims-{_side}", writer("claim.jpg", lambda s=_side: claim_jpeg(s, s)), INVALID)
    add(f"png-claims-{_side}", writer("claim.png", lambda s=_side: claim_png(s, s)), INVALID)
    add(f"png-1bit-claims-{_side}", writer("claim.png", lambda s=_side: claim_png(s, s, 1, 0)), INVALID)
    add(f"tiff-claims-{_side}", writer("claim.tif", lambda s=_side: _claim_tiff(s, s)), INVALID)
    add(f"webp-claims-{_side}", writer("claim.webp", lambda s=_side: _claim_webp(s, s)), INVALID)
add("png-claims-30000-bomb", writer("bomb.png", lambda: claim_png(30000, 30000)), INVALID)
add("png-claims-zero-width", writer("zero.png", lambda: claim_png(0, 16)), INVALID)
add("png-palette-without-plte", writer("noplte.png", _png_without_plte), INVALID)

for _name, _file, _bytes in [
    ("empty-jpg", "empty.jpg", b""),
    ("empty-png", "empty.png", b""),
    ("one-byte", "one.jpg", b"\xff"),
    ("jpeg-soi-only", "soi.jpg", b"\xff\xd8\xff"),
    ("png-signature-only", "sig.png", b"\x89PNG\r\n\x1a\n"),
    ("tiff-header-only", "hdr.tif", b"II*\x00\x08\x00\x00\x00"),
    ("tiff-ifd-loop", "loop.tif", b"II*\x00\x08\x00\x00\x00\x00\x00\x08\x00\x00\x00"),
    ("riff-no-webp", "riff.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(8)),
    ("text-named-jpg", "notes.jpg", b"this is not a photo\n" * 10),
    ("html-named-png", "page.png", b"<!doctype html><html><body>404</body></html>"),
    ("random-bytes-jpg", "noise.jpg", np.random.default_rng(5).bytes(3000)),
    ("zeros-png", "zeros.png", bytes(3000)),
]:
    add(_name, writer(_file, lambda b=_bytes: b), INVALID)

add(
    "gif-unsupported",
    writer("anim.gif", lambda: pil_bytes(Image.fromarray(pattern()).convert("P"), "GIF")),
    INVALID,
)
add("bmp-unsupported", writer("old.bmp", lambda: pil_bytes(Image.fromarray(pattern()), "BMP")), INVALID)
add("bmp-named-jpg", writer("old.jpg", lambda: pil_bytes(Image.fromarray(pattern()), "BMP")), INVALID)
add(
    "tiff-32bit-float",
    writer(
        "f32.tif",
        lambda: (lambda b: (tifffile.imwrite(b, np.zeros((H, W), np.float32)), b.getvalue())[1])(
            io.BytesIO()
        ),
    ),
    INVALID,
)
add("tiff-16bit-deflate-corrupt", writer("c16.tif", _flip(_tiff16_deflate, 9)), INVALID)


@case("folder-named-jpg", INVALID)
def _folder(folder: Path) -> Path:
    (folder / "dir.jpg").mkdir()
    return folder / "dir.jpg"


@case("missing-file", INVALID)
def _missing(folder: Path) -> Path:
    return folder / "missing.jpg"


@case("fifo", INVALID)
def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.jpg")
    return folder / "pipe.jpg"


@case("dangling-symlink", INVALID)
def _dangling(folder: Path) -> Path:
    (folder / "link.jpg").symlink_to(folder / "gone.jpg")
    return folder / "link.jpg"


@case("symlink-loop", INVALID)
def _loop(folder: Path) -> Path:
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    return folder / "loop.jpg"


@case("symlink-to-photo", Valid((W, H)))
def _link(folder: Path) -> Path:
    target = folder / "target.png"
    target.write_bytes(pil_bytes(Image.fromarray(pattern()), "PNG"))
    (folder / "link.png").symlink_to(target)
    return folder / "link.png"


def heif_cases() -> None:
    """HEIC cases, when pillow-heif is installed."""
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()
    data = lambda: pil_bytes(Image.fromarray(pattern()), "HEIF", quality=95)  # noqa: E731
    add("heic", writer("p.heic", data), Valid((W, H)))
    add("heic-truncated-50pct", writer("cut.heic", _cut(data, 0.5)), INVALID)
    add("heic-bytes-flipped", writer("flip.heic", _flip(data, 0)), EITHER)


heif_cases()


def video_cases() -> None:
    """Damaged clips (INVALID: refused in one line; EITHER: refused, or enhanced whole)."""
    from clips import clip_bytes, scene

    frames = [scene(48, 64, seed) for seed in range(10)]
    mp4 = functools.cache(lambda: clip_bytes(".mp4", frames))  # index (moov) at the end
    faststart = functools.cache(lambda: clip_bytes(".mp4", frames, faststart=True))  # index first
    mkv = functools.cache(lambda: clip_bytes(".mkv", frames))
    webm = functools.cache(lambda: clip_bytes(".webm", frames))
    for fraction in (0.05, 0.3, 0.6, 0.9):
        add(
            f"mp4-truncated-{int(fraction * 100)}pct",
            writer("cut.mp4", _cut(mp4, fraction)),
            INVALID,
            "video",
        )
    for fraction in (0.3, 0.6, 0.9):
        name = f"mp4-faststart-truncated-{int(fraction * 100)}pct"
        add(name, writer("cut.mp4", _cut(faststart, fraction)), INVALID, "video")
    add("mkv-truncated-50pct", writer("cut.mkv", _cut(mkv, 0.5)), INVALID, "video")
    add("webm-truncated-50pct", writer("cut.webm", _cut(webm, 0.5)), INVALID, "video")
    for seed in range(3):
        add(f"mp4-bytes-flipped-{seed}", writer("flip.mp4", _flip(mp4, seed)), EITHER, "video")
        add(
            f"mp4-faststart-bytes-flipped-{seed}", writer("flip.mp4", _flip(faststart, seed)), EITHER, "video"
        )
    add("mkv-bytes-flipped", writer("flip.mkv", _flip(mkv, 0)), EITHER, "video")
    add("mp4-last-byte-missing", writer("cut.mp4", lambda: mp4()[:-1]), EITHER, "video")
    add("mp4-empty", writer("empty.mp4", lambda: b""), INVALID, "video")
    add(
        "mov-random-bytes",
        writer("noise.mov", lambda: np.random.default_rng(0).bytes(4096)),
        INVALID,
        "video",
    )
    add("mkv-text", writer("notes.mkv", lambda: b"not a video\n" * 50), INVALID, "video")
    add(
        "mp4-audio-only",
        writer("sound.mp4", lambda: clip_bytes(".mp4", [], audio_seconds=0.5)),
        INVALID,
        "video",
    )
    add("mp4-hdr-pq", writer("pq.mp4", lambda: clip_bytes(".mp4", frames[:3], transfer=16)), INVALID, "video")
    add(
        "mkv-hdr-hlg",
        writer("hlg.mkv", lambda: clip_bytes(".mkv", frames[:3], transfer=18)),
        INVALID,
        "video",
    )


video_cases()
