"""Import DPED's official TensorFlow generators (aiff22/DPED ``models_orig/*_orig``) as dslrify checkpoints.

DPED's ``resnet()`` names its convolutions ``generator/W1, b1 ... W12, b12``. The instance norms'
``shift`` and ``scale`` are unnamed ``tf.Variable``s, so TensorFlow calls them ``generator/Variable``,
``Variable_1``, ... in creation order: each ``_instance_norm`` call creates ``shift`` then ``scale``,
after the ``W``/``b`` of the convolution it follows. Hence, for residual block ``i`` (0-3), the first
norm is ``Variable_{4i}`` (shift) / ``Variable_{4i+1}`` (scale) and the second ``Variable_{4i+2}`` /
``Variable_{4i+3}``. Kernels are stored HWIO (TF) and become OIHW (PyTorch).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dslrify.checkpoint import save_checkpoint
from dslrify.convert.tf_checkpoint import read_tf_checkpoint
from dslrify.errors import ModelError
from dslrify.models.dped import DPEDGenerator

DPED_PARAMETERS = 401_475
DPED_SCOPE = "generator"


def tf_auto_name(i: int) -> str:
    """TensorFlow's automatic name for the i-th unnamed variable in a scope (0 -> ``Variable``)."""
    return "Variable" if i == 0 else f"Variable_{i}"


def dped_name_map(blocks: int = 4) -> dict[str, str]:
    """DPED variable name (without the ``generator/`` scope) -> ``DPEDGenerator`` state-dict key."""
    names = {"W1": "head.weight", "b1": "head.bias"}
    for i in range(blocks):
        for j, conv in enumerate(("conv1", "conv2")):
            layer = 2 + 2 * i + j  # W2/W3 for block 0, W4/W5 for block 1, ...
            names[f"W{layer}"] = f"blocks.{i}.{conv}.weight"
            names[f"b{layer}"] = f"blocks.{i}.{conv}.bias"
            names[tf_auto_name(4 * i + 2 * j)] = f"blocks.{i}.norm{j + 1}.shift"
            names[tf_auto_name(4 * i + 2 * j + 1)] = f"blocks.{i}.norm{j + 1}.scale"
    last = 2 + 2 * blocks
    for layer, key in ((last, "conv10"), (last + 1, "conv11"), (last + 2, "tail")):
        names[f"W{layer}"] = f"{key}.weight"
        names[f"b{layer}"] = f"{key}.bias"
    return names


def state_dict_from_tf(
    variables: dict[str, np.ndarray],
    scope: str,
    name_map: dict[str, str],
    model: nn.Module,
    expected_parameters: int,
    source: str,
) -> dict[str, torch.Tensor]:
    """Map TF variables ``{scope}/{name}`` onto ``model``'s state dict, checking everything.

    4-D kernels are transposed from TF's (H, W, in, out) to PyTorch's (out, in, H, W). Raises ModelError
    naming missing, unexpected and mis-shaped variables, or a wrong total parameter count.
    """
    found = {}
    for name, array in variables.items():
        head, _, local = name.partition("/")
        if head != scope or not local:
            raise ModelError(
                f"{source}: variable {name!r} is outside the expected scope {scope!r}/",
                "this checkpoint holds another network; check which model file you passed",
            )
        found[local] = array
    missing = sorted(set(name_map) - set(found))
    extra = sorted(set(found) - set(name_map))
    if missing or extra:
        raise ModelError(
            f"{source} does not match the expected network: "
            f"missing {[f'{scope}/{n}' for n in missing]}, unexpected {[f'{scope}/{n}' for n in extra]}",
            "this checkpoint holds another architecture or was modified",
        )
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    wrong = []
    for local, key in name_map.items():
        array = found[local]
        if array.ndim == 4:
            array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if tensor.shape != target[key].shape:
            wrong.append(f"{scope}/{local}: {tuple(tensor.shape)} vs {tuple(target[key].shape)} ({key})")
        state[key] = tensor
    if wrong:
        raise ModelError(
            f"{source}: wrongly shaped variables: {'; '.join(wrong)}", "not the expected network"
        )
    uncovered = sorted(set(target) - set(state))
    if uncovered:
        raise ModelError(f"{source}: no variable for {uncovered}", "the name map is incomplete")
    total = sum(int(v.numel()) for v in state.values())
    if total != expected_parameters:
        raise ModelError(
            f"{source} holds {total:,} parameters, expected {expected_parameters:,}",
            "this checkpoint holds another network",
        )
    return state


def import_dped(prefix: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a DPED generator checkpoint (e.g. ``.../iphone_orig``) into a dslrify folder ``out_dir``.

    Returns the folder, which ``load_checkpoint`` opens as architecture ``"dped"``. Raises ModelError if
    the checkpoint is missing, not a bundle, or not exactly DPED's 401,475-parameter generator.
    """
    variables = read_tf_checkpoint(prefix)
    base = Path(prefix).name.removesuffix(".index")
    model = DPEDGenerator()
    state = state_dict_from_tf(variables, DPED_SCOPE, dped_name_map(), model, DPED_PARAMETERS, base)
    model.load_state_dict(state, strict=True)
    phone = base.split("_")[0]
    training = {
        "data": f"DPED (Ignatov et al. 2017), {phone} subset",
        "recipe": f"DPED official release, imported from TensorFlow checkpoint {base}",
        "licence": "DPED code/models: no licence file in aiff22/DPED; DPED data: non-commercial research use",
        "source": f"https://github.com/aiff22/DPED (models_orig/{base})",
    }
    return save_checkpoint(out_dir, model, "dped", {"channels": 64, "blocks": 4}, training)
