"""Xia et al.'s 2018 system: the 32-block generator, the gradient texture loss, and its training recipe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from dslrify import losses as L
from dslrify.checkpoint import load_checkpoint
from dslrify.cli import app
from dslrify.enhancer import Enhancer
from dslrify.models import build_model
from dslrify.models.vgg import expected_shapes
from dslrify.models.xia2018 import Xia2018Generator
from dslrify.train.config import LossConfig, load_config

CONFIGS = Path(__file__).parents[1] / "configs"
SMALL = {"channels": 8, "blocks": 2}
pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: OpenMP start-up would dominate
runner = CliRunner()


def _parameters(channels: int, blocks: int) -> int:
    """Counted layer by layer from the source's ``resnet()`` (with a 3-channel first convolution)."""
    c = channels
    head = 9 * 9 * 3 * c + c
    block = 2 * (3 * 3 * c * c + c) + 2 * (c + c)  # two convs, two norms (scale and shift)
    middle = 2 * (3 * 3 * c * c + c)
    tail = 9 * 9 * c * 3 + 3
    return head + blocks * block + middle + tail


def random_xia(seed: int = 0, std: float | None = None, **args: int) -> Xia2018Generator:
    """A small generator whose convolutions and norms are random, so that no path is negligible.

    ``std`` None: He-scaled convolution weights (a working network); a number: that std for every weight.
    """
    torch.manual_seed(seed)
    model = build_model("xia2018", {**SMALL, **args})
    assert isinstance(model, Xia2018Generator)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.copy_(torch.rand_like(p) + 0.5)
            elif name.endswith("shift"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif p.dim() == 4:
                p.normal_(0, std if std is not None else (2 / p[0].numel()) ** 0.5)
            else:
                p.normal_(0, 0.05)
    return model.eval()


def _half_dark(seed: int, height: int = 90, width: int = 120) -> torch.Tensor:
    """A random photo whose right half is darker: per-tile statistics would differ from the photo's."""
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    x[:, :, :, width // 2 :] *= 0.3
    return x


# --- the generator ----------------------------------------------------------------------------------


def test_parameter_count_follows_the_source_layer_list() -> None:
    assert sum(p.numel() for p in build_model("xia2018").parameters()) == _parameters(64, 32) == 2_476_611
    for channels, blocks in ((8, 2), (5, 0), (16, 3)):
        model = Xia2018Generator(channels, blocks)
        assert sum(p.numel() for p in model.parameters()) == _parameters(channels, blocks)
        assert model.spec.receptive_field == 10 + 2 * blocks and model.spec.context == "moments"


def test_shape_and_the_source_initialisation() -> None:
    model = build_model("xia2018", SMALL).eval()
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    # The source's N(0, 0.01) weights: the untrained network starts as a flat grey near 0.5.
    assert (y - 0.5).abs().max() < 0.05
    with torch.no_grad():
        weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, torch.nn.Conv2d)])
    assert weights.abs().max() <= 0.02 and 0.008 < float(weights.std()) < 0.01


def test_declared_receptive_field_is_exact() -> None:
    model = random_xia(blocks=3).double()
    x = torch.rand(1, 3, 80, 80, dtype=torch.float64, requires_grad=True)
    context = model.compute_context(x.detach())
    model(x, context)[0, :, 40, 40].sum().backward()
    assert x.grad is not None
    rows = x.grad[0].abs().sum(dim=(0, 2)).nonzero().flatten()
    r = model.spec.receptive_field
    assert int(rows.min()) == 40 - r and int(rows.max()) == 40 + r


