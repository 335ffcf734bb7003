"""How close fast models come to the `default` model on whole photos, where no DSLR target exists.

    python benchmarks/full_size_agreement.py [--models balanced fast ...] [--photos detail]
        [--reference default] [--cache runs/agreement-cache]

DPED's test pairs are 100x100 patches, small enough for the `fast` model's thumbnail to be the patch
itself; on a whole photo it sees a <= 384 px copy. This prints, for the four 1280x720 DPED full-size test
photos and four of the 1024x682 phone photos, PSNR and SSIM of each model's output against the `default`
model's full-resolution output (8-bit protocol): how much of its look survives at full size. `--cache`
keeps the reference's outputs (minutes per 12 MP photo with `default`) for the next run.
The last column is the agreement of the detail alone: the PSNR between the two outputs' high-pass
residuals (each output minus its Gaussian blur, sigma 2 px), i.e. whether a model does `default`'s
pixel-level work (noise, fine contrast), not just its colour and tone. `--photos detail` measures on the
4 high-resolution photos of `photos/` and phone photos 0-9 instead (issue 15's set; the reference is
tiled there, as the CLI runs it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import kornia
import torch

from dslrify.data import full_size_test_images
from dslrify.enhancer import Enhancer
from dslrify.metrics import psnr, quantize_8bit, ssim
from dslrify.photo import read_photo

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["balanced", "fast"], help="names or checkpoint folders")
    ap.add_argument("--reference", default="default", help="the model the others are compared with")
    ap.add_argument("--cache", type=Path, help="folder keeping the reference's outputs between runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--photos", choices=["dped", "detail"], default="dped")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.photos == "detail":
        photos = sorted((SHARED / "photos").glob("*.jpg")) + [
            SHARED / "phone-photos" / f"{i}.jpg" for i in range(10)
        ]
    else:
        photos = full_size_test_images(SHARED / "dped", "iphone") + [
            SHARED / "phone-photos" / f"{i}.jpg" for i in (0, 17, 42, 73)
        ]
    tile = None if a.photos == "detail" else 0  # 12-16 MP photos: tiled, as the CLI runs them
    reference = Enhancer(a.reference, device="cpu", tile=tile)
    others = {m: Enhancer(m, device="cpu", tile=tile) for m in a.models}
    scores: dict[str, list[tuple[float, float, float]]] = {m: [] for m in a.models}
    for path in photos:
        x = read_photo(path).pixels
        ref = reference_output(
            reference, x, a.cache, f"{a.reference.replace('/', '_')}-{a.photos}-{path.stem}"
        )
        for name, enhancer in others.items():
            out = quantize_8bit(enhancer.enhance_tensor(x).clamp(0, 1))
            detail = float(psnr(high_pass(out), high_pass(ref)))  # peak 1, as for the photos
            scores[name].append((float(psnr(out, ref)), float(ssim(out, ref)), detail))
        print(f"{path.name}: " + ", ".join(f"{m} {v[-1][0]:.2f} / {v[-1][2]:.2f}" for m, v in scores.items()))
    print(f"agreement with `{a.reference}` at full resolution, {len(photos)} photos (means)")
    print(f"{'model':<28} {'PSNR dB':>7} {'SSIM':>8} {'high-pass dB':>12}")
    for name, rows in scores.items():
        p, s, d = (sum(r[i] for r in rows) / len(rows) for i in range(3))
        print(f"{name:<28} {p:7.2f} {s:8.4f} {d:12.2f}")


def reference_output(reference: Enhancer, x: torch.Tensor, cache: Path | None, key: str) -> torch.Tensor:
    """The reference's 8-bit output for ``x`` (1, 3, H, W), from ``cache`` when it holds it."""
    saved = cache / f"{key}.pt" if cache else None
    if saved is not None and saved.is_file():
        return torch.load(saved, weights_only=True)  # our own tensors, written below
    ref = quantize_8bit(reference.enhance_tensor(x).clamp(0, 1))
    if saved is not None:
        saved.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ref, saved)
    return ref


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> the detail: ``x`` minus its Gaussian blur (sigma 2 px, 13 px kernel, reflected)."""
    return x - kornia.filters.gaussian_blur2d(x, (13, 13), (2.0, 2.0), border_type="reflect")


if __name__ == "__main__":
    main()
