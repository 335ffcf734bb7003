"""On a CUDA machine: the shipped model agrees with the CPU, and running out of GPU memory with a big tile
recovers with smaller tiles and gives the same photo. Skipped where torch sees no CUDA device."""

from __future__ import annotations

import pytest
import torch

from dslrify.enhancer import Enhancer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_cuda_matches_the_cpu_on_a_photo() -> None:
    torch.manual_seed(0)
    photo = torch.rand(1, 3, 512, 768)
    on_gpu = Enhancer("default", device="cuda").enhance_tensor(photo)
    on_cpu = Enhancer("default", device="cpu").enhance_tensor(photo)
    assert float((on_gpu - on_cpu).abs().max()) < 1e-3


def test_out_of_memory_retries_with_smaller_tiles_and_gives_the_same_photo() -> None:
    torch.manual_seed(0)
    photo = torch.rand(1, 3, 2848, 4272)  # 12.2 MP
    reference = Enhancer("default", device="cuda").enhance_tensor(photo)
    torch.cuda.empty_cache()
    # Cap this process at 1 GiB of the GPU and ask for one 4096-px tile: it must run out of memory.
    torch.cuda.set_per_process_memory_fraction(1024**3 / torch.cuda.get_device_properties(0).total_memory)
    try:
        capped = Enhancer("default", device="cuda", tile=4096)
        result = capped.enhance_tensor(photo)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert capped.last_tile is not None and capped.last_tile < 4096
    assert float((result - reference).abs().max()) <= 1 / 255 + 1e-6  # the README's tiling bound
