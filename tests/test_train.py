"""The trainer: configs that refuse mistakes, checkpoints others can load, exact resume, CV, DDP."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from dslrify.checkpoint import load_checkpoint
from dslrify.errors import DslrifyError
from dslrify.train.config import load_config
from dslrify.train.cv import assignments, collect_cv, run_cv
from dslrify.train.trainer import Trainer

TINY_UNET = {"width": 4, "depth": 2, "global_width": 8, "context_size": 64}


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory) -> Path:
    """24 pairs of 40x40 photos; the target is a fixed tone/colour change of the input (learnable)."""
    root = tmp_path_factory.mktemp("pairs")
    (root / "input").mkdir()
    (root / "target").mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        base = rng.uniform(0.1, 0.9, (5, 5, 3))
        x = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 0.03, (40, 40, 3))
        x = np.clip(x, 0, 1)
        y = np.clip(x**0.8 * np.array([1.05, 1.0, 0.9]), 0, 1)
        Image.fromarray((x * 255).round().astype(np.uint8)).save(root / "input" / f"{i}.png")
        Image.fromarray((y * 255).round().astype(np.uint8)).save(root / "target" / f"{i}.png")
    return root


def write_config(tmp_path: Path, pairs_root: Path, **run) -> Path:
    config = {
        "name": "tiny",
        "model": {"architecture": "unet", "args": TINY_UNET},
        "data": {"root": str(pairs_root), "patch_size": 32, "val_fraction": 0.25},
        "loss": {"l1": 1.0, "ssim": 0.2},
        "optim": {"lr": 0.003},
        "run": {
            "max_steps": 6,
            "batch_size": 4,
            "val_every": 3,
            "checkpoint_every": 2,
            "log_every": 2,
            "threads": 1,
            "dir": str(tmp_path / "run"),
            **run,
        },
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unknown_key_and_wrong_type_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run: {max_stepz: 3}\n")
    with pytest.raises(DslrifyError, match="run.max_stepz"):
        load_config(path)
    with pytest.raises(DslrifyError, match=r"run\.max_steps: expected int"):
        load_config(None, ["run.max_steps=lots"])
    with pytest.raises(DslrifyError, match="loss.adversarial_mode"):
        load_config(None, ["loss.adversarial_mode=wgan"])
    config = load_config(None, ["optim.lr=1e-4", "run.dir=/tmp/x", "optim.betas=[0.5, 0.9]"])
    assert config.optim.lr == 1e-4 and config.run.dir == "/tmp/x" and config.optim.betas == (0.5, 0.9)


def test_shipped_configs_load_and_build_their_model():
    from dslrify.models import build_model

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert {p.stem for p in configs} >= {"paper", "dped", "default", "fast"}
    for path in configs:
        config = load_config(path)
        assert config.name == path.stem
        build_model(config.model.architecture, config.model.args)


def test_training_writes_loadable_best_and_last_and_learns(tmp_path, pairs_root):
    config = load_config(write_config(tmp_path, pairs_root), ["run.max_steps=30", "run.val_every=10"])
    result = Trainer(config).fit()
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and load_config(run / "config.yaml").run.max_steps == 30
    with (run / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    for name in ("best", "last"):
        model, cfg = load_checkpoint(run / name)
        assert cfg["architecture"] == "unet" and cfg["args"] == TINY_UNET and "data" in cfg["training"]
    psnr = [float(r["val_psnr"]) for r in rows if r["val_psnr"]]
    assert len(psnr) == 3 and result.best["val_psnr"] == max(psnr)
    assert psnr[-1] > psnr[0]  # it learned something


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_resumed_run_reaches_the_same_weights(tmp_path, pairs_root):
    whole = load_config(write_config(tmp_path / "a", pairs_root))
    Trainer(whole).fit()
    split = load_config(write_config(tmp_path / "b", pairs_root))
    Trainer(split).fit(until=4)  # as if killed after the checkpoint at step 4
    assert json.loads((tmp_path / "b/run/last/trainer_state.json").read_text())
    Trainer(split, resume=tmp_path / "b/run").fit()
    a, b = _weights(tmp_path / "a/run/last"), _weights(tmp_path / "b/run/last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkilled_run_resumes_to_the_same_weights(tmp_path, pairs_root):
    cmd = [sys.executable, "-m", "dslrify.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = write_config(tmp_path / "a", pairs_root, max_steps=40, checkpoint_every=1, val_every=20)
    subprocess.run([*cmd, "train", str(whole)], check=True, env=env, capture_output=True)
    killed = write_config(tmp_path / "b", pairs_root, max_steps=40, checkpoint_every=1, val_every=20)
    proc = subprocess.Popen(
        [*cmd, "train", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    state = tmp_path / "b/run/last/trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline and not state.exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(state.read_text())["__dict__"][0][1]
    assert stopped_at < 40, "the run finished before it could be killed"
    subprocess.run(
        [*cmd, "train", "--resume", str(tmp_path / "b/run")], check=True, env=env, capture_output=True
    )
    a, b = _weights(tmp_path / "a/run/last"), _weights(tmp_path / "b/run/last")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_advice(tmp_path, pairs_root, monkeypatch):
    trainer = Trainer(load_config(write_config(tmp_path, pairs_root)))
    monkeypatch.setattr(trainer.objective, "generator_loss", lambda x, o, y: (o.sum() * float("nan"), {}))
    with pytest.raises(DslrifyError, match=r"became nan at step 1.*optim.lr"):
        trainer.fit()


def test_perceptual_loss_without_vgg_weights_stops_at_start(tmp_path, pairs_root, monkeypatch):
    torch.hub.set_dir(str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    config = load_config(write_config(tmp_path, pairs_root), ["loss.perceptual=1"])
    with pytest.raises(DslrifyError) as e:
        Trainer(config)
    assert "perceptual" in str(e.value) and "vgg19" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_cross_validation_reports_every_fold(tmp_path, pairs_root):
    summary = run_cv(write_config(tmp_path, pairs_root), folds=2, out=tmp_path / "cv")
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert [f["fold"] for f in saved["folds"]] == [0, 1]
    assert all(f["n_val"] == 12 for f in saved["folds"])
    assert saved["psnr"]["mean"] == pytest.approx(np.mean([f["psnr"] for f in saved["folds"]]))
    assert summary["psnr"]["std"] >= 0


def test_collected_cv_results_compare_every_fold_with_the_reference_models(tmp_path, pairs_root):
    run_cv(write_config(tmp_path, pairs_root), folds=3, out=tmp_path / "runs" / "cv-tiny")
    refs = {"dped-official": "paper", "ppcn-teacher": "default", "ppcn-student": "fast"}  # stand-ins
    table = collect_cv(
        [tmp_path / "runs"], pairs_root, refs, tmp_path / "out", recipes={"tiny": "a tiny U-Net"}
    )
    entry = table["candidates"]["tiny"]
    assert [f["fold"] for f in entry["folds"]] == [0, 1, 2] and entry["recipe"] == "a tiny U-Net"
    assert list(table["references"]) == ["identity", "auto-levels", *refs]
    dped, teacher = (table["references"][name]["psnr"] for name in ("dped-official", "ppcn-teacher"))
    assert len(set(dped)) == 3  # one figure per fold, each on its own held-out pairs
    finals = [f["final_psnr"] for f in entry["folds"]]
    assert entry["final_vs_dped"]["psnr"] == pytest.approx([f - d for f, d in zip(finals, dped, strict=True)])
    assert entry["final_vs_ppcn_teacher_psnr"] == pytest.approx(
        [f - t for f, t in zip(finals, teacher, strict=True)]
    )
    assert json.loads((tmp_path / "out" / "cv-results.json").read_text()) == json.loads(json.dumps(table))
    markdown = (tmp_path / "out" / "cv-results.md").read_text()
    assert "| tiny | a tiny U-Net |" in markdown and "| identity | released / no training |" in markdown
    # --merge keeps what the table already holds, description included, and adds nothing from no runs.
    merged = collect_cv([], pairs_root, refs, tmp_path / "out", merge=True)
    assert merged["candidates"] == table["candidates"] and merged["shipped"]["default"] == "H"


def test_cv_collect_options_must_be_name_value_pairs():
    assert assignments(["default=H", "x=a=b"]) == {"default": "H", "x": "a=b"}
    with pytest.raises(DslrifyError, match="NAME=VALUE"):
        assignments(["default"])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_torchrun_two_cpu_processes_stay_in_sync(tmp_path, pairs_root):
    config = write_config(tmp_path, pairs_root, max_steps=4)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "dslrify.cli",
        "train",
        str(config),
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run/last/model.safetensors").is_file()  # rank 0 wrote; the sync check passed


def test_teacher_labels_unpaired_photos_and_blends_into_pairs(tmp_path, pairs_root):
    from conftest import random_unet
    from dslrify.checkpoint import save_checkpoint

    teacher_dir = save_checkpoint(
        tmp_path / "teacher", random_unet(), "unet", {"width": 8, "depth": 3, "global_width": 16}
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.open(pairs_root / "input" / f"{i}.png").save(photos / f"{i}.jpg")
    overrides = [
        f"data.teacher={teacher_dir}",
        f"data.unpaired_root={photos}",
        "data.unpaired_share=0.5",
        "data.teacher_on_pairs=0.25",
        "run.max_steps=3",
    ]
    trainer = Trainer(load_config(write_config(tmp_path, pairs_root), overrides))
    assert "3 unpaired photos" in trainer.data_description and "teacher" in trainer.licence
    x, y = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    taught = trainer.teacher(x).clamp(0, 1)
    mixed = trainer._teach(x, y, torch.tensor([1, 0, 2]))  # sources: unpaired photo, pair, clean patch
    assert torch.allclose(mixed[0], taught[0]) and torch.allclose(mixed[1], 0.75 * y[1] + 0.25 * taught[1])
    assert torch.equal(mixed[2], y[2])  # identity and degraded clean patches keep their own targets
    keys = [k for batch in trainer_sampler_keys(trainer) for k in batch]
    assert {k[2] for k in keys} == {0, 1} and sum(k[2] == 1 for k in keys) == len(keys) // 2
    trainer.fit()


def trainer_sampler_keys(trainer: Trainer) -> list:
    from dslrify.train.sampling import StepBatchSampler

    r = trainer.cfg.run
    sampler = StepBatchSampler(
        len(trainer.train_pairs), r.batch_size, r.seed, 0, 3, 0, 1, trainer.n_unpaired, 0.5
    )
    return list(sampler)


def test_unpaired_photos_without_teacher_are_refused(tmp_path, pairs_root):
    with pytest.raises(DslrifyError, match="data.teacher"):
        load_config(write_config(tmp_path, pairs_root), [f"data.unpaired_root={tmp_path}"])


def test_synthetic_pretraining_trains_on_degraded_photos_and_validates_on_real_pairs(tmp_path, pairs_root):
    photos = tmp_path / "clean"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        img = np.kron(rng.uniform(0, 1, (12, 12, 3)), np.ones((25, 25, 1)))
        Image.fromarray((img * 255).astype(np.uint8)).save(photos / f"{i}.png")
    config = load_config(
        write_config(tmp_path, pairs_root),
        [f"data.synthetic_root={photos}", "data.synthetic_pairs_per_photo=4", "run.max_steps=3"],
    )
    trainer = Trainer(config)
    assert "synthetic degradations" in trainer.data_description and len(trainer.train_pairs) == 8
    result = trainer.fit()
    assert result.best and len(trainer.val_set) == 6  # validation stays on the real pairs


def test_guided_model_starts_from_a_checkpoint_of_the_network_it_wraps(tmp_path, pairs_root):
    from dslrify.checkpoint import save_checkpoint
    from dslrify.models import build_model

    torch.manual_seed(0)
    student = build_model("ppcn-student")
    base_dir = save_checkpoint(tmp_path / "student", student, "ppcn-student", {})
    guided = {"base": "ppcn-student", "context_size": 32, "radius": 1}
    path = write_config(tmp_path, pairs_root)
    overrides = ["model.architecture=guided", f"model.args={json.dumps(guided)}", f"model.init={base_dir}"]
    trainer = Trainer(load_config(path, [*overrides, "run.max_steps=1"]))
    first = dict(trainer.model.net.named_parameters())
    assert all(torch.equal(first[k], v) for k, v in student.named_parameters())  # started from it
    trainer.fit()
    model, cfg = load_checkpoint(tmp_path / "run" / "last")
    assert cfg["architecture"] == "guided" and cfg["args"] == guided
    assert type(model).__name__ == "GuidedEnhancer"
    with pytest.raises(DslrifyError, match="cannot start from"):
        Trainer(load_config(path, [*overrides[:2], f"model.init={base_dir}", "model.args.base=ppcn-teacher"]))
