"""Peak memory (RSS) of enhancing a 12.2 MP photo, JPEG -> JPEG, with the default model.

Each configuration runs in its own process so that peak RSS (ru_maxrss) is its own. Target:
at most 2 GB with the automatic tile size.

    python benchmarks/enhance_memory.py [--photo PATH] [--model default] [--tiles auto 512 1024]
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

DEFAULT_PHOTO = Path(__file__).resolve().parents[2] / "shared/data/photos/sunset_by_Aitzol_Berasategi.jpg"


def child(photo: str, model: str, tile: str) -> None:
    """Runs in the subprocess: one enhancement, then a JSON line with time and peak RSS."""
    import torch

    from dslrify import Enhancer

    torch.set_num_threads(2)
    enhancer = Enhancer(model, device="cpu", tile=None if tile == "auto" else int(tile))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        enhancer.enhance_file(photo, Path(tmp) / "out.jpg")
        seconds = time.perf_counter() - start
    chosen = enhancer._choose_tile(2848, 4272)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"tile": tile, "chosen": chosen, "seconds": seconds, "peak_rss": peak}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", default=str(DEFAULT_PHOTO))
    ap.add_argument("--model", default="default")
    ap.add_argument("--tiles", nargs="+", default=["auto", "512"])
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    if not Path(a.photo).is_file():
        sys.exit(f"{a.photo} not found: pass --photo PATH (a large JPEG)")
    from PIL import Image

    with Image.open(a.photo) as im:
        w, h = im.size
    print(f"photo: {a.photo} ({w}x{h}, {w * h / 1e6:.1f} MP), model: {a.model}, CPU threads: 2")
    print(f"{'tile':>6} {'chosen':>7} {'seconds':>8} {'peak RSS':>10} {'target':>8}")
    for tile in a.tiles:
        res = subprocess.run(
            [sys.executable, __file__, "--child", a.photo, a.model, tile],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode:
            print(f"{tile:>6} failed: {res.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        gb = r["peak_rss"] / 1e9
        ok = "ok" if gb <= 2.0 else "OVER"
        print(f"{tile:>6} {r['chosen']!s:>7} {r['seconds']:8.1f} {gb:8.2f} GB {ok:>8}")


if __name__ == "__main__":
    main()
