"""ONNX export with a parity check, and ``OnnxModel``: an exported file behind the Enhancer's interface.

The exported graph is the whole-image forward pass: input ``image`` float32 ``(N, 3, H, W)`` RGB in
``[0, 1]``, output ``enhanced`` of the same shape, clamped to ``[0, 1]`` as ``model(x)`` is. N, H and W are
dynamic. What is traced is the model's own ``export_module()``: architectures with size-dependent Python
(thumbnails, padding) give a traceable wrapper in their own file. The graph computes its whole-image
statistics (global branch, instance norm) from the image it is given, so it cannot take a context
shared between tiles: an ``OnnxModel`` always runs whole.

Export uses PyTorch's TorchScript-based exporter (``dynamo=False``): tracing with ``dynamic_axes``
keeps shape arithmetic in the graph, which is what dynamic H/W needs here. Each export is checked
against PyTorch with onnxruntime on fixed-seed random images before the file is put in place.
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dslrify.errors import DslrifyError, ModelError, first_line
from dslrify.files import atomic_path
from dslrify.models.base import EnhancementModel, ModelSpec
from dslrify.models.detail import DetailEnhancer

INPUT_NAME = "image"
OUTPUT_NAME = "enhanced"
# Opset 9 is the TorchScript exporter's base opset and the first where weights need not also be graph
# inputs; nothing lower is worth producing. 20 is the highest that exporter supports.
MIN_OPSET = 9
MAX_OPSET = 20
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((480, 640), (720, 1280))  # (H, W): 640x480 and 1280x720
TOLERANCE = 1e-4
# Odd, small and not a multiple of any pooling factor: tracing is quick, and a size that the exporter
# baked into the graph as a constant shows up in the parity check at the (different) check sizes.
TRACE_SIZE = (67, 93)
INSTALL_ADVICE = "install the ONNX extras: pip install 'dslrify[onnx]'"


@dataclass(frozen=True)
class ExportReport:
    """What ``export_onnx`` wrote and how closely onnxruntime reproduces PyTorch.

    ``sizes`` are ``(H, W)`` pairs; ``max_abs_diff[(H, W)]`` is the largest absolute difference between
    the onnxruntime (CPU) and PyTorch outputs on a fixed-seed random image of that size in ``[0, 1]``.
    """

    path: Path
    opset: int
    architecture: str
    sizes: tuple[tuple[int, int], ...]
    max_abs_diff: dict[tuple[int, int], float]
    tolerance: float = TOLERANCE
    # Opsets tried below ``opset`` and why each failed (the exporter's first line), lowest first.
    rejected: dict[int, str] = field(default_factory=dict)

    def parity_lines(self) -> list[str]:
        """One line per size, e.g. ``640x480: max abs diff 3.1e-06 (<= 1e-4)`` (width x height)."""
        tol = f"{self.tolerance:.0e}".replace("e-0", "e-")
        return [f"{w}x{h}: max abs diff {self.max_abs_diff[(h, w)]:.1e} (<= {tol})" for h, w in self.sizes]


# -- export --------------------------------------------------------------------------------------------


def _require_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ModelError(
            f"ONNX export needs onnx and onnxruntime ({e.name} is missing)", INSTALL_ADVICE
        ) from e
    return onnx, onnxruntime


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the TorchScript exporter from printing.

    In torch 2.13 it switches its C++ log on (and leaves it on) and, when an op is missing at the
    opset being tried, dumps the whole TorchScript graph to stdout; the log function is silenced here
    and the switch put back. Its deprecation and tracer warnings are about its internals: the parity
    check is what tells whether the traced graph is right.
    """
    c = torch._C
    log = getattr(c, "_jit_onnx_log", None)
    is_enabled = getattr(c, "_jit_is_onnx_log_enabled", None)
    was_enabled = is_enabled() if callable(is_enabled) else None
    if log is not None:
        c._jit_onnx_log = lambda *args: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if log is not None:
            c._jit_onnx_log = log
        if was_enabled is not None:
            c._jit_set_onnx_log_enabled(was_enabled)


def _export_once(module: nn.Module, path: str, opset: int) -> None:
    example = torch.rand(1, 3, *TRACE_SIZE, generator=torch.Generator().manual_seed(0))
    axes = {0: "batch", 2: "height", 3: "width"}
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            do_constant_folding=True,
        )


def _session(path: str | os.PathLike, providers: Sequence[str] | None = None) -> Any:
    """An onnxruntime session that logs only errors (its warnings would break the CLI's one-line rule)."""
    _, ort = _require_onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))


