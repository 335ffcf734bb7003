"""Quality matching: does a model move a photo only as far as it is from DSLR quality?

    python benchmarks/matching.py [--models default fast ...] [--json out.json]

One row per model (shipped models, and PPCN's teacher/student and DPED's iPhone model imported from
../shared/data into a temporary folder), columns:

- ``phone`` PSNR/SSIM: phone -> DSLR on DPED's 39 iPhone test pairs (8-bit protocol);
- ``dslr`` PSNR/SSIM: the 39 Canon test patches through the model, against themselves;
- ``kodak``: PSNR(output, input) on the 24 Kodak images (500x500);
- ``photos``: PSNR(output, input) on the 4 photos of ``photos/``, downscaled to ``--side`` px on the
  long side (default 1024: the 12 MP photos at full size take minutes per model on a small CPU);
- ``clip`` (per mille): new highlight clipping, the share of pixels whose input max channel is <= 235
  and whose output max channel is >= 250 (8-bit levels), on the phone photos and on ``photos/``;
- ``edge``: edge step in 8-bit levels (``metrics.edge_step``: for rows (columns) r = 0..3 from each
  edge, mean |out[r] - out[r+1]| minus mean |in[r] - in[r+1]|, the worst row and side) on a smooth
  photo: a 240x320 sky-like gradient, where the input's own steps are tiny (on textured photos the
  figure mostly measures how much a model raises contrast everywhere).

Full photos run through ``Enhancer`` (tiled where the model's memory needs it), as users run them.
Reference models run on ``--ref-phones`` phone photos (default 20) instead of all 100: DPED's generator
needs minutes per photo on two cores. ``--phones`` limits the shipped models too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from dslrify import metrics
from dslrify.convert.dped import import_dped
from dslrify.convert.ppcn import import_ppcn
from dslrify.data import open_pairs
from dslrify.data.paired import to_chw
from dslrify.enhancer import Enhancer
from dslrify.photo import read_rgb
from dslrify.zoo import MODELS, resolve_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REFERENCES = ("ppcn-teacher", "ppcn-student", "dped-official")
BELOW, ABOVE = 235 / 255, 250 / 255  # new clipping: input max channel <= BELOW, output max >= ABOVE


def reference_model(name: str, tmp: Path) -> torch.nn.Module:
    """PPCN's teacher/student or DPED's iPhone generator, imported as released."""
    if name == "dped-official":
        return resolve_model(import_dped(SHARED / "dped-checkpoints/iphone_orig", tmp / name))[0]
    which = name.split("-")[1]
    return resolve_model(import_ppcn(SHARED / f"ppcn-checkpoints/{which}.ckpt", tmp / name))[0]


def load(path: Path, side: int | None = None) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1], area-downscaled to ``side`` px on the long side when larger."""
    x = to_chw(read_rgb(path))[None]
    if side and max(x.shape[-2:]) > side:
        scale = side / max(x.shape[-2:])
        x = F.interpolate(x, size=(round(x.shape[-2] * scale), round(x.shape[-1] * scale)), mode="area")
    return x


