"""Quality matching: the ``matched`` wrapper, and the trainer options that give a model direction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dslrify.checkpoint import save_checkpoint
from dslrify.data.clean import CleanPatches
from dslrify.enhancer import Enhancer
from dslrify.models import build_model
from dslrify.models.matched import MatchedEnhancer
from dslrify.train.config import load_config
from dslrify.train.sampling import DEGRADED, IDENTITY, PAIRS, StepBatchSampler, split_indices
from dslrify.train.trainer import Trainer

GUIDED = {"base": "guided", "base_args": {"base": "ppcn-student", "context_size": 48, "radius": 2}}


def matched(seed: int = 0, **args) -> MatchedEnhancer:
    torch.manual_seed(seed)
    model = build_model("matched", {"base": "ppcn-student", **args})
    assert isinstance(model, MatchedEnhancer)
    return model.eval()


def force_gate(model: MatchedEnhancer, s: float) -> None:
    """Make the gate's output exactly ``s`` (0 or 1) for any input."""
    with torch.no_grad():
        model.gate.fc2.weight.zero_()
        model.gate.fc2.bias.fill_(1e4 if s == 1 else -1e4)


@pytest.mark.parametrize("args", [{}, {"highlight_knee": 0.8}, GUIDED])
def test_shape_range_and_gradient_reach_the_gate(args):
    model = matched(**args).train()
    x = torch.rand(2, 3, 40, 52, requires_grad=True)
    y = model(x)
    assert y.shape == x.shape and float(y.detach().min()) >= 0 and float(y.detach().max()) <= 1
    y.mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.gate.parameters())
    s = model.strength(x.detach())
    assert s.shape == (2,) and bool(((s > 0) & (s < 1)).all())


@pytest.mark.parametrize("args", [{}, GUIDED])
def test_strength_zero_is_the_input_and_one_is_the_base(args):
    model = matched(**args)
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        force_gate(model, 0)
        assert torch.equal(model(x), x)
        force_gate(model, 1)
        assert torch.equal(model(x), model.net(x))


def test_highlight_protection_adds_no_new_clipping():
    model = matched(highlight_knee=0.8)
    force_gate(model, 1)
    x = torch.rand(1, 3, 48, 48) * 0.9  # nothing clipped in the input
    x[..., :8, :8] = 1.0  # but a white corner stays white
    with torch.no_grad():
        model.net.conv4.bias.fill_(5.0)  # a base that pushes everything to white
        assert float(model.net(x).amin()) > 0.99
        y = model(x)
    assert float(y[..., 8:, 8:].amax()) < 250 / 255  # brightened, never to white
    assert bool((y >= x - 1e-6).all())  # never darker than the input where the base brightened
    assert torch.equal(y[..., :8, :8], x[..., :8, :8])


@pytest.mark.parametrize("args", [{}, GUIDED])
def test_tiled_equals_untiled(args):
    model = matched(**args)
    x = torch.rand(1, 3, 150, 170)
    whole = Enhancer(model, device="cpu", tile=0).enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=64).enhance_tensor(x)
    assert float((whole - tiled).abs().max()) < 1e-5


