"""Faults: a batch killed with SIGKILL at several moments never leaves a partial photo under a final
name, and the next run into the same folder completes the batch and leaves no temporary file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import random_unet
from dslrify.checkpoint import save_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"


def _complete(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except OSError:
        return False


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_batches_leave_no_partial_output_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # noisy PNGs: slow to encode, so a kill often lands in the middle of a write
        Image.fromarray(rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    model = save_checkpoint(
        tmp_path / "m", random_unet(), "unet", {"width": 8, "depth": 3, "global_width": 16}
    )
    cmd = [sys.executable, "-m", "dslrify", "enhance", str(folder), "-o", str(out), "--model", str(model)]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    seen_temporaries = 0
    # Several moments: start-up, during the first photos, later; None: the moment a temporary appears
    # (a write in flight), which a kill must never turn into a partial photo.
    for delay in (1.0, None, 2.0, 3.5):
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = subprocess.Popen([*cmd, "--threads", "1"], env=env, **quiet)
        deadline = time.monotonic() + (delay if delay is not None else 60)
        while time.monotonic() < deadline and proc.poll() is None:
            if delay is None and out.is_dir() and any(p.name.startswith(".dslrify-") for p in out.iterdir()):
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if out.exists():
            names = [p for p in out.iterdir() if not p.name.startswith(".")]
            seen_temporaries += sum(p.name.startswith(".dslrify-") for p in out.iterdir())
            assert all(_complete(p) for p in names), "a partial photo under a final name"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}_dslr.png" for i in range(6)]
    assert all(_complete(p) for p in out.iterdir())
    assert seen_temporaries >= 1  # a kill caught a write in flight; the last run removed what it left