def new_clipping(x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of pixels with input max channel <= 235 and output max channel >= 250 (8-bit levels)."""
    xm = metrics.quantize_8bit(x).amax(1)
    ym = metrics.quantize_8bit(y).amax(1)
    return float(((xm <= BELOW + 1e-6) & (ym >= ABOVE - 1e-6)).float().mean())


def smooth_sky(h: int = 240, w: int = 320) -> torch.Tensor:
    """(1, 3, h, w): a smooth gradient like a clear sky, for the edge step."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.35 + 0.3 * yy, 0.5 + 0.1 * xx, 0.8 - 0.3 * yy])[None]


def patch_scores(model: Callable, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    with torch.inference_mode():
        out = metrics.quantize_8bit(model(inputs).float())
    return float(metrics.psnr(out, targets).mean()), float(metrics.ssim(out, targets).mean())


def score(model: torch.nn.Module, data: dict, phones: int, side: int) -> dict[str, float]:
    """Every column for one model."""
    row: dict[str, float] = {}
    row["phone_psnr"], row["phone_ssim"] = patch_scores(model, data["x"], data["y"])
    row["dslr_psnr"], row["dslr_ssim"] = patch_scores(model, data["y"], data["y"])
    enhancer = Enhancer(model, device="cpu")
    kodak, photos, clip_photos, clip_phones = [], [], [], []
    sky = smooth_sky()
    row["edge"] = float(metrics.edge_step(sky, enhancer.enhance_tensor(sky)).max())
    for path in data["kodak"]:
        x = load(path)
        kodak.append(float(metrics.psnr(metrics.quantize_8bit(enhancer.enhance_tensor(x)), x)))
    for path in data["photos"]:
        x = load(path, side)
        y = enhancer.enhance_tensor(x)
        photos.append(float(metrics.psnr(metrics.quantize_8bit(y), x)))
        clip_photos.append(new_clipping(x, y))
    for path in data["phones"][:phones]:
        x = load(path)
        clip_phones.append(new_clipping(x, enhancer.enhance_tensor(x)))
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    row.update(
        kodak_psnr=mean(kodak),
        photos_psnr=mean(photos),
        clip_phones=1000 * mean(clip_phones),
        clip_photos=1000 * mean(clip_photos),
        n_phones=len(clip_phones),
    )
    return row


# The failure photos of the model cards: (file under ../shared/data, crop box as fractions (top, left,
# height, width) of the photo, credit).
FAILURES = {
    "sunset": ("photos/sunset_by_Aitzol_Berasategi.jpg", (0.05, 0.25, 0.6, 0.5), "CC-BY-4.0 A. Berasategi"),
    "freespace": ("photos/Picture_1A_by_freespace.jpg", (0.0, 0.0, 1.0, 1.0), 'CC-BY-4.0 Trevor "Freespace"'),
    "phone91": ("phone-photos/91.jpg", (0.0, 0.0, 1.0, 1.0), "Apache-2.0, ai-benchmark by A. Ignatov"),
    "phone42": ("phone-photos/42.jpg", (0.0, 0.0, 1.0, 1.0), "Apache-2.0, ai-benchmark by A. Ignatov"),
}


def pictures(out: Path, models: dict[str, torch.nn.Module], side: int = 1024, width: int = 800) -> list[Path]:
    """Side-by-side strips (input | each model) of the failure photos' crops, <= ``width`` px wide, JPEG."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, (file, (top, left, h, w), _) in FAILURES.items():
        x = load(SHARED / file, side)
        views = [x] + [Enhancer(m, device="cpu").enhance_tensor(x) for m in models.values()]
        H, W = x.shape[-2:]
        box = (round(top * H), round(left * W), round((top + h) * H), round((left + w) * W))
        tiles = [v[0, :, box[0] : box[2], box[1] : box[3]] for v in views]
        tile_w = (width - 4 * (len(tiles) - 1)) // len(tiles)
        tile_h = round(tiles[0].shape[1] * tile_w / tiles[0].shape[2])
        sheet = Image.new("RGB", (len(tiles) * (tile_w + 4) - 4, tile_h), "white")
        for i, v in enumerate(tiles):
            u8 = (v.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
            sheet.paste(Image.fromarray(u8).resize((tile_w, tile_h), Image.LANCZOS), (i * (tile_w + 4), 0))
        path = out / f"matching_{key}.jpg"
        sheet.save(path, quality=88)
        written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="shipped names, reference names or checkpoint folders")
    ap.add_argument("--phones", type=int, default=100, help="phone photos for the clipping column")
    ap.add_argument("--ref-phones", type=int, default=20, help="phone photos for the reference models")
    ap.add_argument("--side", type=int, default=1024, help="long side of photos/ for every model")
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    ap.add_argument("--pictures", type=Path, help="write before/after strips of the failure photos here")
    ap.add_argument("--before", nargs="*", default=[], help="checkpoint folders shown before the models")
    a = ap.parse_args()
    torch.set_num_threads(2)
    test = open_pairs(SHARED / "dped", "iphone", split="test")
    pairs = [test[i] for i in range(len(test))]
    data = {
        "x": torch.stack([p[0] for p in pairs]),
        "y": torch.stack([p[1] for p in pairs]),
        "kodak": sorted((SHARED / "photos/kodak24").glob("*.png")),
        "photos": sorted((SHARED / "photos").glob("*.jpg")),
        "phones": [SHARED / f"phone-photos/{i}.jpg" for i in range(100)],
    }
    names = a.models or [*MODELS, *REFERENCES]
    if a.pictures:
        shown = {p: resolve_model(p)[0] for p in a.before} | {n: resolve_model(n)[0] for n in names}
        for path in pictures(a.pictures, shown):
            print(f"wrote {path} (input | {' | '.join(shown)})")
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            ref = name in REFERENCES
            model = reference_model(name, Path(tmp)) if ref else resolve_model(name)[0]
            rows[name] = score(model, data, a.ref_phones if ref else a.phones, a.side)
            print(f"{name}: {json.dumps(rows[name])}", flush=True)
    print(
        f"\nphone = 39 DPED iPhone test pairs; dslr = their 39 Canon patches against themselves; kodak = 24 "
        f"images; photos = {len(data['photos'])} photos at {a.side} px; clip = new highlight clipping, "
        "per mille (phone photos, photos/); edge = edge step on a smooth gradient, 8-bit levels"
    )
    print(
        f"{'model':<16} {'phone dB':>8} {'SSIM':>6} {'dslr dB':>8} {'SSIM':>6} {'kodak dB':>8} "
        f"{'photos dB':>9} {'clip ph':>8} {'clip pho':>8} {'edge':>6} {'n ph':>5}"
    )
    for name, r in rows.items():
        print(
            f"{name:<16} {r['phone_psnr']:8.2f} {r['phone_ssim']:6.4f} {r['dslr_psnr']:8.2f} "
            f"{r['dslr_ssim']:6.4f} {r['kodak_psnr']:8.2f} {r['photos_psnr']:9.2f} {r['clip_phones']:8.3f} "
            f"{r['clip_photos']:8.3f} {r['edge']:6.2f} {r['n_phones']:5d}"
        )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
