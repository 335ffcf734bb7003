"""A DPED user's workflow through the CLI: import the released model, evaluate it, enhance with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from dslrify.cli import app
from dslrify.data import full_size_test_images
from dslrify.enhancer import Enhancer
from dslrify.metrics import quantize_8bit
from dslrify.photo import read_rgb

runner = CliRunner()


@pytest.fixture(scope="module")
def dped_iphone(tmp_path_factory, shared_data) -> Path:
    out = tmp_path_factory.mktemp("models") / "dped-iphone"
    result = runner.invoke(
        app, ["import-dped", str(shared_data / "dped-checkpoints/iphone_orig"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_evaluate_reproduces_dpeds_published_protocol_figures(dped_iphone, shared_data, tmp_path):
    report = tmp_path / "report.json"
    per_image = tmp_path / "pairs.csv"
    args = [
        "evaluate",
        "--data",
        str(shared_data / "dped"),
        "--model",
        str(dped_iphone),
        "--baseline",
        "identity",
        "--json",
        str(report),
        "--per-image",
        str(per_image),
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    models = {m["model"]: m for m in json.loads(report.read_text())["models"]}
    assert models["dped-iphone"]["psnr"] == pytest.approx(23.04, abs=0.02)
    assert models["dped-iphone"]["ssim"] == pytest.approx(0.801, abs=0.002)
    assert models["identity"]["psnr"] == pytest.approx(17.64, abs=0.01)
    assert models["dped-iphone"]["n"] == 39
    assert len(per_image.read_text().splitlines()) == 1 + 2 * 39
    assert "dped-iphone − identity: PSNR +5.39" in result.output


@pytest.mark.slow
def test_enhance_gives_the_pixels_of_the_dataset_path_on_a_full_size_photo(
    dped_iphone, shared_data, tmp_path
):
    photo = full_size_test_images(shared_data / "dped", "iphone")[0]
    result = runner.invoke(app, ["enhance", str(photo), "-o", str(tmp_path), "--model", str(dped_iphone)])
    assert result.exit_code == 0, result.output
    via_cli = np.asarray(Image.open(tmp_path / f"{photo.stem}_dslr.png").convert("RGB"))
    assert via_cli.shape == (720, 1280, 3)
    x = torch.from_numpy(read_rgb(photo).copy()).permute(2, 0, 1)[None].float() / 255
    model = Enhancer(dped_iphone, device="cpu").model
    with torch.inference_mode():
        y = quantize_8bit(model(x))[0].permute(1, 2, 0).numpy()
    assert np.array_equal(via_cli, np.round(y * 255).astype(np.uint8))