def test_gradients_reach_every_parameter_and_the_input() -> None:
    model = random_xia().train()
    x = torch.rand(2, 3, 24, 24, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0, name


@pytest.mark.parametrize(
    "colour", [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
)
def test_output_stays_in_range_on_flat_and_saturated_inputs(colour: tuple[float, float, float]) -> None:
    """A flat photo has zero variance in every norm; large weights drive tanh to its ends."""
    model = random_xia(std=0.5)
    x = torch.tensor(colour).view(1, 3, 1, 1).expand(1, 3, 20, 30).contiguous()
    x[:, :, :, 15:] = 1 - x[:, :, :, 15:]  # and a hard edge to the complementary colour
    with torch.no_grad():
        raw = model.enhance(x, None, None)  # before forward's clamp: the network's own range
        out = model(x)
    assert torch.isfinite(raw).all()
    assert float(raw.min()) >= 0 and float(raw.max()) <= 1  # tanh * 0.5 + 0.5, not DPED's 0.58
    assert float(raw.max() - raw.min()) > 0.9  # saturated for real
    torch.testing.assert_close(out, raw, rtol=0, atol=0)


def test_tiled_output_equals_the_whole_photo() -> None:
    model = random_xia()
    x = _half_dark(0)
    whole = Enhancer(model, device="cpu", tile=0).enhance_tensor(x)
    tiled = Enhancer(model, device="cpu", tile=64).enhance_tensor(x)
    assert (tiled - whole).abs().max() < 1e-5
    with torch.no_grad():
        alone = model(x[:, :, :, 60:])  # the right half on its own normalises differently
    assert (alone - whole[:, :, :, 60:]).abs().max() > 0.01


def test_threads_sharing_one_enhancer_get_identical_outputs() -> None:
    model = random_xia()
    enhancer = Enhancer(model, device="cpu", tile=64)
    photos = [_half_dark(seed, 70, 100) for seed in range(4)]
    alone = [enhancer.enhance_tensor(x) for x in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        shared = list(pool.map(enhancer.enhance_tensor, photos))
    for i, y in enumerate(shared):
        assert torch.equal(y, alone[i]), i


def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dslrify.export import check_parity, export_onnx

    model = random_xia()
    path = tmp_path / "xia.onnx"
    report = export_onnx(model, path, sizes=((45, 61),))
    assert max(report.max_abs_diff.values()) <= 1e-4, report.max_abs_diff
    diffs = check_parity(path, model, sizes=((32, 100),), batch=2)
    assert max(diffs.values()) <= 1e-4, diffs


# --- the gradient texture loss ---------------------------------------------------------------------


def test_gradient_loss_on_a_hand_made_example() -> None:
    output = torch.tensor([[0.0, 0.2, 0.4], [0.6, 0.0, 1.0]]).view(1, 1, 2, 3)
    target = torch.zeros_like(output)
    # Horizontal differences 0.2, 0.2 / -0.6, 1.0: mean |.| 0.5. Vertical 0.6, -0.2, 0.6: mean 1.4 / 3.
    expected = 0.5 + 1.4 / 3
    assert L.gradient_loss(output, target).item() == pytest.approx(expected, rel=1e-6)
    assert L.GradientLoss()(output, target).item() == pytest.approx(expected, rel=1e-6)
    # Only the differences count: a shifted target with the same edges costs nothing.
    assert L.gradient_loss(output, output + 0.25).item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_loss_is_zero_for_identical_images_and_symmetric() -> None:
    a, b = torch.rand(2, 3, 9, 11), torch.rand(2, 3, 9, 11)
    assert L.gradient_loss(a, a.clone()).item() == 0.0
    assert L.gradient_loss(a, b).item() == pytest.approx(L.gradient_loss(b, a).item())
    assert L.gradient_loss(a, b).item() > 0


def test_gradient_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        L.gradient_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="H, W >= 2"):
        L.gradient_loss(torch.rand(1, 3, 1, 8), torch.rand(1, 3, 1, 8))


def test_gradient_loss_gradient_flows() -> None:
    output = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 2, 5, 6, dtype=torch.float64)
    L.gradient_loss(output, target).backward()
    assert output.grad is not None and float(output.grad.abs().sum()) > 0
    assert torch.autograd.gradcheck(lambda o: L.gradient_loss(o, target), (output,), fast_mode=True)


# --- the recipe ---------------------------------------------------------------------------------


def test_recipe_holds_the_authors_settings_and_builds_their_model() -> None:
    config = load_config(CONFIGS / "xia2018.yaml")
    loss = config.loss
    assert (loss.perceptual, loss.perceptual_layer, loss.color, loss.gradient, loss.tv) == (
        1.0,
        "relu5_4",
        0.1,
        0.4,
        400.0,
    )
    assert loss.l1 == loss.mse == loss.ssim == loss.ms_ssim == loss.adversarial == 0.0
    assert (config.optim.lr, config.run.batch_size, config.run.max_steps) == (1e-4, 50, 20_000)
    assert config.data.patch_size == 100 and config.schedule.kind == "constant"
    model = build_model(config.model.architecture, config.model.args)
    assert isinstance(model, Xia2018Generator) and len(model.blocks) == 32
    # The new weight is off everywhere else, so no other recipe changes.
    assert LossConfig().gradient == 0.0
    for path in CONFIGS.glob("*.yaml"):
        if path.stem != "xia2018":
            assert load_config(path).loss.gradient == 0.0, path.name


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 pairs of 40x40 photos; the target is a tone/colour change of the input."""
    root = tmp_path_factory.mktemp("pairs")
    (root / "input").mkdir()
    (root / "target").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        x = np.clip(np.kron(rng.uniform(0.1, 0.9, (5, 5, 3)), np.ones((8, 8, 1))), 0, 1)
        y = np.clip(x**0.8 * np.array([1.05, 1.0, 0.9]), 0, 1)
        Image.fromarray((x * 255).round().astype(np.uint8)).save(root / "input" / f"{i}.png")
        Image.fromarray((y * 255).round().astype(np.uint8)).save(root / "target" / f"{i}.png")
    return root


def test_offline_training_stops_at_start_with_the_way_out(
    tmp_path: Path, pairs_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.hub.set_dir(str(tmp_path / "hub"))

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    run = tmp_path / "run"
    args = ["train", str(CONFIGS / "xia2018.yaml"), "--set", f"data.root={pairs_root}"]
    result = runner.invoke(app, [*args, "--set", f"run.dir={run}"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "VGG-19" in lines[0] and "--set loss.perceptual_weights=" in lines[0]
    assert "--set loss.perceptual=0" in lines[0]
    assert not run.exists()


def test_tiny_recipe_trains_writes_a_checkpoint_and_resumes(tmp_path: Path, pairs_root: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    vgg = {k: torch.randn(s, generator=gen) * 0.05 for k, s in expected_shapes().items()}
    save_file(vgg, str(tmp_path / "vgg19.safetensors"))  # a stand-in for the real VGG-19 weights
    config = yaml.safe_load((CONFIGS / "xia2018.yaml").read_text())
    config["model"]["args"] = SMALL
    config["data"].update(root=str(pairs_root), patch_size=32, val_fraction=0.25)
    config["loss"]["perceptual_weights"] = str(tmp_path / "vgg19.safetensors")
    run = tmp_path / "run"
    config["run"] = {
        "max_steps": 2,
        "batch_size": 2,
        "val_every": 2,
        "checkpoint_every": 1,
        "log_every": 1,
        "threads": 1,
        "dir": str(run),
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    model, cfg = load_checkpoint(run / "last")
    assert isinstance(model, Xia2018Generator) and cfg["architecture"] == "xia2018"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    header, *rows = (run / "log.csv").read_text().splitlines()
    assert {"perceptual", "color", "gradient", "tv"} <= set(header.split(",")) and len(rows) == 2

    result = runner.invoke(app, ["train", "--resume", str(run), "--set", "run.max_steps=3"])
    assert result.exit_code == 0, result.output
    assert "done at step 3" in result.output
    after, _ = load_checkpoint(run / "last")
    assert len((run / "log.csv").read_text().splitlines()) == 4  # steps 1, 2 and the resumed 3
    assert any(not torch.equal(before[k], v) for k, v in after.state_dict().items())
