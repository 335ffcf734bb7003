"""Each metric against an independent implementation, on real DPED pairs and on synthetic images."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_msssim
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dslrify import metrics as M
from dslrify.photo import read_rgb

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(folder: Path, count: int) -> torch.Tensor:
    arrays = [read_rgb(folder / f"{i}.jpg") for i in range(count)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def real_pairs(shared_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """All 39 DPED test patches: (phone, canon), (39, 3, 100, 100) in [0, 1]."""
    patches = shared_data / "dped" / "iphone" / "test_data" / "patches"
    return _load(patches / "iphone", 39), _load(patches / "canon", 39)


@pytest.fixture(scope="module")
def synthetic_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random images and a noisy, colour-shifted copy: (4, 3, 64, 80)."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(4, 3, 8, 10, generator=g), size=(64, 80), mode="bilinear")
    y = (x * torch.tensor([1.1, 0.9, 1.0]).view(1, 3, 1, 1) + 0.05 * torch.randn(x.shape, generator=g)).clamp(
        0, 1
    )
    return M.quantize_8bit(x), M.quantize_8bit(y)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).double().numpy()


def test_quantize_8bit_clamps_and_rounds_to_256_levels():
    q = M.quantize_8bit(torch.tensor([-0.3, 0.0, 0.5, 0.49 / 255, 0.51 / 255, 1.7]))
    assert torch.allclose(q, torch.tensor([0.0, 0.0, 128 / 255, 0.0, 1 / 255, 1.0]))
    assert torch.equal(M.quantize_8bit(q), q)  # idempotent: 8-bit images pass unchanged


def test_psnr_of_known_offset_is_20_log10_of_peak_over_offset():
    x = torch.full((2, 3, 16, 16), 0.5)
    assert torch.allclose(M.psnr(x, x + 0.1), torch.full((2,), 20.0), atol=1e-4)


def test_psnr_matches_skimage(real_pairs, synthetic_pairs):
    for x, y in (real_pairs, synthetic_pairs):
        ours = M.psnr(x, y)
        ref = [peak_signal_noise_ratio(_hwc(y[i]), _hwc(x[i]), data_range=1) for i in range(len(x))]
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5)


def test_psnr_of_identical_images_is_inf_not_nan(synthetic_pairs):
    x, _ = synthetic_pairs
    assert torch.isinf(M.psnr(x, x)).all()


def test_identity_baseline_on_dped_test_patches_is_17_64_db(real_pairs):
    phone, canon = real_pairs
    assert round(M.psnr(M.quantize_8bit(phone), canon).mean().item(), 2) == 17.64  # README's figure


def test_ssim_is_pytorch_msssim_with_7_taps(real_pairs, synthetic_pairs):
    for x, y in (real_pairs, synthetic_pairs):
        ref = pytorch_msssim.ssim(x, y, data_range=1, win_size=7, size_average=False)
        assert torch.equal(M.ssim(x, y), ref)


def test_ssim_agrees_loosely_with_skimage_11_tap_gaussian(real_pairs):
    x, y = real_pairs
    ref = [
        structural_similarity(
            _hwc(x[i]),
            _hwc(y[i]),
            data_range=1,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(len(x))
    ]
    # skimage truncates its Gaussian at 11 taps, not 7: close but not equal.
    np.testing.assert_allclose(M.ssim(x, y).numpy(), ref, atol=0.03)


def test_ssim_and_ms_ssim_of_identical_images_are_one(synthetic_pairs):
    x, _ = synthetic_pairs
    assert torch.allclose(M.ssim(x, x), torch.ones(4), atol=1e-5)
    assert torch.allclose(M.ms_ssim(x, x), torch.ones(4), atol=1e-5)


@pytest.mark.parametrize(
    ("size", "scales"),
    [
        ((100, 100), 3),  # 100, 50, 25; 13 < 14
        ((256, 256), 5),
        ((4000, 3000), 5),
        ((30, 1000), 2),  # 30, 15; 8 < 14
        ((27, 27), 2),  # 27, 14: a side of exactly 2 * win_size counts
        ((14, 14), 1),
        ((13, 13), 0),
        ((7, 7), 0),
    ],
)
def test_ms_ssim_uses_the_scales_whose_side_is_at_least_twice_the_window(size, scales):
    assert M.ms_ssim_scales(*size) == scales


@pytest.mark.parametrize("win_size", [3, 7, 11])
def test_ms_ssim_scales_closed_form(win_size):
    # Scale k (0-based) has side ceil(side / 2**k), which is >= 2w exactly when side > 2**k * (2w - 1).
    for side in range(1, 600):
        expected = sum(side > 2**k * (2 * win_size - 1) for k in range(5))
        assert M.ms_ssim_scales(side, side + 17, win_size) == expected
        assert M.ms_ssim_scales(side + 17, side, win_size) == expected


def _renormalised(scales: int) -> list[float]:
    weights = np.array(M.MS_SSIM_WEIGHTS[:scales])
    return list(weights / weights.sum())


def _smooth_pair(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.nn.functional.interpolate(
        torch.rand(n, c, h // 8, w // 8, generator=g), size=(h, w), mode="bilinear"
    )
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def test_ms_ssim_equals_pytorch_msssim_with_renormalised_truncated_weights(real_pairs):
    x, y = real_pairs  # 100x100: 3 scales
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1, win_size=7, weights=_renormalised(3), size_average=False)
    torch.testing.assert_close(M.ms_ssim(x, y), ref, atol=2e-5, rtol=0)


def test_ms_ssim_of_100x100_synthetic_patches_equals_pytorch_msssim_with_three_weights():
    x, y = _smooth_pair((3, 3, 100, 100), seed=5)
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1, win_size=7, weights=_renormalised(3), size_average=False)
    torch.testing.assert_close(M.ms_ssim(x, y), ref, atol=2e-5, rtol=0)
    # The renormalised 3-scale value is not the 4-scale one of the former rule.
    four = pytorch_msssim.ms_ssim(
        x, y, data_range=1, win_size=7, weights=_renormalised(4), size_average=False
    )
    assert (M.ms_ssim(x, y) - four).abs().min() > 1e-4


def test_ms_ssim_with_five_scales_equals_pytorch_msssim_on_odd_sized_images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 227, 213, generator=g)  # odd sides exercise the padded pooling; 213 > 16 * 13
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert M.ms_ssim_scales(227, 213) == 5
    ref = pytorch_msssim.ms_ssim(x, y, data_range=1, win_size=7, weights=_renormalised(5), size_average=False)
    torch.testing.assert_close(M.ms_ssim(x, y), ref, atol=2e-5, rtol=0)


def test_ms_ssim_window_arguments_reach_every_scale():
    x, y = _smooth_pair((2, 3, 200, 200), seed=6)  # 11 taps: 200, 100, 50, 25 -> 4 scales
    assert M.ms_ssim_scales(200, 200, 11) == 4
    ref = pytorch_msssim.ms_ssim(
        x, y, data_range=1, win_size=11, win_sigma=2.0, weights=_renormalised(4), size_average=False
    )
    torch.testing.assert_close(M.ms_ssim(x, y, win_size=11, win_sigma=2.0), ref, atol=2e-5, rtol=0)


def test_ms_ssim_with_one_scale_is_ssim(synthetic_pairs):
    x, y = synthetic_pairs
    torch.testing.assert_close(M.ms_ssim(x, y, scales=1), M.ssim(x, y), atol=1e-6, rtol=0)


def test_ms_ssim_refuses_too_many_scales_and_too_small_images():
    x = torch.rand(1, 3, 100, 100)
    with pytest.raises(ValueError, match="4 MS-SSIM scales asked for, but 3 fit"):
        M.ms_ssim(x, x, scales=4)
    with pytest.raises(ValueError, match="0 MS-SSIM scales"):
        M.ms_ssim(x, x, scales=0)
    with pytest.raises(ValueError, match="13x13 are too small for MS-SSIM .* at least 14"):
        M.ms_ssim(x[..., :13, :13], x[..., :13, :13])
    with pytest.raises(ValueError, match="odd"):
        M.ms_ssim(x, x, win_size=6)
    with pytest.raises(ValueError, match="smaller than the 7-tap"):
        M.ssim(x[..., :6, :6], x[..., :6, :6])


def test_delta_e2000_matches_skimage_end_to_end_on_real_pairs(real_pairs):
    x, y = real_pairs
    ref = [deltaE_ciede2000(rgb2lab(_hwc(x[i])), rgb2lab(_hwc(y[i]))).mean() for i in range(len(x))]
    np.testing.assert_allclose(M.delta_e2000(x, y).numpy(), ref, atol=1e-3)


def test_ciede2000_matches_skimage_on_greys_and_hues_across_zero():
    g = torch.Generator().manual_seed(2)
    lab1 = torch.rand(1, 3, 500, generator=g, dtype=torch.float64) * torch.tensor([100.0, 160, 160]).view(
        1, 3, 1
    )
    lab1[:, 1:] -= 80
    lab2 = lab1 + 20 * torch.randn(lab1.shape, generator=g, dtype=torch.float64)
    lab1[:, 1:, :50] = 0  # greys: hue undefined
    lab1[:, 1, 50:100], lab1[:, 2, 50:100] = 30.0, 1.0  # hue just above 0 degrees...
    lab2[:, 1, 50:100], lab2[:, 2, 50:100] = 30.0, -1.0  # ...against just below 360
    ref = deltaE_ciede2000(lab1[0].T.numpy(), lab2[0].T.numpy())
    np.testing.assert_allclose(M.ciede2000(lab1, lab2)[0].numpy(), ref, atol=1e-6)


def test_ciede2000_reproduces_sharma_2005_test_data():
    # Rows 1, 2, 7 and 17 of Sharma, Wu and Dalal's published table.
    lab1 = torch.tensor(
        [[50, 2.6772, -79.7751], [50, 3.1571, -77.2803], [50, 0, 0], [50, 2.5, 0]], dtype=torch.float64
    )
    lab2 = torch.tensor(
        [[50, 0, -82.7485], [50, 0, -82.7485], [50, -1, 2], [73, 25, -18]], dtype=torch.float64
    )
    de = M.ciede2000(lab1.T[None], lab2.T[None])[0]
    torch.testing.assert_close(
        de, torch.tensor([2.0425, 2.8615, 2.3669, 27.1492], dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_delta_e2000_of_identical_images_is_zero(synthetic_pairs):
    x, _ = synthetic_pairs
    assert torch.allclose(M.delta_e2000(x, x), torch.zeros(4), atol=1e-6)


def test_sharpness_is_zero_when_flat_and_drops_when_blurred(real_pairs):
    canon = real_pairs[1][:8]
    blurred = torch.nn.functional.avg_pool2d(canon, 3, stride=1, padding=1, count_include_pad=False)
    assert (M.sharpness(blurred) < 0.5 * M.sharpness(canon)).all()
    assert torch.equal(M.sharpness(torch.full((1, 3, 9, 9), 0.3)), torch.zeros(1))


@pytest.mark.parametrize("fn", [M.psnr, M.ssim, M.ms_ssim, M.delta_e2000])
def test_metrics_reject_mismatched_or_non_rgb_batches(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 30))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fn(torch.rand(3, 32, 32), torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        fn(torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32))


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_samples():
    rng = np.random.default_rng(3)
    small = M.bootstrap_ci(rng.normal(20, 3, size=20))
    large = M.bootstrap_ci(rng.normal(20, 3, size=2000))
    for ci in (small, large):
        assert ci.low < ci.mean < ci.high
    assert (large.high - large.low) < 0.3 * (small.high - small.low)
    assert large.low > 19.5 and large.high < 20.5  # the true mean is 20


def test_bootstrap_ci_is_reproducible_and_degenerate_for_constant_values():
    values = np.arange(50.0)
    assert M.bootstrap_ci(values, seed=7) == M.bootstrap_ci(values, seed=7)
    assert M.bootstrap_ci(values, seed=7) != M.bootstrap_ci(values, seed=8)
    assert M.bootstrap_ci([2.5] * 10) == (2.5, 2.5, 2.5)
    assert M.bootstrap_ci([math.inf, 30.0]).mean == math.inf  # no NaN from a perfect output


def test_bootstrap_ci_rejects_empty_or_nan_values():
    with pytest.raises(ValueError, match="non-empty"):
        M.bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        M.bootstrap_ci([1.0, float("nan")])


def test_paired_difference_sign_and_pairing_beats_unpaired_intervals():
    rng = np.random.default_rng(4)
    per_image = rng.normal(20, 5, size=40)  # images differ a lot...
    a = per_image + 0.5 + rng.normal(0, 0.2, size=40)  # ...but a is consistently 0.5 dB better
    diff = M.paired_difference(a, per_image)
    assert 0 < diff.low < diff.mean < diff.high
    assert M.paired_difference(per_image, a).mean == pytest.approx(-diff.mean)
    ci_a, ci_b = M.bootstrap_ci(a), M.bootstrap_ci(per_image)
    assert ci_a.low < ci_b.high  # unpaired intervals overlap and cannot tell them apart
    with pytest.raises(ValueError, match="same length"):
        M.paired_difference(a, a[:-1])
