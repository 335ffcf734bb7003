"""3D LUT looks: fitting, the .cube and Hald files, agreement with ffmpeg and colour-science, and the
native 8-bit path (photos and video frames) against the float path."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from typer.testing import CliRunner

from clips import scene, write_clip
from dslrify import Look, fit_look
from dslrify.cli import app
from dslrify.enhancer import Enhancer
from dslrify.errors import DslrifyError
from dslrify.look import LookModel, identity_table, lut_format
from dslrify.lookfit import diagonal_decrease, luminance, monotone_luminance, resample
from dslrify.models.base import EnhancementModel, ModelSpec
from dslrify.photo import from_array, read_photo, write_photo
from dslrify.video import enhanced_frames
from inputs_gen import MAKE, exif_bytes

FFMPEG = shutil.which("ffmpeg") or ("/usr/bin/ffmpeg" if Path("/usr/bin/ffmpeg").exists() else None)


class Graded(EnhancementModel):
    """A known colour transform: gamma 0.8, then saturation x1.3 (and an optional warm tint)."""

    def __init__(self, tint: float = 0.0) -> None:
        super().__init__()
        self.spec, self.label, self.tint = ModelSpec(), "graded", tint

    def enhance(self, x: torch.Tensor, context: object, origin: tuple[int, int] | None) -> torch.Tensor:
        y = x.clamp(0, 1) ** 0.8
        mean = y.mean(1, keepdim=True)
        shift = torch.tensor([self.tint, 0.0, -self.tint]).view(1, 3, 1, 1)
        return mean + 1.3 * (y - mean) + shift


def graded_table(size: int, tint: float = 0.0) -> np.ndarray:
    ident = torch.from_numpy(identity_table(size)).float().permute(3, 0, 1, 2).reshape(1, 3, size, -1)
    return Graded(tint)(ident).reshape(3, size, size, size).permute(1, 2, 3, 0).double().numpy()


def scenes(n: int, seed: int, size: int = 96, lo: float = 0.0, hi: float = 1.0) -> list[torch.Tensor]:
    """Smooth random colour fields with values in [lo, hi], quantised to 8 bit like a decoded photo."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        coarse = torch.rand(1, 3, 4, 4, generator=g)
        field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        field = lo + (hi - lo) * field.clamp(0, 1)
        out.append(torch.round(field * 255) / 255)
    return out


