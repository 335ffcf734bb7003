"""CUDA checks for a lent GPU: OOM recovery by smaller tiles, and CUDA vs CPU agreement.

python scripts/check_cuda.py --model runs/x/best
"""

from __future__ import annotations

import argparse
import time

import torch

from dslrify.enhancer import Enhancer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    a = ap.parse_args()
    print("device:", torch.cuda.get_device_name())
    x = torch.rand(1, 3, 2848, 4272)

    gpu = Enhancer(a.model, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    y = gpu.enhance_tensor(x)
    torch.cuda.synchronize()
    print(f"12.2 MP on CUDA, auto tile {gpu.last_tile}: {time.perf_counter() - start:.2f} s")

    # Same input on both devices (a crop has its own global context, so compare crop with crop).
    crop = x[:, :, :512, :768]
    on_gpu, on_cpu = gpu.enhance_tensor(crop), Enhancer(a.model, device="cpu").enhance_tensor(crop)
    print(f"CUDA vs CPU max abs difference on a 768x512 photo: {(on_gpu - on_cpu).abs().max():.2e}")

    # Cap this process at ~1 GiB of the GPU and ask for one 4096-px tile: it must run out of memory
    # and recover with smaller tiles, giving the same result.
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(
        1.0 * 1024**3 / torch.cuda.get_device_properties(0).total_memory
    )
    small = Enhancer(a.model, device="cuda", tile=4096)
    z = small.enhance_tensor(x)
    print(
        f"with a 1 GiB cap and --tile 4096: recovered, ran with tile {small.last_tile}; "
        f"max abs difference to the uncapped run {(z - y).abs().max():.2e}"
    )


if __name__ == "__main__":
    main()
