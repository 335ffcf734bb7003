"""``fit_look``: a model's colour transform on some photos, fitted as one regularised 3D LUT.

1. **Pairs.** Each photo, shrunk by area averaging to at most ``fit_pixels`` (1 MP: a LUT sees colours,
   not detail, and area averaging keeps the photo's colour statistics apart from its finest edges), is
   run through the model (``Enhancer.enhance_tensor``). Input colours are binned at 8 bit per channel;
   each bin keeps its pixel count, mean input and mean output (exact for 8-bit photos).
2. **Least squares.** The lattice values ``v`` (N³ nodes, each channel alone) minimise
   ``Σ_bins w (A v - y)²`` (``A``: the trilinear weights of a bin's mean input, ``w``: its share of
   pixels) ``+ λ (N-1) Σ_axes |D² v|²`` (squared second differences along r, g and b, a discrete
   thin-plate energy: empty regions continue the data's trend linearly, with no holes and no jumps)
   ``+ μ Σ_nodes c (v - p)²``, a weak prior ``p`` that matters only where no data is near (``c``
   falls with the data density at a node). Solved by conjugate gradients (scipy).
3. **Grey prior.** ``p`` is first the identity; the first fit's grey axis gives a tone curve ``g``
   (made monotone), and the second fit's prior is ``p(x) = x + g(Y(x)) - Y(x)``: empty colours get the
   model's tone change. When the model keeps near-grey inputs neutral (on average it moves them off
   grey by less than 2/255 in every channel: no tint), ``g`` is made neutral and holds the grey axis.
4. **Monotone luminance.** Along the grey axis and every line parallel to it (raising all three
   channels together), the output's CIE luminance is made non-decreasing (isotonic midpoint of the
   running max and min, shifted equally in linear light). Values are then clamped to [0, 1].
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import kornia
import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from scipy.sparse.linalg import cg, splu

from dslrify.errors import DslrifyError
from dslrify.look import DEFAULT_SIZE, Look, LookModel, describe, identity_table
from dslrify.lutfile import check_cube_size
from dslrify.metrics import ciede2000, psnr
from dslrify.models.base import EnhancementModel

if TYPE_CHECKING:
    from dslrify.enhancer import Enhancer

FIT_PIXELS = 1_000_000
SMOOTHNESS = 3e-5  # λ: thin-plate weight against the mean squared error of the data
PRIOR = 1e-2  # μ: pull towards the prior where there is no data
DENSITY = 0.05  # data density (1 = uniform over the cube) at which the prior's weight has halved
COARSE = 17  # lattice solved directly; finer ones start from it (conjugate gradients)
REFINE = 150  # conjugate-gradient steps on a finer lattice
GREY_HOLD = 300.0  # weight of a neutral grey axis, as a data density: held nearly fixed
NEUTRAL = 2 / 255  # near-grey inputs moved off grey by less than this on average: neutral
_REC709 = np.array([0.2126, 0.7152, 0.0722])
PhotoSource = str | os.PathLike | torch.Tensor


@dataclass(frozen=True)
class FitError:
    """LUT(photo) against model(photo): ΔE00 over all pixels (mean, 95th percentile), mean PSNR in dB."""

    photos: int
    mean_de: float
    p95_de: float
    psnr: float

    def line(self, what: str) -> str:
        return (
            f"{what} ({self.photos} photo{'s' * (self.photos != 1)}): ΔE00 mean {self.mean_de:.2f}, "
            f"95th percentile {self.p95_de:.2f}; PSNR {self.psnr:.2f} dB"
        )


@dataclass(frozen=True)
class FitReport:
    fitted: FitError
    check: FitError | None = None

    def lines(self) -> list[str]:
        lines = [self.fitted.line("fit error on the fitted photos")]
        if self.check:
            lines.append(self.check.line("on the check photos (not fitted)"))
        return lines


def photo_list(sources: Sequence[PhotoSource]) -> list[PhotoSource]:
    """``sources`` with every folder or glob pattern replaced by its photos (``dslrify enhance``'s rules:
    no subfolders, no videos); files and tensors as they are. A name that finds nothing is refused."""
    from dslrify.batch import collect_inputs
    from dslrify.video import is_video

    out: list[PhotoSource] = []
    for source in sources:
        if isinstance(source, torch.Tensor):
            out.append(source)
            continue
        found = collect_inputs([os.fspath(source)], recursive=False, suffix="")
        if found.refused:
            raise found.refused[0]
        out.extend(photo for photo, _ in found.found if not is_video(photo))
    return out


def fit_look(
    photos: Sequence[PhotoSource],
    model: str | os.PathLike[str] | EnhancementModel | Enhancer = "default",
    *,
    size: int = DEFAULT_SIZE,
    check: Sequence[PhotoSource] = (),
    strength: float = 1.0,
    device: str = "auto",
    fit_pixels: int = FIT_PIXELS,
    on_photo: Callable[[str], None] | None = None,
) -> Look:
    """Fit ``model``'s transform on ``photos`` (paths, or (1, 3, H, W) tensors in [0, 1]) as a Look.

    ``model``: a model name, checkpoint folder, ``EnhancementModel`` or ``Enhancer``. ``check``: photos
    to measure the fit error on, not fitted. A path may also be a folder or a glob pattern (its photos,
    as ``dslrify enhance`` finds them). ``on_photo(name)`` is called before each photo is run.
    """
    from dslrify.enhancer import Enhancer  # noqa: F811 - at run time, lazily (it imports the model zoo)

    photos, check = photo_list(photos), photo_list(check)
    if not photos:
        raise DslrifyError("fit_look needs at least one photo", "give the photos whose look you want")
    check_cube_size(size)
    enhancer = model if isinstance(model, Enhancer) else Enhancer(model, device=device)
    pairs = [_pair(p, enhancer, fit_pixels, on_photo) for p in photos]
    table = solve_table(*_bins([x for x, _ in pairs], [y for _, y in pairs]), size)
    ident = identity_table(size)
    table = ident + strength * (table - ident)
    look_model = LookModel(table)

    def blended(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.lerp(x, y, strength)

    fitted = _errors(look_model, [(x, blended(x, y)) for x, y in pairs])
    checked = [_pair(p, enhancer, fit_pixels, on_photo) for p in check]
    report = FitReport(
        fitted, _errors(look_model, [(x, blended(x, y)) for x, y in checked]) if check else None
    )
    names = ", ".join(_name(p, i) for i, p in enumerate(photos))
    comments = (
        f"made by dslrify look from the model {enhancer.name}"
        + (f" at strength {strength:g}" if strength != 1 else ""),
        f"fitted on: {names}",
        describe(),
        *(line.replace("ΔE00", "dE00") for line in report.lines()),  # ASCII for older LUT readers
    )
    return Look(table, f"dslrify {enhancer.name}", comments, report)


def _name(photo: PhotoSource, index: int) -> str:
    return Path(photo).name if not isinstance(photo, torch.Tensor) else f"tensor {index}"


def _pair(
    photo: PhotoSource, enhancer: Enhancer, fit_pixels: int, on_photo: Callable[[str], None] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, model output), each (1, 3, h, w) float32, the photo shrunk to at most ``fit_pixels``."""
    from dslrify.photo import read_photo, unit_float

    if on_photo:
        on_photo(_name(photo, 0))
    x = photo if isinstance(photo, torch.Tensor) else read_photo(photo).pixels
    h, w = x.shape[-2:]
    x = unit_float(x)
    if h * w > fit_pixels:
        scale = (fit_pixels / (h * w)) ** 0.5
        x = F.interpolate(x, size=(max(1, int(h * scale)), max(1, int(w * scale))), mode="area")
    return x, enhancer.enhance_tensor(x)


