"""`dslrify pairs build`: alignment against known homographies, rejection, patches, DPED layout, report.

Each "DSLR" photo is synthesised from a scene with a known homography (a few degrees of rotation, 1.3-2x
the phone's resolution, translation, mild perspective), a colour change, blur and noise, so the recovered
alignment can be compared with the truth on a grid of phone-frame points.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dslrify.checkpoint import load_checkpoint
from dslrify.cli import app
from dslrify.data import DPEDDataset
from dslrify.errors import DataError
from dslrify.evaluate import evaluate
from dslrify.pairs import align_pair, build_dataset, grid_rms, local_error, match_photos, warp_to_phone
from dslrify.pairs.build import choose_test
from dslrify.train.config import load_config
from dslrify.train.trainer import Trainer

PHONE = (360, 480)  # (H, W) of the synthetic phone photos


def textured_scene(seed: int, h: int = 900, w: int = 1140) -> np.ndarray:
    """(h, w, 3) uint8: smooth colour ramps, multi-scale noise, shapes and numbers, all seeded."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 120 + 40, yy / h * 120 + 60, np.full_like(xx, 110)], -1)
    for s in (64, 16, 4):
        coarse = rng.normal(0, 30, (h // s + 1, w // s + 1)).astype(np.float32)
        img += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    img = np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))
    for _ in range(200):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y, kind = int(rng.integers(0, w)), int(rng.integers(0, h)), rng.integers(0, 3)
        if kind == 0:
            cv2.circle(img, (x, y), int(rng.integers(4, 40)), c, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 80)), y + int(rng.integers(5, 80))), c, -1)
        else:
            text = str(int(rng.integers(0, 10**6)))
            cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 2)), c, 2)
    return img


