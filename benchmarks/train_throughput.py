"""Training throughput (steps/s and patches/s) of the shipped configs on this machine's CPU or GPU.

    python benchmarks/train_throughput.py [--device cpu|cuda] [--steps 20] [--amp]

The dped config's content loss needs VGG-19 weights; speed does not depend on their values, so unless
--vgg PATH is given a random VGG-19 file is generated for the measurement (stated in the output).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from dslrify.models.vgg import expected_shapes
from dslrify.train.config import load_config
from dslrify.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fake_vgg(folder: Path) -> Path:
    path = folder / "vgg19-random.safetensors"
    save_file({k: torch.randn(s) * 0.01 for k, s in expected_shapes().items()}, str(path))
    return path


def measure(name: str, overrides: list[str], steps: int, warmup: int) -> tuple[float, int]:
    config = load_config(CONFIGS / f"{name}.yaml", overrides)
    trainer = Trainer(config)
    trainer.fit(until=warmup)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.fit(until=warmup + steps)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start), config.run.batch_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    ap.add_argument("--compile", action="store_true", help="torch.compile (CUDA only)")
    ap.add_argument("--vgg", help="VGG-19 weights for the dped config (default: random, speed only)")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/dped"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        vgg = a.vgg or str(fake_vgg(Path(tmp)))
        common = [
            f"run.device={a.device}",
            f"data.root={a.data}",
            "run.val_every=100000",
            "run.checkpoint_every=100000",
            f"run.amp={str(a.amp).lower()}",
            f"run.compile={str(a.compile).lower()}",
            "run.max_steps=100000",
        ]
        rows = []
        for name, extra in (("paper", []), ("dped", [f"loss.perceptual_weights={vgg}"])):
            sps, batch = measure(name, [*common, *extra, f"run.dir={tmp}/{name}"], a.steps, a.warmup)
            rows.append((name, batch, sps, sps * batch))
    device = (
        torch.cuda.get_device_name()
        if a.device.startswith("cuda")
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {device}; amp={a.amp} compile={a.compile}; {a.steps} timed steps after {a.warmup} warm-up"
    )
    if not a.vgg:
        print("dped: random VGG-19 weights (speed only)")
    print(f"{'config':<8} {'batch':>5} {'steps/s':>9} {'patches/s':>10}")
    for name, batch, sps, pps in rows:
        print(f"{name:<8} {batch:>5} {sps:>9.2f} {pps:>10.1f}")


if __name__ == "__main__":
    main()
