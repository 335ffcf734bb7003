"""atomic_path: a file appears whole under its final name, or not at all; stale temporaries go."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dslrify import files
from dslrify.files import TEMPORARY_NAME, atomic_path, remove_stale_temporaries


def test_success_replaces_the_file_with_ordinary_permissions(tmp_path):
    dst = tmp_path / "model.safetensors"
    dst.write_text("old")
    with atomic_path(dst) as tmp:
        assert tmp.parent == tmp_path and TEMPORARY_NAME.fullmatch(tmp.name) and tmp != dst
        tmp.write_text("new")
        assert dst.read_text() == "old"  # not visible before the block ends
    assert dst.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    dst = tmp_path / "photo.jpg"
    dst.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dst) as tmp:
        tmp.write_text("half")
        raise RuntimeError("encoder crashed")
    assert dst.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["photo.jpg"]


def test_temporary_name_is_short_whatever_the_final_name(tmp_path):
    dst = tmp_path / ("x" * 250 + ".jpg")  # 254 bytes: the longest name most file systems allow
    with atomic_path(dst) as tmp:
        assert tmp.name.startswith(f".dslrify-{os.getpid()}-") and len(tmp.name) <= 32
        tmp.write_bytes(b"data")
    assert dst.read_bytes() == b"data"


def dead_pid() -> int:
    """The pid of a process that has ended (its number is not reused this quickly)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(child.stdout)


def test_stale_temporaries_of_ended_processes_are_removed_others_kept(tmp_path):
    stale = tmp_path / f".dslrify-{dead_pid()}-0123abcd.tmp"
    ours = tmp_path / f".dslrify-{os.getpid()}-0123abcd.tmp"
    running = tmp_path / f".dslrify-{os.getppid()}-89abcdef.tmp"
    unrelated = [tmp_path / ".photo.1234abcd.tmp.jpg", tmp_path / f".dslrify-{dead_pid()}-XYZ.tmp"]
    for path in [stale, ours, running, *unrelated]:
        path.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [ours, running, *unrelated])


def test_first_write_into_a_folder_removes_stale_temporaries_once(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_cleaned", set())
    stale = tmp_path / f".dslrify-{dead_pid()}-0123abcd.tmp"
    stale.write_bytes(b"half")
    with atomic_path(tmp_path / "a.png") as tmp:
        tmp.write_bytes(b"a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    stale.write_bytes(b"half")  # a second write into the same folder does not list it again
    with atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"b")
    assert stale.exists()


def test_real_path_resolves_links_and_survives_loops(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "photo.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    assert files.real_path(tmp_path / "link.jpg") == files.real_path(tmp_path / "photo.jpg")
    assert files.real_path(tmp_path / "loop.jpg").name == "loop.jpg"  # Path.resolve() raises here