def _bins(xs: list[torch.Tensor], ys: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean input (M, 3), mean output (M, 3) and share of pixels (M,) of each 8-bit input colour."""
    keys, sums_x, sums_y = [], [], []
    for x, y in zip(xs, ys, strict=True):
        px = x[0].reshape(3, -1).T.double().numpy()
        py = y[0].reshape(3, -1).T.double().numpy()
        q = np.rint(np.clip(px, 0, 1) * 255).astype(np.int64)
        keys.append(q[:, 0] << 16 | q[:, 1] << 8 | q[:, 2])
        sums_x.append(px)
        sums_y.append(py)
    key = np.concatenate(keys)
    unique, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    px, py = np.concatenate(sums_x), np.concatenate(sums_y)
    mean_x = np.stack([np.bincount(inverse, px[:, c], len(unique)) for c in range(3)], 1) / counts[:, None]
    mean_y = np.stack([np.bincount(inverse, py[:, c], len(unique)) for c in range(3)], 1) / counts[:, None]
    return mean_x, mean_y, counts / counts.sum()


def trilinear_weights(x: np.ndarray, size: int) -> sp.csr_matrix:
    """(M, size³) sparse: the trilinear weights of colours ``x`` (M, 3) in [0, 1] on the lattice nodes
    (node ``[r, g, b]`` is column ``r * size² + g * size + b``)."""
    t = np.clip(x, 0, 1) * (size - 1)
    i0 = np.minimum(np.floor(t), size - 2).astype(np.int64)
    f = t - i0
    rows, cols, vals = [], [], []
    for corner in range(8):
        d = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        w = np.prod(np.where(d, f, 1 - f), axis=1)
        idx = i0 + d
        rows.append(np.arange(len(x)))
        cols.append(idx[:, 0] * size * size + idx[:, 1] * size + idx[:, 2])
        vals.append(w)
    shape = (len(x), size**3)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


def _thin_plate(size: int) -> sp.csr_matrix:
    """Σ over the three axes of D²ᵀD² (D²: second differences along that axis), size³ x size³."""
    d2 = sp.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(size - 2, size))
    eye = sp.identity(size)
    total = sp.csr_matrix((size**3, size**3))
    for ops in ((d2, eye, eye), (eye, d2, eye), (eye, eye, d2)):
        d = sp.kron(sp.kron(ops[0], ops[1]), ops[2])
        total = total + (d.T @ d)
    return total.tocsr()


def solve_table(x: np.ndarray, y: np.ndarray, w: np.ndarray, size: int) -> np.ndarray:
    """The regularised lattice (size, size, size, 3) for samples ``x`` -> ``y`` (M, 3) with weights
    ``w`` (M,) summing to 1 (see the module docstring, steps 2 to 5)."""
    coarse = min(size, COARSE)
    system = _System(x, y, w, coarse)
    first = system.solve_direct(identity_table(coarse).reshape(-1, 3), system.weight)
    curve, neutral = _grey_curve(first.reshape(coarse, coarse, coarse, 3), x, y, w)
    table = system.solve_direct(*_prior(curve, neutral, system))
    if size > coarse:
        system = _System(x, y, w, size)
        table = system.refine(
            resample(table.reshape(coarse, coarse, coarse, 3), size), *_prior(curve, neutral, system)
        )
    return np.clip(monotone_luminance(table.reshape(size, size, size, 3)), 0, 1)


class _System:
    """The normal equations of step 2 on a ``size``³ lattice, less the prior's terms."""

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, size: int) -> None:
        a = trilinear_weights(x, size)
        aw = a.T.multiply(w).tocsr()
        self.size = size
        self.matrix = (aw @ a + SMOOTHNESS * (size - 1) * _thin_plate(size)).tocsr()
        self.rhs = aw @ y
        density = np.asarray(aw.sum(axis=1)).ravel() * (size - 1) ** 3
        self.weight = PRIOR / (size - 1) ** 3 / (1 + density / DENSITY)

    def solve_direct(self, prior: np.ndarray, weight: np.ndarray) -> np.ndarray:
        system = (self.matrix + sp.diags(weight)).tocsc()
        return splu(system, permc_spec="MMD_AT_PLUS_A").solve(self.rhs + weight[:, None] * prior)

    def refine(self, start: np.ndarray, prior: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Conjugate gradients from ``start`` (the coarse solution): the detail finer than 17³."""
        system = (self.matrix + sp.diags(weight)).tocsr()
        jacobi = sp.diags(1 / system.diagonal())
        rhs = self.rhs + weight[:, None] * prior
        start = start.reshape(-1, 3)
        return np.stack(
            [cg(system, rhs[:, c], x0=start[:, c], maxiter=REFINE, M=jacobi)[0] for c in range(3)], -1
        )


def resample(table: np.ndarray, size: int) -> np.ndarray:
    """``table`` (n, n, n, 3) evaluated trilinearly at the nodes of a ``size``³ lattice (exact when
    ``size - 1`` is a multiple of ``n - 1``: a trilinear cell holds trilinear sub-cells)."""
    n = table.shape[0]
    nodes = identity_table(size).reshape(-1, 3)
    return (trilinear_weights(nodes, n) @ table.reshape(-1, 3)).reshape(size, size, size, 3)


def _grey_curve(table: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, bool]:
    """The first fit's grey axis (size, 3), made monotone (and neutral, if the model keeps near-grey
    inputs neutral), and whether it is neutral."""
    size = table.shape[0]
    curve = table[np.arange(size), np.arange(size), np.arange(size)]
    # Near-grey inputs: does the model move them off grey in one direction (a tint)? Signed, so that a
    # saturation change (spreading near-greys every way) is not mistaken for one.
    near = np.ptp(x, axis=1) < 4 / 255
    off_grey = (y - y.mean(1, keepdims=True)) - (x - x.mean(1, keepdims=True))
    tint = np.average(off_grey[near], axis=0, weights=w[near]) if near.any() else np.zeros(3)
    neutral = bool(np.abs(tint).max() < NEUTRAL)
    if neutral:
        curve = np.repeat(curve.mean(axis=1, keepdims=True), 3, axis=1)
    up, down = np.maximum.accumulate(curve, axis=0), np.minimum.accumulate(curve[::-1], axis=0)[::-1]
    return (up + down) / 2, bool(neutral)


def _prior(curve: np.ndarray, neutral: bool, system: _System) -> tuple[np.ndarray, np.ndarray]:
    """The prior ``x + g(Y(x)) - Y(x)`` on ``system``'s lattice, and the prior's weight per node:
    ``system.weight``, but grey nodes held as if data covered them when the grey curve is neutral."""
    size = system.size
    ident = identity_table(size)
    luma = ident @ _REC709
    t = np.linspace(0, 1, len(curve))
    prior = ident + np.stack([np.interp(luma, t, curve[:, c]) for c in range(3)], -1) - luma[..., None]
    weight = system.weight.copy()
    if neutral:
        grey = np.arange(size) * (size * size + size + 1)
        weight[grey] = np.maximum(weight[grey], GREY_HOLD / (size - 1) ** 3)
    return prior.reshape(-1, 3), weight


def _to_linear(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((np.clip(v, 0.04045, None) + 0.055) / 1.055) ** 2.4)


def _to_srgb(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.clip(v, 0.0031308, None) ** (1 / 2.4) - 0.055)


def luminance(table: np.ndarray) -> np.ndarray:
    """CIE Y (relative luminance, D65) of sRGB-encoded values (..., 3) -> (...)."""
    return _to_linear(np.clip(table, 0, 1)) @ _REC709


def diagonal_decrease(values: np.ndarray) -> float:
    """The largest decrease of ``values`` (size, size, size) from a node to its (+1, +1, +1) neighbour."""
    return float(max(0.0, (values[:-1, :-1, :-1] - values[1:, 1:, 1:]).max()))


def _diagonal_scan(
    values: np.ndarray, op: Callable[[np.ndarray, np.ndarray], np.ndarray], reverse: bool
) -> np.ndarray:
    """Running ``op`` (max or min) along every line parallel to the grey axis."""
    out = values.copy()
    for _ in range(values.shape[0] - 1):  # each round carries the running value one step further
        if reverse:
            out[:-1, :-1, :-1] = op(out[:-1, :-1, :-1], out[1:, 1:, 1:])
        else:
            out[1:, 1:, 1:] = op(out[1:, 1:, 1:], out[:-1, :-1, :-1])
    return out


def monotone_luminance(table: np.ndarray, rounds: int = 4) -> np.ndarray:
    """``table`` with luminance non-decreasing along the grey axis and every line parallel to it."""
    lin = _to_linear(np.clip(table, 0, 1))
    for _ in range(rounds):
        y = lin @ _REC709
        if diagonal_decrease(y) <= 1e-6:
            break
        target = (_diagonal_scan(y, np.maximum, False) + _diagonal_scan(y, np.minimum, True)) / 2
        lin = np.clip(lin + (target - y)[..., None], 0, 1)  # equal shift: Y moves by exactly the gap
    return _to_srgb(lin)


def _errors(model: LookModel, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> FitError:
    """ΔE00 over every pixel of LUT(x) against the target, and the mean PSNR over the photos."""
    des, psnrs = [], []
    with torch.inference_mode():
        for x, target in pairs:
            got = model(x.to(model.lut.device)).cpu()
            lab_got, lab_target = (
                kornia.color.rgb_to_lab(got).double(),
                kornia.color.rgb_to_lab(target).double(),
            )
            des.append(ciede2000(lab_got, lab_target).flatten().float().numpy())
            psnrs.append(float(psnr(got, target)[0]))
    de = np.concatenate(des)
    return FitError(len(pairs), float(de.mean()), float(np.percentile(de, 95)), float(np.mean(psnrs)))
