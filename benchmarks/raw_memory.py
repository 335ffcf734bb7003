"""Peak memory (RSS) and time of developing and enhancing large RAWs: synthetic DNGs of 24 and 61 MP.

Each row runs in its own process, so that peak RSS (ru_maxrss) is its own: the Python + torch floor,
``read_photo`` alone (LibRaw's raw buffer, its working image and its 16-bit result, then the Photo's
pixels), ``Enhancer.enhance_file`` DNG -> JPEG (the decode, the model's float output and its tiles,
the encoder) and ``enhance_files`` on two DNGs (which decodes the next photo while enhancing one).
Target: a 61 MP RAW enhanced within 2.5 GB. This script is also where RAW decode time is measured
(the speed benchmark's photo is a JPEG).

    python benchmarks/raw_memory.py [--sizes 24 61] [--model fast] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test DNG writer

SIZES = {24: (6000, 4000), 61: (9568, 6384)}  # (width, height): a 24 MP APS-C and a 61 MP full frame


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GB (ru_maxrss is in KiB)


def child(kind: str, dng: str, model: str, threads: int) -> dict:
    """One measurement in this process: "floor", "decode", "enhance" or "batch" (seconds: all of it)."""
    import torch

    torch.set_num_threads(threads)
    from dslrify.enhancer import Enhancer
    from dslrify.photo import read_photo

    start = time.perf_counter()
    if kind == "decode":
        photo = read_photo(dng)
        assert photo.bit_depth == 16
    elif kind in ("enhance", "batch"):
        enhancer = Enhancer(model, device="cpu", max_pixels=200_000_000)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            if kind == "enhance":
                enhancer.enhance_file(dng, Path(tmp) / "out.jpg")
            else:  # "batch": the same DNG twice; the second is decoded while the first is enhanced
                jobs = [(Path(dng), Path(tmp) / f"out{i}.jpg") for i in range(2)]
                assert all(error is None for _, _, error in enhancer.enhance_files(jobs))
    return {"seconds": time.perf_counter() - start, "peak": _peak()}


def make_dng(path: Path, width: int, height: int) -> None:
    """A DNG of a smooth gradient with grain, as big as a camera's (uncompressed, 2 bytes a pixel)."""
    from raw_gen import DngSpec, dng_from_mosaic

    spec = DngSpec()
    rows = np.linspace(0.05, 0.6, height, dtype=np.float32)
    cols = np.linspace(0.0, 0.3, width, dtype=np.float32)
    raw = np.add.outer(rows, cols)
    raw *= spec.white - spec.black
    raw += spec.black + np.random.default_rng(0).normal(0, 30, width).astype(np.float32)
    path.write_bytes(dng_from_mosaic(raw.astype(np.uint16), spec))


def run_child(kind: str, dng: str, model: str, threads: int) -> dict:
    args = json.dumps([kind, dng, model, threads])
    res = subprocess.run(
        [sys.executable, __file__, "--child", args], capture_output=True, text=True, check=False
    )
    if res.returncode:
        raise SystemExit(f"{kind}: {res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[24, 61], choices=sorted(SIZES))
    ap.add_argument("--model", default="fast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*json.loads(a.child))))
        return
    floor = run_child("floor", "", a.model, a.threads)
    print(f"model {a.model}; {a.threads} threads; Python + torch floor {floor['peak']:.2f} GB")
    print(f"{'DNG':<20} {'step':<24} {'seconds':>8} {'peak RSS GB':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for mp in a.sizes:
            w, h = SIZES[mp]
            dng = Path(tmp) / f"{mp}mp.dng"
            make_dng(dng, w, h)
            name = f"{w}x{h} ({w * h / 1e6:.1f} MP)"
            for kind, label in [
                ("decode", "read_photo (LibRaw)"),
                ("enhance", "enhance_file -> JPEG"),
                ("batch", "enhance_files, 2 DNGs"),
            ]:
                r = run_child(kind, str(dng), a.model, a.threads)
                print(f"{name:<20} {label:<24} {r['seconds']:8.1f} {r['peak']:12.2f}", flush=True)
            dng.unlink()


if __name__ == "__main__":
    main()
