"""``dslrify enhance --ray`` on a local Ray cluster: the CLI's outputs, a killed worker, a bad photo,
and a re-run after an interruption doing only what is left.

One ``ray.init(num_cpus=2)`` serves the module; every test has a time limit (``SIGALRM``).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED_DATA
from dslrify.cli import app
from dslrify.models.base import EnhancementModel, ModelSpec

ray = pytest.importorskip("ray")

from dslrify.cluster import enhance_dataset, read_manifest  # noqa: E402  (needs ray's pyarrow)
from dslrify.cluster.storage import locate, put_new  # noqa: E402

PATCHES = SHARED_DATA / "dped" / "iphone" / "test_data" / "patches" / "iphone"
LIMIT_S = 120


class Sleepy(EnhancementModel):
    """The identity, slow, leaving a file named by its process id in ``folder`` at each photo (so that a
    test knows which worker to kill)."""

    def __init__(self, folder: str, seconds: float) -> None:
        super().__init__()
        self.spec = ModelSpec()
        self.folder, self.seconds = folder, seconds

    def enhance(self, x: torch.Tensor, context: object, origin: tuple[int, int] | None) -> torch.Tensor:
        Path(self.folder, str(os.getpid())).touch()
        time.sleep(self.seconds)
        return x


class Broken(EnhancementModel):
    """A model with a bug: raises what no photo could cause."""

    def __init__(self) -> None:
        super().__init__()
        self.spec = ModelSpec()

    def enhance(self, x: torch.Tensor, context: object, origin: tuple[int, int] | None) -> torch.Tensor:
        raise ZeroDivisionError("a bug")


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local Ray cluster for the module; workers get this module by value (tests/ is no package)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def time_limit():
    """Fail a test that runs past LIMIT_S instead of hanging the suite."""

    def expire(signum, frame):
        raise TimeoutError(f"test ran past {LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """12 real 100x100 DPED phone patches (one as PNG) from ../shared/data, or generated ones without it."""
    folder = tmp_path / "in"
    folder.mkdir()
    if PATCHES.is_dir():
        for i in range(12):
            shutil.copy(PATCHES / f"{i}.jpg", folder / f"{i}.jpg")
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:96, 0:128]
        for i in range(12):
            img = np.stack([xx * 2, yy * 2, (xx + yy + 20 * i) % 256], axis=-1) + rng.normal(
                0, 8, (96, 128, 3)
            )
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=92)
    Image.open(folder / "11.jpg").save(folder / "11.png")
    (folder / "11.jpg").unlink()
    return folder


def expected_outputs(photos: Path, out: Path) -> set[Path]:
    return {out / f"{p.stem}_dslr{p.suffix}" for p in photos.iterdir()}


def photo_files(folder: Path) -> set[Path]:
    """Everything in ``folder`` but the manifest: outputs, and any temporary left behind."""
    return {p for p in folder.iterdir() if p.name != "dslrify-manifest.jsonl"}


def test_outputs_equal_the_single_process_cli(photos, tmp_path):
    runner = CliRunner()
    threads = torch.get_num_threads()
    try:
        single = runner.invoke(
            app, ["enhance", str(photos), "-o", str(tmp_path / "one"), "-m", "fast", "--threads", "1"]
        )
        assert single.exit_code == 0, single.output
        default = runner.invoke(
            app, ["enhance", str(photos), "-o", str(tmp_path / "two"), "-m", "fast", "--threads", "2"]
        )
        assert default.exit_code == 0, default.output
    finally:
        torch.set_num_threads(threads)
    args = ["enhance", "--ray", "local", str(photos), "-o", str(tmp_path / "ray"), "-m", "fast"]
    result = runner.invoke(app, [*args, "--ray-workers", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "12 done, 0 skipped, 0 failed" in result.output
    outputs = expected_outputs(photos, tmp_path / "ray")
    assert photo_files(tmp_path / "ray") == outputs
    for out in outputs:
        # Same torch thread count: the same bytes. Another thread count: within one level.
        assert out.read_bytes() == (tmp_path / "one" / out.name).read_bytes(), out.name
        ours = np.asarray(Image.open(out), dtype=np.int16)
        theirs = np.asarray(Image.open(tmp_path / "two" / out.name), dtype=np.int16)
        assert np.abs(ours - theirs).max() <= 1, out.name
    rows = read_manifest(tmp_path / "ray" / "dslrify-manifest.jsonl")
    assert sorted(Path(r["output"]) for r in rows) == sorted(outputs)
    assert {r["status"] for r in rows} == {"done"} and all(r["seconds"] > 0 and r["worker"] for r in rows)


def test_a_worker_killed_mid_job_loses_nothing_and_duplicates_nothing(photos, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    killed: list[int] = []

    def kill_the_first_worker() -> None:
        while not any(pids.iterdir()):
            time.sleep(0.02)
        killed.append(int(next(pids.iterdir()).name))
        os.kill(killed[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_first_worker, daemon=True)
    killer.start()
    out = tmp_path / "out"
    report = enhance_dataset([str(photos)], out, model=Sleepy(str(pids), 0.3), workers=2)
    killer.join(timeout=1)
    assert killed, "no worker was killed"
    assert {int(p.name) for p in pids.iterdir()} - set(
        killed
    )  # others, its replacement among them, did the rest
    assert (report.done, report.skipped, report.failed) == (12, 0, 0), report.summary()
    assert photo_files(out) == expected_outputs(photos, out)  # no temporary, no stray file
    for path in expected_outputs(photos, out):
        assert Image.open(path).size == Image.open(photos / path.name.replace("_dslr", "")).size
    rows = read_manifest(out / "dslrify-manifest.jsonl")
    assert len(rows) == 12 and len({r["input"] for r in rows}) == 12
    assert {r["status"] for r in rows} == {"done"}


def test_a_bad_photo_is_reported_and_the_rest_are_done(photos, tmp_path):
    (photos / "broken.jpg").write_bytes((photos / "0.jpg").read_bytes()[:300])
    (photos / "text.jpg").write_text("not a photo")
    out = tmp_path / "out"
    report = enhance_dataset([str(photos)], out, model=Sleepy(str(tmp_path), 0.0), workers=2)
    assert (report.done, report.failed, report.exit_code) == (12, 2, 1)
    rows = {Path(r["input"]).name: r for r in read_manifest(out / "dslrify-manifest.jsonl")}
    assert rows["broken.jpg"]["status"] == rows["text.jpg"]["status"] == "failed"
    assert (
        "truncated" in rows["broken.jpg"]["error"]
        and str(photos / "broken.jpg") in rows["broken.jpg"]["error"]
    )
    assert "text.jpg" in rows["text.jpg"]["error"] and "—" in rows["text.jpg"]["error"]  # with advice
    assert photo_files(out) == expected_outputs(photos, out) - {
        out / "broken_dslr.jpg",
        out / "text_dslr.jpg",
    }


def test_a_bug_in_a_worker_stops_the_job_with_its_traceback(photos, tmp_path):
    for extra in list(photos.iterdir())[2:]:
        extra.unlink()
    with pytest.raises(RuntimeError, match="a bug in dslrify") as stopped:
        enhance_dataset([str(photos)], tmp_path / "out", model=Broken(), workers=1)
    assert "ZeroDivisionError: a bug" in str(stopped.value) and "Traceback" in str(stopped.value)
    rows = read_manifest(tmp_path / "out" / "dslrify-manifest.jsonl")
    assert rows[0]["status"] == "failed" and rows[0]["error"] == "ZeroDivisionError: a bug"
    assert not list((tmp_path / "out").glob("*_dslr*"))


def test_a_re_run_after_an_interruption_does_only_what_is_left(photos, tmp_path):
    out, seen = tmp_path / "out", []

    def stop_after_three(row) -> None:
        seen.append(row)
        if len(seen) == 3:
            raise KeyboardInterrupt

    model = Sleepy(str(tmp_path), 0.3)
    first = enhance_dataset([str(photos)], out, model=model, workers=2, on_result=stop_after_three)
    assert first.interrupted and first.exit_code == 130
    # A worker finishes the photo it is on after the job stopped; outputs are whole or absent meanwhile.
    present = {p: p.stat().st_mtime_ns for p in out.glob("*_dslr.*")}
    assert 3 <= first.done <= len(present) < 12
    for path in present:
        Image.open(path).load()
    second = enhance_dataset([str(photos)], out, model=model, workers=2)
    assert second.done + second.skipped == 12 and second.failed == 0
    assert second.skipped >= len(present) and second.done >= 1
    assert all(p.stat().st_mtime_ns == t for p, t in present.items())  # nothing written twice
    assert photo_files(out) == expected_outputs(photos, out)  # and no temporary left
    rows = read_manifest(out / "dslrify-manifest.jsonl")[-12:]  # the second run's
    assert sorted(r["input"] for r in rows) == sorted(str(p) for p in photos.iterdir())


def test_outputs_on_a_pyarrow_filesystem(photos, tmp_path):
    """A filesystem with a rename (here pyarrow's local one) gets a temporary and a move; an object
    store's single put is checked directly: whole object, existing ones refused."""
    import pyarrow.fs as pafs

    from dslrify.errors import OutputExistsError

    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    report = enhance_dataset(
        ["in"],
        "bucket/out",
        model=Sleepy(str(tmp_path), 0.0),
        workers=1,
        filesystem=fs,
        manifest=tmp_path / "manifest.jsonl",
    )
    assert report.done == 12
    out = tmp_path / "bucket" / "out"
    assert {p.name for p in out.iterdir()} == {p.name for p in expected_outputs(photos, out)}
    target = locate("bucket/put.jpg", fs)
    put_new(target, b"complete", "job", object_store=True)
    assert (tmp_path / "bucket" / "put.jpg").read_bytes() == b"complete"
    with pytest.raises(OutputExistsError):
        put_new(target, b"other", "job", object_store=True)
    assert (tmp_path / "bucket" / "put.jpg").read_bytes() == b"complete"


def test_inputs_on_a_pyarrow_filesystem_follow_the_cli_rules(tmp_path):
    """The same folder planned as local paths (dslrify enhance's planner) and through pyarrow gives the
    same jobs: subfolders mirrored, hidden files and earlier outputs left out, clips refused."""
    import pyarrow.fs as pafs

    from dslrify.cluster import plan_dataset
    from dslrify.errors import DslrifyError, PhotoError

    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ["a.jpg", "a.png", "sub/b.jpg", ".hidden.jpg", "a_dslr.jpg", "notes.txt", "clip.mp4"]:
        (tmp_path / "in" / name).write_bytes(b"x")
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    remote = plan_dataset(["in"], "out", recursive=True, filesystem=fs)
    local = plan_dataset([str(tmp_path / "in")], tmp_path / "out", recursive=True)
    for plan, root in ((remote, ""), (local, f"{tmp_path}/")):
        assert sorted((j.src, j.dst) for j in plan.jobs) == [
            (f"{root}in/a.jpg", f"{root}out/a_dslr.jpg"),
            (f"{root}in/a.png", f"{root}out/a_dslr.png"),
            (f"{root}in/sub/b.jpg", f"{root}out/sub/b_dslr.jpg"),
        ]
        assert [src for src, _ in plan.refused] == [f"{root}in/clip.mp4"] and plan.earlier_outputs == 1
    with pytest.raises(DslrifyError, match="would both be written"):
        plan_dataset(["in"], "out", ext="jpg", filesystem=fs)
    with pytest.raises(PhotoError, match="would replace"):
        plan_dataset(["in/a.jpg"], None, suffix="", filesystem=fs)
    with pytest.raises(PhotoError, match="no such file"):
        plan_dataset(["missing"], "out", filesystem=fs)


def test_ray_refuses_overwrite_and_a_uri_needs_ray(photos, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["enhance", "--ray", "local", str(photos), "-o", str(tmp_path), "--overwrite"]
    )
    assert result.exit_code == 1 and "error:" in result.output and "--overwrite" in result.output
    result = runner.invoke(app, ["enhance", str(photos), "-o", "s3://bucket/out"])
    assert result.exit_code == 1 and "add --ray" in result.output and not (tmp_path / "s3:").exists()


def test_a_relative_checkpoint_folder_reaches_workers_that_run_elsewhere(photos, tmp_path, monkeypatch):
    from dslrify.zoo import MODELS

    for extra in list(photos.iterdir())[2:]:
        extra.unlink()
    here = tmp_path / "project"
    shutil.copytree(MODELS["fast"].path, here / "mine")
    monkeypatch.chdir(here)  # the workers were started in another folder: "mine" means nothing there
    report = enhance_dataset([str(photos)], tmp_path / "out", model="mine", workers=1)
    out = tmp_path / "out"
    assert report.exit_code == 0 and photo_files(out) == expected_outputs(photos, out)


def test_a_bad_model_is_refused_before_any_folder_is_made(photos, tmp_path):
    from dslrify.errors import DslrifyError

    with pytest.raises(DslrifyError, match="no-such-model"):
        enhance_dataset([str(photos)], tmp_path / "new" / "out", model="no-such-model", workers=1)
    assert not (tmp_path / "new").exists()


def test_without_the_ray_extra_the_cli_says_what_to_install(photos, tmp_path, monkeypatch):
    import dslrify.cluster

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the [ray] extra were not installed
    monkeypatch.delitem(sys.modules, "dslrify.cluster.pipeline")
    monkeypatch.delattr(dslrify.cluster, "pipeline", raising=False)
    result = CliRunner().invoke(app, ["enhance", "--ray", "local", str(photos), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0, result.output
    assert "pip install 'dslrify[ray]'" in result.output and len(result.output.strip().splitlines()) == 1
