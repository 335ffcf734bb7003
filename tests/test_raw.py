"""RAW and DNG input: test DNGs made from a real photo read back to it, enhance like LibRaw's rendering
saved as a 16-bit TIFF, come out upright with their EXIF, and mix with JPEGs in folders.

Tolerance of the read-back (LibRaw's AHD demosaicing of a mosaic of the photo, blurred by sigma 1 px as
a camera's low-pass filter does), in 8-bit levels, 2 border pixels left out: mean absolute error <= 2,
99th percentile <= 16, each channel's mean within 0.75 (measured: 1.1, 9.7, 0.3).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import rawpy
import tifffile
from PIL import Image
from typer.testing import CliRunner

import dslrify
from conftest import SHARED_DATA
from dslrify.batch import make_output_dirs, plan_jobs
from dslrify.cli import app
from dslrify.errors import PhotoError
from dslrify.photo import format_for_extension, inspect_photo, read_photo, unit_float, write_photo
from dslrify.raw import development
from raw_gen import EXIF_MAIN, DngSpec, dng_bytes, mosaic

# PIL transposes that turn a stored image upright for each EXIF/DNG orientation.
UPRIGHT = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_270,
    8: Image.Transpose.ROTATE_90,
}


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    """A 384 x 256 sRGB photo (a phone photo from the shared data, else a generated scene), blurred by a
    1-pixel Gaussian as a camera's optical low-pass filter blurs what reaches the mosaic."""
    phone = SHARED_DATA / "phone-photos" / "0.jpg"
    if phone.is_file():
        image = np.asarray(Image.open(phone).convert("RGB").resize((384, 256), Image.Resampling.BOX))
    else:
        yy, xx = np.mgrid[0:256, 0:384]
        image = np.stack([xx * 0.6, yy * 0.9, 255 - xx * 0.5], axis=-1)
        image[60:180, 100:220] = (220, 120, 40)  # a flat orange patch with sharp edges
        image = np.clip(image + np.random.default_rng(0).normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(image, (0, 0), 1.0)


@pytest.fixture(scope="module")
def enhancer() -> dslrify.Enhancer:
    return dslrify.Enhancer("fast", device="cpu")


def write_dng(path: Path, source: np.ndarray, **spec: object) -> Path:
    path.write_bytes(dng_bytes(source, DngSpec(**spec)))  # type: ignore[arg-type]
    return path


def as_levels(photo) -> np.ndarray:
    """(H, W, 3) float in 8-bit levels of a Photo's pixels."""
    return unit_float(photo.pixels)[0].permute(1, 2, 0).numpy().astype(np.float64) * 255


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    turn = UPRIGHT[orientation]
    return image if turn is None else np.asarray(Image.fromarray(image).transpose(turn))


@pytest.mark.parametrize(
    ("cfa", "orientation"), [("RGGB", 1), ("GRBG", 6), ("BGGR", 8), ("GBRG", 3), ("RGGB", 6)]
)
def test_libraw_reads_a_test_dng_back_to_its_source_photo_upright(source, tmp_path, cfa, orientation):
    shot = write_dng(tmp_path / "shot.dng", source, cfa=cfa, orientation=orientation, black=512, white=16000)
    photo = read_photo(shot)
    want = upright(source, orientation).astype(np.float64)
    assert photo.format == "RAW" and photo.bit_depth == 16 and str(photo.pixels.dtype) == "torch.uint16"
    assert photo.size == (want.shape[1], want.shape[0])
    info = inspect_photo(shot)
    assert (info.format, (info.width, info.height), info.bit_depth) == ("RAW", photo.size, 16)
    diff = (as_levels(photo) - want)[2:-2, 2:-2]
    assert np.abs(diff).mean() <= 2.0
    assert np.percentile(np.abs(diff), 99) <= 16
    assert np.abs(diff.mean(axis=(0, 1))).max() <= 0.75


@pytest.mark.parametrize("bright", [1.0, 0.9, None])
def test_flat_patches_come_back_exactly_through_matrix_curve_and_white_balance(tmp_path, bright):
    """The sRGB curve (toe included), the colour matrix, camera white balance, no auto brightening and
    the stated white level give each flat patch its source value, beside a bright patch whose every
    site is at ``bright`` of the white level (None: no such patch, nothing near white to anchor an
    automatic brightening); at the white level itself it is clipped to pure white."""
    levels = [(200, 50, 30), (30, 160, 60), (40, 60, 200), (128, 128, 128), (5, 5, 5), (60, 40, 90)]
    flat = np.zeros((64, 144, 3), np.uint8)
    for i, level in enumerate(levels):
        flat[32 * (i % 2) : 32 * (i % 2) + 32, 48 * (i // 2) : 48 * (i // 2) + 48] = level
    spec = DngSpec(cfa="GBRG", black=300, white=12000, light=(0.9, 1.0, 0.6))
    data = bytearray(dng_bytes(flat, spec))
    cfa = mosaic(flat, spec)
    if bright is not None:  # in the first patch
        cfa[8:24, 8:40] = round(spec.black + bright * (spec.white - spec.black))
    data[-cfa.nbytes :] = cfa.astype("<u2").tobytes()
    (tmp_path / "flat.dng").write_bytes(bytes(data))
    photo = read_photo(tmp_path / "flat.dng")
    got = as_levels(photo)
    for i, level in enumerate(levels[1:], start=1):
        y, x = 32 * (i % 2) + 16, 48 * (i // 2) + 24
        assert np.abs(got[y - 4 : y + 4, x - 4 : x + 4] - level).max() <= 0.5, (level, got[y, x])
    blown = photo.pixels[0, :, 12:20, 12:36].unique().tolist()
    assert (blown == [65535]) == (bright == 1.0)


def test_camera_white_balance_undoes_a_warm_light_and_auto_is_another_choice(source, tmp_path):
    shot = write_dng(tmp_path / "warm.dng", source, light=(0.9, 1.0, 0.6))  # as-shot neutral says so
    camera, auto = read_photo(shot), read_photo(shot, raw_wb="auto")
    bias = (as_levels(camera) - source)[2:-2, 2:-2].mean(axis=(0, 1))
    assert np.abs(bias).max() <= 0.75
    # Without the camera's multipliers (LibRaw's daylight ones, from the colour matrix) blue stays weak.
    with rawpy.imread(str(shot)) as raw:
        daylight = raw.postprocess(**{**development(), "use_camera_wb": False}).astype(np.float64) / 257
    assert (daylight - source)[..., 2].mean() < -10
    assert np.abs(as_levels(auto) - as_levels(camera)).mean() > 0.5
    with pytest.raises(PhotoError, match="white balance"):
        read_photo(shot, raw_wb="daylight")
    out = tmp_path / "out"
    for wb in ("camera", "auto"):
        args = ["enhance", str(shot), "-o", str(out / wb), "--model", "fast", "--device", "cpu"]
        assert CliRunner().invoke(app, [*args, "--raw-wb", wb]).exit_code == 0
    outputs = [np.asarray(Image.open(out / wb / "warm_dslr.jpg"), np.float64) for wb in ("camera", "auto")]
    assert np.abs(outputs[0] - outputs[1]).mean() > 0.5
    refused = CliRunner().invoke(app, [*args, "--raw-wb", "daylight"])
    assert refused.exit_code != 0 and "white balance" in refused.output and not (out / "daylight").exists()


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_enhancing_a_raw_equals_enhancing_libraws_rendering_saved_as_16_bit_tiff(
    source, tmp_path, enhancer, ext
):
    (tmp_path / "in").mkdir()
    shot = write_dng(tmp_path / "in" / "shot.dng", source, orientation=6)
    with rawpy.imread(str(shot)) as raw:
        rendering = raw.postprocess(**development())
    tifffile.imwrite(tmp_path / "in" / "rendering.tif", rendering, photometric="rgb")
    jobs = plan_jobs([str(tmp_path / "in")], tmp_path / "out", ext=ext).jobs
    make_output_dirs(jobs)
    assert [j.dst.name for j in jobs] == [f"rendering_dslr.{ext}", f"shot_dslr.{ext}"]
    assert [error for _, _, error in enhancer.enhance_files([(j.src, j.dst) for j in jobs])] == [None, None]
    from_tiff, from_raw = (read_photo(j.dst) for j in jobs)
    assert from_raw.bit_depth == from_tiff.bit_depth == (16 if ext == "tif" else 8)
    assert np.array_equal(from_raw.pixels.numpy(), from_tiff.pixels.numpy())
    # LibRaw's own defaults (BT.709 curve, auto brightness) would not match: the settings matter.
    with rawpy.imread(str(shot)) as raw:
        default = raw.postprocess(output_bps=16)
    assert np.abs(default.astype(np.int64) - rendering).mean() > 500


def check_exif(path: Path, full: bool) -> None:
    """The DNG's EXIF in an output: camera and time always; exposure, lens and GPS when ``full``."""
    exif = Image.open(path).getexif()
    assert (exif.get(271), exif.get(272), exif.get(306)) == (EXIF_MAIN[271], EXIF_MAIN[272], EXIF_MAIN[306])
    assert exif.get(274, 1) == 1  # the pixels are upright already
    if full:
        sub, gps = exif.get_ifd(0x8769), exif.get_ifd(0x8825)
        assert float(sub[33434]) == 1 / 250 and float(sub[33437]) == 2.8 and sub[34855] == 400
        assert sub[36867] == "2024:05:06 07:08:09" and sub[42036] == "Testlens 35mm F1.4"
        assert float(sub[37386]) == 35
        assert (gps[1], [float(v) for v in gps[2]], gps[3]) == ("N", [48, 51, 24.06], "E")


def test_cli_enhances_a_dng_into_an_upright_colour_correct_jpeg_and_16_bit_tiff_with_exif(source, tmp_path):
    shot = write_dng(tmp_path / "shot.dng", source, orientation=6, cfa="GRBG")
    runner = CliRunner()
    args = ["enhance", str(shot), "-o", str(tmp_path / "out"), "--model", "fast", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    jpeg = tmp_path / "out" / "shot_dslr.jpg"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [jpeg.name]
    # Compare with the fast model's enhancement of the source photo itself, turned upright.
    (tmp_path / "ref").mkdir()
    Image.fromarray(upright(source, 6)).save(tmp_path / "ref" / "source.png")
    assert runner.invoke(app, [*args[:1], str(tmp_path / "ref"), *args[2:]]).exit_code == 0
    got = np.asarray(Image.open(jpeg)).astype(np.float64)
    want = np.asarray(Image.open(tmp_path / "out" / "source_dslr.png")).astype(np.float64)
    assert got.shape == want.shape == (384, 256, 3)  # upright: the DNG is stored 384 wide, turned
    assert np.abs(got - want)[2:-2, 2:-2].mean() <= 3
    assert np.abs((got - want)[2:-2, 2:-2].mean(axis=(0, 1))).max() <= 1.5
    check_exif(jpeg, full=True)

    result = runner.invoke(app, [*args, "--ext", "tif"])
    assert result.exit_code == 0, result.output
    tif = tmp_path / "out" / "shot_dslr.tif"
    assert tifffile.imread(tif).dtype == np.uint16 and tifffile.imread(tif).shape == (384, 256, 3)
    check_exif(tif, full=False)  # 16-bit TIFF output keeps the main tags only


def test_a_folder_of_jpegs_and_dngs_is_processed_entirely(source, tmp_path, enhancer):
    folder = tmp_path / "card"
    folder.mkdir()
    Image.fromarray(source).save(folder / "a.jpg", quality=92)
    Image.fromarray(source[:, ::-1]).save(folder / "b.JPG", quality=92)
    write_dng(folder / "c.dng", source)
    write_dng(folder / "D.DNG", source[::-1], cfa="BGGR", exif=False)
    (folder / "notes.txt").write_text("not a photo")
    jobs = plan_jobs([str(folder)], tmp_path / "out").jobs
    make_output_dirs(jobs)
    assert [j.dst.name for j in jobs] == ["D_dslr.jpg", "a_dslr.jpg", "b_dslr.JPG", "c_dslr.jpg"]
    results = list(enhancer.enhance_files([(j.src, j.dst) for j in jobs]))
    assert [error for _, _, error in results] == [None] * 4
    for job in jobs:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = read_photo(job.dst)
        assert out.format == "JPEG" and out.size == (384, 256)
    bare = Image.open(tmp_path / "out" / "D_dslr.jpg").getexif()  # a DNG without EXIF and GPS IFDs
    assert bare.get(271) == EXIF_MAIN[271] and 0x8769 not in bare and 0x8825 not in bare


def test_raw_is_read_only_and_size_limited(source, tmp_path):
    shot = write_dng(tmp_path / "shot.dng", source)
    for ext in (".dng", ".cr2", ".nef"):
        with pytest.raises(PhotoError, match="unsupported photo extension"):
            format_for_extension(ext)
    with pytest.raises(PhotoError, match="unsupported photo extension"):
        write_photo(tmp_path / "copy.dng", read_photo(shot))
    with pytest.raises(PhotoError, match="more than the limit") as caught:
        read_photo(shot, max_pixels=384 * 256 - 1)
    assert "\n" not in str(caught.value)
    assert read_photo(shot, max_pixels=384 * 256).size == (384, 256)  # a RAW counts its pixels once
