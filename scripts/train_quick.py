"""Quick training of the embedded `default` model on DPED's real pairs (part 1's bootstrap model).

The full trainer (`dslrify train`) supersedes this script; it stays as the smallest honest recipe:
ResidualUNet, L1 + (1 - SSIM), Adam with cosine decay, random flips/90-degree rotations, on the
DPED training patches only (the test patches are never seen). Usage:

    python scripts/train_quick.py --data ../shared/data/dped --steps 3000 -o src/dslrify/weights/default
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_msssim import ssim

from dslrify.checkpoint import save_checkpoint
from dslrify.models import build_model
from dslrify.photo import read_rgb


def load_pairs(root: Path, phone: str) -> tuple[torch.Tensor, torch.Tensor]:
    folder = root / phone / "training_data"
    names = sorted((p.name for p in (folder / phone).iterdir()), key=lambda n: int(Path(n).stem))
    x = np.stack([read_rgb(folder / phone / n) for n in names])
    y = np.stack([read_rgb(folder / "canon" / n) for n in names])
    to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255  # noqa: E731
    return to_t(x), to_t(y)


def augment(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip and 90-degree rotation for input and target."""
    k = int(torch.randint(4, (1,), generator=g))
    if torch.rand(1, generator=g) < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    return x.rot90(k, (-2, -1)), y.rot90(k, (-2, -1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("../shared/data/dped"))
    ap.add_argument("--phone", default="iphone")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", type=Path, default=Path("src/dslrify/weights/default"))
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    x_all, y_all = load_pairs(a.data, a.phone)
    args = {"width": 16, "depth": 3, "global_width": 32, "context_size": 256}
    model = build_model("unet", args)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps)
    start = time.time()
    for step in range(1, a.steps + 1):
        idx = torch.randint(len(x_all), (a.batch,), generator=g)
        x, y = augment(x_all[idx], y_all[idx], g)
        out = model(x)
        loss = (out - y).abs().mean() + 0.5 * (1 - ssim(out, y, data_range=1, win_size=7))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    minutes = (time.time() - start) / 60
    save_checkpoint(
        a.out,
        model,
        "unet",
        args,
        training={
            "data": f"DPED {a.phone} -> canon, training_data ({len(x_all)} pairs of 100x100 patches)",
            "recipe": f"scripts/train_quick.py: L1 + 0.5*(1-SSIM), Adam lr {a.lr} cosine, batch {a.batch}, "
            f"{a.steps} steps, flips/rot90, seed {a.seed}; {minutes:.1f} CPU minutes",
            "licence": "weights trained on DPED data: non-commercial research use",
        },
    )
    print(f"saved {a.out}")


if __name__ == "__main__":
    main()
