"""The quality table: every reference and shipped model on DPED's 39 iPhone test pairs, plus the
cross-validated estimate on the 198 training pairs (read from docs/models/cv-results.json, not retrained).

    python benchmarks/quality.py [--data ../shared/data/dped] [--pictures docs/images]

Protocol: outputs clamped to [0,1] and rounded to 8 bit; PSNR/SSIM with 95 % bootstrap intervals,
MS-SSIM (3 scales), ΔE00; megapixels/s on this machine's CPU (2 threads, 100x100 patches, batch 39);
DSLR -> DSLR: the 39 Canon patches through each model against themselves (the full-photo columns of
quality matching, slower, are in benchmarks/matching.py).
With --pictures it also writes side-by-side strips (input | DPED | dslrify | DSLR) of test pairs and of a
full-size phone photo.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dslrify import metrics
from dslrify.baselines import auto_levels, identity
from dslrify.convert.dped import import_dped
from dslrify.convert.ppcn import import_ppcn
from dslrify.data import full_size_test_images, open_pairs
from dslrify.enhancer import Enhancer
from dslrify.evaluate import evaluate
from dslrify.photo import read_rgb
from dslrify.zoo import MODELS, resolve_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CV_KEYS = {
    "dped-official": "dped-official",
    "ppcn-teacher": "ppcn-teacher",
    "identity": "identity",
    "auto-levels": "auto-levels",
}


def reference_models(tmp: Path) -> dict[str, torch.nn.Module]:
    out = {}
    out["dped-official"] = resolve_model(import_dped(SHARED / "dped-checkpoints/iphone_orig", tmp / "dped"))[
        0
    ]
    out["ppcn-teacher"] = resolve_model(import_ppcn(SHARED / "ppcn-checkpoints/teacher.ckpt", tmp / "t"))[0]
    out["ppcn-student"] = resolve_model(import_ppcn(SHARED / "ppcn-checkpoints/student.ckpt", tmp / "s"))[0]
    return out


def cv_estimate(name: str, cv: dict) -> str:
    if name in cv.get("references", {}):
        r = cv["references"][name]
        return f"{r['psnr_mean']:.2f} / {r['ssim_mean']:.4f}"
    shipped = cv.get("shipped", {}).get(name)
    if shipped and shipped in cv["candidates"]:
        c = cv["candidates"][shipped]
        psnr, ssim = c["final_psnr"], c["final_ssim"]
        return f"{psnr['mean']:.2f} ± {psnr['std']:.2f} / {ssim['mean']:.4f} (recipe {shipped})"
    return "—"


def strip(images: list[np.ndarray], scale: int = 1, gap: int = 6) -> Image.Image:
    h, w = images[0].shape[:2]
    canvas = Image.new("RGB", (len(images) * (w * scale + gap) - gap, h * scale), "white")
    for i, im in enumerate(images):
        canvas.paste(
            Image.fromarray(im).resize((w * scale, h * scale), Image.NEAREST), (i * (w * scale + gap), 0)
        )
    return canvas


def to_u8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def pictures(out: Path, test, dped, ours) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with torch.inference_mode():
        for i in (0, 5, 12, 30):
            x, y = test[i]
            rows.append(
                strip([to_u8(x), to_u8(dped(x[None])[0]), to_u8(ours(x[None])[0]), to_u8(y)], scale=2)
            )
    sheet = Image.new("RGB", (rows[0].width, sum(r.height + 6 for r in rows) - 6), "white")
    for k, r in enumerate(rows):
        sheet.paste(r, (0, k * (r.height + 6)))
    sheet.save(out / "test_pairs.jpg", quality=92)
    photo = full_size_test_images(SHARED / "dped", "iphone")[0]
    x = torch.from_numpy(read_rgb(photo).copy()).permute(2, 0, 1)[None].float() / 255
    views = [
        x[0],
        Enhancer(dped, device="cpu").enhance_tensor(x)[0],
        Enhancer(ours, device="cpu").enhance_tensor(x)[0],
    ]
    small = [np.asarray(Image.fromarray(to_u8(v)).resize((640, 360), Image.LANCZOS)) for v in views]
    strip(small).save(out / "full_size.jpg", quality=92)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "dped"))
    ap.add_argument("--pictures", type=Path, help="write side-by-side pictures into this folder")
    ap.add_argument("--json", type=Path, help="write the table as JSON")
    a = ap.parse_args()
    torch.set_num_threads(2)
    test = open_pairs(a.data, "iphone", split="test")
    cv = json.loads((ROOT / "docs/models/cv-results.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        refs = reference_models(Path(tmp))
        models = {"identity": identity, "auto-levels": auto_levels, **refs}
        for name in MODELS:
            models[name] = resolve_model(name)[0]
        result = evaluate(models, test, batch_size=len(test))
    print(f"DPED iPhone test pairs (n={len(test)}); CV = 3-fold on the 198 training pairs, last step")
    print(
        f"{'model':<14} {'PSNR dB (95% CI)':<22} {'SSIM (95% CI)':<24} {'MS-SSIM':>7} {'ΔE00':>6} {'MP/s':>6}"
        "  CV PSNR / SSIM"
    )
    for s in result.summaries:
        print(
            f"{s.model:<14} {s.psnr:5.2f} ({s.psnr_ci[0]:.2f}–{s.psnr_ci[1]:.2f})   "
            f"{s.ssim:.4f} ({s.ssim_ci[0]:.4f}–{s.ssim_ci[1]:.4f})  {s.ms_ssim:7.4f} {s.delta_e:6.2f} "
            f"{s.megapixels_per_s:6.2f}  {cv_estimate(s.model, cv)}"
        )
    # Direction (benchmarks/matching.py has the full-photo columns: Kodak, photos/, clipping, edge step):
    # the 39 Canon patches through each model, against themselves.
    canon = torch.stack([test[i][1] for i in range(len(test))])
    print("DSLR -> DSLR on the 39 Canon test patches (PSNR dB / SSIM):")
    with torch.inference_mode():
        for name, model in models.items():
            out = metrics.quantize_8bit(model(canon).float())
            psnr, ssim = float(metrics.psnr(out, canon).mean()), float(metrics.ssim(out, canon).mean())
            print(f"  {name:<14} {psnr:6.2f} / {ssim:.4f}")
    for a_, b_ in (("default", "dped-official"), ("balanced", "default"), ("fast", "default")):
        d = result.compare(a_, b_)
        print(
            f"{a_} − {b_} (paired, 95% CI): PSNR {d['psnr'].mean:+.2f} ({d['psnr'].low:+.2f} to "
            f"{d['psnr'].high:+.2f}) dB, SSIM {d['ssim'].mean:+.4f} "
            f"({d['ssim'].low:+.4f} to {d['ssim'].high:+.4f})"
        )
    if a.json:
        a.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if a.pictures:
        pictures(a.pictures, test, models["dped-official"], models["default"])
        print(
            f"pictures: {a.pictures}/test_pairs.jpg (input | DPED | dslrify default | DSLR), "
            f"{a.pictures}/full_size.jpg"
        )


if __name__ == "__main__":
    main()
