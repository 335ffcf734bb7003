"""Training configuration: typed dataclasses; YAML is only their serialisation.

``load_config(path, overrides)`` reads a YAML file, applies ``--set key=value`` overrides (values parsed
as YAML scalars), and checks every key and type: an unknown key or a wrong type is an error naming it.
The resolved config is saved with every run (``RUN_DIR/config.yaml``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dslrify.errors import DslrifyError


@dataclass
class ModelConfig:
    architecture: str = "unet"
    args: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # a model name or checkpoint folder to start from (fine-tuning)
    freeze: str | None = None  # parameters whose name starts with this stay fixed ("net.": a wrapper's base)
    # How the Enhancer treats the photo's edges with this model (saved in config.json): "reflect" pads
    # by the receptive field with the mirrored photo, so the edges get the centre's treatment (no frame).
    borders: Literal["zero", "reflect"] = "reflect"


@dataclass
class DataConfig:
    root: str = "../shared/data/dped"  # DPED layout (ROOT[/PHONE]), a folder with input/ + target/, or a CSV
    phone: str = "iphone"
    patch_size: int = 100  # random crop for training; DPED patches are 100x100
    val_fraction: float = 0.1  # seeded share of the training pairs held out for validation
    val_split: Literal["holdout", "test"] = "holdout"  # "test": validate on the test split (only when asked)
    folds: int = 0  # set by `dslrify cv`: k-fold cross-validation, ``fold`` is the held-out one
    fold: int = 0
    flips: bool = True  # random horizontal flips and 90-degree rotations, same for input and target
    jitter: float = 0.0  # exposure/colour jitter strength applied to input and target alike (0 = off)
    workers: int = 0
    # Knowledge beyond the pairs (each optional):
    synthetic_root: str | None = None  # train on synthetic phone-like degradations of these clean photos
    synthetic_pairs_per_photo: int = 64
    teacher: str | None = None  # a model name/folder whose output labels the unpaired photos (distillation)
    unpaired_root: str | None = None  # phone photos without targets, labelled by the teacher
    unpaired_share: float = 0.5  # share of every batch drawn from unpaired_root
    teacher_on_pairs: float = 0.0  # blend the teacher's output into the real targets (0 = real target only)
    # Direction: patches already at DSLR quality (the training split's DSLR targets, plus crops of the
    # clean photos in clean_root) map to themselves, and synthetic phone-like degradations of them map
    # back to them. Shares of every batch; the real pairs fill the rest.
    identity_share: float = 0.0
    degraded_share: float = 0.0
    clean_root: str | None = None  # clean photos not used for evaluation, cut into patches
    clean_patches_per_photo: int = 64


@dataclass
class LossConfig:
    """Weights of each term (0 = off). ``perceptual`` is DPED's content loss on VGG-19 features."""

    l1: float = 1.0
    mse: float = 0.0
    ssim: float = 0.0
    ms_ssim: float = 0.0
    color: float = 0.0
    tv: float = 0.0
    gradient: float = 0.0  # L1 of image-gradient differences (the texture loss of configs/xia2018.yaml)
    perceptual: float = 0.0
    perceptual_layer: str = "relu5_4"
    perceptual_weights: str | None = None  # local VGG-19 file (.pth or .safetensors); None: torch hub cache
    adversarial: float = 0.0
    adversarial_mode: Literal["vanilla", "lsgan", "hinge"] = "vanilla"
    discriminator: Literal["dped", "conditional"] = (
        "conditional"  # DPED's grayscale D or a PatchGAN on (input, output)
    )


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    d_lr: float = 1e-4
    grad_clip: float = 0.0  # 0 = off


@dataclass
class ScheduleConfig:
    kind: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01


@dataclass
class RunConfig:
    dir: str | None = None  # default runs/CONFIGNAME-DATE-TIME
    max_steps: int = 2000
    batch_size: int = 16  # global: split across ranks under DDP
    val_every: int = 200
    log_every: int = 20
    checkpoint_every: int = 200
    seed: int = 0
    device: str = "auto"
    amp: bool = False  # bf16/fp16 autocast on CUDA
    compile: bool = False  # torch.compile on CUDA
    ema: float = 0.0  # exponential moving average of weights (0 = off); validation and `best` use it
    threads: int | None = None


@dataclass
class TrainConfig:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.to_dict()), sort_keys=False)


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively (YAML's safe dumper knows no tuples)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint``; int -> float is allowed, nothing else is converted."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(value, option, where)
            except DslrifyError as e:
                errors.append(e)
        raise DslrifyError(f"{where}: {value!r} is not {_name(hint)}")
    if hint is type(None):
        if value is None:
            return None
        raise DslrifyError(f"{where}: expected null, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise DslrifyError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise DslrifyError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise DslrifyError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # PyYAML (YAML 1.1) reads "1e-4" as a string; a float field takes any number Python can parse.
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise DslrifyError(f"{where}: expected {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from nested dicts, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise DslrifyError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise DslrifyError(f"unknown config key {path!r}", f"valid keys here: {', '.join(sorted(names))}")
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value, path)
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` to nested dict ``data`` (value parsed as a YAML scalar or list)."""
    if "=" not in assignment:
        raise DslrifyError(f"--set {assignment!r}: expected key=value, e.g. --set run.max_steps=200")
    key, raw = assignment.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise DslrifyError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file (or defaults when ``path`` is None) + overrides -> a checked ``TrainConfig``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DslrifyError(f"config {p} not found", "see configs/ for examples")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise DslrifyError(f"config {p} is not valid YAML: {e}") from e
        data.setdefault("name", p.stem)
    for assignment in overrides or []:
        apply_override(data, assignment)
    config = from_dict(TrainConfig, data)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Value checks that types cannot express."""
    r, d = config.run, config.data
    if r.max_steps < 1 or r.batch_size < 1:
        raise DslrifyError("run.max_steps and run.batch_size must be at least 1")
    if not 0.0 <= d.val_fraction < 1.0:
        raise DslrifyError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    if d.folds and not 0 <= d.fold < d.folds:
        raise DslrifyError(f"data.fold must be in [0, {d.folds}), got {d.fold}")
    if (d.unpaired_root or d.teacher_on_pairs > 0) and not d.teacher:
        raise DslrifyError(
            "data.unpaired_root and data.teacher_on_pairs need data.teacher (the model that labels)"
        )
    if not 0.0 <= d.unpaired_share <= 1.0 or not 0.0 <= d.teacher_on_pairs <= 1.0:
        raise DslrifyError("data.unpaired_share and data.teacher_on_pairs must be in [0, 1]")
    if not 0.0 <= d.identity_share < 1.0 or not 0.0 <= d.degraded_share < 1.0:
        raise DslrifyError("data.identity_share and data.degraded_share must be in [0, 1)")
    if not 0.0 <= r.ema < 1.0:
        raise DslrifyError(f"run.ema must be in [0, 1), got {r.ema}")
    if config.loss.perceptual < 0 or config.loss.adversarial < 0:
        raise DslrifyError("loss weights must be >= 0")