def delta_e(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import kornia

    from dslrify.metrics import ciede2000

    return ciede2000(kornia.color.rgb_to_lab(a).double(), kornia.color.rgb_to_lab(b).double())


@pytest.fixture(scope="module")
def graded_look() -> Look:
    return fit_look(scenes(4, 0), Graded(), size=17, device="cpu")


@pytest.fixture(scope="module")
def tinted_look() -> Look:
    """Not symmetric in R, G and B: a file written in the wrong channel order would not pass."""
    return fit_look(scenes(4, 0), Graded(tint=0.04), size=17, device="cpu")


def test_fit_recovers_a_known_transform(graded_look):
    """On photos it was not fitted on, the look is within ΔE00 1 (mean) of the transform itself."""
    held_out = torch.cat(scenes(2, 1))
    got, want = graded_look.apply(held_out), Graded()(held_out)
    assert delta_e(got, want).mean() < 1.0
    assert graded_look.fit is not None and graded_look.fit.fitted.mean_de < 1.0
    assert np.abs(graded_look.table - np.clip(graded_table(17), 0, 1)).mean() < 0.03


def test_absent_colours_interpolate_smoothly():
    """Fitted on dark-to-mid colours only, the bright part of the cube continues without jumps."""
    look = fit_look(scenes(3, 2, lo=0.05, hi=0.55), Graded(), size=17, device="cpu")
    t = look.table
    assert np.isfinite(t).all() and t.min() >= 0 and t.max() <= 1
    steps = [np.abs(np.diff(t, axis=a)).max() for a in range(3)]
    assert max(steps) < 3.0 / 16  # no neighbouring nodes far apart (the transform's own slope is < 2)
    curvature = [np.abs(np.diff(t, n=2, axis=a)).max() for a in range(3)]
    assert max(curvature) < 0.1
    bright = np.stack(np.meshgrid(*[np.linspace(0.7, 1, 4)] * 3, indexing="ij"), -1).reshape(1, 4, 16, 3)
    x = torch.from_numpy(bright).permute(0, 3, 1, 2).float()
    assert delta_e(look.apply(x), Graded()(x)).mean() < 6  # sensible, not the identity or a hole


def test_greys_stay_neutral_where_the_model_keeps_them_neutral(graded_look, tinted_look):
    ramp = torch.linspace(0.05, 1, 64).view(1, 1, 1, 64).expand(1, 3, 1, 64).contiguous()
    out = graded_look.apply(ramp)[0, :, 0]
    assert (out.max(0).values - out.min(0).values).max() < 2 / 255
    tinted = tinted_look.apply(ramp)[0, :, 0]
    assert (tinted[0] - tinted[2]).mean() > 0.06  # a model's own tint on greys is kept, not neutralised


def test_luminance_is_monotone_along_the_grey_axis_and_parallel_lines(graded_look):
    assert diagonal_decrease(luminance(graded_look.table)) <= 1e-6
    table = identity_table(9)
    table[5:, 5:, 5:] *= 0.5  # a reversal: brighter inputs past the middle come out darker
    assert diagonal_decrease(luminance(table)) > 0.01
    assert diagonal_decrease(luminance(monotone_luminance(table))) <= 1e-5


def test_resample_is_exact_on_nested_lattices():
    t = graded_table(5)
    fine = resample(t, 9)
    assert np.allclose(fine[::2, ::2, ::2], t)
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(Look(t).apply(x), Look(fine).apply(x), atol=1e-6)


def test_cube_file_layout_title_and_comments(tmp_path, graded_look):
    path = graded_look.save(tmp_path / "look.cube")
    lines = path.read_text().splitlines()
    assert lines[0] == 'TITLE "dslrify graded"'
    comments = [line for line in lines if line.startswith("#")]
    assert any("graded" in c for c in comments) and any("tensor 0" in c for c in comments)
    assert any("interpolation: trilinear" in c for c in comments)
    assert (
        "LUT_3D_SIZE 17" in lines and "DOMAIN_MIN 0.0 0.0 0.0" in lines and "DOMAIN_MAX 1.0 1.0 1.0" in lines
    )
    rows = [line for line in lines if line[0].isdigit()]
    assert len(rows) == 17**3
    t = graded_look.table  # R changes fastest: row 1 is node [1, 0, 0], row 17 is [0, 1, 0]
    for row, node in ((1, (1, 0, 0)), (17, (0, 1, 0)), (17 * 17, (0, 0, 1))):
        assert np.allclose([float(v) for v in rows[row].split()], t[node], atol=1e-6)
    again = Look.load(path)
    assert again.title == "dslrify graded" and np.abs(again.table - t).max() < 1e-6


def test_invalid_sizes_are_refused(tmp_path):
    for args in (
        ("a.cube", None, 1, 8),
        ("a.cube", None, 257, 8),
        ("a.png", None, None, 1),
        ("a.png", None, None, 17),
    ):
        with pytest.raises(DslrifyError):
            lut_format(*args)
    with pytest.raises(DslrifyError, match="does not match"):
        lut_format("a.png", None, 33, 8)
    with pytest.raises(DslrifyError):
        lut_format("a.cube", "hald", None, 8)  # a Hald CLUT is a PNG
    assert lut_format("a.png", None, None, 8) == ("hald", 64)
    with pytest.raises(DslrifyError, match="Hald"):
        Look.identity(33).save(tmp_path / "x.png")  # 33 is no square
    result = CliRunner().invoke(app, ["look", "x.jpg", "-o", str(tmp_path / "l.cube"), "--size", "1"])
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "l.cube").exists()


