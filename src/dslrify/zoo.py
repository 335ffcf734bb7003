"""The model table: every shipped model by name, and how a name or a folder becomes a network.

A new shipped model is one checkpoint folder in ``dslrify/weights/NAME/`` plus one entry here.
The entry states what the weights are (architecture and its arguments, training data, licence); the
folder's ``config.json`` must agree with it, so the table can never silently describe other weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dslrify.checkpoint import CONFIG_FILE, load_checkpoint
from dslrify.errors import ModelError
from dslrify.models import EnhancementModel

WEIGHTS_DIR = Path(__file__).parent / "weights"
# The shipped models' speed, as `benchmarks/speed.py --save` measured it (one run, one machine).
SPEED_FILE = WEIGHTS_DIR / "speed.json"


@dataclass(frozen=True)
class ZooEntry:
    """One shipped model: what it is, where its weights are, what it was trained on, its terms."""

    name: str
    architecture: str
    args: dict[str, Any]
    weights: str  # folder name under dslrify/weights
    description: str
    training_data: str
    licence: str
    card: str  # model card, relative to the repository root

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.weights


MODELS: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        ZooEntry(
            name="default",
            architecture="matched",
            args={"base": "ppcn-teacher", "highlight_knee": 0.8},
            weights="default",
            description="PPCN's teacher fine-tuned on the DPED pairs, with a quality gate and highlight "
            "protection",
            training_data="DPED iPhone -> Canon (full DPED via PPCN's release) + 198 DPED training patches",
            licence="code MIT; weights derived from PPCN (Zheng222/PPCN, no licence file) and DPED data: "
            "non-commercial research use",
            card="docs/models/default.md",
        ),
        ZooEntry(
            name="balanced",
            architecture="matched",
            args={
                "base": "detail",
                "base_args": {
                    "base": "guided",
                    "base_args": {"base": "ppcn-teacher", "context_size": 384, "radius": 4, "border": 10},
                    "width": 8,
                    "layers": 3,
                },
                "highlight_knee": 0.8,
                "gate_grid": 256,
            },
            weights="balanced",
            description="between fast and default: fast's network + a full-resolution detail path "
            "distilled from PPCN's teacher, quality gate, highlight protection",
            training_data="DPED iPhone -> Canon (full DPED via PPCN's release) + 198 DPED training patches "
            "+ 90 phone photos (teacher-labelled)",
            licence="code MIT; weights derived from PPCN (Zheng222/PPCN, no licence file) and DPED data: "
            "non-commercial research use",
            card="docs/models/balanced.md",
        ),
        ZooEntry(
            name="fast",
            architecture="matched",
            args={
                "base": "guided",
                "base_args": {"base": "ppcn-teacher", "context_size": 384, "radius": 4},
                "highlight_knee": 0.8,
                "gate_grid": 256,
            },
            weights="fast",
            description="default's recipe, its network on a <=384 px thumbnail + guided filter",
            training_data="DPED iPhone -> Canon (full DPED via PPCN's release) + 198 DPED training patches",
            licence="code MIT; weights derived from PPCN (Zheng222/PPCN, no licence file) and DPED data: "
            "non-commercial research use",
            card="docs/models/fast.md",
        ),
        ZooEntry(
            name="paper",
            architecture="unet",
            args={"width": 16, "depth": 3, "global_width": 32, "context_size": 256},
            weights="paper",
            description="The paper's reading (residual U-Net + global colour branch) from scratch, L1 + SSIM",
            training_data="DPED iPhone 3GS -> Canon 70D: 178 training + 20 validation patches (100x100) only",
            licence="code MIT; weights trained on DPED data: non-commercial research use",
            card="docs/models/paper.md",
        ),
    ]
}


def measured_speed() -> dict[str, str]:
    """Model name -> its 12 MP JPEG -> JPEG time from ``SPEED_FILE`` ("0.62 s, 3.1x the I/O floor
    (cpu, 2 threads)"); models the file lacks are absent, and so is everything when it is missing."""
    if not SPEED_FILE.is_file():
        return {}
    data = json.loads(SPEED_FILE.read_text())
    rows = [r for r in data["rows"] if "seconds" in r]
    floor = rows[0]["seconds"]
    return {
        r["row"]: f"{r['seconds']:.2f} s, {r['seconds'] / floor:.1f}x the I/O floor ({data['machine']})"
        for r in rows[1:]
        if r["row"] in MODELS
    }


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a dslrify ``config.json``."""
    return (Path(path) / CONFIG_FILE).is_file()


def resolve_model(name_or_path: str | os.PathLike) -> tuple[EnhancementModel, dict[str, Any], str]:
    """A model name from ``MODELS`` or a checkpoint folder -> (model in eval mode, config, label)."""
    key = str(name_or_path)
    if key in MODELS:
        entry = MODELS[key]
        model, config = load_checkpoint(entry.path)
        if config["architecture"] != entry.architecture or config["args"] != entry.args:
            raise ModelError(
                f"shipped weights {entry.path} do not match the model table entry {entry.name!r}",
                "the installation is inconsistent; reinstall dslrify",
            )
        return model, config, entry.name
    path = Path(key).expanduser()
    if path.is_dir():
        model, config = load_checkpoint(path)
        return (
            model,
            config,
            path.name if path.name not in ("best", "last") else f"{path.parent.name}/{path.name}",
        )
    if path.suffix == ".onnx":
        raise ModelError(f"{path}: an ONNX file needs --backend onnxruntime")
    hint = (
        "a checkpoint folder that does not exist"
        if ("/" in key or os.sep in key)
        else "an unknown model name"
    )
    raise ModelError(
        f"{key!r} is {hint}",
        f"valid model names: {', '.join(MODELS)}; or a folder holding model.safetensors + config.json",
    )


def load_model(
    name_or_path: str | os.PathLike = "default", device: str | torch.device = "cpu"
) -> EnhancementModel:
    """The network behind a model name or folder: NCHW RGB [0,1] -> NCHW [0,1], differentiable.

    Use it as a preprocessing step in front of another vision model; weights are frozen by default
    (call ``requires_grad_(True)`` to fine-tune).
    """
    model, _, _ = resolve_model(name_or_path)
    model.requires_grad_(False)
    return model.to(device)
