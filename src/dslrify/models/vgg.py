"""A frozen VGG-19 feature extractor for the perceptual (content) loss, and its pinned weights.

The network definition is written out by hand because torchvision cannot be a dependency (users keep
their own torch build, and torchvision wheels must match it exactly). The layout mirrors torchvision's
``vgg19().features`` module for module, so that the state-dict keys are the same
(``features.0.weight`` ... ``features.34.bias``) and torchvision's published checkpoint loads as is.

Weights come from ``load_vgg19_weights``: either a local file the user names (``.pth`` or
``.safetensors``), or PyTorch's published ``vgg19-dcbb9e9d.pth`` downloaded into the torch hub cache and
checked against its pinned SHA-256. Nothing falls back to random weights: a perceptual loss on a random
VGG would train silently towards nonsense.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from dslrify.errors import ModelError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# Full SHA-256 of vgg19-dcbb9e9d.pth (574,673,361 bytes); its first 8 hex digits are the "dcbb9e9d" in
# the file name, which is how torchvision names checkpoints. Pinned identically by several independent
# public projects that download this file (found through code search).
VGG19_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"

# Advice strings name the config keys users actually type (dslrify.train.config.LossConfig), so keep
# them in one place.
_LOCAL_COPY_ADVICE = (
    "point the config at a local copy with `--set loss.perceptual_weights=/path/to/vgg19.pth` "
    "(a .safetensors copy of the same state dict works too)"
)
_NO_PERCEPTUAL_ADVICE = (
    "or train without the perceptual/content loss by setting its weight to 0 (`--set loss.perceptual=0`)"
)

# torchvision's configuration "E": channel counts, "M" = 2x2 max-pool.
_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
_CFG += [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _layer_table() -> tuple[dict[str, int], dict[int, tuple[int, int]]]:
    """Map layer names (``conv3_4``, ``relu3_4``, ``pool3``) to ``features`` indices, and conv
    indices to ``(in_channels, out_channels)``."""
    names: dict[str, int] = {}
    convs: dict[int, tuple[int, int]] = {}
    index, block, sub, channels = 0, 1, 1, 3
    for item in _CFG:
        if item == "M":
            names[f"pool{block}"] = index
            index, block, sub = index + 1, block + 1, 1
        else:
            assert isinstance(item, int)
            names[f"conv{block}_{sub}"] = index
            names[f"relu{block}_{sub}"] = index + 1
            convs[index] = (channels, item)
            index, sub, channels = index + 2, sub + 1, item
    return names, convs


LAYER_INDEX, _CONV_CHANNELS = _layer_table()
LAYER_NAMES: tuple[str, ...] = tuple(LAYER_INDEX)


def expected_shapes(up_to_index: int = 36) -> dict[str, tuple[int, ...]]:
    """``features.N.weight/bias`` key -> shape, for every conv at index ``<= up_to_index``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (cin, cout) in _CONV_CHANNELS.items():
        if i <= up_to_index:
            shapes[f"features.{i}.weight"] = (cout, cin, 3, 3)
            shapes[f"features.{i}.bias"] = (cout,)
    return shapes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(error: BaseException, limit: int = 240) -> str:
    """``Type: message`` on one line and short, for a ``DslrifyError`` message."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _read_file(path: Path) -> object:
    if not path.is_file():
        raise ModelError(
            f"VGG-19 weights file {str(path)!r} does not exist",
            f"check `loss.perceptual_weights`, {_NO_PERCEPTUAL_ADVICE}",
        )
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        # weights_only: a .pth is a pickle, and unpickling an untrusted file can run arbitrary code.
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message suggests weights_only=False, which is exactly what must not be done here.
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        problem = (
            f"it holds a pickled {found.group(1)}, not just tensors" if found else "corrupt or truncated"
        )
        raise ModelError(
            f"could not read VGG-19 weights from {str(path)!r}: {problem}",
            "give a plain state dict (name -> tensor): torchvision's vgg19-dcbb9e9d.pth, or a .safetensors",
        ) from e
    except Exception as e:  # corrupt or truncated file, wrong format
        raise _unreadable(path, e) from e


def _unreadable(path: Path, error: Exception) -> ModelError:
    return ModelError(
        f"could not read VGG-19 weights from {str(path)!r}: {_one_line(error)}",
        "give a torchvision vgg19 state dict saved with torch.save (.pth) or safetensors (.safetensors)",
    )


def _normalise_keys(raw: object, source: str) -> dict[str, Tensor]:
    """Keep only ``features.N.weight/bias`` entries; accept torchvision's full dict, a ``features``-only
    dict (``features.0.weight`` or bare ``0.weight``), a ``{"state_dict": ...}`` wrapper, and
    DataParallel's ``module.`` prefix."""
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise ModelError(
            f"VGG-19 weights from {source} are a {type(raw).__name__}, not a state dict",
            "give a torchvision vgg19 state dict (name -> tensor)",
        )
    out: dict[str, Tensor] = {}
    for key, value in raw.items():
        name = str(key).removeprefix("module.")
        if re.fullmatch(r"\d+\.(weight|bias)", name):
            name = "features." + name
        if not name.startswith("features."):
            continue  # torchvision's classifier.* is not needed for features
        if not isinstance(value, Tensor):
            raise ModelError(f"VGG-19 weights from {source}: {name!r} is not a tensor")
        out[name] = value
    if not out:
        raise ModelError(
            f"no VGG-19 `features.*` weights found in {source}",
            "give torchvision's vgg19 state dict (keys like `features.0.weight`)",
        )
    validate_vgg19_weights(out, source=source, required=())
    return out