def check_parity(
    onnx_path: str | os.PathLike,
    model: EnhancementModel,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    seed: int = 0,
    batch: int = 1,
) -> dict[tuple[int, int], float]:
    """Max |onnxruntime(CPU) - PyTorch| per ``(H, W)`` on fixed-seed random images in [0, 1].

    PyTorch runs ``model(x)`` itself (not the export wrapper), so this measures the whole chain, in
    float32 (a detail path that would run in bfloat16 on this CPU is compared in float32, as exported).
    A shape mismatch counts as an infinite difference.
    """
    session = _session(onnx_path)
    model = copy.deepcopy(model).cpu().float().eval()  # the caller's model keeps its device and dtype
    for part in model.modules():
        if isinstance(part, DetailEnhancer):  # the graph computes in float32: compare like with like
            part.precision = "float32"
    diffs: dict[tuple[int, int], float] = {}
    for k, (h, w) in enumerate(sizes):
        x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed + k))
        with torch.inference_mode():
            expected = model(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        diffs[(h, w)] = float(np.abs(got - expected).max()) if got.shape == expected.shape else math.inf
    return diffs


def _resolve(model: str | os.PathLike | EnhancementModel) -> tuple[EnhancementModel, str, str]:
    """(private CPU float32 copy in eval mode, architecture name, label)."""
    from dslrify.zoo import resolve_model

    if isinstance(model, EnhancementModel):
        net, architecture, label = model, type(model).__name__, type(model).__name__
    elif isinstance(model, nn.Module):
        raise ModelError(
            f"{type(model).__name__} is not an EnhancementModel",
            "export a generator (photo in, photo out), not a discriminator",
        )
    else:
        net, config, label = resolve_model(model)
        architecture = config.get("architecture", type(net).__name__)
    # A copy: export moves the model to the CPU and float32, which must not happen to the caller's.
    return copy.deepcopy(net).cpu().float().eval(), architecture, label


def _add_metadata(onnx: Any, path: str, model: EnhancementModel, architecture: str, label: str) -> None:
    """Record what the file is in its metadata_props (OnnxModel reads bytes_per_pixel back)."""
    from dslrify import __version__

    proto = onnx.load(path)
    proto.doc_string = (
        f"dslrify {label} ({architecture}): {INPUT_NAME} float32 (N, 3, H, W) RGB in [0, 1] -> "
        f"{OUTPUT_NAME} float32 (N, 3, H, W); whole-image forward pass"
    )
    meta = {
        "dslrify_version": __version__,
        "architecture": architecture,
        "source": label,
        "input": f"{INPUT_NAME}: float32 (N, 3, H, W), RGB, [0, 1]",
        "output": f"{OUTPUT_NAME}: float32 (N, 3, H, W), RGB; clip to [0, 1] before saving",
        "receptive_field": str(model.spec.receptive_field),
        "size_multiple": str(model.spec.size_multiple),
        "bytes_per_pixel": str(model.spec.bytes_per_pixel),
    }
    # The exporter names the output's channel axis after the slice that made it ("Slice..._dim_1");
    # state what it is, so runtimes and readers see the same (batch, 3, height, width) as the input.
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            for dim, name in zip(dims, ("batch", None, "height", "width"), strict=True):
                if name is None:
                    dim.dim_value = 3  # setting the value clears the symbolic name (a oneof)
                else:
                    dim.dim_param = name
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


def export_onnx(
    model: str | os.PathLike | EnhancementModel,
    out: str | os.PathLike,
    opset: int | None = None,
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    tolerance: float = TOLERANCE,
) -> ExportReport:
    """Export ``model`` (name, checkpoint folder or EnhancementModel) to the ONNX file ``out``.

    The graph maps ``image`` float32 (N, 3, H, W) RGB [0, 1] to ``enhanced`` (N, 3, H, W) with N, H and
    W dynamic. ``opset=None`` picks the lowest opset from 9 to 20 that exports and loads in onnxruntime
    (a lower one reaches more runtimes); an explicit ``opset`` is used as given. The file is then run
    with onnxruntime (CPU) on fixed-seed random images of each ``(H, W)`` in ``sizes`` and compared with
    PyTorch; a difference above ``tolerance`` raises DslrifyError and leaves no file. The file appears
    atomically (written beside ``out`` and renamed), so ``out`` is never half-written.
    """
    if opset is not None and not MIN_OPSET <= opset <= MAX_OPSET:
        raise DslrifyError(
            f"opset {opset} is not supported", f"choose {MIN_OPSET} to {MAX_OPSET}, or omit it for the lowest"
        )
    out = Path(out).expanduser()
    if out.is_dir():
        raise DslrifyError(f"{out} is a folder", "give a file name, e.g. -o model.onnx")
    onnx, _ = _require_onnx()
    net, architecture, label = _resolve(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = net.export_module()
    candidates = [opset] if opset is not None else list(range(MIN_OPSET, MAX_OPSET + 1))
    rejected: dict[int, str] = {}

    with atomic_path(out) as tmp_path:
        tmp = str(tmp_path)
        skip_below = 0
        for version in candidates:
            if version < skip_below:
                continue
            try:
                _export_once(module, tmp, version)
            except torch.onnx.OnnxExporterError as e:  # an op this opset lacks: try a later one
                rejected[version] = first_line(e)
                # "Support for this operator was added in version 12": skip the opsets in between.
                needed = re.search(r"added in version (\d+)", str(e))
                skip_below = int(needed.group(1)) if needed else version + 1
                continue
            except Exception as e:  # tracing itself failed: no opset will help
                raise ModelError(
                    f"cannot export {label} to ONNX: {first_line(e)}", "run with --debug for the traceback"
                ) from e
            try:
                _add_metadata(onnx, tmp, net, architecture, label)
                _session(tmp)  # onnxruntime may lack a kernel for some (op, opset) pair: try the next
            except Exception as e:  # onnx and onnxruntime errors share no base class
                rejected[version] = f"onnx/onnxruntime rejected the graph: {first_line(e)}"
                continue
            diffs = check_parity(tmp, net, sizes)
            worst = max(diffs.values())
            if not worst <= tolerance:  # also catches NaN
                detail = ", ".join(f"{w}x{h}: {d:.2e}" for (h, w), d in diffs.items())
                raise DslrifyError(
                    f"the ONNX export of {label} differs from PyTorch ({detail}; tolerance {tolerance:.0e})",
                    "the model's forward pass probably depends on Python arithmetic on the image size, "
                    "which tracing freezes; give it an export-friendly form in its export_module()",
                )
            # Returning leaves the block, which renames the checked file onto ``out``.
            return ExportReport(out, version, architecture, tuple(sizes), diffs, tolerance, rejected)
        # No opset worked: raise inside the block, so the temporary file is removed, not renamed.
        if opset is not None:
            raise ModelError(
                f"cannot export {label} at opset {opset}: {rejected[opset]}",
                "omit --opset to use the lowest opset that works",
            )
        reasons = "; ".join(f"opset {v}: {r}" for v, r in rejected.items())
        raise ModelError(f"cannot export {label} to ONNX at any opset {MIN_OPSET}-{MAX_OPSET}", reasons[:600])


# -- running an exported file --------------------------------------------------------------------------


class OnnxModel(EnhancementModel):
    """An exported ``.onnx`` file run by onnxruntime, usable wherever an EnhancementModel is.

    ``forward(x)``: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H, W) float32 on ``x``'s device, computed
    by onnxruntime on the whole input (CUDA provider when onnxruntime has it, else CPU). The graph takes
    no shared context, so it must never be tiled: ``spec.tileable`` is False and a
    non-None ``context`` raise ModelError rather than silently giving each tile its own look.
    ``metadata`` holds the file's metadata_props (architecture, dslrify version, ...).
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ModelError("--backend onnxruntime needs the onnxruntime package", INSTALL_ADVICE) from e
        self.path = Path(path).expanduser()
        self.label = self.path.name  # what the CLI's progress and summaries call this model
        export_hint = "export one with `dslrify export MODEL -o model.onnx`"
        if self.path.is_dir() or (not self.path.exists() and self.path.suffix != ".onnx"):
            raise ModelError(
                f"{path}: onnxruntime needs a .onnx file", f"{export_hint}, or use --backend torch"
            )
        if not self.path.is_file():
            raise ModelError(f"{self.path} does not exist", export_hint)
        if providers is None:
            available = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = _session(self.path, providers)
        except Exception as e:  # onnxruntime raises its own (pybind) exception types
            raise ModelError(
                f"cannot load {self.path} as an ONNX model: {first_line(e, 160)}",
                f"the file is damaged or not an ONNX model; {export_hint}",
            ) from e
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        if len(inputs) != 1 or len(outputs) < 1 or len(shape) != 4 or shape[1] not in (3, "3"):
            found = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise ModelError(
                f"{self.path} does not take one (N, 3, H, W) image (inputs: {found})", export_hint
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        per_pixel = self.metadata.get("bytes_per_pixel", "")
        # The Enhancer runs a model that is not tileable whole, whatever the photo's size; the memory
        # estimate is the source model's.
        self.spec = ModelSpec(
            bytes_per_pixel=int(per_pixel) if per_pixel.isdigit() else 1024, context="none", tileable=False
        )

    def _no_tiles(self) -> ModelError:
        return ModelError(
            f"{self.path.name} (ONNX) runs on whole photos only and cannot be tiled",
            "pass --tile 0 (Enhancer(tile=0)) to run it whole, or use --backend torch for very large photos",
        )

    def enhance(self, x: torch.Tensor, context: Any, origin: tuple[int, int] | None) -> torch.Tensor:
        """(N, 3, H, W) float RGB in [0, 1] -> (N, 3, H, W) float32 on ``x``'s device."""
        if context is not None or origin is not None:
            raise self._no_tiles()
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        try:
            (y,) = self.session.run([self.output_name], {self.input_name: array})
        except Exception as e:  # onnxruntime's own types; most often memory for a huge photo
            raise ModelError(
                f"onnxruntime failed on a {array.shape[3]}x{array.shape[2]} image: {first_line(e, 160)}",
                "a photo too large to run whole needs --backend torch, which tiles it",
            ) from e
        return torch.from_numpy(y).to(x.device)
