"""Photo I/O: formats, orientation, metadata, bit depth, modes, limits, bad input, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageFile, ImageOps, JpegImagePlugin, PngImagePlugin

from dslrify import photo as photo_mod
from dslrify.errors import PhotoError
from dslrify.photo import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    Photo,
    format_for_extension,
    from_array,
    from_pil,
    inspect_photo,
    read_photo,
    to_array,
    to_pil,
    unit_float,
    write_image,
    write_photo,
)
from inputs_gen import claim_jpeg, claim_png, pattern

XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
    b' xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    b' tiff:Orientation="6"><dc:creator>dslrify-test</dc:creator></rdf:Description></rdf:RDF>'
    b'</x:xmpmeta><?xpacket end="w"?>'
)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}


def exif_bytes(orientation: int | None = None) -> bytes:
    exif = Image.Exif()
    exif[271] = "TestCam"  # Make
    exif[306] = "2024:05:01 12:00:00"  # DateTime
    if orientation is not None:
        exif[274] = orientation
    exif[0x8769] = {0x9003: "2024:05:01 11:59:58"}  # Exif IFD: DateTimeOriginal
    return exif.tobytes()


def upright_pattern(h: int = 48, w: int = 64) -> np.ndarray:
    """Four flat quadrants, all different: any rotation or flip shows."""
    return pattern(h, w)


def quadrant_colours(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    centres = [(h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4)]
    return np.array([arr[y, x] for y, x in centres], np.int32)


def as_uint8(photo: Photo) -> np.ndarray:
    return (unit_float(photo.pixels)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def noise(h: int = 32, w: int = 40, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


@pytest.fixture
def no_heif(monkeypatch):
    """Pretend pillow-heif is not installed."""
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    photo_mod._heif_available.cache_clear()
    yield
    photo_mod._heif_available.cache_clear()


# --- formats and extensions ---------------------------------------------------------------------------


def test_format_for_extension_maps_supported_and_rejects_others():
    assert format_for_extension(".JPG") == "JPEG"
    assert format_for_extension("tif") == "TIFF"
    assert {SUPPORTED_EXTENSIONS[e] for e in (".heic", ".heif")} == {"HEIF"}
    with pytest.raises(PhotoError, match=r"unsupported photo extension '\.bmp'.*\.jpg.*\.webp"):
        format_for_extension(".bmp")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_round_trip_each_format(tmp_path, fmt):
    src = tmp_path / f"in{EXT[fmt]}"
    Image.fromarray(upright_pattern()).save(src, format=fmt)
    photo = read_photo(src)
    assert (photo.format, photo.mode, photo.bit_depth, photo.size) == (fmt, "RGB", 8, (64, 48))
    assert photo.pixels.dtype == torch.uint8 and photo.pixels.shape == (1, 3, 48, 64)  # native depth
    assert photo.pixels.is_contiguous()
    dst = tmp_path / f"out{EXT[fmt]}"
    write_photo(dst, photo)
    with Image.open(dst) as out:
        assert (out.format, out.mode, out.size) == (fmt, "RGB", (64, 48))
        assert np.abs(quadrant_colours(np.asarray(out)) - quadrant_colours(upright_pattern())).max() <= 8


def test_lossless_read_is_exact_and_format_argument_overrides_extension(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(noise()).save(src)
    photo = read_photo(src)
    assert np.array_equal(as_uint8(photo), noise())
    dst = tmp_path / "out.bin"
    write_photo(dst, photo, format="png")
    with Image.open(dst) as out:
        assert out.format == "PNG" and np.array_equal(np.asarray(out), noise())


def test_unsupported_read_format_is_refused(tmp_path):
    path = tmp_path / "in.bmp"
    Image.fromarray(noise()).save(path)
    with pytest.raises(PhotoError, match="is a BMP image"):
        read_photo(path)


# --- orientation and metadata --------------------------------------------------------------------------


def test_exif_orientation_applied_and_reset(tmp_path, shared_data):
    """Orientation 6 (stored rotated 90° counter-clockwise) comes out upright, with Orientation 1."""
    icc = (shared_data / "icc/AdobeRGB1998.icc").read_bytes()
    upright = upright_pattern()
    src = tmp_path / "phone.jpg"
    Image.fromarray(np.rot90(upright, 1).copy()).save(
        src, exif=exif_bytes(6), xmp=XMP, icc_profile=icc, quality=98
    )
    photo = read_photo(src)
    assert photo.size == (64, 48)  # stored 48 x 64
    assert np.abs(quadrant_colours(as_uint8(photo)) - quadrant_colours(upright)).max() <= 8

    dst = tmp_path / "out.jpg"
    write_photo(dst, photo)
    with Image.open(dst) as out:
        assert out.size == (64, 48)
        assert np.abs(quadrant_colours(np.asarray(out)) - quadrant_colours(upright)).max() <= 8
        exif = out.getexif()
        assert exif[274] == 1 and exif[271] == "TestCam" and exif[306] == "2024:05:01 12:00:00"
        assert exif.get_ifd(0x8769)[0x9003] == "2024:05:01 11:59:58"
        assert out.info["icc_profile"] == icc
        assert b"dslrify-test" in out.info["xmp"] and b'tiff:Orientation="1"' in out.info["xmp"]
        assert ImageOps.exif_transpose(out).size == (64, 48)  # a viewer does not rotate it again


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    src = tmp_path / "in.png"
    Image.fromarray(noise(6, 10)).save(src, exif=exif_bytes(orientation))
    with Image.open(src) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    photo = read_photo(src)
    assert np.array_equal(as_uint8(photo), expected)
    assert photo.exif is not None
    tags = Image.Exif()
    tags.load(photo.exif)
    assert tags[274] == 1 and tags[271] == "TestCam"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_exif_xmp_icc_carried_into_output(tmp_path, fmt):
    src = tmp_path / "in.png"
    Image.fromarray(noise()).save(src, exif=exif_bytes(3), icc_profile=SRGB_ICC)
    photo = read_photo(src)
    photo.xmp = XMP
    dst = tmp_path / f"out{EXT[fmt]}"
    write_photo(dst, photo)
    with Image.open(dst) as out:
        out.load()
        exif = out.getexif()
        assert exif[274] == 1 and exif[271] == "TestCam" and exif[306] == "2024:05:01 12:00:00"
        assert exif.get_ifd(0x8769)[0x9003] == "2024:05:01 11:59:58"
        assert out.info["icc_profile"] == SRGB_ICC
        assert b"dslrify-test" in as_bytes(out.info["xmp"])
    again = read_photo(dst)  # and our reader finds all three again
    assert again.icc_profile == SRGB_ICC and b"dslrify-test" in again.xmp and b"TestCam" in again.exif


@pytest.mark.parametrize("profile", ["AdobeRGB1998.icc", "ProPhotoRGB.icc"])
@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_wide_gamut_profile_kept_and_pixels_not_converted(tmp_path, profile, fmt, shared_data):
    icc = (shared_data / "icc" / profile).read_bytes()
    src = tmp_path / f"in{EXT[fmt]}"
    Image.fromarray(noise()).save(
        src, format=fmt, icc_profile=icc, **({"lossless": True} if fmt == "WEBP" else {})
    )
    photo = read_photo(src)
    assert photo.icc_profile == icc
    assert np.array_equal(as_uint8(photo), noise())  # the source's own encoding, not sRGB
    dst = tmp_path / f"out{EXT[fmt]}"
    write_photo(dst, photo)
    with Image.open(dst) as out:
        assert out.info["icc_profile"] == icc


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
def test_large_photos_are_decoded_band_by_band_to_the_same_pixels(tmp_path, monkeypatch, mode):
    """Bands of 4 rows (the last one short), as a 12 MP photo's are of ~1 MP: oriented as Pillow does,
    alpha split off, grey repeated."""
    monkeypatch.setattr(photo_mod.core, "_BAND_PIXELS", 10 * 4)
    src = tmp_path / "in.png"
    Image.fromarray(noise(13, 10, c=4, seed=3), "RGBA").convert(mode).save(src, exif=exif_bytes(6))
    with Image.open(src) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    photo = read_photo(src)
    assert photo.size == (13, 10) and photo.pixels.is_contiguous()
    colour = expected[..., :-1] if mode in ("RGBA", "LA") else expected
    assert np.array_equal(as_uint8(photo), colour if mode.startswith("RGB") else np.dstack([colour] * 3))
    assert np.array_equal(photo.alpha, expected[..., -1]) if "A" in mode else photo.alpha is None


def test_real_photo_reads_at_its_size(shared_data):
    photo = read_photo(shared_data / "photos/Picture_1A_by_freespace.jpg")
    assert photo.size == (1365, 1074) and photo.format == "JPEG" and photo.bit_depth == 8


# --- alpha ---------------------------------------------------------------------------------------------


def test_rgba_png_alpha_passed_through_untouched(tmp_path):
    rgba = noise(c=4, seed=1)
    src = tmp_path / "in.png"
    Image.fromarray(rgba, "RGBA").save(src)
    photo = read_photo(src)
    assert photo.mode == "RGBA" and photo.alpha.dtype == np.uint8
    assert np.array_equal(photo.alpha, rgba[..., 3])
    assert np.array_equal(as_uint8(photo), rgba[..., :3])  # colour not premultiplied
    dst = tmp_path / "out.png"
    write_photo(dst, photo, 1 - unit_float(photo.pixels))
    with Image.open(dst) as out:
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])
        assert np.array_equal(np.asarray(out)[..., :3], 255 - rgba[..., :3])


def test_alpha_dropped_when_writing_jpeg(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(noise(c=4), "RGBA").save(src)
    dst = tmp_path / "out.jpg"
    write_photo(dst, read_photo(src))
    with Image.open(dst) as out:
        assert out.mode == "RGB"


def test_resized_result_allowed_without_alpha_refused_with_alpha(tmp_path):
    bigger = torch.rand(1, 3, 64, 80)
    photo = from_array(noise())[0]
    write_photo(tmp_path / "big.png", photo, bigger)
    with Image.open(tmp_path / "big.png") as out:
        assert out.size == (80, 64)
    with_alpha = from_array(noise(c=4))[0]
    with pytest.raises(PhotoError, match="alpha channel is 40 x 32"):
        write_photo(tmp_path / "bad.png", with_alpha, bigger)
    assert not (tmp_path / "bad.png").exists()


# --- bit depth -----------------------------------------------------------------------------------------


def gradient16(h: int = 8, w: int = 1024) -> np.ndarray:
    ramp = np.linspace(0, 65535, w).round().astype(np.uint16)
    rgb = np.stack([ramp, ramp[::-1], (ramp // 3 + 7).astype(np.uint16)], axis=-1)
    return np.broadcast_to(rgb, (h, w, 3)).copy()


def test_16bit_png_round_trip_keeps_full_precision(tmp_path):
    grad = gradient16()
    src = tmp_path / "in.png"
    assert cv2.imwrite(str(src), cv2.cvtColor(grad, cv2.COLOR_RGB2BGR))
    photo = read_photo(src)
    assert photo.bit_depth == 16 and photo.mode == "RGB"
    assert photo.pixels.dtype == torch.uint16
    assert np.array_equal(photo.pixels[0].permute(1, 2, 0).numpy(), grad)  # Pillow: multiples of 257
    dst = tmp_path / "out.png"
    write_photo(dst, photo, unit_float(photo.pixels) * 0.5 + 0.25)
    back = cv2.cvtColor(cv2.imread(str(dst), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    assert back.dtype == np.uint16
    expected = np.round((grad.astype(np.float64) / 65535 * 0.5 + 0.25) * 65535)
    assert np.abs(back - expected).max() <= 1
    assert len(np.unique(back[0, :, 0])) > 512  # not quantised to 8 bit


def test_16bit_tiff_round_trip_keeps_precision_icc_and_xmp(tmp_path):
    grad = gradient16()
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, grad, photometric="rgb", iccprofile=SRGB_ICC)
    photo = read_photo(src)
    assert photo.bit_depth == 16 and photo.icc_profile == SRGB_ICC
    photo.xmp, photo.exif = XMP, exif_bytes(1)
    dst = tmp_path / "out.tiff"
    write_photo(dst, photo)
    with tifffile.TiffFile(dst) as tif:
        page = tif.pages[0]
        assert np.array_equal(page.asarray(), grad)
        assert page.tags[34675].value == SRGB_ICC and b"dslrify-test" in page.tags[700].value
        assert page.tags[271].value == "TestCam" and page.tags[274].value == 1


def test_16bit_png_metadata_and_alpha_written(tmp_path):
    rgba = np.dstack([gradient16(), np.full((8, 1024), 40000, np.uint16)])
    photo = from_array(rgba)[0]
    photo.exif, photo.icc_profile, photo.xmp = exif_bytes(1), SRGB_ICC, XMP
    dst = tmp_path / "out.png"
    write_photo(dst, photo)
    with Image.open(dst) as out:
        assert out.info["icc_profile"] == SRGB_ICC and b"dslrify-test" in as_bytes(out.info["xmp"])
        assert out.getexif()[271] == "TestCam"
    again = read_photo(dst)
    assert again.bit_depth == 16 and again.alpha.dtype == np.uint16 and np.all(again.alpha == 40000)


def test_16bit_written_as_8bit_for_jpeg_and_webp(tmp_path):
    photo = from_array(np.dstack([gradient16(), np.full((8, 1024), 40000, np.uint16)]))[0]
    write_photo(tmp_path / "out.webp", photo, quality=100)
    write_photo(tmp_path / "out.jpg", photo)
    with Image.open(tmp_path / "out.webp") as webp, Image.open(tmp_path / "out.jpg") as jpeg:
        assert webp.mode == "RGBA" and np.all(np.asarray(webp)[..., 3] == 156)  # round(40000 / 257)
        assert jpeg.mode == "RGB"
        expected = np.round(gradient16()[0, :, 0] / 257)
        assert np.abs(np.asarray(jpeg)[0, :, 0].astype(int) - expected).max() <= 3


# --- grayscale, CMYK, palette --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "I;16"])
def test_grayscale_processed_as_rgb_and_written_back_grayscale(tmp_path, mode):
    gray = noise(c=1)[..., 0]
    values = gray.astype(np.uint16) * 257 if mode == "I;16" else gray
    src = tmp_path / "in.png"
    Image.fromarray(values).save(src)
    photo = read_photo(src)
    assert photo.mode == mode and photo.bit_depth == (16 if mode == "I;16" else 8)
    assert torch.equal(photo.pixels[:, 0], photo.pixels[:, 1]) and torch.equal(
        photo.pixels[:, 0], photo.pixels[:, 2]
    )
    dst = tmp_path / "out.png"
    write_photo(dst, photo)
    with Image.open(dst) as out:
        assert out.mode == mode and np.array_equal(np.asarray(out), values)


def test_grayscale_output_is_rec601_luma_like_pillow(tmp_path):
    photo = from_array(noise(c=1)[..., 0])[0]
    colour = torch.from_numpy(noise(seed=5)).permute(2, 0, 1)[None].float() / 255
    write_photo(tmp_path / "out.png", photo, colour)
    with Image.open(tmp_path / "out.png") as out:
        expected = np.asarray(Image.fromarray(noise(seed=5)).convert("L")).astype(int)
        assert out.mode == "L" and np.abs(np.asarray(out).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_without_profile_converted_naively_and_written_rgb(tmp_path, fmt):
    cmyk = Image.fromarray(noise(c=4, seed=3), "CMYK")
    src = tmp_path / f"in{EXT[fmt]}"
    cmyk.save(src, format=fmt)
    photo = read_photo(src)
    with Image.open(src) as im:
        expected = np.asarray(im.convert("RGB"))
    assert photo.mode == "CMYK" and photo.icc_profile is None
    assert np.array_equal(as_uint8(photo), expected)
    dst = tmp_path / f"out{EXT[fmt]}"
    write_photo(dst, photo)
    with Image.open(dst) as out:
        assert out.mode == "RGB"


def test_cmyk_with_profile_converted_through_it_and_tagged_srgb(tmp_path, monkeypatch):
    calls = []

    def fake_transform(im, src, dst, outputMode):  # noqa: N803 (Pillow's keyword)
        calls.append((src, outputMode))
        return Image.new("RGB", im.size, (10, 20, 30))

    monkeypatch.setattr(ImageCms, "profileToProfile", fake_transform)
    src = tmp_path / "in.jpg"
    lab_icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # stands in for a CMYK one
    Image.fromarray(noise(c=4), "CMYK").save(src, icc_profile=lab_icc)
    photo = read_photo(src)
    assert len(calls) == 1 and calls[0][0].tobytes() == lab_icc and calls[0][1] == "RGB"
    assert as_uint8(photo)[0, 0].tolist() == [10, 20, 30]
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(photo.icc_profile)))
    write_photo(tmp_path / "out.jpg", photo)
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.mode == "RGB" and out.info["icc_profile"] == photo.icc_profile


def test_palette_becomes_rgb_or_rgba_with_transparency(tmp_path):
    pal = Image.fromarray(noise()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "pt.png", transparency=0)
    opaque, clear = read_photo(tmp_path / "p.png"), read_photo(tmp_path / "pt.png")
    assert opaque.mode == "P" and opaque.alpha is None
    assert np.array_equal(as_uint8(opaque), np.asarray(pal.convert("RGB")))
    assert clear.alpha is not None and set(np.unique(clear.alpha)) <= {0, 255} and (clear.alpha == 0).any()
    write_photo(tmp_path / "out.png", clear)
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA"


# --- limits and bad input ------------------------------------------------------------------------------


def test_too_many_pixels_refused_before_decoding(tmp_path, monkeypatch):
    src = tmp_path / "in.png"
    Image.fromarray(noise(10, 20)).save(src)

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(PhotoError) as err:
        read_photo(src, max_pixels=199)
    assert "in.png is 20 x 10 = 200 pixels, more than the limit of 199" in str(err.value)
    assert err.value.advice == "raise --max-pixels if you trust this file"


def test_decompression_bomb_header_gets_our_limit_message(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(claim_png(30000, 30000))  # Pillow alone would raise DecompressionBombError
    with pytest.raises(
        PhotoError,
        match=rf"30000 x 30000 = 900,000,000 pixels, more than the limit of {DEFAULT_MAX_PIXELS:,}",
    ):
        read_photo(path)


@pytest.mark.parametrize("ext", [".png", ".tif"])  # Pillow checks TIFF again when decoding
def test_our_limit_governs_not_pillows(tmp_path, monkeypatch, ext):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    src = tmp_path / f"in{ext}"
    Image.fromarray(noise()).save(src)
    assert read_photo(src).size == (40, 32)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def make_bad(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / {"text": "notes.jpg", "corrupt": "noise.png", "folder": "dir.jpg"}.get(
        kind, f"{kind}.jpg"
    )
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a photo\n")
    elif kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(2000))
    elif kind in ("truncated", "truncated16"):
        buf = io.BytesIO()
        if kind == "truncated":
            Image.fromarray(noise(128, 128)).save(buf, format="JPEG")
        else:
            path = path.with_suffix(".png")
            buf.write(cv2.imencode(".png", gradient16(64, 256))[1].tobytes())
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "bad_idat":
        path = path.with_suffix(".png")
        buf = io.BytesIO()
        Image.fromarray(noise(64, 64)).save(buf, format="PNG")
        data = bytearray(buf.getvalue())
        data[60:200] = bytes(140)  # zeros inside the compressed IDAT stream
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "no such file"),
        ("folder", "is a folder"),
        ("empty", "is empty"),
        ("text", "not a photo dslrify can read"),
        ("corrupt", "not a photo dslrify can read"),
        ("truncated", "is truncated"),
        ("truncated16", "cannot decode image"),
        ("bad_idat", "cannot decode image"),
    ],
)
def test_bad_input_gives_one_line_error_naming_the_file(tmp_path, kind, message):
    path = make_bad(kind, tmp_path)
    with pytest.raises(PhotoError, match=message) as err:
        read_photo(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_heic_without_pillow_heif_says_how_to_install(tmp_path, no_heif):
    fake_heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    for name in ("photo.heic", "misnamed.jpg"):
        (tmp_path / name).write_bytes(fake_heic)
        with pytest.raises(PhotoError, match="pillow-heif") as err:
            read_photo(tmp_path / name)
        assert err.value.advice == "pip install 'dslrify[heic]'"
    with pytest.raises(PhotoError, match=r"dslrify\[heic\]"):
        write_photo(tmp_path / "out.heic", from_array(noise())[0])


def test_heic_round_trip_with_pillow_heif(tmp_path):
    pytest.importorskip("pillow_heif")
    photo_mod._heif_available.cache_clear()
    photo = from_array(upright_pattern())[0]
    photo.exif, photo.icc_profile = exif_bytes(1), SRGB_ICC
    write_photo(tmp_path / "out.heic", photo)
    again = read_photo(tmp_path / "out.heic")
    assert again.format == "HEIF" and again.size == (64, 48) and again.icc_profile == SRGB_ICC
    assert np.abs(quadrant_colours(as_uint8(again)) - quadrant_colours(upright_pattern())).max() <= 12


# --- header inspection and previews --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "orientation", "expected"),
    [("a.jpg", 6, ("JPEG", 48, 64, 8)), ("b.png", 1, ("PNG", 64, 48, 8)), ("c.webp", 8, ("WEBP", 48, 64, 8))],
)
def test_inspect_photo_reads_the_header_only_upright(tmp_path, monkeypatch, name, orientation, expected):
    src = tmp_path / name
    fmt = SUPPORTED_EXTENSIONS[src.suffix]
    Image.fromarray(upright_pattern()).save(src, format=fmt, exif=exif_bytes(orientation))

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    info = inspect_photo(src)
    assert (info.format, info.width, info.height, info.bit_depth) == expected


def test_inspect_photo_gives_16_bit_depth_and_the_size_read_photo_gives(tmp_path):
    src = tmp_path / "deep.tif"
    tifffile.imwrite(src, gradient16(20, 30))
    info = inspect_photo(src)
    assert (info.format, info.bit_depth) == ("TIFF", 16)
    assert (info.width, info.height) == read_photo(src).size == (30, 20)


@pytest.mark.parametrize("kind", ["missing", "folder", "empty", "text", "corrupt"])
def test_inspect_photo_refuses_what_read_photo_refuses(tmp_path, kind):
    path = make_bad(kind, tmp_path)
    with pytest.raises(PhotoError) as by_inspect:
        inspect_photo(path)
    with pytest.raises(PhotoError) as by_read:
        read_photo(path)
    assert str(by_inspect.value) == str(by_read.value)


def test_inspect_photo_applies_the_pixel_limit(tmp_path):
    (tmp_path / "bomb.png").write_bytes(claim_png(30000, 30000))
    with pytest.raises(PhotoError, match="more than the limit of 1,000"):
        inspect_photo(tmp_path / "bomb.png", max_pixels=1000)


def test_write_image_from_array_and_tensor_with_profile(tmp_path):
    arr = upright_pattern()
    write_image(tmp_path / "a.png", arr, icc_profile=SRGB_ICC)
    tensor = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
    write_image(tmp_path / "b.png", tensor)
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert np.array_equal(np.asarray(a), arr) and np.array_equal(np.asarray(b), arr)
        assert a.info.get("icc_profile") == SRGB_ICC and "icc_profile" not in b.info
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_write_image_area_downscales_to_max_side_and_uses_quality(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, ::2] = 255  # one-pixel stripes: area averaging gives mid grey, point sampling black or white
    write_image(tmp_path / "s.png", arr, max_side=20)
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (20, 10) and np.abs(np.asarray(im).astype(int) - 128).max() <= 1
    write_image(tmp_path / "small.jpg", noise(64, 64), quality=20, max_side=100)
    write_image(tmp_path / "big.jpg", noise(64, 64), quality=95)
    assert (tmp_path / "small.jpg").stat().st_size < (tmp_path / "big.jpg").stat().st_size
    with Image.open(tmp_path / "small.jpg") as im:
        assert im.size == (64, 64)


def test_write_image_refuses_other_formats_and_shapes(tmp_path):
    with pytest.raises(PhotoError, match="JPEG, PNG or WebP"):
        write_image(tmp_path / "x.tif", noise())
    with pytest.raises(ValueError):
        write_image(tmp_path / "x.png", noise(c=4))
    assert list(tmp_path.iterdir()) == []


# --- writing -------------------------------------------------------------------------------------------


def test_write_rounds_and_clips(tmp_path):
    values = torch.tensor([100.4, 100.6, -30.0, 300.0, 127.5, 0.0]) / 255
    pixels = values.view(1, 1, 1, 6).expand(1, 3, 1, 6)
    write_photo(tmp_path / "out.png", from_array(noise(1, 6))[0], pixels)
    with Image.open(tmp_path / "out.png") as out:
        assert np.asarray(out)[0, :, 0].tolist() == [100, 101, 0, 255, 128, 0]


def test_quality_applies_to_jpeg_and_webp(tmp_path):
    photo = from_array(noise(64, 64))[0]
    for ext in (".jpg", ".webp"):
        write_photo(tmp_path / f"hi{ext}", photo, quality=95)
        write_photo(tmp_path / f"lo{ext}", photo, quality=30)
        assert (tmp_path / f"lo{ext}").stat().st_size < (tmp_path / f"hi{ext}").stat().st_size
    with Image.open(tmp_path / "hi.jpg") as hi, Image.open(tmp_path / "lo.jpg") as lo:
        assert JpegImagePlugin.get_sampling(hi) == 0 and JpegImagePlugin.get_sampling(lo) == 2


def test_write_is_atomic_when_the_encoder_fails(tmp_path, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "kept.jpg").write_bytes(b"previous result")

    def dying_encoder(im, fp, filename):
        fp.write(b"\xff\xd8\xff partial jpeg")
        raise RuntimeError("encoder died midway")

    monkeypatch.setitem(Image.SAVE, "JPEG", dying_encoder)
    photo = from_array(noise())[0]
    for name in ("new.jpg", "kept.jpg"):
        with pytest.raises(RuntimeError, match="midway"):
            write_photo(out_dir / name, photo)
    assert sorted(p.name for p in out_dir.iterdir()) == ["kept.jpg"]  # no new.jpg, no temp file
    assert (out_dir / "kept.jpg").read_bytes() == b"previous result"


def test_disk_error_while_writing_16bit_tiff_leaves_nothing(tmp_path, monkeypatch):
    def disk_full(f, *args, **kwargs):
        f.write(b"II*\x00")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", disk_full)
    with pytest.raises(PhotoError, match="cannot write .*out.tif: No space left on device"):
        write_photo(tmp_path / "out.tif", from_array(gradient16())[0])
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_gives_cannot_write(tmp_path):
    photo = from_array(noise())[0]
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(PhotoError, match=r"cannot write .*is not a folder"):
        write_photo(tmp_path / "a_file" / "out.png", photo)
    with pytest.raises(PhotoError, match=r"cannot write .*does not exist"):
        write_photo(tmp_path / "missing" / "out.png", photo)
    with pytest.raises(PhotoError, match=r"cannot write .*out\.gif: unsupported photo extension '\.gif'"):
        write_photo(tmp_path / "out.gif", photo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_gives_cannot_write(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(PhotoError, match="(?i)cannot write .*permission denied"):
        write_photo(locked / "out.png", from_array(noise())[0])


# --- Python API: PIL images and arrays -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "I;16"])
def test_pil_round_trip_keeps_mode_and_pixels(mode):
    arrays = {
        "RGB": noise(),
        "RGBA": noise(c=4),
        "L": noise(c=1)[..., 0],
        "LA": noise(c=2),
        "I;16": noise(c=1)[..., 0].astype(np.uint16) * 251,
    }
    arr = arrays[mode]
    image = Image.fromarray(arr)
    out = to_pil(from_pil(image))
    assert out.mode == mode and np.array_equal(np.asarray(out), arr)


def test_from_pil_applies_orientation_and_to_pil_carries_metadata(tmp_path):
    src = tmp_path / "in.jpg"
    Image.fromarray(np.rot90(upright_pattern(), 1).copy()).save(src, exif=exif_bytes(6), icc_profile=SRGB_ICC)
    with Image.open(src) as image:
        out = to_pil(from_pil(image))
    assert out.size == (64, 48) and out.info["icc_profile"] == SRGB_ICC
    assert b"TestCam" in out.info["exif"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [0, 3, 4])
def test_array_round_trip_keeps_dtype_layout_and_values(dtype, channels):
    raw = noise(c=max(channels, 1), seed=channels)
    arr = raw[..., 0] if channels == 0 else raw
    arr = {
        np.uint8: arr,
        np.uint16: arr.astype(np.uint16) * 257 + 3,
        np.float32: arr.astype(np.float32) / 255,
    }[dtype]
    photo, got_dtype = from_array(arr)
    assert got_dtype == dtype and photo.pixels.shape == (1, 3, 32, 40)
    assert (photo.alpha is not None) == (channels == 4)
    out = to_array(photo, photo.pixels, got_dtype)
    assert out.dtype == dtype and out.shape == arr.shape and np.array_equal(out, arr)


def test_from_array_rejects_unsupported_input():
    with pytest.raises(PhotoError, match="float64"):
        from_array(np.zeros((4, 4, 3)))
    with pytest.raises(PhotoError, match="shape"):
        from_array(np.zeros((4, 4, 5), np.uint8))


def test_xmp_only_orientation_applied_and_reset(tmp_path):
    src = tmp_path / "in.png"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())  # tiff:Orientation="6", no EXIF at all
    Image.fromarray(np.rot90(upright_pattern(), 1).copy()).save(src, pnginfo=info)
    photo = read_photo(src)
    assert photo.size == (64, 48) and np.array_equal(as_uint8(photo), upright_pattern())
    assert b'tiff:Orientation="1"' in photo.xmp and b'tiff:Orientation="6"' not in photo.xmp


def test_tiff_exif_carried_without_its_pixel_layout_tags(tmp_path):
    src = tmp_path / "in.tif"
    Image.fromarray(np.rot90(upright_pattern(), -1).copy()).save(src, exif=exif_bytes(8))
    photo = read_photo(src)
    assert photo.size == (64, 48) and np.array_equal(as_uint8(photo), upright_pattern())
    write_photo(tmp_path / "out.jpg", photo)
    with Image.open(tmp_path / "out.jpg") as out:
        exif = out.getexif()
        assert exif.get(274, 1) == 1 and exif[271] == "TestCam"  # Pillow's TIFF decoder drops the tag
        assert exif.get_ifd(0x8769)[0x9003] == "2024:05:01 11:59:58"
        assert not {256, 257, 273, 279} & set(exif)  # the TIFF's strip offsets etc. stay behind


def test_16bit_png_orientation_applied_once(tmp_path):
    grad = gradient16(6, 300)
    photo = from_array(grad)[0]
    photo.exif = exif_bytes(6)  # written as is: the file says "rotate me"
    write_photo(tmp_path / "in.png", photo)
    again = read_photo(tmp_path / "in.png")
    got = again.pixels[0].permute(1, 2, 0).numpy()
    assert again.size == (6, 300) and np.array_equal(got, np.rot90(grad, -1))


def test_exif_kept_byte_for_byte_except_orientation(tmp_path):
    """Maker notes hold offsets into the EXIF block: it is patched in place, never re-serialised."""
    exif = Image.Exif()
    exif[271] = "TestCam"
    exif[274] = 6
    exif[0x8769] = {0x927C: b"MAKERNOTE\x00\x01\x02" * 8}
    raw = exif.tobytes() + b"\x00\x00THUMBNAIL-AREA"  # bytes no re-serialisation would keep
    src = tmp_path / "in.jpg"
    Image.fromarray(noise()).save(src, exif=raw)
    photo = read_photo(src)
    assert len(photo.exif) == len(raw)
    diff = [i for i, (a, b) in enumerate(zip(photo.exif, raw, strict=True)) if a != b]
    assert len(diff) == 1 and photo.exif[diff[0]] == 1  # the Orientation value's low byte: 6 -> 1


def test_multi_picture_jpeg_reads_as_jpeg(tmp_path):
    src = tmp_path / "phone.jpg"  # many phones write MPO: a JPEG with a second picture appended
    Image.fromarray(noise()).save(
        src, format="MPO", save_all=True, append_images=[Image.fromarray(noise(seed=1))]
    )
    photo = read_photo(src)
    assert photo.format == "JPEG" and photo.size == (40, 32)


def test_8bit_quantisation_on_torch_threads_gives_the_numpy_numbers():
    """The fast 8-bit writer path rounds half to even and clips exactly like ``_quantize``."""
    edges = torch.tensor([k + 0.5 for k in range(256)]) / 255
    values = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    values = torch.cat([values, torch.tensor([-0.2, -0.0, 1.3, float("inf"), -float("inf")])])
    x = torch.cat([values, torch.rand(3000)])
    x = x[: x.numel() // 3 * 3].reshape(3, 1, -1)  # (3, 1, W): every value lands in some channel
    expected = np.ascontiguousarray(photo_mod._quantize(x.numpy(), np.dtype(np.uint8)).transpose(1, 2, 0))
    assert np.array_equal(photo_mod._quantize_rgb8(x), expected)


# --- damaged and unusual files ------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def deflate_tiff16(tmp_path: Path, damage: str) -> Path:
    buf = io.BytesIO()
    tifffile.imwrite(buf, gradient16(32, 40), compression="zlib")
    data = bytearray(buf.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tif:
        start, length = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    path = tmp_path / f"{damage}.tif"
    if damage == "corrupt":
        data[start + 10 : start + 30] = bytes(20)
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: start + length // 2]))
    return path


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_deflate_16bit_tiff_is_a_photo_error(tmp_path, damage):
    path = deflate_tiff16(tmp_path, damage)
    with pytest.raises(PhotoError) as err:
        read_photo(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_palette_png_without_plte_is_a_photo_error(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(noise(8, 8, 1)[..., 0]).convert("P").save(buf, format="PNG")
    data = buf.getvalue()
    at = data.index(b"PLTE") - 4
    path = tmp_path / "no_palette.png"
    path.write_bytes(data[:at] + data[at + 12 + struct.unpack(">I", data[at : at + 4])[0] :])
    with pytest.raises(PhotoError, match="cannot decode image"):
        read_photo(path)


def test_output_that_is_a_symlink_loop_is_a_photo_error(tmp_path):
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    with pytest.raises(PhotoError, match="symbolic link loop") as err:
        write_photo(tmp_path / "loop.jpg", from_array(noise())[0])
    assert "\n" not in str(err.value)


def jpeg_with_damaged_exif(path: Path, damage: str) -> Path:
    buf = io.BytesIO()
    Image.fromarray(upright_pattern()).save(buf, format="JPEG", exif=exif_bytes(6))
    data = bytearray(buf.getvalue())
    tiff = data.index(b"Exif\x00\x00") + 6
    if damage == "header":
        data[tiff : tiff + 2] = b"XX"  # byte order mark
    else:
        data[tiff + 4 : tiff + 8] = b"\x00\xff\xff\x00"  # IFD0 offset far outside the block
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("damage", ["header", "offset"])
def test_jpeg_with_damaged_exif_is_read_and_exif_dropped_with_one_warning(tmp_path, damage):
    src = jpeg_with_damaged_exif(tmp_path / "in.jpg", damage)
    with pytest.warns(photo_mod.PhotoWarning) as caught:
        photo = read_photo(src)
    assert photo.exif is None and photo.size == (64, 48)  # the orientation tag was unreadable too
    assert len(caught) == 1 and str(src) in str(caught[0].message) and "EXIF" in str(caught[0].message)
    write_photo(tmp_path / "out.jpg", photo)
    with Image.open(tmp_path / "out.jpg") as out:
        assert "exif" not in out.info


@pytest.mark.parametrize("profile", ["rgb", "garbage"])
def test_cmyk_with_unusable_profile_converted_plainly_with_a_warning(tmp_path, profile):
    src = tmp_path / "in.jpg"
    cmyk = Image.new("CMYK", (8, 6), (10, 200, 30, 40))
    cmyk.save(src, icc_profile=SRGB_ICC if profile == "rgb" else b"not a profile" * 20)
    with pytest.warns(photo_mod.PhotoWarning, match="CMYK colour profile cannot be used"):
        photo = read_photo(src)
    with Image.open(src) as im:
        assert np.abs(as_uint8(photo).astype(int) - np.asarray(im.convert("RGB"))).max() == 0
    assert photo.icc_profile is None


def test_16bit_png_with_exif_after_the_image_data_keeps_orientation_and_exif(tmp_path):
    grad = gradient16(6, 300)
    png = cv2.imencode(".png", cv2.cvtColor(grad, cv2.COLOR_RGB2BGR))[1].tobytes()
    end = png.rindex(b"IEND") - 4
    src = tmp_path / "late.png"
    src.write_bytes(png[:end] + png_chunk(b"eXIf", exif_bytes(6).removeprefix(b"Exif\x00\x00")) + png[end:])
    photo = read_photo(src)
    assert photo.bit_depth == 16 and photo.size == (6, 300)
    assert np.array_equal(photo.pixels[0].permute(1, 2, 0).numpy(), np.rot90(grad, -1))
    tags = Image.Exif()
    tags.load(photo.exif)
    assert tags[271] == "TestCam" and tags[274] == 1
    assert inspect_photo(src).width == 6


@pytest.mark.parametrize("bits", [8, 16])
def test_non_ascii_exif_text_survives_tiff_output(tmp_path, bits):
    exif = Image.Exif()
    exif[271] = "Café ✓".encode()  # cameras and editors store UTF-8 in ASCII-typed tags
    photo = from_array(noise() if bits == 8 else gradient16(8, 64))[0]
    photo.exif = exif.tobytes()
    write_photo(tmp_path / "out.tif", photo)
    with Image.open(tmp_path / "out.tif") as out:
        assert out.getexif()[271].encode("latin-1").decode() == "Café ✓"


def test_long_file_name_that_fits_is_written(tmp_path):
    dst = tmp_path / ("p" * 245 + "_dslr.jpg")  # 254 bytes: the longest name ext4 allows
    write_photo(dst, from_array(noise())[0])
    assert [p.name for p in tmp_path.iterdir()] == [dst.name]


def test_fifo_dangling_link_and_link_loop_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opening it would block until a writer came
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    for name, message in [
        ("pipe.jpg", "not a regular file"),
        ("dangling.jpg", "symbolic link to a missing file"),
        ("loop.jpg", "symbolic link loop"),
    ]:
        for reader in (read_photo, inspect_photo):
            with pytest.raises(PhotoError, match=message) as err:
                reader(tmp_path / name)
            assert "\n" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_gets_permission_advice(tmp_path):
    src = tmp_path / "private.jpg"
    Image.fromarray(noise()).save(src)
    src.chmod(0)
    with pytest.raises(PhotoError, match="permission") as err:
        read_photo(src)
    assert "lack permission" in err.value.advice and "damaged" not in str(err.value)


def test_permission_error_on_open_gets_permission_advice(tmp_path, monkeypatch):
    src = tmp_path / "private.jpg"
    Image.fromarray(noise()).save(src)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(PhotoError) as err:
        read_photo(src)
    assert "lack permission" in err.value.advice and "damaged" not in str(err.value)


def test_decoder_warnings_are_folded_into_one_photo_warning(tmp_path):
    import warnings

    src = jpeg_with_damaged_exif(tmp_path / "in.jpg", "offset")  # Pillow warns about it twice
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_photo(src)
    assert [w.category for w in caught] == [photo_mod.PhotoWarning]


def test_capture_time_from_exif_header_of_any_format(tmp_path, monkeypatch):
    from datetime import datetime

    photo = from_array(noise())[0]
    photo.exif = exif_bytes(6)
    for name in ("a.jpg", "b.png", "c.tif", "d.webp"):
        write_photo(tmp_path / name, photo)
    photo.bit_depth = 16
    write_photo(tmp_path / "e.png", photo)
    (tmp_path / "none.png").write_bytes(claim_png(4, 4))
    jpeg_with_damaged_exif(tmp_path / "damaged.jpg", "header")

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for name in ("a.jpg", "b.png", "c.tif", "d.webp", "e.png"):
        assert photo_mod.capture_time(tmp_path / name) == datetime(2024, 5, 1, 11, 59, 58), name
    for name in ("none.png", "damaged.jpg", "missing.jpg"):
        assert photo_mod.capture_time(tmp_path / name) is None


# --- memory: native depth, truncation, implausible headers --------------------------------------------


def test_unit_float_scales_each_depth_to_float32():
    assert torch.equal(unit_float(torch.tensor([0, 51, 255], dtype=torch.uint8)), torch.tensor([0, 0.2, 1]))
    u16 = torch.from_numpy(np.array([0, 13107, 65535], np.uint16))
    assert torch.equal(unit_float(u16), torch.tensor([0, 0.2, 1]))
    x = torch.tensor([0.25, 1.5], dtype=torch.float64)
    assert unit_float(x).dtype == torch.float32 and torch.equal(unit_float(x), torch.tensor([0.25, 1.5]))
    with pytest.raises(TypeError):
        unit_float(torch.tensor([1], dtype=torch.int32))


@pytest.mark.parametrize(("fmt", "bits"), [("PNG", 8), ("PNG", 16), ("TIFF", 16), ("JPEG", 8)])
def test_integer_result_at_the_photos_depth_writes_like_its_float(tmp_path, fmt, bits):
    photo = from_array(noise() if bits == 8 else gradient16(32, 40))[0]
    native = photo.pixels.flip(-1) if bits == 8 else photo.pixels.to(torch.int32).flip(-1).to(torch.uint16)
    write_photo(tmp_path / f"int{EXT[fmt]}", photo, native)
    write_photo(tmp_path / f"float{EXT[fmt]}", photo, unit_float(native))
    assert (tmp_path / f"int{EXT[fmt]}").read_bytes() == (tmp_path / f"float{EXT[fmt]}").read_bytes()
    with pytest.raises(ValueError, match="integer pixels must be"):
        write_photo(tmp_path / "x.png", photo, native.to(torch.int32))


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_float_result_written_in_bands_gives_the_same_bytes(tmp_path, monkeypatch, mode):
    photo = from_pil(Image.fromarray(noise(37, 29, 4 if mode == "RGBA" else 3)[..., : len(mode)].squeeze()))
    result = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    write_photo(tmp_path / "whole.png", photo, result)
    monkeypatch.setattr(photo_mod.core, "_BAND_PIXELS", 100)  # 3 rows a band
    write_photo(tmp_path / "bands.png", photo, result)
    assert (tmp_path / "whole.png").read_bytes() == (tmp_path / "bands.png").read_bytes()
    with Image.open(tmp_path / "bands.png") as out:
        expected = np.rint(np.clip(result[0].permute(1, 2, 0).numpy(), 0, 1) * 255)
        if mode == "RGB":
            assert np.array_equal(np.asarray(out), expected.astype(np.uint8))


def truncated_jpeg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(noise(128, 128)).save(buf, format="JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    return path


def test_truncated_file_refused_as_such_unless_allowed(tmp_path):
    src = truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(PhotoError, match="is truncated") as err:
        read_photo(src)
    assert "--allow-truncated" in err.value.advice
    assert read_photo(src, allow_truncated=True).size == (128, 128)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # restored


@pytest.mark.parametrize("side", [7000, 10000])
def test_tiny_file_claiming_a_huge_size_refused_before_decoding(tmp_path, monkeypatch, side):
    src = tmp_path / "claim.jpg"
    src.write_bytes(claim_jpeg(side, side))
    assert src.stat().st_size < 2000

    def no_decoding(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for reader in (read_photo, inspect_photo):
        with pytest.raises(PhotoError, match=f"claims {side} x {side} pixels in only"):
            reader(src)


def test_implausible_claim_decoded_when_truncation_allowed(tmp_path):
    src = tmp_path / "claim.jpg"
    src.write_bytes(claim_jpeg(3000, 2000))  # 6 MP in ~1 kB
    with pytest.raises(PhotoError, match="truncated or forged"):
        read_photo(src)
    photo = read_photo(src, allow_truncated=True)
    assert photo.size == (3000, 2000) and photo.pixels.dtype == torch.uint8


def test_16bit_pixels_count_twice_against_the_limit(tmp_path):
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), gradient16(10, 20))
    with pytest.raises(PhotoError, match="at 16 bits they count twice"):
        read_photo(src, max_pixels=399)
    assert read_photo(src, max_pixels=400).size == (20, 10)


PEAK_RSS = """
import resource, sys
import numpy as np
from PIL import Image
from dslrify.photo import read_photo, write_photo
src, dst = sys.argv[1], sys.argv[2]
photo = read_photo(src)
write_photo(dst, photo, photo.pixels.clone())  # a result at the photo's depth, as the Enhancer gives
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow
@pytest.mark.parametrize("side", [7000, 10000])
def test_large_photo_read_and_written_within_2_gb(tmp_path, side):
    import subprocess

    src = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    row = rng.integers(0, 256, (1, side, 3), np.uint8)
    Image.fromarray(np.repeat(row, side, 0)).save(src, quality=90)
    env = {**os.environ, "PYTHONPATH": str(Path(photo_mod.__file__).parents[2])}
    run = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(src), str(tmp_path / "out.jpg")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    peak = int(run.stdout.split()[-1])
    assert peak <= 2 * 1024**3, f"peak RSS {peak / 1024**3:.2f} GB"