def validate_vgg19_weights(
    weights: dict[str, Tensor], source: str = "the given weights", required: tuple[str, ...] | None = None
) -> None:
    """Raise ``ModelError`` naming the first unknown key, wrong shape, or missing ``required`` key.

    ``required=None`` requires every conv of VGG-19 (all 32 keys); pass a tuple to require fewer.
    """
    shapes = expected_shapes()
    for key, value in weights.items():
        if key not in shapes:
            raise ModelError(f"VGG-19 weights from {source}: unexpected key {key!r}", "is it a vgg19_bn?")
        if tuple(value.shape) != shapes[key]:
            raise ModelError(
                f"VGG-19 weights from {source}: {key!r} has shape {tuple(value.shape)}, "
                f"expected {shapes[key]}",
                "this is not torchvision's vgg19 (VGG-19 without batch norm) checkpoint",
            )
    for key in shapes if required is None else required:
        if key not in weights:
            raise ModelError(
                f"VGG-19 weights from {source}: missing key {key!r}",
                "give a complete torchvision vgg19 state dict",
            )


def _download_default() -> Path:
    """Return the verified path of the published checkpoint in the hub cache, downloading it if needed."""
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Looked up on the module at call time so tests can replace it; it writes to a temporary
            # file and renames it, so an interrupted download never leaves a half file at `path`.
            torch.hub.download_url_to_file(VGG19_URL, str(path), progress=True)
        except Exception as e:  # URLError, HTTPError, timeouts, disk full: all mean "no weights"
            raise ModelError(
                f"could not download the VGG-19 weights for the perceptual (content) loss from "
                f"{VGG19_URL} to {path} ({_one_line(e)})",
                f"on a machine with internet run `curl -L -o {path} {VGG19_URL}` (copy the file to that "
                f"path here if it was another machine); or {_LOCAL_COPY_ADVICE}; {_NO_PERCEPTUAL_ADVICE}",
            ) from e
        fresh = True
    else:
        fresh = False
    actual = _sha256(path)
    if actual != VGG19_SHA256:
        if fresh:  # we wrote it, so remove it; a file the user placed there is theirs to delete
            path.unlink(missing_ok=True)
        raise ModelError(
            f"checksum mismatch for the VGG-19 weights {path}: sha256 {actual}, expected {VGG19_SHA256}",
            f"the file is corrupt or not {VGG19_FILENAME}; delete it and download it again with "
            f"`curl -L -o {path} {VGG19_URL}`, or {_LOCAL_COPY_ADVICE}",
        )
    return path


