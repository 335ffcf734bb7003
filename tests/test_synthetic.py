"""Synthetic phone-like pairs: each degradation step, determinism per index, laziness, caching, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import dslrify.data.synthetic as synthetic
from dslrify.data.synthetic import (
    PhoneDegradation,
    SyntheticPairs,
    degrade,
    desaturate,
    jpeg,
    lens_blur,
    sensor_noise,
    tone_curve,
    vignette,
    white_balance,
)
from dslrify.errors import DataError
from dslrify.train.sampling import StepBatchSampler, TrainPatches

pytestmark = pytest.mark.usefixtures("one_thread")  # as in a DataLoader worker


def textured(h: int = 64, w: int = 64, seed: int = 0) -> torch.Tensor:
    """(3, h, w) in [0, 1]: smooth gradients plus fine texture (so blur and JPEG have work to do)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([xx, yy, 0.5 + 0.3 * np.sin(8 * xx + 5 * yy)])
    return torch.from_numpy(np.clip(0.8 * base + 0.1 + rng.normal(0, 0.08, base.shape), 0, 1)).float()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


def high_freq_energy(x: torch.Tensor) -> float:
    return float(
        (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    )


def write_photos(folder: Path, count: int, size: tuple[int, int] = (320, 240)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        arr = (textured(size[1], size[0], seed=k).permute(1, 2, 0) * 255).round().byte().numpy()
        PIL.Image.fromarray(arr).save(folder / f"photo{k}.png")
    return folder


# --- the steps ---------------------------------------------------------------------------------------


def test_lens_blur_lowers_high_frequency_energy_more_for_larger_sigma():
    x = textured()
    e0, e_small, e_large = (high_freq_energy(v) for v in (x, lens_blur(x, 0.5), lens_blur(x, 1.5)))
    assert e_large < e_small < 0.8 * e0
    assert lens_blur(x[None], 1.0).shape == (1, 3, 64, 64)
    assert torch.allclose(lens_blur(x, 1.0).mean(), x.mean(), atol=0.01)  # blur moves no light


def test_sensor_noise_raises_variance_of_a_flat_patch_and_grows_with_signal():
    g = torch.Generator().manual_seed(0)
    dark, bright = torch.full((3, 64, 64), 0.05), torch.full((3, 64, 64), 0.6)
    noisy_dark, noisy_bright = (sensor_noise(v, 2e-3, 1e-3, g) for v in (dark, bright))
    assert float(noisy_dark.var()) > 1e-5 and float(noisy_bright.var()) > float(noisy_dark.var())
    # variance ~ shot * x + read**2
    assert float(noisy_bright.var()) == pytest.approx(2e-3 * 0.6 + 1e-6, rel=0.15)
    assert float(noisy_bright.mean()) == pytest.approx(0.6, abs=0.01)


def test_vignette_darkens_corners_more_than_the_centre():
    out = vignette(torch.full((3, 65, 65), 0.8), 0.3)
    assert float(out[:, 32, 32].mean()) == pytest.approx(0.8, abs=1e-3)
    for corner in (out[:, 0, 0], out[:, 0, -1], out[:, -1, 0], out[:, -1, -1]):
        assert float(corner.mean()) == pytest.approx(0.8 * 0.7, abs=1e-3)
    shifted = vignette(torch.full((3, 65, 65), 0.8), 0.3, center=(0.0, -1.0))  # optical centre at left edge
    assert float(shifted[:, 32, 0].mean()) > float(shifted[:, 32, -1].mean())


def test_white_balance_changes_channel_ratios():
    x = textured() * 0.5 + 0.25
    out = white_balance(x, (1.2, 1.0, 0.8))
    ratio_rb = (out[0].mean() / out[2].mean()) / (x[0].mean() / x[2].mean())
    assert float(ratio_rb) == pytest.approx(1.5, rel=1e-3)
    assert torch.equal(out[1], x[1])


def test_tone_curve_and_desaturation_are_monotonic_and_reduce_chroma():
    ramp = torch.linspace(0, 1, 256).expand(3, 1, 256)
    for gamma, contrast in ((0.8, -0.4), (1.25, 0.3), (1.0, 1.0), (1.0, -1.0)):
        out = tone_curve(ramp, gamma, contrast)
        assert float(out.diff(dim=-1).min()) >= 0 and out.min() >= 0 and out.max() <= 1
    assert float(tone_curve(ramp, 1.0, 0.3)[0, 0, 32]) < float(ramp[0, 0, 32])  # S-curve: darker shadows
    x = textured()
    chroma = (x - x.mean(0, keepdim=True)).abs().mean()
    dull = desaturate(x, 0.35)
    assert float((dull - dull.mean(0, keepdim=True)).abs().mean()) < 0.75 * float(chroma)
    assert torch.allclose(desaturate(x, 0.0), x, atol=1e-6)


def test_jpeg_at_low_quality_differs_but_stays_close():
    x = textured(96, 96)
    low, high = jpeg(x, 30), jpeg(x, 95)
    assert not torch.equal(low, x)
    assert 20 < psnr(low, x) < 40
    assert psnr(low, x) < psnr(high, x)
    assert jpeg(x[None], 50).shape == (1, 3, 96, 96)


def test_degrade_keeps_shape_and_range_and_is_reproducible():
    x = textured(48, 40)
    batch = torch.stack([x, x.flip(-1)])
    for clean in (x, batch, torch.zeros(3, 32, 32), torch.ones(3, 32, 32)):
        out = degrade(clean, torch.Generator().manual_seed(1))
        assert out.shape == clean.shape and out.dtype == torch.float32
        assert float(out.min()) >= 0 and float(out.max()) <= 1
    a, b = (degrade(x, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, degrade(x, torch.Generator().manual_seed(6)))
    with pytest.raises(ValueError):
        degrade(torch.zeros(1, 32, 32), torch.Generator())


def test_sampled_parameters_lie_in_their_ranges():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        p = PhoneDegradation.sample(g)
        assert 0.5 <= p.sigma <= 1.5 and 30 <= p.quality <= 80
        assert all(synthetic.RANGES["gain"][0] <= v <= synthetic.RANGES["gain"][1] for v in p.gains)


# --- the dataset -------------------------------------------------------------------------------------


def test_same_index_same_pair_and_different_index_different_pair(tmp_path):
    root = write_photos(tmp_path / "photos", 2)
    ds = SyntheticPairs(root, patch=48, pairs_per_photo=4, seed=3)
    assert len(ds) == 8
    x0, y0 = ds[1]
    assert x0.shape == y0.shape == (3, 48, 48) and x0.dtype == y0.dtype == torch.float32
    fresh = SyntheticPairs(root, patch=48, pairs_per_photo=4, seed=3)  # another worker: empty cache
    assert all(torch.equal(a, b) for a, b in zip(fresh[1], (x0, y0), strict=True))
    assert not torch.equal(ds[2][1], y0) and not torch.equal(ds[2][0], x0)
    assert not torch.equal(SyntheticPairs(root, patch=48, pairs_per_photo=4, seed=4)[1][1], y0)
    assert ds.name(1) == "photo0_1" and ds.name(5) == "photo1_1"
    assert ds.paths(5) == (root / "photo1.png", root / "photo1.png")
    with pytest.raises(IndexError):
        ds[8]


def test_construction_decodes_nothing_and_the_cache_decodes_each_photo_once(tmp_path, monkeypatch):
    root = write_photos(tmp_path / "photos", 3)
    calls = []
    real = synthetic.read_rgb
    monkeypatch.setattr(synthetic, "read_rgb", lambda path: calls.append(path) or real(path))
    ds = SyntheticPairs(root, patch=32, pairs_per_photo=5, cache_size=2)
    assert calls == [] and len(ds) == 15
    for i in range(5):
        ds[i]
    assert len(calls) == 1
    ds[5], ds[10], ds[0]  # photos 1, 2, then 0 again: evicted from a 2-photo cache
    assert len(calls) == 4
    assert len(pickle.dumps(ds)) < 10_000  # workers get names, not cached photos


def test_downscale_factor_is_drawn_from_scale(tmp_path):
    # A horizontal ramp 0..255 over 800 pixels: its slope per patch pixel tells the scale.
    ramp = np.broadcast_to(np.linspace(0, 255, 800)[None, :, None], (600, 800, 3)).round().astype(np.uint8)
    PIL.Image.fromarray(ramp).save(tmp_path / "ramp.png")
    for s in (0.25, 0.5):
        ds = SyntheticPairs(tmp_path, patch=64, pairs_per_photo=2, scale=(s, s))
        clean = ds[0][1]
        slope = float((clean[0, :, -1] - clean[0, :, 0]).mean()) / 63
        assert slope == pytest.approx(1 / (799 * s), rel=0.05)


def test_plugs_into_train_patches_unchanged(tmp_path):
    ds = SyntheticPairs(write_photos(tmp_path / "photos", 1), patch=40, pairs_per_photo=3)
    patches = TrainPatches(ds, list(range(len(ds))), patch=40, seed=0, flips=False)
    keys = next(iter(StepBatchSampler(len(ds), batch_size=3, seed=0, start=5, stop=6)))
    for key in keys:  # the trainer's keys end with the pair's position in `indices`
        x, y = patches[key][:2]  # a crop of the full patch size and no flips: the pair itself
        assert all(torch.equal(a, b) for a, b in zip((x, y), ds[key[-1]], strict=True))


def test_errors_name_the_folder_or_photo(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        SyntheticPairs(tmp_path / "empty")
    with pytest.raises(DataError, match="nowhere"):
        SyntheticPairs(tmp_path / "nowhere")
    write_photos(tmp_path / "small", 1, size=(60, 50))
    with pytest.raises(DataError, match="photo0.png is 60x50"):
        SyntheticPairs(tmp_path / "small", patch=100)[0]
    with pytest.raises(ValueError):
        SyntheticPairs(tmp_path / "small", scale=(0.5, 0.25))


def test_small_photos_are_used_at_the_scale_that_holds_a_patch(tmp_path):
    ds = SyntheticPairs(write_photos(tmp_path / "photos", 1, size=(120, 100)), patch=100, scale=(0.25, 0.5))
    x, y = ds[0]
    assert x.shape == y.shape == (3, 100, 100)


def test_mean_psnr_on_real_photos_is_in_a_phone_vs_dslr_band(shared_data):
    photos = shared_data / "photos"
    ds = SyntheticPairs(photos, pairs_per_photo=1, seed=0)
    assert len(ds) >= 28  # four large JPEGs + kodak24 in a subfolder
    kodak = [i for i in range(len(ds)) if ds.name(i).startswith("kodak24/")][::2]
    values = []
    for i in kodak + [ds.photos.index("Picture_1A_by_freespace.jpg")]:
        x, y = ds[i]
        assert x.shape == y.shape == (3, 100, 100) and float(x.min()) >= 0 and float(x.max()) <= 1
        values.append(psnr(x, y))
    assert 17 < float(np.mean(values)) < 28  # DPED's own iPhone-vs-Canon pairs: 17.6 dB
    assert min(values) > 10 and max(values) < 40
