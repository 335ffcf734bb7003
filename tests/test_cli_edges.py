"""`dslrify` at its edges: odd inputs, bad options, markup in names, pipes, signals, ranks, `-m`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import random_unet
from dslrify.checkpoint import save_checkpoint
from dslrify.cli import app

runner = CliRunner()
SRC = Path(__file__).resolve().parents[1] / "src"


def run(*args: str, **kwargs):
    return runner.invoke(app, list(args), **kwargs)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    args = {"width": 8, "depth": 3, "global_width": 16}
    return save_checkpoint(tmp_path / "ckpt", random_unet(), "unet", args, {"data": "test"})


@pytest.fixture
def photo(tmp_path: Path, photo_array) -> Path:
    (tmp_path / "in").mkdir()
    Image.fromarray(photo_array).save(tmp_path / "in" / "p.jpg", quality=95)
    return tmp_path / "in" / "p.jpg"


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "option",
    [
        ["--threads", "0"],
        ["--threads", "-2"],
        ["--device", "gpu"],
        ["--max-pixels", "-5"],
        ["--tile", "-1"],
        ["--suffix", "a/b"],
        ["--ext", "gif"],
        ["--strength", "2"],
    ],
)
def test_every_bad_option_is_one_error_line(option, photo, model_dir, tmp_path):
    result = run("enhance", str(photo), "-o", str(tmp_path / "out"), "--model", str(model_dir), *option)
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("error:") and option[0] in lines[0], result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--device", "gpu"],
        ["serve", "--workers", "0"],
        ["serve", "--port", "70000"],
    ],
)
def test_bad_options_of_other_commands_are_one_error_line(args):
    result = run(*args)
    lines = error_lines(result)
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_a_fifo_and_broken_links_fail_alone_and_the_rest_finishes(photo, model_dir, tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    odd = [str(tmp_path / n) for n in ("pipe.jpg", "dangling.jpg", "loop.jpg")]
    result = run("enhance", *odd, str(photo), "-o", str(tmp_path / "out"), "--model", str(model_dir))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 done, 0 skipped, 3 failed" in result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["p_dslr.jpg"]


def test_an_input_is_not_overwritten_even_with_overwrite(photo, model_dir):
    second = photo.with_name("p_dslr.jpg")
    Image.open(photo).save(second)
    before = second.read_bytes()
    result = run("enhance", str(photo), str(second), "--overwrite", "--model", str(model_dir))
    assert result.exit_code == 1 and "an input of this batch" in result.output
    assert second.read_bytes() == before


def test_a_second_run_over_a_folder_skips_its_own_outputs(photo, model_dir):
    assert run("enhance", str(photo.parent), "--model", str(model_dir)).exit_code == 0
    result = run("enhance", str(photo.parent), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    assert "0 done, 1 skipped, 0 failed" in result.output and "1 earlier output" in result.output
    assert not list(photo.parent.glob("*_dslr_dslr*"))


def test_brackets_in_names_and_advice_print_as_they_are(tmp_path, photo, model_dir, monkeypatch):
    odd = photo.with_name("x[bold].jpg")
    photo.rename(odd)
    result = run("enhance", str(odd), "--model", str(model_dir))
    assert result.exit_code == 0 and "x[bold].jpg ->" in result.output and "x[bold]_dslr.jpg" in result.output
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the onnx extra were not installed
    result = run("export", str(model_dir), "-o", str(tmp_path / "m.onnx"))
    assert result.exit_code == 1 and "pip install 'dslrify[onnx]'" in result.output


def test_paths_are_not_wrapped_when_output_is_not_a_terminal(tmp_path, photo_array, model_dir):
    deep = tmp_path / ("a_rather_long_folder_name_" * 3) / ("and_another_one_" * 3)
    deep.mkdir(parents=True)
    Image.fromarray(photo_array).save(deep / "photo_with_a_long_name.jpg")
    result = run("enhance", str(deep / "photo_with_a_long_name.jpg"), "--model", str(model_dir))
    expected = f"{deep / 'photo_with_a_long_name.jpg'} -> {deep / 'photo_with_a_long_name_dslr.jpg'}"
    assert expected in result.output.splitlines(), result.output


def test_no_empty_output_folder_is_left_when_nothing_was_written(tmp_path, model_dir):
    (tmp_path / "bad.jpg").write_text("not a photo")
    result = run(
        "enhance", str(tmp_path / "bad.jpg"), "-o", str(tmp_path / "new" / "out"), "--model", str(model_dir)
    )
    assert result.exit_code == 1
    assert not (tmp_path / "new").exists()


def test_a_dot_onnx_model_runs_with_onnxruntime_without_backend(photo, model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from dslrify.export import export_onnx

    export_onnx(str(model_dir), tmp_path / "tiny.onnx")
    result = run("enhance", str(photo), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "tiny.onnx"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "p_dslr.jpg").is_file()


def test_half_with_an_onnx_model_or_a_look_is_one_error_line(photo, model_dir, tmp_path):
    """Autocast changes nothing in onnxruntime or a LUT: --half there is refused, not silently ignored."""
    pytest.importorskip("onnxruntime")
    from dslrify.export import export_onnx

    export_onnx(str(model_dir), tmp_path / "tiny.onnx")
    cube = tmp_path / "identity.cube"  # a 2x2x2 identity look, red fastest
    cube.write_text(
        "LUT_3D_SIZE 2\n" + "".join(f"{r} {g} {b}\n" for b in (0, 1) for g in (0, 1) for r in (0, 1))
    )
    for engine in (["--model", str(tmp_path / "tiny.onnx")], ["--look", str(cube)]):
        result = run("enhance", str(photo), "-o", str(tmp_path / "out"), *engine, "--half")
        lines = error_lines(result)
        assert result.exit_code != 0 and len(lines) == 1, result.output
        assert "--half is for PyTorch models" in lines[0], result.output
        assert not (tmp_path / "out").exists()


def test_progress_is_shown_for_a_single_photo(photo, model_dir, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: treat the captured stream as a terminal
    monkeypatch.setenv("FORCE_COLOR", "1")
    result = run("enhance", str(photo), "--model", str(model_dir))
    assert result.exit_code == 0, result.output
    assert "0/1" in result.output  # the progress line, before the photo finished


def test_only_rank_0_reports_under_torchrun(monkeypatch):
    assert "default" in run("models").output
    monkeypatch.setenv("RANK", "1")
    assert run("models").output.strip() == ""


def test_python_dash_m_dslrify_runs_the_command():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-m", "dslrify", "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0 and result.stdout.startswith("dslrify "), result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_stops_a_batch_cleanly_and_says_what_was_finished(
    signum, tmp_path, photo_array, model_dir
):
    folder = tmp_path / "many"
    folder.mkdir()
    big = Image.fromarray(photo_array).resize((1024, 768))
    for i in range(10):  # about a second each on one thread: the batch is far from done at the signal
        big.save(folder / f"p{i}.jpg", quality=90)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "dslrify", "enhance", str(folder), "-o", str(out), "--model", str(model_dir)]
    proc = subprocess.Popen(
        [*cmd, "--threads", "1"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the first finished photo
    assert "->" in first, first
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=120)
    stderr = first + rest
    assert proc.returncode == 130, stderr
    assert "interrupted:" in stderr and "Traceback" not in stderr
    finished = {
        line.split("finished: ", 1)[1] for line in stderr.splitlines() if line.startswith("finished: ")
    }
    written = {str(p) for p in out.iterdir()}
    assert finished == written and 1 <= len(written) < 10
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    for path in written:
        with Image.open(path) as im:
            im.load()  # complete files only


def test_the_cli_default_pixel_limit_is_the_libraries():
    from dslrify import cli, photo

    assert cli.MAX_PIXELS == photo.DEFAULT_MAX_PIXELS


def test_serve_on_a_busy_port_is_one_line_and_exit_code_1():
    import socket

    from typer.testing import CliRunner

    from dslrify.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} is in use" in result.output and "--port" in result.output
    assert "Traceback" not in result.output and "open http" not in result.output
