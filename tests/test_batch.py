"""The batch planner: what is an input, where each output goes, and which outputs are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from dslrify.batch import check_output, make_output_dirs, plan_jobs, remove_empty_dirs
from dslrify.errors import DslrifyError, OutputExistsError, PhotoError


@pytest.fixture
def folder(tmp_path: Path, photo_array) -> Path:
    """in/p.jpg, in/p.png and in/sub/q.jpg."""
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(photo_array).save(tmp_path / "in" / "p.jpg")
    Image.fromarray(photo_array).save(tmp_path / "in" / "p.png")
    Image.fromarray(photo_array).save(tmp_path / "in" / "sub" / "q.jpg")
    return tmp_path / "in"


def test_fifo_dangling_link_and_link_loop_are_failed_inputs_and_the_rest_is_planned(folder, tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    names = ["pipe.jpg", "dangling.jpg", "loop.jpg"]
    plan = plan_jobs([str(folder / "p.jpg"), *(str(tmp_path / n) for n in names)])
    assert [job.src.name for job in plan.jobs] == ["p.jpg"]
    assert [Path(e.message.split(":")[0]).name for e in plan.refused] == names
    messages = " | ".join(str(e) for e in plan.refused)
    assert "FIFO" in messages and "missing" in messages and "loop" in messages


def test_an_input_is_never_an_output_even_with_overwrite(folder):
    Image.open(folder / "p.jpg").save(folder / "p_dslr.jpg")
    with pytest.raises(PhotoError, match="an input of this batch"):
        plan_jobs([str(folder / "p.jpg"), str(folder / "p_dslr.jpg")])
    with pytest.raises(PhotoError, match="would replace"):
        check_output(folder / "p.jpg", folder / "p_dslr.jpg", overwrite=True, inputs=[folder / "p_dslr.jpg"])


def test_a_hard_link_to_an_input_is_the_input(folder, tmp_path):
    os.link(folder / "p.jpg", tmp_path / "p_dslr.jpg")
    with pytest.raises(PhotoError, match="would replace"):
        check_output(folder / "p.jpg", tmp_path / "p_dslr.jpg", overwrite=True)


def test_the_planner_and_the_enhancer_refuse_an_input_as_output_with_one_error(folder, unet):
    from dslrify.enhancer import Enhancer

    with pytest.raises(DslrifyError) as planned:
        plan_jobs([str(folder / "p.jpg")], suffix="")
    with pytest.raises(DslrifyError) as direct:
        Enhancer(unet, device="cpu").enhance_file(folder / "p.jpg", folder / "p.jpg")
    assert type(planned.value) is type(direct.value) is PhotoError
    assert planned.value.advice == direct.value.advice


def test_output_exists_error_speaks_python(tmp_path):
    (tmp_path / "a_dslr.jpg").write_bytes(b"x")
    with pytest.raises(OutputExistsError) as e:
        check_output(tmp_path / "a.jpg", tmp_path / "a_dslr.jpg", overwrite=False)
    assert "overwrite=True" in str(e.value) and "--overwrite" not in str(e.value)


def test_a_folder_scan_leaves_out_earlier_outputs_and_counts_them(folder):
    Image.open(folder / "p.jpg").save(folder / "p_dslr.jpg")
    plan = plan_jobs([str(folder)])
    assert sorted(job.src.name for job in plan.jobs) == ["p.jpg", "p.png"]
    assert plan.earlier_outputs == 1
    assert plan_jobs([str(folder)], suffix="_x").earlier_outputs == 0


def test_double_star_descends_into_subfolders_without_recursive(folder, tmp_path):
    plan = plan_jobs([str(folder / "**" / "*.jpg")], tmp_path / "out")
    assert sorted(job.src.name for job in plan.jobs) == ["p.jpg", "q.jpg"]
    assert [job.src.name for job in plan_jobs([str(folder / "*.jpg")], tmp_path / "out").jobs] == ["p.jpg"]


@pytest.mark.parametrize(
    ("ext", "suffix"),
    [
        ("jpg", ".jpg"),
        ("jpeg", ".jpeg"),
        ("JPEG", ".jpeg"),
        ("tif", ".tif"),
        ("tiff", ".tiff"),
        (".png", ".png"),
    ],
)
def test_ext_takes_the_usual_aliases(folder, ext, suffix):
    (job,) = plan_jobs([str(folder / "p.jpg")], ext=ext).jobs
    assert job.dst.name == f"p_dslr{suffix}"


@pytest.mark.parametrize(("option", "value"), [("ext", "bmp"), ("ext", "gif"), ("suffix", "a/b")])
def test_bad_ext_or_suffix_is_refused(folder, option, value):
    with pytest.raises(DslrifyError, match=f"--{option}"):
        plan_jobs([str(folder / "p.jpg")], **{option: value})


def test_collision_advice_fits_the_cause(tmp_path, photo_array):
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        Image.fromarray(photo_array).save(tmp_path / d / "p.jpg")
    with pytest.raises(DslrifyError) as e:
        plan_jobs(
            [str(tmp_path / "x" / "p.jpg"), str(tmp_path / "y" / "p.jpg")], tmp_path / "o", recursive=True
        )
    assert "--recursive" not in e.value.advice and "leave out -o" in e.value.advice
    Image.fromarray(photo_array).save(tmp_path / "x" / "p.png")
    with pytest.raises(DslrifyError) as e:
        plan_jobs([str(tmp_path / "x")], tmp_path / "o", ext="jpg")
    assert "--recursive" not in e.value.advice and "--ext" in e.value.advice
    (tmp_path / "x" / "p.png").unlink()
    with pytest.raises(DslrifyError) as e:
        plan_jobs([str(tmp_path / "*" / "p.jpg")], tmp_path / "o")
    assert "--recursive" in e.value.advice


def test_datasets_and_batches_take_the_same_image_files(tmp_path, photo_array):
    from dslrify.data.paired import list_images

    for name in ("a.jpg", "b.bmp", "c.png"):
        Image.fromarray(photo_array).save(tmp_path / name)
    assert list_images(tmp_path) == sorted(job.src.name for job in plan_jobs([str(tmp_path)]).jobs)


def test_output_folders_left_empty_are_removed_and_others_kept(tmp_path):
    from dslrify.batch import Job

    (tmp_path / "kept").mkdir()
    jobs = [
        Job(tmp_path / "a.jpg", tmp_path / "new" / "deep" / "a.jpg"),
        Job(tmp_path / "b.jpg", tmp_path / "kept" / "b.jpg"),
    ]
    created = make_output_dirs(jobs)
    assert (tmp_path / "new" / "deep").is_dir()
    remove_empty_dirs(created)
    assert not (tmp_path / "new").exists() and (tmp_path / "kept").is_dir()
