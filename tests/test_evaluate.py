"""evaluate(): protocol, known scores from toy models, summaries, JSON, paired comparison, strips."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from dslrify.errors import ModelError
from dslrify.evaluate import EvaluationResult, evaluate, make_strip
from dslrify.metrics import psnr

pytestmark = pytest.mark.usefixtures("one_thread")


class TensorPairs(Dataset):
    """In-memory pairs with the naming interface of dslrify's datasets."""

    def __init__(self, inputs: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.targets[i]

    def name(self, i: int) -> str:
        return f"pair/{i}"

    def paths(self, i: int) -> tuple[str, str]:
        return f"in/{i}.png", f"out/{i}.png"


def level_images(n: int, h: int = 32, w: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """8-bit images with values in [0.2, 0.8], so that small offsets are neither clamped nor rounded."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(51, 205, (3, h, w), generator=g).float() / 255 for _ in range(n)]


def offset(levels: int):
    return lambda x: x + levels / 255


@pytest.fixture
def same_pairs() -> TensorPairs:
    images = level_images(5)
    return TensorPairs(images, images)


def test_an_offset_model_scores_the_known_psnr_and_identity_is_perfect(same_pairs):
    result = evaluate({"identity": lambda x: x, "plus26": offset(26)}, same_pairs, batch_size=2)
    plus = result.summary("plus26")
    assert plus.psnr == pytest.approx(20 * math.log10(255 / 26), abs=1e-4)
    assert plus.psnr_ci == pytest.approx((plus.psnr, plus.psnr), abs=1e-4)  # every pair scores the same
    ident = result.summary("identity")
    assert ident.psnr == math.inf and ident.ssim == pytest.approx(1) and ident.ms_ssim == pytest.approx(1)
    assert ident.delta_e == pytest.approx(0, abs=1e-5)
    assert plus.ssim < 1 and plus.delta_e > 1
    assert ident.n == plus.n == 5


def test_outputs_are_clamped_and_rounded_to_8_bit_before_scoring(same_pairs):
    result = evaluate({"blown": lambda x: x + 10, "tiny": lambda x: x + 0.4 / 255}, same_pairs)
    targets = torch.stack(same_pairs.targets)
    expected = psnr(torch.ones_like(targets), targets).double().numpy()
    np.testing.assert_allclose(result.values["blown"]["psnr"], expected, rtol=1e-6)
    assert np.isinf(result.values["tiny"]["psnr"]).all()  # +0.4 levels rounds back to the target


def test_compare_gives_paired_differences_with_the_right_sign():
    targets = level_images(12, seed=1)
    result = evaluate({"near": offset(5), "far": offset(20)}, TensorPairs(targets, targets))
    diff = result.compare("near", "far")
    assert diff["psnr"].mean == pytest.approx(20 * math.log10(20 / 5), abs=1e-3)
    assert diff["psnr"].low > 0 and diff["ssim"].low > 0 and diff["ms_ssim"].low > 0
    assert diff["delta_e"].high < 0  # lower colour error is better
    assert result.compare("far", "near")["psnr"].mean == pytest.approx(-diff["psnr"].mean)
    with pytest.raises(KeyError, match="have: near, far"):
        result.compare("near", "nope")


def test_to_json_has_one_entry_per_model_with_the_documented_fields(same_pairs):
    result = evaluate({"a": offset(3), "b": offset(7)}, same_pairs)
    data = json.loads(json.dumps(result.to_json()))
    assert [m["model"] for m in data["models"]] == ["a", "b"]
    for entry in data["models"]:
        assert {
            "model",
            "psnr",
            "psnr_ci",
            "ssim",
            "ssim_ci",
            "ms_ssim",
            "delta_e",
            "images_per_s",
            "n",
        } <= set(entry)
        assert entry["n"] == 5 and len(entry["psnr_ci"]) == len(entry["ssim_ci"]) == 2
        assert entry["psnr_ci"][0] <= entry["psnr"] <= entry["psnr_ci"][1]
        assert entry["images_per_s"] > 0 and entry["megapixels_per_s"] > 0


def test_per_image_rows_cover_every_model_and_pair(same_pairs):
    result = evaluate({"a": offset(3), "b": offset(7)}, same_pairs)
    rows = result.per_image_rows()
    assert len(rows) == 10
    assert rows[0].keys() == {"model", "pair", "input", "target", "psnr", "ssim", "ms_ssim", "delta_e"}
    assert (rows[6]["model"], rows[6]["pair"], rows[6]["input"]) == ("b", "pair/1", "in/1.png")
    assert rows[6]["psnr"] == pytest.approx(20 * math.log10(255 / 7), abs=1e-4)


def test_mixed_sizes_are_batched_separately_and_progress_reaches_the_total():
    images = level_images(3, 32, 32) + level_images(2, 40, 48, seed=5)
    seen: list[tuple[int, ...]] = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x

    ticks: list[tuple[int, int]] = []
    evaluate(
        {"r": recording},
        TensorPairs(images, images),
        batch_size=2,
        progress=lambda d, t: ticks.append((d, t)),
    )
    # The first batch is seen twice: one untimed warm-up call, then the timed one.
    assert seen == [(2, 3, 32, 32), (2, 3, 32, 32), (1, 3, 32, 32), (2, 3, 40, 48)]
    assert ticks == [(2, 5), (3, 5), (5, 5)]


def test_save_images_writes_input_output_target_strips_per_model_and_pair(tmp_path, same_pairs):
    evaluate({"plus 26": offset(26)}, same_pairs, save_images=tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert files == [f"plus_26/pair_{i}.png" for i in range(5)]
    strip = np.asarray(Image.open(tmp_path / "plus_26" / "pair_3.png"))
    assert strip.shape == (32, 3 * 32 + 2 * 4, 3)
    target = (same_pairs.targets[3] * 255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(strip[:, :32], target)  # input equals target in this dataset
    np.testing.assert_array_equal(strip[:, 36:68], target + 26)
    np.testing.assert_array_equal(strip[:, 72:], target)
    assert (strip[:, 32:36] == 255).all()


def test_make_strip_clamps_out_of_range_outputs():
    x = torch.zeros(3, 2, 2)
    strip = make_strip(x, x + 5, x - 5, gap=1)
    assert strip.dtype == np.uint8 and strip.shape == (2, 8, 3)
    assert (strip[:, 3:5] == 255).all() and (strip[:, 6:] == 0).all()


def test_bad_models_fail_loudly(same_pairs):
    with pytest.raises(ModelError, match="returned \\(5, 3, 16, 16\\)"):
        evaluate({"half": lambda x: x[..., ::2, ::2]}, same_pairs, batch_size=5)
    with pytest.raises(ModelError, match="NaN"):
        evaluate({"nan": lambda x: x * float("nan")}, same_pairs)
    with pytest.raises(ModelError, match="training mode"):
        evaluate({"train": torch.nn.Identity()}, same_pairs)
    with pytest.raises(ValueError, match="no models"):
        evaluate({}, same_pairs)


def test_evaluate_prints_nothing(capsys, same_pairs):
    evaluate({"a": offset(3)}, same_pairs, save_images=None)
    assert capsys.readouterr() == ("", "")


def test_identity_baseline_on_real_dped_test_patches_gives_the_readme_17_64_db(shared_data):
    from dslrify.data import DPEDDataset

    result: EvaluationResult = evaluate(
        {"identity": lambda x: x}, DPEDDataset(shared_data / "dped", split="test")
    )
    s = result.summary("identity")
    assert s.n == 39 and round(s.psnr, 2) == 17.64
    assert s.psnr_ci[0] < 17.64 < s.psnr_ci[1]
    assert s.ssim == pytest.approx(0.6906, abs=5e-4)  # measured here; SSIM 7-tap, sigma 1.5, RGB
    assert result.pair_names[:3] == ["0", "1", "2"]


def test_the_result_writes_its_own_csv_json_and_table(tmp_path, same_pairs):
    import csv

    from rich.console import Console

    result = evaluate({"identity": lambda x: x, "plus 26": offset(26)}, same_pairs)
    result.write_csv(tmp_path / "summary.csv")
    result.write_per_image_csv(tmp_path / "pairs.csv")
    result.write_json(tmp_path / "summary.json")
    with (tmp_path / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["identity", "plus 26"]
    assert float(rows[1]["psnr"]) == pytest.approx(result.summary("plus 26").psnr)
    with (tmp_path / "pairs.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2 * len(same_pairs)
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(result.to_json()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv", "summary.csv", "summary.json"]

    console = Console(width=200, record=True, markup=False)
    console.print(result.table("toy"))
    text = console.export_text()
    s = result.summary("plus 26")
    (row,) = [line for line in text.splitlines() if "plus 26" in line]
    assert f"{s.psnr:.2f} ({s.psnr_ci[0]:.2f}–{s.psnr_ci[1]:.2f})" in row and f"{s.ms_ssim:.4f}" in row
    (line,) = result.comparison_lines()
    assert line.startswith("plus 26 − identity: PSNR")


def test_the_evaluate_table_is_not_cut_when_output_is_not_a_terminal(tmp_path, photo_array):
    from typer.testing import CliRunner

    from conftest import random_unet
    from dslrify.checkpoint import save_checkpoint
    from dslrify.cli import app

    for sub in ("input", "target"):
        (tmp_path / "data" / sub).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(photo_array[: 32 + i, :32]).save(tmp_path / "data" / sub / f"{i}.png")
    name = "a_model_with_a_rather_long_name_for_the_table"
    args = {"width": 8, "depth": 3, "global_width": 16}
    model = save_checkpoint(tmp_path / name, random_unet(), "unet", args, {"data": "test"})
    cmd = ["evaluate", "--data", str(tmp_path / "data"), "--model", str(model), "--baseline", "identity"]
    result = CliRunner().invoke(app, [*cmd, "--baseline", "auto-levels", "--csv", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if name in line and "│" in line]
    assert len(rows) == 1, result.output
    assert re.search(r"\d+\.\d\d \(\d+\.\d\d–\d+\.\d\d\).*\d\.\d{4} \(\d\.\d{4}–\d\.\d{4}\)", rows[0]), rows[
        0
    ]
    assert (tmp_path / "s.csv").is_file()
