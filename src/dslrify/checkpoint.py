"""Self-describing checkpoint folders: ``model.safetensors`` + ``config.json``.

``config.json`` holds ``architecture``, ``args`` (its keyword arguments), ``dslrify_version`` and
``training`` (data, recipe, licence), so a folder is all ``--model DIR`` needs. Weights are never
pickled: safetensors only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dslrify.errors import ModelError, first_line
from dslrify.files import atomic_path
from dslrify.models import EnhancementModel, build_model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def _version() -> str:
    from dslrify import __version__

    return __version__


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    architecture: str,
    args: dict[str, Any],
    training: dict[str, Any] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    borders: str = "zero",
) -> Path:
    """Write ``model`` into ``directory`` (created if needed); both files are replaced atomically.

    ``extra_tensors`` (optimiser state and the like) go into a separate ``state.safetensors``.
    ``borders`` tells the Enhancer how to treat a photo's edges ("zero": as released, "reflect").
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": architecture,
        "args": args,
        "borders": borders,
        "dslrify_version": _version(),
        "training": training or {},
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    with atomic_path(out / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    if extra_tensors:
        with atomic_path(out / "state.safetensors") as tmp:
            save_file(extra_tensors, str(tmp))
    return out


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, checked for the required keys."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelError(
            f"{directory} is not a dslrify checkpoint (no {CONFIG_FILE})",
            "pass a model name from `dslrify models` or a folder written by dslrify",
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is not valid JSON: {e}") from e
    for key in ("architecture", "args"):
        if key not in config:
            raise ModelError(f"{path} has no {key!r} entry", "re-export the checkpoint with dslrify")
    return config


def load_checkpoint(directory: str | os.PathLike) -> tuple[EnhancementModel, dict[str, Any]]:
    """Build the model a checkpoint folder describes and load its weights; returns (model, config)."""
    config = read_config(directory)
    model = build_model(config["architecture"], config["args"])
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{directory} has no {WEIGHTS_FILE}", "the checkpoint folder is incomplete")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ModelError(f"cannot read {weights}: {e}", "the file is damaged; re-download or retrain") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        arch = config["architecture"]
        raise ModelError(
            f"checkpoint {directory} does not fit architecture {arch!r}: {first_line(e, lines=3)}",
            "the weights were saved for other arguments; check 'args' in config.json",
        ) from e
    model.eval()
    return model, config
