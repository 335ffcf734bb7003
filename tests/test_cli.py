"""`dslrify enhance` end to end: naming, batches, and one clear line for every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import random_unet
from dslrify.checkpoint import save_checkpoint
from dslrify.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def photos(tmp_path: Path, photo_array) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(photo_array).save(folder / "a.jpg", quality=95)
    Image.fromarray(photo_array[:, ::-1]).save(folder / "b.png")
    Image.fromarray(photo_array[::-1]).save(folder / "sub" / "c.jpg")
    return folder


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small checkpoint folder (fast on tiny photos)."""
    args = {"width": 8, "depth": 3, "global_width": 16}
    return save_checkpoint(tmp_path / "ckpt", random_unet(), "unet", args, {"data": "test"})


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code != 0
    text = result.output.strip()
    assert "Traceback" not in text
    assert any(line.startswith("error:") for line in text.splitlines()), text
    for n in needles:
        assert n in text, text


def test_version_and_models_table():
    assert run("--version").output.startswith("dslrify ")
    assert "default" in run("models").output


def test_models_table_shows_the_benchmarked_speed(tmp_path, monkeypatch):
    import json

    from dslrify import zoo

    rows = [
        {"row": "I/O floor (Pillow)", "seconds": 0.2, "peak_gb": 0.3, "how": ""},
        {"row": "fast", "seconds": 0.5, "peak_gb": 0.9, "how": ""},
        {"row": "ppcn-teacher", "seconds": 40.0, "peak_gb": 1.0, "how": ""},  # not a shipped model
        {"row": "video 1080p, fast", "fps": 6.0, "floor_fps": 14.0},
    ]
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"machine": "cpu, 2 threads", "photo_mp": 12.2, "rows": rows}))
    monkeypatch.setattr(zoo, "SPEED_FILE", speed)
    assert zoo.measured_speed() == {"fast": "0.50 s, 2.5x the I/O floor (cpu, 2 threads)"}
    assert "2.5x the I/O" in run("models").output
    monkeypatch.setattr(zoo, "SPEED_FILE", tmp_path / "missing.json")
    assert zoo.measured_speed() == {}


def test_the_shipped_speed_file_covers_every_shipped_model():
    from dslrify import zoo

    assert set(zoo.measured_speed()) == set(zoo.MODELS)


