"""Trainer state as safetensors + JSON (never pickle): nested state dicts split into tensors and the rest.

``flatten`` turns any nest of dicts/lists/tuples/tensors/scalars (an optimiser's ``state_dict()``, RNG
states) into ``(tensors, skeleton)``: the tensors keyed by their path, and a JSON-able skeleton that keeps
dict key types (optimiser state uses int keys) and marks where each tensor goes. ``unflatten`` inverts it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """Move every tensor of ``obj`` into ``tensors`` (keyed by path); return the JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten(v, tensors, f"{path}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} in a checkpoint")


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``flatten``."""
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {k: unflatten(v, tensors) for k, v in skeleton["__dict__"]}
        if "__tuple__" in skeleton:
            return tuple(unflatten(v, tensors) for v in skeleton["__tuple__"])
        if "__ndarray__" in skeleton:
            return np.asarray(skeleton["__ndarray__"], dtype=skeleton["dtype"])
    return skeleton


def save_state(folder: Path, state: dict[str, Any]) -> None:
    """Write ``trainer_state.safetensors`` + ``trainer_state.json`` into ``folder``."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(state, tensors)
    save_file(tensors, str(folder / "trainer_state.safetensors"))
    (folder / "trainer_state.json").write_text(json.dumps(skeleton))


def load_state(folder: Path) -> dict[str, Any]:
    tensors = load_file(str(folder / "trainer_state.safetensors"))
    return unflatten(json.loads((folder / "trainer_state.json").read_text()), tensors)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap folder ``tmp`` in as ``final``: a crash at any point leaves ``final`` or ``final.old`` whole."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        # Only now is a stale ``.old`` (left by an earlier crash) superseded by a whole ``final``.
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def find_resumable(run_dir: Path) -> Path | None:
    """``run_dir/last`` or, after a crash mid-swap, ``run_dir/last.old``; None when neither is whole."""
    for name in ("last", "last.old"):
        folder = run_dir / name
        if (folder / "trainer_state.json").is_file() and (folder / "trainer_state.safetensors").is_file():
            return folder
    return None
