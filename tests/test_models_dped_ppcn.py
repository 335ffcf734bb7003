"""DPED's and PPCN's networks: shapes, gradients, tiling contexts, and the published figures.

The quality checks import the released TensorFlow checkpoints and must reproduce the reference PSNR
on DPED's 39 iPhone test patches (``../shared/data/README.md``): a figure that is off means the
architecture or the variable mapping is wrong, never that the tolerance needs widening.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dslrify.checkpoint import load_checkpoint
from dslrify.convert import import_dped, import_ppcn
from dslrify.models import EnhancementModel, build_model
from dslrify.models.base import MomentsPass
from dslrify.models.dped import DPEDDiscriminator, DPEDGenerator, _same_pad
from dslrify.models.ppcn import PPCNStudent, PPCNTeacher
from dslrify.photo import read_rgb

GENERATORS = {"dped": 401_475, "ppcn-teacher": 21_843, "ppcn-student": 2_715}


def _randomise_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Untrained norms are the identity affine; give them values so that mistakes show."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("scale", "shift")):
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("scale") else torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.mark.parametrize(("arch", "count"), GENERATORS.items())
def test_generator_shapes_and_parameter_counts(arch: str, count: int) -> None:
    model = build_model(arch)
    assert isinstance(model, EnhancementModel)
    assert sum(p.numel() for p in model.parameters()) == count
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert model.spec.context == "moments"


def test_dped_generator_is_differentiable() -> None:
    model = DPEDGenerator()
    x = torch.rand(1, 3, 24, 24, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("cls", [DPEDGenerator, PPCNTeacher, PPCNStudent])
def test_context_of_the_whole_image_equals_plain_forward(cls: type[EnhancementModel]) -> None:
    model = _randomise_norms(cls())
    x = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        plain = model(x)
        shared = model(x, model.compute_context(x))
    torch.testing.assert_close(shared, plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", [DPEDGenerator, PPCNTeacher, PPCNStudent])
def test_tile_with_context_matches_the_full_output(cls: type[EnhancementModel]) -> None:
    """A tile run with the whole photo's context equals the full output beyond ``receptive_field``."""
    model = _randomise_norms(cls()).double()
    x = torch.rand(1, 3, 64, 56, dtype=torch.float64)
    r = model.spec.receptive_field
    with torch.no_grad():
        full = model(x)
        tile = model(x[:, :, :40, :], model.compute_context(x))
        alone = model(x[:, :, :40, :])
    torch.testing.assert_close(tile[:, :, : 40 - r], full[:, :, : 40 - r], rtol=0, atol=1e-10)
    assert not torch.allclose(alone[:, :, : 40 - r], full[:, :, : 40 - r], atol=1e-4)


def test_ppcn_contrast_step_is_tf_adjust_contrast() -> None:
    model = PPCNStudent()
    x = torch.rand(2, 3, 5, 7)
    mean = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(model.adjust_contrast(x, MomentsPass(None)), (x - mean) * 1.2 + mean)


def test_tf_same_padding_is_asymmetric_for_strides() -> None:
    assert _same_pad(100, 11, 4) == (3, 4)  # 25 outputs
    assert _same_pad(25, 5, 2) == (2, 2)  # 13 outputs
    assert _same_pad(13, 3, 2) == (1, 1)  # 7 outputs
    assert _same_pad(12, 3, 2) == (0, 1)
    assert _same_pad(10, 3, 1) == (1, 1)


def test_dped_discriminator() -> None:
    disc = build_model("dped-discriminator")
    assert isinstance(disc, DPEDDiscriminator) and disc.flat_size == 128 * 7 * 7
    gray, rgb = torch.rand(3, 1, 100, 100), torch.rand(3, 3, 100, 100)
    assert disc(gray).shape == (3, 2)
    w = torch.tensor([0.2989, 0.5870, 0.1140]).view(1, 3, 1, 1)
    torch.testing.assert_close(disc(rgb), disc((rgb * w).sum(1, keepdim=True)))
    torch.testing.assert_close(disc.probabilities(gray).sum(1), torch.ones(3))
    disc(gray).sum().backward()
    assert disc.convs[0].conv.weight.grad is not None
    with pytest.raises(ValueError, match="patch_size=100"):
        disc(torch.rand(1, 1, 64, 64))
    assert DPEDDiscriminator(patch_size=64)(torch.rand(1, 3, 64, 64)).shape == (1, 2)


# --- the published figures, from the released checkpoints ---


def _psnr_on_test_patches(model: torch.nn.Module, data: Path) -> float:
    """Mean over the 39 patches of 10 log10(1 / MSE), output clamped and rounded to 8 bit."""
    patches = data / "dped" / "iphone" / "test_data" / "patches"
    phone = np.stack([read_rgb(patches / "iphone" / f"{i}.jpg") for i in range(39)]) / 255.0
    canon = np.stack([read_rgb(patches / "canon" / f"{i}.jpg") for i in range(39)]) / 255.0
    x = torch.from_numpy(phone).float().permute(0, 3, 1, 2).contiguous()
    with torch.inference_mode():
        y = torch.cat([model(chunk) for chunk in x.split(13)]).permute(0, 2, 3, 1).double().numpy()
    y = np.round(np.clip(y, 0, 1) * 255) / 255
    mse = ((y - canon) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(1 / mse)))


def test_identity_reference(shared_data: Path) -> None:
    assert _psnr_on_test_patches(torch.nn.Identity(), shared_data) == pytest.approx(17.64, abs=0.01)


def _check_dped(data: Path, tmp_path: Path, phone: str, expected: float) -> None:
    model, _ = load_checkpoint(import_dped(data / "dped-checkpoints" / f"{phone}_orig", tmp_path / phone))
    assert _psnr_on_test_patches(model, data) == pytest.approx(expected, abs=0.02)


def test_dped_iphone_reproduces_23_04_db(shared_data: Path, tmp_path: Path) -> None:
    _check_dped(shared_data, tmp_path, "iphone", 23.04)


@pytest.mark.slow  # about 12 s per model on a 2-core machine
@pytest.mark.parametrize(("phone", "expected"), [("sony", 19.92), ("blackberry", 20.19)])
def test_dped_other_phones_reproduce_the_reference(
    shared_data: Path, tmp_path: Path, phone: str, expected: float
) -> None:
    _check_dped(shared_data, tmp_path, phone, expected)


@pytest.mark.parametrize(("name", "expected"), [("teacher", 23.95), ("student", 23.16)])
def test_ppcn_reproduces_the_reference(shared_data: Path, tmp_path: Path, name: str, expected: float) -> None:
    model, _ = load_checkpoint(
        import_ppcn(shared_data / "ppcn-checkpoints" / f"{name}.ckpt", tmp_path / name)
    )
    assert _psnr_on_test_patches(model, shared_data) == pytest.approx(expected, abs=0.02)