def test_identity_hald_round_trips_exactly(tmp_path):
    path = Look.identity(64).save(tmp_path / "hald.png")
    photo = read_photo(path)
    assert photo.bit_depth == 16 and photo.size == (512, 512)
    n = 64  # pixel i (row-major) is node r = i % n, g = i // n % n, b = i // n²
    i = np.arange(512 * 512)
    want = np.stack([i % n, i // n % n, i // (n * n)], -1) / (n - 1)
    got = photo.pixels[0].permute(1, 2, 0).reshape(-1, 3).numpy()
    assert np.array_equal(got, np.rint(want * 65535).astype(np.uint16))
    first = Look.load(path)
    assert np.abs(first.table - identity_table(64)).max() <= 0.5 / 65535
    first.save(tmp_path / "again.png")
    second = Look.load(tmp_path / "again.png")
    assert np.array_equal(first.table, second.table) and second.title == "identity"
    assert (tmp_path / "again.png").read_bytes() == path.read_bytes()


def _rgb48(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    """A 16-bit RGB PNG of smooth colours and noise, and its pixels as float in [0, 1]."""
    rng = np.random.default_rng(3)
    arr = (rng.random((48, 64, 3)) * 65535).astype(np.uint16)
    arr[:24] = np.linspace(0, 65535, 64 * 24 * 3).reshape(24, 64, 3).astype(np.uint16)
    photo, _ = from_array(arr)
    write_photo(tmp_path / "in.png", photo)
    return tmp_path / "in.png", torch.from_numpy(arr.astype(np.float32) / 65535).permute(2, 0, 1)[None]


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (.ci/run installs it on Debian)")
@pytest.mark.parametrize("pix_fmt", ["rgb48be", "rgb24"])
def test_ffmpeg_lut3d_agrees(tmp_path, tinted_look, pix_fmt):
    cube = tinted_look.save(tmp_path / "look.cube")
    src, x = _rgb48(tmp_path)
    if pix_fmt == "rgb24":  # an 8-bit PNG: the input both sides see is the 8-bit one
        x = torch.round(x * 255) / 255
        Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(src)
    out = tmp_path / "out.png"
    cmd = [FFMPEG, "-v", "error", "-y", "-i", str(src), "-vf", f"lut3d=file={cube}:interp=trilinear"]
    subprocess.run([*cmd, "-pix_fmt", pix_fmt, str(out)], check=True, timeout=60)
    theirs = read_photo(out)
    assert theirs.bit_depth == (16 if pix_fmt == "rgb48be" else 8)
    ours = tinted_look.apply(x)  # the fitted look itself: a file in the wrong layout would differ
    scale = 65535 if theirs.bit_depth == 16 else 255
    gap = (ours * scale - theirs.pixels.float()).abs().max() / scale  # in code values: no float slack
    assert gap <= 1 / 255 + 0.5 / scale


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (.ci/run installs it on Debian)")
def test_ffmpeg_haldclut_reads_our_hald_layout(tmp_path, tinted_look):
    hald = Look(resample(tinted_look.table, 16), "tinted").save(tmp_path / "look.png")  # level 4
    src, x = _rgb48(tmp_path)
    x = torch.round(x * 255) / 255
    Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(src)
    out = tmp_path / "out.png"
    graph = "[0][1]haldclut=interp=trilinear"
    cmd = [FFMPEG, "-v", "error", "-y", "-i", str(src), "-i", str(hald), "-filter_complex", graph]
    subprocess.run([*cmd, "-frames:v", "1", "-pix_fmt", "rgb24", str(out)], check=True, timeout=60)
    ours = Look.load(hald).apply(x) * 255
    assert (ours - read_photo(out).pixels.float()).abs().max() <= 1


def test_colour_science_reads_and_applies_the_cube(tmp_path, tinted_look):
    colour = pytest.importorskip("colour")
    cube = tinted_look.save(tmp_path / "look.cube")
    lut = colour.read_LUT(str(cube))
    assert lut.table.shape == (17, 17, 17, 3) and lut.name == "dslrify graded"
    _, x = _rgb48(tmp_path)
    theirs = lut.apply(x[0].permute(1, 2, 0).double().numpy())  # trilinear, its default
    ours = tinted_look.apply(x)[0].permute(1, 2, 0).double().numpy()
    assert np.abs(ours - theirs).max() < 1e-5


def test_a_look_runs_as_a_model_with_the_photo_rules(tmp_path, graded_look):
    """16-bit RGBA PNG in -> 16-bit RGBA PNG out, alpha untouched; numpy and PIL in, same type out."""
    rng = np.random.default_rng(1)
    arr = (rng.random((40, 50, 4)) * 65535).astype(np.uint16)
    photo, _ = from_array(arr)
    write_photo(tmp_path / "a.png", photo)
    Enhancer(graded_look.model(), device="cpu").enhance_file(tmp_path / "a.png", tmp_path / "b.png")
    out = read_photo(tmp_path / "b.png")
    assert out.bit_depth == 16 and np.array_equal(out.alpha, arr[..., 3])
    want = graded_look.apply(torch.from_numpy(arr[..., :3].astype(np.float32) / 65535).permute(2, 0, 1)[None])
    assert (out.pixels.float() / 65535 - want).abs().max() <= 0.5 / 65535 + 1e-6
    img = Image.fromarray((arr[..., :3] >> 8).astype(np.uint8))
    assert isinstance(graded_look.apply(img), Image.Image)
    assert graded_look.apply(np.asarray(img)).dtype == np.uint8


def test_enhance_look_option_and_look_command(tmp_path, photo_array, graded_look):
    Image.fromarray(photo_array).save(tmp_path / "a.png")
    Image.fromarray(photo_array[::-1]).save(tmp_path / "b.png")
    cube = graded_look.save(tmp_path / "g.cube")
    runner = CliRunner()
    result = runner.invoke(app, ["enhance", "--look", str(cube), str(tmp_path / "a.png")])
    assert result.exit_code == 0, result.output
    got = np.asarray(Image.open(tmp_path / "a_dslr.png"))
    assert np.array_equal(got, Look.load(cube).apply(photo_array))
    refused = runner.invoke(app, ["enhance", "--look", str(cube), "--model", "fast", str(tmp_path / "b.png")])
    assert refused.exit_code == 1 and "--look" in refused.output
    hald = tmp_path / "l.png"
    args = ["look", str(tmp_path / "a.png"), "--check", str(tmp_path / "b.png"), "-o", str(hald)]
    result = runner.invoke(app, [*args, "--hald-level", "3", "--strength", "0.5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "fitted photos" in result.output and "check photos" in result.output and "ΔE00" in result.output
    made = Look.load(hald)
    assert made.size == 9 and made.title == "dslrify default"
    assert any("a.png" in c for c in made.comments) and any("strength 0.5" in c for c in made.comments)


class Passthrough(EnhancementModel):
    """Pointwise and returns its input: what an Enhancer hands a model, as float."""

    def __init__(self) -> None:
        super().__init__()
        self.spec, self.label = ModelSpec(), "passthrough"

    def enhance(self, x: torch.Tensor, context: object, origin: tuple[int, int] | None) -> torch.Tensor:
        return x.clone()


def _natives(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per call of ``LookModel.enhance_native``, whether it gave a result."""
    calls: list[bool] = []
    real = LookModel.enhance_native

    def spy(self: LookModel, pixels: torch.Tensor) -> torch.Tensor | None:
        out = real(self, pixels)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(LookModel, "enhance_native", spy)
    return calls


def _codes(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def test_8bit_photos_take_the_native_path_with_the_float_paths_numbers_and_metadata(
    tmp_path, tinted_look, monkeypatch
):
    """A JPEG with EXIF orientation 6 and an ICC profile: the look runs on its uint8 pixels (no float),
    gives the bytes the float path gives, within 1 level of exact trilinear, and keeps the metadata."""
    arr = (_rgb48(tmp_path)[1][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "in.jpg"
    Image.fromarray(arr).save(src, quality=90, exif=exif_bytes(6), icc_profile=icc)
    calls = _natives(monkeypatch)
    model = tinted_look.model()
    enhancer = Enhancer(model, device="cpu")
    enhancer.enhance_file(src, tmp_path / "out.png")
    enhancer.enhance_file(src, tmp_path / "out.jpg")
    assert calls == [True, True]
    source = read_photo(src)
    x = source.pixels
    got = read_photo(tmp_path / "out.png")
    assert got.size == (48, 64) and got.pixels.dtype == torch.uint8
    assert torch.equal(got.pixels, _codes(tinted_look.apply(x)))  # the 8-bit float path: same bytes
    exact = _codes(model._enhance_float(x.float() / 255))  # grid_sample, float throughout
    assert (got.pixels.int() - exact.int()).abs().max() <= 1
    jpeg = read_photo(tmp_path / "out.jpg")
    assert jpeg.size == (48, 64) and jpeg.icc_profile == icc
    assert jpeg.exif is not None and jpeg.exif == source.exif  # carried as read: orientation 1
    tags = Image.Exif()
    tags.load(jpeg.exif)
    assert tags[274] == 1 and tags[271].encode("latin-1") == MAKE.encode()


def test_native_bands_on_threads_give_the_whole_photos_result(tinted_look, monkeypatch):
    """Many bands of rows (the last one short) on two threads, batches of two: the same bytes as one
    band per photo."""
    import dslrify.look as look_module

    x = (torch.rand(2, 3, 45, 31, generator=torch.Generator().manual_seed(4)) * 255).round().to(torch.uint8)
    model = tinted_look.model()
    whole = model.enhance_native(x)
    assert whole is not None and whole.shape == x.shape and whole.dtype == torch.uint8
    monkeypatch.setattr(look_module, "_BAND_PIXELS", 31 * 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        banded = model.enhance_native(x)
    finally:
        torch.set_num_threads(threads)
    assert banded is not None and torch.equal(banded, whole)
    assert torch.equal(whole[1:], model.enhance_native(x[1:].contiguous()))


def test_16bit_photos_and_a_strength_below_1_take_the_float_path(tmp_path, tinted_look, monkeypatch):
    calls = _natives(monkeypatch)
    x8 = (torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(5)) * 255).round().to(torch.uint8)
    half = Enhancer(tinted_look.model(), device="cpu", strength=0.5).enhance_pixels(x8)
    assert calls == []  # never asked: the blend is made in float
    unit = x8.float() / 255
    assert torch.equal(half, _codes(torch.lerp(unit, tinted_look.apply(unit), 0.5)))
    x16 = (torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(6)) * 65535).round()
    full = Enhancer(tinted_look.model(), device="cpu").enhance_pixels(x16.to(torch.uint16))
    assert calls == [False] and full.dtype == torch.uint16
    want = tinted_look.model()._enhance_float(x16 / 65535)
    assert (full.float() / 65535 - want).abs().max() <= 0.5 / 65535 + 1e-6  # not 8-bit Pillow


def test_a_look_on_video_frames_runs_natively(tmp_path, tinted_look, monkeypatch):
    """Through ``enhanced_frames`` each frame is the look of the frame as decoded (Passthrough's)."""
    src = write_clip(tmp_path / "c.mp4", [scene(48, 64, i) for i in range(3)])
    plain = [f.pixels for f in enhanced_frames(Enhancer(Passthrough(), device="cpu"), src)]
    calls = _natives(monkeypatch)
    looked = [f.pixels for f in enhanced_frames(Enhancer(tinted_look.model(), device="cpu"), src)]
    assert calls == [True] * 3 and all(y.dtype == torch.float32 for y in looked)
    for x, y in zip(plain, looked, strict=True):
        assert torch.equal(y, tinted_look.apply(x))
    out = Enhancer(tinted_look.model(), device="cpu").enhance_video(src, tmp_path / "out.mp4")
    assert out.stat().st_size > 0


def test_fit_look_takes_folders_and_globs_as_dslrify_enhance_finds_photos(tmp_path):
    from dslrify.errors import PhotoError

    for i, x in enumerate(scenes(5, 3)):
        folder = tmp_path / ("fit" if i < 3 else "check")
        folder.mkdir(exist_ok=True)
        Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            folder / f"{i}.png"
        )
    (tmp_path / "fit" / "notes.txt").write_text("not a photo")
    look = fit_look(
        [tmp_path / "fit"], Graded(), size=9, check=[str(tmp_path / "check" / "*.png")], device="cpu"
    )
    assert look.fit is not None and look.fit.fitted.photos == 3
    assert look.fit.check is not None and look.fit.check.photos == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(PhotoError, match="no photos"):
        fit_look([tmp_path / "empty"], Graded(), size=9, device="cpu")
