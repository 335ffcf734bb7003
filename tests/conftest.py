"""Shared fixtures: small images made on the fly, randomly initialised models, the shared data path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dslrify.models import build_model
from dslrify.models.base import EnhancementModel

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_or_skip(path: Path, ci: bool) -> Path:
    """``path`` when it is a folder; otherwise a skip, or a failure under CI (which has the data)."""
    if path.is_dir():
        return path
    message = f"{path} is absent (the development data lives beside the checkout)"
    if ci:
        pytest.fail(f"{message}; CI has the data, so a test that needs it must not skip", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: the one way a test reaches the real data (it marks the test ``requires_data``)."""
    return data_or_skip(SHARED_DATA, bool(os.environ.get("CI")))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reads the real data, directly or through another fixture, is ``requires_data``."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.requires_data)


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
