"""atomic_path: a file appears whole under its final name, or not at all."""

from __future__ import annotations

import os

import pytest

from dslrify.files import atomic_path


def test_success_replaces_the_file_with_ordinary_permissions(tmp_path):
    dst = tmp_path / "model.safetensors"
    dst.write_text("old")
    with atomic_path(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".safetensors" and tmp != dst
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