def load_vgg19_weights(path: str | os.PathLike[str] | None = None) -> dict[str, Tensor]:
    """Load VGG-19 ``features.*`` weights as ``{"features.N.weight": Tensor, ...}`` (CPU).

    ``path``: a ``.safetensors`` file or a ``.pth`` (loaded with ``weights_only=True``) holding
    torchvision's full vgg19 state dict (``classifier.*`` is dropped) or a features-only dict. ``None``:
    PyTorch's published ``vgg19-dcbb9e9d.pth`` from ``torch.hub.get_dir()/checkpoints/``, downloaded
    there if missing, and verified against ``VGG19_SHA256`` before loading.

    Raises ``ModelError`` (a ``DslrifyError``) with advice when the file is missing, the download fails,
    the checksum differs, or a key/shape is wrong.
    """
    file = Path(path) if path is not None else _download_default()
    return _normalise_keys(_read_file(file), source=repr(str(file)))


class VGGFeatures(nn.Module):
    """Frozen VGG-19 truncated after ``layer``; maps ``(N, 3, H, W)`` RGB in ``[0, 1]`` to features.

    ``layer`` is one of ``LAYER_NAMES`` (``conv1_1`` ... ``relu5_4``, ``pool1`` ... ``pool5``). The output
    has ``C`` = 64/128/256/512/512 channels for blocks 1-5 and ``H / 2**p`` x ``W / 2**p`` pixels (floor)
    where ``p`` is the number of pools before ``layer``: ``relu5_4`` of 64x64 gives ``(N, 512, 4, 4)``.

    ImageNet normalisation (mean ``[0.485, 0.456, 0.406]``, std ``[0.229, 0.224, 0.225]``) happens inside,
    because torchvision's weights were trained on inputs normalised that way. ``weights``: a dict from
    ``load_vgg19_weights``, a path to give it, or ``None`` for the published checkpoint. Parameters never
    require grad and the module stays in eval mode, but gradients do flow to the input.
    """

    mean: Tensor  # (1, 3, 1, 1) buffers, registered in __init__
    std: Tensor

    def __init__(
        self, layer: str = "relu5_4", weights: dict[str, Tensor] | str | os.PathLike[str] | None = None
    ):
        super().__init__()
        if layer not in LAYER_INDEX:
            raise ModelError(f"unknown VGG-19 layer {layer!r}", f"valid layers: {', '.join(LAYER_NAMES)}")
        self.layer = layer
        last = LAYER_INDEX[layer]
        modules: list[nn.Module] = []
        for i in range(last + 1):
            if i in _CONV_CHANNELS:
                cin, cout = _CONV_CHANNELS[i]
                # On "meta": no memory and no random init for weights that are replaced right away.
                modules.append(nn.Conv2d(cin, cout, kernel_size=3, padding=1, device="meta"))
            elif i - 1 in _CONV_CHANNELS:
                # Not in-place: a caller may keep a conv output that an in-place ReLU would overwrite.
                modules.append(nn.ReLU(inplace=False))
            else:
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*modules)
        # Non-persistent: the state dict keeps exactly torchvision's keys.
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

        if weights is None or isinstance(weights, (str, os.PathLike)):
            weights = load_vgg19_weights(weights)
        else:  # a raw dict may still carry torchvision's classifier.* or bare "0.weight" keys
            weights = _normalise_keys(weights, source="the given weights dict")
        needed = expected_shapes(last)
        validate_vgg19_weights(weights, required=tuple(needed))
        # assign=True replaces the meta parameters; the copy keeps the caller's tensors untouched.
        own = {k: v.to(torch.float32, copy=True) for k, v in weights.items() if k in needed}
        self.load_state_dict(own, strict=True, assign=True)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        """Stay in eval mode whatever the enclosing model does: the extractor is a fixed measurement."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` RGB in ``[0, 1]`` -> ``(N, C, H', W')`` features at ``self.layer``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"VGGFeatures expects (N, 3, H, W) RGB, got shape {tuple(x.shape)}")
        return self.features((x - self.mean) / self.std)