def test_gate_statistics_by_bands_equal_one_pass(monkeypatch):
    import dslrify.models.matched as module

    model = matched(**GUIDED)
    x = torch.rand(2, 3, 61, 47)
    with torch.no_grad():
        one = model.gate_moments(x)
        monkeypatch.setattr(module, "BAND_PIXELS", 47 * 5)  # bands of 5 rows
        banded = model.gate_moments(x)
    for a, b in zip(one, banded, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_highlight_knee_in_place_gives_the_autograd_numbers_exactly():
    model = matched(highlight_knee=0.8)
    x, y = torch.rand(2, 3, 40, 50), torch.rand(2, 3, 40, 50)
    s = torch.tensor([0.3, 1.0]).view(2, 1, 1, 1)
    with torch.no_grad():
        fast = model.mix(x, y, s)
    slow = model.mix(x.clone().requires_grad_(True), y, s).detach()
    assert torch.equal(fast, slow)
    assert bool((fast > 0.8).any()) and bool((fast <= 0.8).any())  # both sides of the knee are checked


# -- the sampled gate (gate_grid) -------------------------------------------------------------------

SAMPLED = {**GUIDED, "gate_grid": 16}


@pytest.mark.parametrize("size", [(37, 53), (16, 90), (5, 7), (200, 17)])
def test_sampled_features_equal_the_dense_features_at_the_sampled_pixels(size):
    from dslrify.models.matched import gate_mosaic, sample_positions

    gate = matched(**SAMPLED).gate
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        sampled = gate.sampled_features(*gate_mosaic(x, 16))
        rows, cols = (sample_positions(torch.tensor(n), 16) for n in size)
        dense = gate.features(x)[:, :, rows][:, :, :, cols]  # includes the replicate-padded edges
    assert sampled.shape == (2, 3 + 8, min(size[0], 16), min(size[1], 16))
    torch.testing.assert_close(sampled, dense, atol=1e-6, rtol=1e-5)


def test_sample_positions_cover_every_strip_and_every_pixel_of_a_small_axis():
    from dslrify.models.matched import sample_positions

    assert sample_positions(torch.tensor(9), 16).tolist() == list(range(9))  # small: all of them
    p = sample_positions(torch.tensor(4000), 256)
    assert len(p) == 256 and bool((p[1:] > p[:-1]).all()) and int(p[0]) >= 0 and int(p[-1]) < 4000
    strips = torch.arange(256) * 4000 // 256
    assert bool(((p >= strips) & (p < torch.cat([strips[1:], torch.tensor([4000])]))).all())
    # Not locked to the 8-pixel JPEG block grid: every offset within a block is sampled.
    assert set((p % 8).tolist()) == set(range(8))


def test_sampled_gate_measures_a_small_photo_whole_and_a_large_one_closely():
    dense, sampled = matched(**GUIDED), matched(**SAMPLED)
    with torch.no_grad():
        small = torch.rand(1, 3, 16, 12)  # no side above the grid: the whole photo, as in training
        torch.testing.assert_close(sampled.strength(small), dense.strength(small))
        # A large photo of one texture: 256 samples estimate the statistics of its 10k pixels closely.
        large = (torch.rand(1, 3, 1, 1) * 0.5 + 0.25 + 0.05 * torch.randn(1, 3, 100, 100)).clamp(0, 1)
        assert float((sampled.strength(large) - dense.strength(large)).abs()) < 0.02
        a, b = sampled.gate_moments(large), dense.gate_moments(large)
        assert not torch.equal(a[0], b[0])  # it did sample


def test_sampled_gate_context_from_native_pixels_equals_the_float_one():
    model = matched(**SAMPLED)
    pixels = torch.randint(0, 256, (1, 3, 70, 90), dtype=torch.uint8)
    with torch.no_grad():
        native = model.context_from_pixels(pixels, lambda t: t.float() / 255)
        floats = model.compute_context(pixels.float() / 255)
    for a, b in zip(native.gate, floats.gate, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(native.base.coef, floats.base.coef, atol=1e-5, rtol=1e-4)


def test_gate_grid_is_refused_where_the_gate_is_a_moment_of_the_base():
    with pytest.raises(ValueError, match="gate_grid"):
        matched(gate_grid=64)
    with pytest.raises(ValueError, match="positive"):
        matched(**{**GUIDED, "gate_grid": 0})


@pytest.mark.parametrize("args", [{}, GUIDED, SAMPLED])
def test_onnx_export_matches_pytorch(tmp_path, args):
    pytest.importorskip("onnxruntime")
    from dslrify.export import export_onnx

    sizes = ((61, 83), (130, 170), (12, 40), (10, 12))  # above and below the sampled gate's grid of 16
    report = export_onnx(matched(**args), tmp_path / "m.onnx", sizes=sizes)
    assert max(report.max_abs_diff.values()) <= report.tolerance


# -- trainer options ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    """12 pairs of 40x40 photos (input darker and duller than its target)."""
    root = tmp_path_factory.mktemp("pairs")
    (root / "input").mkdir()
    (root / "target").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        y = np.clip(np.kron(rng.uniform(0.2, 0.9, (5, 5, 3)), np.ones((8, 8, 1))), 0, 1)
        x = np.clip(y * 0.7 + rng.normal(0, 0.03, y.shape), 0, 1)
        Image.fromarray((x * 255).round().astype(np.uint8)).save(root / "input" / f"{i}.png")
        Image.fromarray((y * 255).round().astype(np.uint8)).save(root / "target" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def config_file(tmp_path, pairs_root, base_dir, **data):
    config = {
        "name": "gate",
        "model": {"architecture": "matched", "args": {"base": "ppcn-student"}, "init": str(base_dir)},
        "data": {"root": str(pairs_root), "patch_size": 32, "val_fraction": 0.0, **data},
        "loss": {"l1": 1.0},
        "optim": {"lr": 0.01},
        "run": {"max_steps": 3, "batch_size": 8, "threads": 1, "dir": str(tmp_path / "run"), "val_every": 3},
    }
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def student_dir(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "student", build_model("ppcn-student"), "ppcn-student", {})


def test_identity_pairs_are_the_inputs_themselves_and_degraded_map_back(
    tmp_path, pairs_root, clean_root, student_dir
):
    path = config_file(tmp_path, pairs_root, student_dir, identity_share=0.25, degraded_share=0.25)
    trainer = Trainer(load_config(path, [f"data.clean_root={clean_root}"]))
    assert trainer.n_clean == 12 + 2 * 64  # every training pair's DSLR patch, 64 crops per photo
    sampler = StepBatchSampler(
        len(trainer.train_pairs),
        8,
        0,
        0,
        2,
        n_clean=trainer.n_clean,
        identity_share=0.25,
        degraded_share=0.25,
    )
    keys = [k for batch in sampler for k in batch]
    assert sorted({k[2] for k in keys}) == [PAIRS, IDENTITY, DEGRADED]
    for key in keys:
        x, y, source = trainer.train_pairs[key]
        assert source == key[2]
        if source == IDENTITY:
            assert torch.equal(x, y)
        elif source == DEGRADED:
            assert x.shape == y.shape and not torch.equal(x, y)
            # the clean target is a crop of the clean material, not of a phone input
            clean = trainer.train_pairs.clean[key[3]][1]
            assert float(y.mean()) == pytest.approx(float(clean.mean()), abs=0.2)


def test_a_fold_never_sees_its_held_out_dslr_patches(tmp_path, pairs_root, student_dir):
    path = config_file(tmp_path, pairs_root, student_dir, identity_share=0.25)
    trainer = Trainer(load_config(path, ["data.folds=3", "data.fold=1"]))
    _, held_out = split_indices(12, 0, 0.0, 3, 1)
    clean = trainer.train_pairs.clean
    assert isinstance(clean, CleanPatches) and set(clean.indices).isdisjoint(held_out)
    seen = {clean[i][0].numpy().tobytes() for i in range(len(clean))}
    pairs = trainer.train_pairs.pairs
    assert not any(pairs[i][1].numpy().tobytes() in seen for i in held_out)
    assert all(pairs[i][1].numpy().tobytes() in seen for i in clean.indices)


def test_freezing_the_base_trains_only_the_gate(tmp_path, pairs_root, student_dir):
    path = config_file(tmp_path, pairs_root, student_dir, identity_share=0.25)
    trainer = Trainer(load_config(path, ["model.freeze=net."]))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("net."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("gate."))
    rows = (tmp_path / "run" / "log.csv").read_text()
    assert "val_identity_psnr" in rows or trainer.val_set is None
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())
    assert saved["architecture"] == "matched" and saved["args"] == {"base": "ppcn-student"}


def test_gate_learns_direction(tmp_path, student_dir):
    """Identity pairs pull s down on clean inputs; pairs that the base solves keep it up on noisy ones."""
    from dslrify.checkpoint import load_checkpoint

    student = load_checkpoint(student_dir)[0].eval()
    root = tmp_path / "solved"
    (root / "input").mkdir(parents=True)
    (root / "target").mkdir()
    rng = np.random.default_rng(2)
    for i in range(12):
        clean = np.kron(rng.uniform(0.2, 0.8, (4, 4, 3)), np.ones((10, 10, 1)))
        x = torch.from_numpy(np.clip(clean + rng.normal(0, 0.08, clean.shape), 0, 1)).permute(2, 0, 1).float()
        with torch.no_grad():
            y = student(x[None])[0]
        for folder, image in (("input", x), ("target", y)):
            u8 = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(u8).save(root / folder / f"{i}.png")
    path = config_file(tmp_path, root, student_dir, identity_share=0.5)
    trainer = Trainer(load_config(path, ["model.freeze=net.", "run.max_steps=60"]))
    trainer.fit()
    model = trainer.model.eval()
    x, y = zip(*(trainer.train_pairs.pairs[i] for i in range(12)), strict=True)
    with torch.no_grad():
        assert float(model.strength(torch.stack(y)).mean()) + 0.2 < float(
            model.strength(torch.stack(x)).mean()
        )


def test_shipped_default_moves_dslr_patches_less_than_its_network_does(shared_data):
    """The gate's direction on DPED's 39 Canon test patches: closer to themselves than the bare network
    leaves them, and the phone patches still corrected (the shipped trade-off point, see matching.md)."""
    from dslrify import metrics
    from dslrify.data import open_pairs
    from dslrify.zoo import resolve_model

    test = open_pairs(shared_data / "dped", "iphone", split="test")
    x, y = (torch.stack(t) for t in zip(*(test[i] for i in range(len(test))), strict=True))
    model = resolve_model("default")[0]
    assert isinstance(model, MatchedEnhancer)
    q = metrics.quantize_8bit
    with torch.no_grad():
        gated = float(metrics.psnr(q(model(y)), y).mean())
        bare = float(metrics.psnr(q(model.net(y)), y).mean())
        phone = float(metrics.psnr(q(model(x)), y).mean())
    assert gated > bare + 0.5
    assert phone > 24.0