def synth_pair(
    scene: np.ndarray, seed: int, scale: float = 1.6, degrees: float = 3.0, phone: tuple[int, int] = PHONE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phone, dslr, H) where H maps DSLR pixels to phone pixels: the phone photo is the middle of the
    scene at half resolution (area-averaged, noisy); the DSLR photo sees it through ``H`` at ``scale``
    times the resolution, with other colours (gamma 0.8, channel gains), blur and noise."""
    rng = np.random.default_rng(seed)
    scene = scene[: scene.shape[0] // 2 * 2, : scene.shape[1] // 2 * 2]  # exact 2x: known geometry
    half = cv2.resize(scene, (scene.shape[1] // 2, scene.shape[0] // 2), interpolation=cv2.INTER_AREA)
    my, mx = (half.shape[0] - phone[0]) // 2, (half.shape[1] - phone[1]) // 2
    phone_img = half[my : my + phone[0], mx : mx + phone[1]].astype(np.float32)
    to_phone = np.array([[0.5, 0, -0.25 - mx], [0, 0.5, -0.25 - my], [0, 0, 1]])  # scene -> phone
    t = math.radians(degrees)
    rotate = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, rng.uniform(10, 30)], [0, 1, rng.uniform(-30, 0)], [0, 0, 1]])
    perspective = np.array([[1, 0, 0], [0, 1, 0], [2e-5, -1.5e-5, 1]])
    h = shift @ rotate @ perspective @ np.diag([1 / scale, 1 / scale, 1])
    h /= h[2, 2]
    size = (int(phone[1] * scale * 0.95), int(phone[0] * scale * 0.95))  # a slightly narrower view
    dslr = cv2.warpPerspective(
        cv2.GaussianBlur(scene, (0, 0), 0.6), np.linalg.inv(h) @ to_phone, size,
        flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT,
    ).astype(np.float32) / 255  # fmt: skip
    dslr = np.clip(dslr**0.8 * np.float32([1.08, 1.0, 0.9]), 0, 1) * 255
    dslr = cv2.GaussianBlur(dslr, (0, 0), 0.8) + rng.normal(0, 2.0, dslr.shape)
    phone_img += rng.normal(0, 3.0, phone_img.shape)
    return (*(np.clip(a, 0, 255).round().astype(np.uint8) for a in (phone_img, dslr)), h)  # type: ignore


def real_photo(data: Path) -> np.ndarray:
    return np.asarray(Image.open(data / "photos" / "Picture_1A_by_freespace.jpg").convert("RGB"))


# --- alignment ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "degrees"), [(1.3, 3.0), (2.0, -4.0)])
def test_synthetic_pair_aligns_within_half_a_pixel(scale, degrees):
    phone, dslr, truth = synth_pair(textured_scene(1), seed=5, scale=scale, degrees=degrees)
    a = align_pair(phone, dslr)
    assert a.ok and a.refined, a.reason
    assert grid_rms(a.homography, truth, phone.shape) < 0.5
    assert a.inliers > 200 and a.ecc > 0.9 and a.reprojection_error < 1.0
    assert 0.7 < a.overlap < 1.0  # the DSLR view is narrower: part of the phone frame is uncovered


def test_real_photo_pair_aligns_within_half_a_pixel(shared_data):
    phone, dslr, truth = synth_pair(real_photo(shared_data), seed=7, scale=1.6, phone=(480, 600))
    a = align_pair(phone, dslr)
    assert a.ok, a.reason
    assert grid_rms(a.homography, truth, phone.shape) < 0.5
    assert a.inliers > 200 and a.ecc > 0.8


def test_wrong_and_featureless_pairs_are_rejected():
    phone = synth_pair(textured_scene(1), seed=5)[0]
    a = align_pair(phone, synth_pair(textured_scene(2), seed=6)[1])
    assert not a.ok and re.search("matches|inliers|degenerate|ECC", a.reason), a.reason
    flat = np.full((300, 400, 3), 128, np.uint8)
    a = align_pair(phone, flat)
    assert not a.ok and "no features" in a.reason
    good = synth_pair(textured_scene(1), seed=5)
    strict = align_pair(good[0], good[1], min_ecc=0.999)  # the last gate: dense correlation
    assert not strict.ok and "ECC correlation" in strict.reason


def test_a_real_photo_is_rejected_as_the_partner_of_another_scene(shared_data):
    phone = synth_pair(textured_scene(1), seed=5)[0]
    a = align_pair(phone, synth_pair(real_photo(shared_data), seed=6)[1])
    assert not a.ok and re.search("matches|inliers|degenerate|ECC", a.reason), a.reason


def test_warp_to_phone_reproduces_the_phone_view():
    phone, dslr, truth = synth_pair(textured_scene(3), seed=1, scale=1.8)
    a = align_pair(phone, dslr)
    warped, valid = warp_to_phone(dslr, a, phone.shape)
    assert warped.shape == phone.shape and valid.shape == phone.shape[:2]
    assert 0.6 < valid.mean() < 0.95  # the uncovered border is marked invalid
    g1 = cv2.cvtColor(phone, cv2.COLOR_RGB2GRAY)[valid].astype(float)
    g2 = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY)[valid].astype(float)
    assert np.corrcoef(g1, g2)[0, 1] > 0.95
    shifted = a.homography.copy()
    shifted[:2] += 3 * shifted[2:]  # 3 px off in x and y
    a.homography = shifted
    off = cv2.cvtColor(warp_to_phone(dslr, a, phone.shape)[0], cv2.COLOR_RGB2GRAY)[valid].astype(float)
    assert np.corrcoef(g1, off)[0, 1] < 0.8


def test_local_error_measures_residual_shift():
    phone, dslr, _ = synth_pair(textured_scene(4), seed=2)
    warped, valid = warp_to_phone(dslr, align_pair(phone, dslr), phone.shape)
    y, x = 60, 60
    assert valid[y : y + 102, x : x + 100].all() and valid[200:300, 300:400].all()
    p = phone[y : y + 100, x : x + 100]
    assert local_error(p, warped[y : y + 100, x : x + 100]) < 0.3
    assert 1.5 < local_error(p, warped[y + 2 : y + 102, x : x + 100]) < 2.5
    assert local_error(p, warped[200:300, 300:400]) > 1  # other content
    flat = np.full((100, 100, 3), 90, np.uint8)
    assert math.isnan(local_error(flat, flat + 20))  # nothing to measure: kept


# --- matching and split ------------------------------------------------------------------------------


def _tiny(path: Path, when: str | None = None) -> Path:
    exif = Image.Exif()
    if when:
        exif.get_ifd(0x8769)[0x9003] = when
    Image.new("RGB", (8, 8)).save(path, exif=exif.tobytes())
    return path


def test_match_photos_by_name_time_and_order(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "d").mkdir()
    p = [_tiny(tmp_path / "p" / n, t) for n, t in [("a.jpg", "2024:05:01 10:00:00"),
         ("b.jpg", "2024:05:01 10:05:00"), ("c.jpg", None)]]  # fmt: skip
    d = [_tiny(tmp_path / "d" / n, t) for n, t in [("B.JPG", "2024:05:01 10:00:20"),
         ("x.jpg", "2024:05:01 10:05:10"), ("y.jpg", "2024:05:01 12:00:00")]]  # fmt: skip
    pairs, unpaired = match_photos(p, d, "name")
    assert pairs == [(p[1], d[0])] and {u["file"] for u in unpaired} == {"a.jpg", "c.jpg", "x.jpg", "y.jpg"}
    pairs, unpaired = match_photos(p, d, "time")
    assert pairs == [(p[0], d[0]), (p[1], d[1])]
    assert {(u["file"], "capture time" in u["why"]) for u in unpaired} == {("c.jpg", True), ("y.jpg", False)}
    pairs, unpaired = match_photos(p, d[:2], "order")
    assert pairs == [(p[0], d[0]), (p[1], d[1])] and [u["file"] for u in unpaired] == ["c.jpg"]


def test_test_split_is_by_photo_and_seeded():
    assert choose_test(10, 0.2, seed=0) == choose_test(10, 0.2, seed=0)
    assert len(choose_test(10, 0.2, seed=0)) == 2 and len(choose_test(3, 0.1, seed=0)) == 1
    assert choose_test(1, 0.5, seed=0) == set() and choose_test(5, 0.0, seed=0) == set()
    assert len({frozenset(choose_test(10, 0.2, seed=s)) for s in range(10)}) > 1


# --- the whole build ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, object]:
    """3 good pairs (b's phone photo stored rotated with EXIF orientation 6; a's DSLR photo with a
    'moving object' pasted in), a pair of two different scenes, and one phone photo without partner."""
    root = tmp_path_factory.mktemp("pairs")
    (root / "phone").mkdir()
    (root / "dslr").mkdir()
    truths = {}
    for k, (name, scale) in enumerate([("a", 1.5), ("b", 1.3), ("c", 1.8)]):
        phone, dslr, truths[name] = synth_pair(textured_scene(10 + k), seed=k, scale=scale)
        if name == "a":
            dslr[200:330, 300:430] = textured_scene(99, 130, 130)
        if name == "b":
            exif = Image.Exif()
            exif[0x0112] = 6  # display rotated 90 degrees clockwise: stored counter-clockwise
            Image.fromarray(np.rot90(phone)).save(root / "phone" / "b.jpg", quality=95, exif=exif.tobytes())
        else:
            Image.fromarray(phone).save(root / "phone" / f"{name}.jpg", quality=95)
        Image.fromarray(dslr).save(root / "dslr" / f"{name}.jpg", quality=95)
    Image.fromarray(synth_pair(textured_scene(20), 0)[0]).save(root / "phone" / "wrong.jpg", quality=95)
    Image.fromarray(synth_pair(textured_scene(21), 0)[1]).save(root / "dslr" / "wrong.jpg", quality=95)
    Image.fromarray(synth_pair(textured_scene(22), 0)[0]).save(root / "phone" / "lonely.jpg", quality=95)
    lines: list[str] = []
    report = build_dataset(root / "phone", root / "dslr", root / "out", test_fraction=0.34, log=lines.append)
    return root, truths, (report, lines)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_build_writes_dped_layout_split_by_photo(built):
    root, truths, (report, lines) = built
    out = root / "out" / "phone"
    by_name = {p.phone: p for p in report.pairs}
    assert [p.phone for p in report.aligned] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [p.phone for p in report.rejected] == ["wrong.jpg"]
    assert [u["file"] for u in report.unpaired] == ["lonely.jpg"]
    assert any(line.startswith("rejected wrong.jpg + wrong.jpg") for line in lines) and len(lines) == 4
    for name, truth in truths.items():  # b: only right if EXIF orientation 6 was applied
        assert grid_rms(by_name[f"{name}.jpg"].alignment.homography, truth, PHONE) < 0.5
    assert by_name["a.jpg"].dropped >= 2 and by_name["c.jpg"].dropped == 0  # the pasted object
    test = [p for p in report.aligned if p.split == "test"]
    assert len(test) == 1
    for split, folder in (("train", out / "training_data"), ("test", out / "test_data" / "patches")):
        names = _files(folder / "phone")
        n = report.patches(split)
        assert names == _files(folder / "canon") == sorted(f"{i}.jpg" for i in range(n)) and n > 0
    # No scene leaks: every test patch comes from the test photo, no training patch does.
    photos = {p.phone: np.asarray(Image.open(root / "phone" / p.phone).convert("L")) for p in report.aligned}
    photos["b.jpg"] = np.rot90(photos["b.jpg"], -1)

    def source(patch_path: Path) -> str:
        patch = np.asarray(Image.open(patch_path).convert("L"))
        score = {k: cv2.matchTemplate(v, patch, cv2.TM_SQDIFF_NORMED).min() for k, v in photos.items()}
        return min(score, key=score.get)

    test_dir, train_dir = out / "test_data" / "patches" / "phone", out / "training_data" / "phone"
    assert {source(p) for p in test_dir.iterdir()} == {test[0].phone}
    assert test[0].phone not in {source(p) for p in list(train_dir.iterdir())[::5]}
    train = DPEDDataset(root / "out", "phone", "train")
    x, y = train[0]
    assert len(train) == report.patches("train") and x.shape == y.shape == (3, 100, 100)
    assert len(DPEDDataset(root / "out", "phone", "test")) == report.patches("test")


def test_build_report_lists_every_pair_with_existing_images(built):
    root, _, (report, _) = built
    folder = root / "out" / "report"
    data = json.loads((folder / "report.json").read_text())
    assert [p["phone"] for p in data["pairs"]] == ["a.jpg", "b.jpg", "c.jpg", "wrong.jpg"]
    assert data["totals"]["train_patches"] == report.patches("train") and data["totals"]["rejected"] == 1
    page = (folder / "index.html").read_text()
    refs = set(re.findall(r'(?:src|href)="([^"]+)"', page))
    assert len(refs) == 6 and all((folder / r).is_file() for r in refs)  # overlay + diff per aligned pair
    assert Image.open(folder / sorted(refs)[0]).width <= 480
    assert "wrong.jpg" in page and "lonely.jpg" in page and "rejected" in page


def test_build_refuses_to_overwrite_and_needs_pairs(built, tmp_path):
    root, _, _ = built
    with pytest.raises(DataError, match="already exists"):
        build_dataset(root / "phone", root / "dslr", root / "out")
    (tmp_path / "d").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "d" / "zzz.jpg")
    with pytest.raises(DataError, match="no photo pairs"):
        build_dataset(root / "phone", tmp_path / "d", tmp_path / "out")


def test_cli_pairs_build_names_rejected_and_unpaired(tmp_path):
    for side in ("phone", "dslr"):
        (tmp_path / side).mkdir()
    phone, dslr, _ = synth_pair(textured_scene(30), 0, phone=(240, 320))
    Image.fromarray(phone).save(tmp_path / "phone" / "1.jpg")
    Image.fromarray(dslr).save(tmp_path / "dslr" / "1.jpg")
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(tmp_path / "dslr" / "2.jpg")
    Image.fromarray(phone).save(tmp_path / "phone" / "2.jpg")
    Image.fromarray(dslr).save(tmp_path / "dslr" / "3.jpg")
    args = ["pairs", "build", "--phone", str(tmp_path / "phone"), "--dslr", str(tmp_path / "dslr"),
            "-o", str(tmp_path / "out"), "--name", "pix", "--test-fraction", "0"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"1\.jpg \+ 1\.jpg: \d+ inliers", result.output)
    assert "rejected: 2.jpg + 2.jpg" in result.output and "no partner: dslr 3.jpg" in result.output
    assert (tmp_path / "out" / "pix" / "training_data" / "pix" / "0.jpg").is_file()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output


def test_train_and_evaluate_on_the_built_dataset(built, tmp_path):
    root, _, (report, _) = built
    unet = "{width: 4, depth: 2, global_width: 8, context_size: 64}"
    config = load_config(None, [f"data.root={root / 'out'}", "data.phone=phone", f"model.args={unet}",
                                "run.max_steps=3", "run.batch_size=2", "run.threads=1",
                                f"run.dir={tmp_path / 'run'}", "data.patch_size=32"])  # fmt: skip
    result = Trainer(config).fit()
    assert result.step == 3 and (tmp_path / "run" / "best" / "model.safetensors").is_file()
    model, _ = load_checkpoint(tmp_path / "run" / "best")
    scores = evaluate({"best": model}, DPEDDataset(root / "out", "phone", "test"), batch_size=16)
    s = scores.summary("best")
    assert s.n == report.patches("test") and math.isfinite(s.psnr) and 0 < s.ssim <= 1
