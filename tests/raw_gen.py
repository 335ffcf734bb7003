"""Test DNGs made from ordinary photos, and the bad RAW cases of the input generator.

:func:`dng_bytes` mosaics a linear camera image with a known CFA pattern and writes it as an
uncompressed DNG (a TIFF with the DNG tags) with known black and white levels, a colour matrix, an
as-shot white balance, an orientation and EXIF/GPS sub-IFDs. The TIFF is laid out here, entry by entry,
because neither Pillow nor tifffile writes CFA images with EXIF and GPS sub-IFDs.

The camera of these DNGs sees ``CAMERA @ linear_srgb`` (rows summing to 0.6, 1 and 0.55: the red and
blue sites collect less light, as a real sensor's do), so LibRaw needs the colour matrix and the as-shot
neutral to give the source back: :func:`camera_from_srgb` is that forward model.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import tifffile
from PIL import Image

from inputs_gen import INVALID, _cut, add, pattern, pil_bytes, writer

# Camera response to linear sRGB (rows: the camera's R, G, B sites). Positive, invertible, with
# unequal row sums so that white balance matters.
CAMERA = np.array([[0.45, 0.10, 0.05], [0.10, 0.50, 0.40], [0.05, 0.15, 0.35]])
# XYZ (D65) -> linear sRGB (IEC 61966-2-1), the inverse of the sRGB primaries' matrix.
SRGB_FROM_XYZ = np.array(
    [
        [3.2404542, -1.5371385, -0.4985314],
        [-0.9692660, 1.8760108, 0.0415560],
        [0.0556434, -0.2040259, 1.0572252],
    ]
)
CFA = {"RGGB": (0, 1, 1, 2), "BGGR": (2, 1, 1, 0), "GRBG": (1, 0, 2, 1), "GBRG": (1, 2, 0, 1)}

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 1, 2, 3, 4, 5, 7, 10
_SIZE = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}
_FMT = {BYTE: "B", ASCII: "B", SHORT: "H", LONG: "I", UNDEFINED: "B"}

# What the test DNGs carry in their EXIF, and what must come out in the enhanced photo.
EXIF_MAIN = {271: "Testcam", 272: "DNG-1 Mark II", 306: "2024:05:06 07:08:09"}
EXIF_SUB = {
    33434: (RATIONAL, [Fraction(1, 250)]),  # ExposureTime
    33437: (RATIONAL, [Fraction(28, 10)]),  # FNumber
    34855: (SHORT, [400]),  # ISO
    36867: (ASCII, "2024:05:06 07:08:09"),  # DateTimeOriginal
    37386: (RATIONAL, [Fraction(35, 1)]),  # FocalLength
    42036: (ASCII, "Testlens 35mm F1.4"),  # LensModel
}
GPS = {
    0: (BYTE, [2, 3, 0, 0]),  # GPSVersionID
    1: (ASCII, "N"),
    2: (RATIONAL, [Fraction(48), Fraction(51), Fraction(2406, 100)]),  # 48° 51' 24.06"
    3: (ASCII, "E"),
    4: (RATIONAL, [Fraction(2), Fraction(21), Fraction(792, 100)]),
}


@dataclass
class DngSpec:
    """How to make a test DNG: CFA pattern, levels, orientation, white balance and EXIF."""

    cfa: str = "RGGB"
    black: int = 256
    white: int = 15000
    orientation: int = 1
    compression: int = 1  # 1: none; others make DNGs LibRaw cannot decode
    exif: bool = True
    light: tuple[float, float, float] = (1.0, 1.0, 1.0)  # the scene light's colour, as the camera sees it
    claim: tuple[int, int] | None = None  # a (width, height) stated in place of the real one
    make: str = EXIF_MAIN[271]
    extra: dict[int, tuple[int, object]] = field(default_factory=dict)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1)."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def camera_from_srgb(rgb8: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB photo -> (H, W, 3) float camera signal in [0, 1] (the sensor's view)."""
    return srgb_to_linear(rgb8.astype(np.float64) / 255) @ CAMERA.T