def test_outputs_go_beside_inputs_with_suffix_and_same_format(photos, model_dir):
    result = run("enhance", str(photos / "a.jpg"), str(photos / "b.png"), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    assert (photos / "a_dslr.jpg").is_file() and (photos / "b_dslr.png").is_file()
    with Image.open(photos / "a_dslr.jpg") as im:
        assert im.format == "JPEG" and im.size == (128, 96)
    assert "2 done, 0 skipped, 0 failed" in result.output


def test_recursive_folder_mirrors_subfolders_and_converts_format(photos, model_dir, tmp_path):
    out = tmp_path / "out"
    result = run(
        "enhance",
        str(photos),
        "-r",
        "-o",
        str(out),
        "--ext",
        "png",
        "--suffix",
        "",
        "--model",
        str(model_dir),
    )
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a.png", "b.png", "sub/c.png"]


def test_glob_input(photos, model_dir, tmp_path):
    result = run("enhance", str(photos / "*.jpg"), "-o", str(tmp_path / "o"), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a_dslr.jpg"]


def test_existing_output_is_skipped_unless_overwrite(photos, model_dir):
    target = photos / "a_dslr.jpg"
    target.write_bytes(b"keep me")
    result = run("enhance", str(photos / "a.jpg"), "--model", str(model_dir))
    assert result.exit_code == 0, result.output  # skipping is not failing
    assert "0 done, 1 skipped, 0 failed" in result.output and "pass --overwrite" in result.output
    assert target.read_bytes() == b"keep me"
    result = run("enhance", str(photos / "a.jpg"), "--model", str(model_dir), "--overwrite")
    assert result.exit_code == 0 and target.read_bytes() != b"keep me"


def test_empty_suffix_beside_input_is_refused(photos, model_dir):
    result = run("enhance", str(photos / "a.jpg"), "--suffix", "", "--model", str(model_dir))
    assert_one_line_error(result, "would replace its input")
    assert (photos / "a.jpg").stat().st_size > 0


def test_one_bad_photo_in_a_batch_fails_alone(photos, model_dir, tmp_path):
    (photos / "broken.jpg").write_bytes(b"this is text, not a JPEG")
    out = tmp_path / "out"
    result = run("enhance", str(photos), "-o", str(out), "--model", str(model_dir))
    assert result.exit_code == 1
    assert "broken.jpg" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_dslr.jpg", "b_dslr.png"]
    assert "2 done, 0 skipped, 1 failed" in result.output


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty_folder",
        "zero_byte",
        "truncated",
        "text_as_jpg",
        "bomb",
        "unwritable",
        "unknown_model",
        "wrong_shape",
    ],
)
def test_bad_input_gets_one_line_and_leaves_no_file(case, tmp_path, photo_array, model_dir):
    src = tmp_path / "photo.jpg"
    Image.fromarray(photo_array).save(src, quality=95)
    out = tmp_path / "out"
    args = ["enhance", str(src), "-o", str(out), "--model", str(model_dir)]
    needle = "photo.jpg"
    if case == "missing":
        args[1] = str(tmp_path / "nope.jpg")
        needle = "nope.jpg"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        args[1] = str(tmp_path / "empty")
        needle = "no photos"
    elif case == "zero_byte":
        src.write_bytes(b"")
    elif case == "truncated":
        src.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    elif case == "text_as_jpg":
        src.write_text("hello")
    elif case == "bomb":
        args += ["--max-pixels", "1000"]
        needle = "max-pixels"
    elif case == "unwritable":
        (tmp_path / "file").write_text("x")
        args[3] = str(tmp_path / "file" / "out")
        needle = "output folder"
    elif case == "unknown_model":
        args[-1] = "no-such-model"
        needle = "valid model names: default"
    elif case == "wrong_shape":
        config = json.loads((model_dir / "config.json").read_text())
        config["args"]["width"] = 12
        (model_dir / "config.json").write_text(json.dumps(config))
        needle = "does not fit"
    result = run(*args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert needle in result.output, result.output
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_debug_shows_the_traceback(tmp_path):
    result = runner.invoke(app, ["--debug", "enhance", str(tmp_path / "nope.jpg")])
    assert result.exit_code != 0 and result.exception is not None


def test_python_api_enhance_file_keeps_size(tmp_path, photo_array, model_dir):
    from dslrify import Enhancer

    src = tmp_path / "a.png"
    Image.fromarray(photo_array).save(src)
    dst = Enhancer(model_dir).enhance_file(src, tmp_path / "b.png")
    assert np.asarray(Image.open(dst)).shape == photo_array.shape


def test_phone_photo_with_orientation_xmp_and_adobe_rgb_comes_out_upright_with_all_three(
    tmp_path, model_dir, shared_data
):
    icc = (shared_data / "icc" / "AdobeRGB1998.icc").read_bytes()
    # Stored landscape (120x80) with a red left column; orientation 6 means "rotate 90° clockwise to view".
    stored = np.full((80, 120, 3), 128, np.uint8)
    stored[:, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Tester"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    src = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(src, quality=95, exif=exif.tobytes(), icc_profile=icc, xmp=xmp)

    result = run("enhance", str(src), "-o", str(tmp_path / "out"), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "phone_dslr.jpg") as im:
        assert im.size == (80, 120)  # upright: portrait
        top_row = np.asarray(im.convert("RGB"))[:5].reshape(-1, 3).mean(0)
        assert top_row[0] > top_row[2] + 40  # the red column is now the top rows
        assert im.info.get("icc_profile") == icc
        assert b"dc:creator" in (im.info.get("xmp") or b"")
        out_exif = im.getexif()
        assert out_exif.get(0x0112, 1) == 1 and out_exif.get(0x010F) == "PhoneMaker"


def test_recursive_glob_mirrors_like_the_folder(photos, tmp_path):
    from dslrify.batch import plan_jobs

    by_glob = plan_jobs([str(photos / "**" / "*.jpg")], tmp_path / "o", recursive=True).jobs
    by_folder = [
        j for j in plan_jobs([str(photos)], tmp_path / "o", recursive=True).jobs if j.src.suffix == ".jpg"
    ]
    assert sorted(j.dst for j in by_glob) == sorted(j.dst for j in by_folder)
    assert (tmp_path / "o" / "sub" / "c_dslr.jpg") in {j.dst for j in by_glob}
