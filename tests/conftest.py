"""Shared fixtures: small images made on the fly, randomly initialised models, the shared data path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dslrify.models import build_model
from dslrify.models.base import EnhancementModel

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip when this checkout has no shared data beside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (development data lives beside the checkout)")
    return SHARED_DATA


def random_unet(seed: int = 0, **args) -> EnhancementModel:
    """A ResidualUNet whose every weight is random, so that no branch is the identity."""
    torch.manual_seed(seed)
    model = build_model("unet", {"width": 8, "depth": 3, "global_width": 16, **args})
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one torch thread: on tiny tensors OpenMP start-up and contention dominate."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def unet() -> EnhancementModel:
    return random_unet()


@pytest.fixture
def photo_array() -> np.ndarray:
    """A 96x128 RGB uint8 image with gradients and texture (not constant, not symmetric)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    img = np.stack([xx * 2, yy * 2, (xx + yy) % 256], axis=-1).astype(np.float32)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)