def mosaic(rgb8: np.ndarray, spec: DngSpec) -> np.ndarray:
    """The CFA image: one camera channel a site, scaled between the black and the white level."""
    cam = camera_from_srgb(rgb8) * spec.light
    h, w = cam.shape[:2]
    channel = np.empty((h, w), np.intp)
    pat = CFA[spec.cfa]
    for i, c in enumerate(pat):
        channel[i // 2 :: 2, i % 2 :: 2] = c
    site = np.take_along_axis(cam, channel[..., None], axis=2)[..., 0]
    return np.rint(spec.black + site * (spec.white - spec.black)).astype(np.uint16)


def _rationals(values: np.ndarray | list[float], denominator: int = 10000) -> list[Fraction]:
    return [Fraction(round(float(v) * denominator), denominator) for v in np.ravel(values)]


def dng_bytes(rgb8: np.ndarray, spec: DngSpec | None = None) -> bytes:
    """An uncompressed DNG of the photo ``rgb8`` ((H, W, 3) uint8 sRGB, even size) as ``spec`` says."""
    spec = spec or DngSpec()
    return dng_from_mosaic(mosaic(rgb8, spec), spec)


def dng_from_mosaic(raw: np.ndarray, spec: DngSpec) -> bytes:
    """An uncompressed DNG of a CFA image ((H, W) uint16 between ``spec``'s black and white levels)."""
    h, w = raw.shape
    data = raw.astype("<u2").tobytes()
    white = CAMERA.sum(axis=1) * spec.light  # the camera's signal for a white object
    neutral = white / white.max()
    main: dict[int, tuple[int, object]] = {
        254: (LONG, [0]),
        256: (LONG, [spec.claim[0] if spec.claim else w]),
        257: (LONG, [spec.claim[1] if spec.claim else h]),
        258: (SHORT, [16]),
        259: (SHORT, [spec.compression]),
        262: (SHORT, [32803]),  # CFA
        271: (ASCII, spec.make),
        272: (ASCII, EXIF_MAIN[272]),
        273: (LONG, [0]),  # strip offset: filled in below
        274: (SHORT, [spec.orientation]),
        277: (SHORT, [1]),
        278: (LONG, [h]),
        279: (LONG, [len(data)]),
        284: (SHORT, [1]),
        306: (ASCII, EXIF_MAIN[306]),
        33421: (SHORT, [2, 2]),  # CFARepeatPatternDim
        33422: (BYTE, list(CFA[spec.cfa])),  # CFAPattern
        50706: (BYTE, [1, 4, 0, 0]),  # DNGVersion
        50707: (BYTE, [1, 1, 0, 0]),  # DNGBackwardVersion
        50708: (ASCII, f"{spec.make} {EXIF_MAIN[272]}"),  # UniqueCameraModel
        50714: (LONG, [spec.black]),  # BlackLevel
        50717: (LONG, [spec.white]),  # WhiteLevel
        50721: (SRATIONAL, _rationals(CAMERA @ SRGB_FROM_XYZ)),  # ColorMatrix1: XYZ -> camera
        50728: (RATIONAL, _rationals(neutral)),  # AsShotNeutral
        50778: (SHORT, [21]),  # CalibrationIlluminant1: D65
        **spec.extra,
    }
    ifds = [main]
    if spec.exif:
        main[34665] = (LONG, [0])  # Exif IFD offset: filled in below
        main[34853] = (LONG, [0])  # GPS IFD offset
        ifds += [dict(EXIF_SUB), dict(GPS)]
    return _tiff(ifds, data)


def _tiff(ifds: list[dict[int, tuple[int, object]]], data: bytes) -> bytes:
    """A little-endian TIFF: IFD0 (pointing at the others by 34665/34853), the values, then ``data``."""
    starts, pos = [], 8
    for ifd in ifds:
        starts.append(pos)
        pos += 2 + 12 * len(ifd) + 4
    if len(ifds) == 3:
        ifds[0][34665], ifds[0][34853] = (LONG, [starts[1]]), (LONG, [starts[2]])
    blobs = bytearray()
    entries: list[bytes] = []
    offsets: list[tuple[int, int]] = []  # (index in entries, position in blobs) for strip offset
    for ifd in ifds:
        out = struct.pack("<H", len(ifd))
        for tag in sorted(ifd):
            kind, value = ifd[tag]
            raw = _encode(kind, value)
            count = len(raw) // _SIZE[kind]
            if len(raw) <= 4:
                out += struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\0")
            else:
                if len(blobs) % 2:
                    blobs += b"\0"
                out += struct.pack("<HHII", tag, kind, count, pos + len(blobs))
                blobs += raw
            if tag == 273:
                offsets.append((len(entries), len(out) - 4))
        entries.append(out + b"\0\0\0\0")
    strip = pos + len(blobs) + (len(blobs) % 2)
    for i, at in offsets:
        entries[i] = entries[i][:at] + struct.pack("<I", strip) + entries[i][at + 4 :]
    return (
        b"II*\0" + struct.pack("<I", 8) + b"".join(entries) + bytes(blobs) + b"\0" * (len(blobs) % 2) + data
    )


def _encode(kind: int, value: object) -> bytes:
    if kind == ASCII:
        return str(value).encode() + b"\0"
    if kind in (RATIONAL, SRATIONAL):
        code = "<ii" if kind == SRATIONAL else "<II"
        return b"".join(struct.pack(code, f.numerator, f.denominator) for f in value)  # type: ignore[attr-defined]
    return struct.pack("<" + _FMT[kind] * len(value), *value)  # type: ignore[arg-type]


def small_dng(spec: DngSpec | None = None) -> bytes:
    """A tiny DNG of the generator's four-colour pattern, 48 x 32 (LibRaw reads no side under 22)."""
    return dng_bytes(pattern(32, 48), spec)


# --- bad RAWs for the input generator (tests/test_malformed_inputs.py) --------------------------------


def _unknown_camera() -> bytes:
    """A TIFF-based file of a camera LibRaw does not know: only an 8-bit RGB image in it."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, pattern(32, 48), extratags=[(271, "s", 0, "Nocam", True)])
    return buf.getvalue()


def _unknown_cr3() -> bytes:
    """An ISO-BMFF file that says it is a CR3 but holds none of its boxes."""
    return struct.pack(">I", 24) + b"ftypcrx \0\0\0\1crx isom" + bytes(2000)


_good = small_dng
for _fraction in (0.6, 0.1, 0.01):
    add(f"dng-truncated-{round(_fraction * 100)}pct", writer("cut.dng", _cut(_good, _fraction)), INVALID)
for _name, _compression in [("deflate", 8), ("lossy-jpeg", 34892), ("jpeg2000", 34712), ("unknown", 12345)]:
    add(
        f"dng-{_name}-compression-on-plain-data",
        writer("odd.dng", lambda c=_compression: small_dng(DngSpec(compression=c))),
        INVALID,
    )
add("cr2-unsupported-camera", writer("IMG_0001.CR2", _unknown_camera), INVALID)
add("nef-unsupported-camera", writer("DSC_0001.nef", _unknown_camera), INVALID)
add("cr3-without-its-boxes", writer("IMG_0002.CR3", _unknown_cr3), INVALID)
for _w, _h in [(60000, 60000), (9000, 9000)]:
    _claim = lambda w=_w, h=_h: small_dng(DngSpec(claim=(w, h)))  # noqa: E731
    add(f"dng-claims-{_w}x{_h}", writer("claim.dng", _claim), INVALID)
add("jpeg-named-dng", writer("photo.dng", lambda: pil_bytes(Image.fromarray(pattern()), "JPEG")), INVALID)
add("empty-dng", writer("empty.dng", lambda: b""), INVALID)
add("random-bytes-arw", writer("noise.arw", lambda: np.random.default_rng(7).bytes(5000)), INVALID)
add("text-named-raf", writer("notes.raf", lambda: b"FUJIFILMCCD-RAW 0201" + bytes(200)), INVALID)
