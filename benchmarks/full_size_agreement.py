"""How close fast models come to the `default` model on whole photos, where no DSLR target exists.

    python benchmarks/full_size_agreement.py [--models fast runs/ppcn-student ...]

DPED's test pairs are 100x100 patches, small enough for the `fast` model's thumbnail to be the patch
itself; on a whole photo it sees a <= 384 px copy. This prints, for the four 1280x720 DPED full-size test
photos and four of the 1024x682 phone photos, PSNR and SSIM of each model's output against the `default`
model's full-resolution output (8-bit protocol): how much of the default look survives at full size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dslrify.data import full_size_test_images
from dslrify.enhancer import Enhancer
from dslrify.metrics import psnr, quantize_8bit, ssim
from dslrify.photo import read_photo

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["fast", "paper"], help="names or checkpoint folders")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    photos = full_size_test_images(SHARED / "dped", "iphone") + [
        SHARED / "phone-photos" / f"{i}.jpg" for i in (0, 17, 42, 73)
    ]
    reference = Enhancer("default", device="cpu", tile=0)
    others = {m: Enhancer(m, device="cpu", tile=0) for m in a.models}
    scores: dict[str, list[tuple[float, float]]] = {m: [] for m in a.models}
    for path in photos:
        x = read_photo(path).pixels
        ref = quantize_8bit(reference.enhance_tensor(x).clamp(0, 1))
        for name, enhancer in others.items():
            out = quantize_8bit(enhancer.enhance_tensor(x).clamp(0, 1))
            scores[name].append((float(psnr(out, ref)), float(ssim(out, ref))))
    print(f"agreement with `default` at full resolution, {len(photos)} photos (mean PSNR dB / SSIM)")
    for name, rows in scores.items():
        p = sum(r[0] for r in rows) / len(rows)
        s = sum(r[1] for r in rows) / len(rows)
        print(f"{name:<28} {p:6.2f} {s:8.4f}")


if __name__ == "__main__":
    main()
