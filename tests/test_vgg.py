"""VGG-19 feature extractor and its weights: key layout, loading, errors, and the (faked) download.

No test touches the network: ``torch.hub.download_url_to_file`` fails the test unless a test replaces it.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import dslrify.models.vgg as vgg
from dslrify.errors import DslrifyError
from dslrify.models.vgg import (
    LAYER_INDEX,
    VGG19_SHA256,
    VGG19_URL,
    VGGFeatures,
    expected_shapes,
    load_vgg19_weights,
)

TORCHVISION_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def fake_torchvision_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under torchvision's vgg19 key names; tiny classifier stand-ins (they are dropped)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected_shapes().items():
        fan_in = shape[1] * 9 if len(shape) == 4 else 1
        state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    state["classifier.0.weight"] = torch.randn(4, 4, generator=gen)
    state["classifier.6.bias"] = torch.randn(4, generator=gen)
    return state


@pytest.fixture(scope="module")
def fake_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("vgg")
    state = fake_torchvision_state_dict()
    pth, st = folder / "vgg19.pth", folder / "vgg19.safetensors"
    torch.save(state, pth)
    save_file(state, str(st))
    return {"state": state, "pth": pth, "safetensors": st}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail("a test tried to download the VGG weights")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Recording the current value first makes monkeypatch restore it after the test.
    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)
    torch.hub.set_dir(str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_state_dict_keys_are_torchvision_vgg19_feature_keys(fake_checkpoint: dict) -> None:
    weights = {k: v for k, v in fake_checkpoint["state"].items() if k.startswith("features.")}
    model = VGGFeatures("relu5_4", weights)
    expected = {f"features.{i}.{p}" for i in TORCHVISION_CONV_INDICES for p in ("weight", "bias")}
    assert set(model.state_dict()) == expected
    assert [LAYER_INDEX[f"conv{b}_1"] for b in range(1, 6)] == [0, 5, 10, 19, 28]
    assert LAYER_INDEX["relu5_4"] == 35 and LAYER_INDEX["pool5"] == 36


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_load_full_torchvision_checkpoint_keeps_features_and_values(fake_checkpoint: dict, fmt: str) -> None:
    weights = load_vgg19_weights(str(fake_checkpoint[fmt]))
    state = fake_checkpoint["state"]
    assert set(weights) == set(expected_shapes())  # classifier.* dropped
    model = VGGFeatures("relu5_4", weights)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("layer", "size", "shape"),
    [
        ("relu1_2", 16, (1, 64, 16, 16)),
        ("relu2_2", 16, (1, 128, 8, 8)),
        ("relu3_4", 16, (1, 256, 4, 4)),
        ("relu4_4", 16, (1, 512, 2, 2)),
        ("relu5_4", 64, (1, 512, 4, 4)),
        ("pool5", 32, (1, 512, 1, 1)),
    ],
)
def test_feature_shapes_from_a_checkpoint_path(
    fake_checkpoint: dict, layer: str, size: int, shape: tuple
) -> None:
    model = VGGFeatures(layer, fake_checkpoint["pth"])
    features = model(torch.rand(1, 3, size, size))
    assert tuple(features.shape) == shape
    if layer.startswith("relu"):
        assert features.min() >= 0 and features.max() > 0


def test_bare_features_module_state_dict_is_accepted(fake_checkpoint: dict) -> None:
    # A state dict of `vgg19().features` has keys "0.weight", "0.bias", ...
    full = fake_checkpoint["state"]
    bare = {k.removeprefix("features."): v for k, v in full.items() if k.startswith("features.")}
    model = VGGFeatures("relu2_2", bare)
    torch.testing.assert_close(model.features[5].weight, full["features.5.weight"])


def test_imagenet_normalisation_happens_inside() -> None:
    weights = {k: torch.zeros(s) for k, s in expected_shapes(0).items()}
    for c in range(3):  # out channel c copies in channel c: the conv shows what it was fed
        weights["features.0.weight"][c, c, 1, 1] = 1.0
    model = VGGFeatures("conv1_1", weights)
    x = torch.rand(1, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(model(x)[:, :3], (x - mean) / std)


def test_extractor_is_frozen_but_passes_gradients_to_its_input(fake_checkpoint: dict) -> None:
    model = VGGFeatures("relu2_2", fake_checkpoint["state"])
    model.train()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_partial_checkpoint_serves_shallow_layers_but_names_the_missing_key_for_deeper() -> None:
    shallow = {k: torch.zeros(s) for k, s in expected_shapes(LAYER_INDEX["relu1_2"]).items()}
    VGGFeatures("relu1_2", shallow)
    with pytest.raises(DslrifyError, match=re.escape("missing key 'features.5.weight'")):
        VGGFeatures("relu2_2", shallow)


def test_wrong_shape_names_key_and_shapes(fake_checkpoint: dict) -> None:
    weights = dict(fake_checkpoint["state"])
    weights["features.2.weight"] = torch.zeros(64, 32, 3, 3)
    with pytest.raises(
        DslrifyError, match=r"'features\.2\.weight' has shape \(64, 32, 3, 3\), expected \(64, 64"
    ):
        VGGFeatures("relu5_4", weights)


def test_batch_norm_vgg_keys_are_rejected(fake_checkpoint: dict) -> None:
    weights = dict(fake_checkpoint["state"])
    weights["features.1.running_mean"] = torch.zeros(64)
    with pytest.raises(DslrifyError, match="unexpected key 'features.1.running_mean'"):
        VGGFeatures("relu1_2", weights)


def test_unknown_layer_lists_valid_names() -> None:
    with pytest.raises(DslrifyError, match="unknown VGG-19 layer 'relu6_1'.*relu5_4"):
        VGGFeatures("relu6_1", {})


def test_missing_file_gives_advice(tmp_path: Path) -> None:
    with pytest.raises(DslrifyError, match="does not exist.*perceptual"):
        load_vgg19_weights(tmp_path / "nope.pth")


def test_checkpoint_without_vgg_keys_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(DslrifyError, match="no VGG-19 `features.\\*` weights"):
        load_vgg19_weights(path)


class NotATensor:
    """A pickled object that ``weights_only=True`` must refuse to unpickle."""


def test_pth_is_loaded_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": NotATensor()}, path)
    with pytest.raises(DslrifyError, match="holds a pickled .*NotATensor, not just tensors") as info:
        load_vgg19_weights(path)
    assert "weights_only` set to `False" not in str(info.value)  # torch's unsafe suggestion is not passed on


@pytest.mark.parametrize("name", ["cut.pth", "cut.safetensors"])
def test_corrupt_file_error_is_one_line(tmp_path: Path, fake_checkpoint: dict, name: str) -> None:
    source = fake_checkpoint["pth" if name.endswith(".pth") else "safetensors"]
    path = tmp_path / name
    path.write_bytes(Path(source).read_bytes()[:5000])  # an interrupted copy
    with pytest.raises(DslrifyError, match="could not read VGG-19 weights") as info:
        load_vgg19_weights(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 500


def test_pinned_checksum_matches_the_file_name() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", VGG19_SHA256)
    assert VGG19_URL.endswith(f"vgg19-{VGG19_SHA256[:8]}.pth")


def test_failed_download_explains_every_way_out(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        calls.append((url, dst))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    expected_path = hub_dir / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(DslrifyError) as info:
        VGGFeatures("relu5_4")  # no weights: the published checkpoint
    message = str(info.value)
    assert calls == [(VGG19_URL, str(expected_path))]
    assert "\n" not in message
    assert "could not download" in message and "name resolution" in message
    assert f"curl -L -o {expected_path} {VGG19_URL}" in message
    assert "loss.perceptual_weights=" in message and "safetensors" in message
    assert "perceptual/content loss by setting its weight to 0 (`--set loss.perceptual=0`)" in message
    assert not expected_path.exists()


def test_downloaded_file_with_wrong_checksum_is_removed(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        Path(dst).write_bytes(b"<html>captive portal</html>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(DslrifyError, match=f"checksum mismatch.*expected {VGG19_SHA256}"):
        load_vgg19_weights()
    assert not (hub_dir / "checkpoints" / "vgg19-dcbb9e9d.pth").exists()


def test_cached_file_with_wrong_checksum_is_reported_not_deleted(hub_dir: Path) -> None:
    cached = hub_dir / "checkpoints" / "vgg19-dcbb9e9d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    with pytest.raises(DslrifyError, match="checksum mismatch.*delete it"):
        load_vgg19_weights()  # the autouse fixture fails the test if this downloads
    assert cached.exists()


def test_verified_download_is_loaded(
    hub_dir: Path, fake_checkpoint: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = Path(fake_checkpoint["pth"]).read_bytes()
    monkeypatch.setattr(vgg, "VGG19_SHA256", hashlib.sha256(data).hexdigest())

    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        Path(dst).write_bytes(data)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    weights = load_vgg19_weights()
    torch.testing.assert_close(weights["features.34.bias"], fake_checkpoint["state"]["features.34.bias"])
    assert (hub_dir / "checkpoints" / "vgg19-dcbb9e9d.pth").exists()
