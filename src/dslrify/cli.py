"""The ``dslrify`` command: a thin shell over Enhancer, evaluate(), the trainer and the model table.

Each command parses its options, calls the library and prints; errors the user can fix
(DslrifyError) are one line on stderr and a non-zero exit, with a traceback only under ``--debug``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dslrify import __version__
from dslrify.errors import DslrifyError, OutputExistsError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Turn phone photos into DSLR-quality photos."
)
out = Console()
err = Console(stderr=True)
STATE = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn a DslrifyError into one line on stderr and exit code 1 (traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DslrifyError as e:
            if STATE["debug"]:
                raise
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        out.print(f"dslrify {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """dslrify: enhance photos, train and evaluate enhancement models."""
    STATE["debug"] = debug


@app.command()
@friendly
def enhance(
    inputs: Annotated[
        list[str], typer.Argument(help="Photos, folders or glob patterns.", show_default=False)
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output folder (created if needed); default: beside each input."),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Model name (see `dslrify models`), checkpoint folder or .onnx file."
        ),
    ] = "default",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="CPU threads for the model.")] = None,
    tile: Annotated[
        int | None, typer.Option(help="Tile size in pixels (0: never tile); default: from free memory.")
    ] = None,
    strength: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Blend with the input: 0 = input, 1 = full effect.")
    ] = 1.0,
    suffix: Annotated[str, typer.Option(help="Added to each output's file name.")] = "_dslr",
    ext: Annotated[str, typer.Option(help="Output format: same, jpg, png, tif or webp.")] = "same",
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG/WebP quality.")] = 95,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into subfolders and mirror them in -o.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    max_pixels: Annotated[
        int, typer.Option(help="Refuse photos larger than this (decompression-bomb guard).")
    ] = 200_000_000,
    backend: Annotated[str, typer.Option(help="torch, or onnxruntime for a .onnx --model.")] = "torch",
    half: Annotated[bool, typer.Option("--half", help="fp16 autocast on CUDA.")] = False,
    raw_wb: Annotated[str, typer.Option(help="White balance of RAW/DNG inputs: camera or auto.")] = "camera",
) -> None:
    """Enhance photos; outputs are named STEM + suffix + ext and keep EXIF, XMP and colour profile."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from dslrify.batch import make_output_dirs, plan_jobs
    from dslrify.enhancer import Enhancer

    jobs = plan_jobs(inputs, output, suffix=suffix, ext=ext, recursive=recursive)
    if backend == "onnxruntime":
        from dslrify.export import OnnxModel

        enhancer = Enhancer(
            OnnxModel(model),
            device=device,
            tile=tile,
            strength=strength,
            threads=threads,
            max_pixels=max_pixels,
            raw_wb=raw_wb,
        )
    elif backend == "torch":
        enhancer = Enhancer(
            model,
            device=device,
            tile=tile,
            strength=strength,
            threads=threads,
            max_pixels=max_pixels,
            half=half,
            raw_wb=raw_wb,
        )
    else:
        raise DslrifyError(f"--backend {backend!r} is not supported", "choose torch or onnxruntime")
    make_output_dirs(jobs)  # after the model loaded: a wrong --model leaves no empty folders behind

    done = skipped = failed = 0
    start = time.perf_counter()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, disable=len(jobs) < 2, transient=True) as progress:
        task = progress.add_task(f"enhancing with {enhancer.name}", total=len(jobs))
        pairs = [(j.src, j.dst) for j in jobs]
        for src, dst, error in enhancer.enhance_files(pairs, quality=quality, overwrite=overwrite):
            progress.advance(task)
            if error is None:
                done += 1
                progress.console.print(f"{src} -> {dst}", highlight=False)
            elif isinstance(error, OutputExistsError):
                skipped += 1
                progress.console.print(f"[yellow]skipped:[/yellow] {error}", highlight=False)
            else:
                failed += 1
                progress.console.print(f"[red]failed:[/red] {error}", highlight=False)
    seconds = time.perf_counter() - start
    err.print(f"{done} done, {skipped} skipped, {failed} failed in {seconds:.1f} s", highlight=False)
    if failed or (skipped and not done):
        raise typer.Exit(1)


@app.command("models")
@friendly
def list_models() -> None:
    """List the shipped models."""
    from dslrify.zoo import MODELS

    table = Table(title="dslrify models")
    for col in ("name", "architecture", "description", "training data", "licence"):
        table.add_column(col)
    for e in MODELS.values():
        table.add_row(e.name, e.architecture, e.description, e.training_data, e.licence)
    out.print(table)


@app.command("import-dped")
@friendly
def import_dped_cmd(
    prefix: Annotated[str, typer.Argument(help="TensorFlow checkpoint prefix, e.g. models_orig/iphone_orig")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint folder to write.")],
) -> None:
    """Convert one of DPED's released generators into a dslrify checkpoint folder."""
    from dslrify.convert.dped import import_dped

    out.print(f"wrote {import_dped(prefix, output)} (architecture dped); use it with --model {output}")


@app.command("import-ppcn")
@friendly
def import_ppcn_cmd(
    prefix: Annotated[
        str, typer.Argument(help="PPCN checkpoint prefix: .../teacher.ckpt or .../student.ckpt")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Checkpoint folder to write.")],
) -> None:
    """Convert PPCN's released teacher or student into a dslrify checkpoint folder."""
    from dslrify.convert.ppcn import import_ppcn

    out.print(f"wrote {import_ppcn(prefix, output)}; use it with --model {output}")


@app.command()
@friendly
def evaluate(
    data: Annotated[
        str, typer.Option(help="DPED root (ROOT or ROOT/PHONE), a folder with input/ + target/, or a CSV.")
    ],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="Model name or checkpoint folder (repeatable).")
    ],
    phone: Annotated[
        str | None, typer.Option(help="DPED phone folder (iphone, sony, blackberry).")
    ] = "iphone",
    split: Annotated[str, typer.Option(help="test or train (DPED layout).")] = "test",
    baseline: Annotated[list[str], typer.Option(help="Baselines to include: identity, auto-levels.")] = [],  # noqa: B006
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write the summary table as CSV.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the summary as JSON.")] = None,
    per_image: Annotated[Path | None, typer.Option(help="Write per-pair metrics as CSV.")] = None,
    save_images: Annotated[
        Path | None, typer.Option(help="Write input | output | target strips here.")
    ] = None,
) -> None:
    """Score models on paired data: PSNR and SSIM with 95 % bootstrap intervals, MS-SSIM, ΔE00, speed."""
    import csv
    import json

    from rich.progress import Progress

    from dslrify.baselines import get_baseline
    from dslrify.data import open_pairs
    from dslrify.enhancer import Enhancer
    from dslrify.evaluate import PROTOCOL
    from dslrify.evaluate import evaluate as run_evaluation

    if split not in ("test", "train"):
        raise DslrifyError(f"--split {split!r}: choose test or train")
    dataset = open_pairs(data, phone, split=split)  # type: ignore[arg-type]
    models: dict[str, Callable] = {}
    for b in baseline:
        models[b] = get_baseline(b)
    for m in model:
        enhancer = Enhancer(m, device=device)
        label = enhancer.name if enhancer.name not in models else m  # two folders named alike stay apart
        models[label] = enhancer.enhance_tensor
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(dataset))
        result = run_evaluation(
            models,
            dataset,
            batch_size,
            lambda done, total: progress.update(task, completed=done),
            save_images,
        )

    table = Table(title=f"{data} ({split}, n={len(dataset)})", caption=PROTOCOL)
    for col in ("model", "PSNR dB (95% CI)", "SSIM (95% CI)", "MS-SSIM", "ΔE00", "images/s", "n"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for s in result.summaries:
        table.add_row(
            s.model,
            f"{s.psnr:.2f} ({s.psnr_ci[0]:.2f}–{s.psnr_ci[1]:.2f})",
            f"{s.ssim:.4f} ({s.ssim_ci[0]:.4f}–{s.ssim_ci[1]:.4f})",
            f"{s.ms_ssim:.4f}",
            f"{s.delta_e:.2f}",
            f"{s.images_per_s:.1f}",
            str(s.n),
        )
    out.print(table)
    names = [s.model for s in result.summaries]
    for other in names[1:]:
        d = result.compare(other, names[0])
        out.print(
            f"{other} − {names[0]}: PSNR {d['psnr'].mean:+.2f} dB "
            f"({d['psnr'].low:+.2f} to {d['psnr'].high:+.2f}), "
            f"SSIM {d['ssim'].mean:+.4f} ({d['ssim'].low:+.4f} to {d['ssim'].high:+.4f}), paired, 95% CI"
        )
    if json_path:
        json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    if csv_path:
        rows = result.to_json()["models"]
        with csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if per_image:
        rows = result.per_image_rows()
        with per_image.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def _train_progress() -> tuple[Any, Callable[..., None]]:
    """A rich progress bar (loss, step rate, ETA) fed by the trainer's events."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=err,
    )
    state: dict[str, Any] = {}

    def on_event(kind: str, **data: Any) -> None:
        if kind == "start":
            progress.console.print(f"run folder: {data['run_dir']}\ndata: {data['data']}", highlight=False)
            if "task" in state:
                progress.remove_task(state["task"])
            state["task"] = progress.add_task(
                "training", total=data["total"], completed=data["start"], info=""
            )
        elif kind == "step":
            info = f"loss {data['loss']:.4f}" + (
                f" {data['steps_per_s']:.1f} step/s" if "steps_per_s" in data else ""
            )
            progress.update(state["task"], completed=data["step"], info=info)
        elif kind == "validation":
            progress.console.print(
                f"step {data['step']}: validation PSNR {data['val_psnr']:.2f} dB, "
                f"SSIM {data['val_ssim']:.4f} (best at step {data['best_step']})"
            )
        elif kind == "fold":
            progress.console.print(f"fold {data['fold'] + 1}/{data['folds']}")

    return progress, on_event


@app.command()
@friendly
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config (see configs/).")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="Override a config value: key.sub=value.")] = [],  # noqa: B006
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder from its 'last' checkpoint.")
    ] = None,
) -> None:
    """Train a model; writes config.yaml, log.csv and the checkpoints best/ and last/ into the run folder."""
    from dslrify.train.trainer import train as run_training

    if config is None and resume is None:
        raise DslrifyError("give a CONFIG.yaml or --resume RUN_DIR", "configs/paper.yaml is a good start")
    progress, on_event = _train_progress()
    with progress:
        result = run_training(config, set_, resume, on_event)
    best = result.best
    models = (
        f"{result.run_dir / 'best'} (and {result.run_dir / 'last'})" if best else f"{result.run_dir / 'last'}"
    )
    summary = (
        f"best step {result.best_step}: PSNR {best['val_psnr']:.2f} dB, SSIM {best['val_ssim']:.4f}"
        if best
        else "no validation"
    )
    out.print(f"done at step {result.step}; {summary}; model: {models}")


@app.command()
@friendly
def cv(
    config: Annotated[Path, typer.Argument(help="YAML config (see configs/).")],
    folds: Annotated[int, typer.Option(min=2, help="Number of folds.")] = 3,
    set_: Annotated[list[str], typer.Option("--set", help="Override a config value: key.sub=value.")] = [],  # noqa: B006
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder for the fold runs and cv.json.")
    ] = None,
) -> None:
    """k-fold cross-validation on the training pairs; writes per-fold and mean ± std figures to cv.json."""
    from dslrify.train.cv import run_cv

    progress, on_event = _train_progress()
    with progress:
        summary = run_cv(config, folds, set_, output, on_event)
    for row in summary["folds"]:
        out.print(
            f"fold {row['fold']}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f} "
            f"(best step {row['best_step']})"
        )
    p, s = summary["psnr"], summary["ssim"]
    out.print(
        f"mean ± std over {folds} folds: PSNR {p['mean']:.2f} ± {p['std']:.2f} dB, "
        f"SSIM {s['mean']:.4f} ± {s['std']:.4f}"
    )
    out.print(f"wrote {summary['path']}")


pairs_app = typer.Typer(no_args_is_help=True, help="Build training pairs from your phone and DSLR photos.")
app.add_typer(pairs_app, name="pairs")


@pairs_app.command("build")
@friendly
def pairs_build(
    phone: Annotated[Path, typer.Option("--phone", help="Folder of phone photos.")],
    dslr: Annotated[Path, typer.Option("--dslr", help="Folder of DSLR photos of the same scenes.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Dataset folder to write (DPED layout).")],
    name: Annotated[str, typer.Option(help="Phone folder name: OUT/NAME/training_data/NAME.")] = "phone",
    patch: Annotated[int, typer.Option(help="Patch size in phone pixels.")] = 100,
    stride: Annotated[int, typer.Option(help="Step between patches in phone pixels.")] = 50,
    test_fraction: Annotated[float, typer.Option(help="Share of photo pairs held out for testing.")] = 0.1,
    match: Annotated[str, typer.Option(help="Pair by name (same stem), time (EXIF) or order.")] = "name",
    seed: Annotated[int, typer.Option(help="Seed of the test split.")] = 0,
    max_error: Annotated[float, typer.Option(help="Drop patches misaligned by more than this (px).")] = 1.0,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT/NAME and OUT/report if they exist.")] = False,
) -> None:
    """Align phone/DSLR photo pairs and cut aligned patches into DPED's layout, with a report."""
    from dslrify.pairs import build_dataset

    report = build_dataset(
        phone, dslr, output, name=name, patch=patch, stride=stride, test_fraction=test_fraction,
        match=match, seed=seed, max_patch_error=max_error, overwrite=overwrite,
        log=lambda line: out.print(line, highlight=False, soft_wrap=True),
    )  # fmt: skip
    out.print(report.summary(), highlight=False, soft_wrap=True)


@app.command("export")
@friendly
def export_cmd(
    model: Annotated[str, typer.Argument(help="Model name (see `dslrify models`) or checkpoint folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="ONNX file to write, e.g. model.onnx.")],
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset (9-20); default: the lowest the model needs.")
    ] = None,
) -> None:
    """Export a model to ONNX (dynamic batch, height and width) and check it against PyTorch."""
    from dslrify.export import export_onnx

    with err.status("exporting and checking with onnxruntime"):
        report = export_onnx(model, output, opset)
    for line in report.parity_lines():
        out.print(line, highlight=False)
    out.print(
        f"wrote {report.path} (opset {report.opset}); run it with --backend onnxruntime", highlight=False
    )


@app.command()
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback exposes the page.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model selected first (see `dslrify models`) or folder.")
    ] = "default",
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted, in MB (413 beyond).")] = 100,
    max_pixels: Annotated[
        int | None, typer.Option(help="Largest photo accepted, in pixels; default 50,000,000.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Photos enhanced at the same time.")] = 1,
    queue: Annotated[int, typer.Option(help="Photos waiting beyond those; more get 503 (busy).")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Start a local web page: drop photos, compare before/after, download the results."""
    import ipaddress

    try:
        import uvicorn

        from dslrify.serve import DEFAULT_SERVE_MAX_PIXELS, create_app
    except ImportError as e:
        raise DslrifyError(f"dslrify serve needs {e.name}", "pip install 'dslrify[serve]'") from None

    app_ = create_app(
        model=model, max_upload_mb=max_upload_mb, max_pixels=max_pixels or DEFAULT_SERVE_MAX_PIXELS,
        queue=queue, workers=workers, device=device, preload=True,
    )  # fmt: skip
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        err.print(
            f"[yellow]warning:[/yellow] bound to {host}: anyone who can reach this machine can upload "
            "photos and use its CPU/GPU (no login). Use --host 127.0.0.1 to keep it local.",
            highlight=False,
        )
    shown = f"[{host}]" if ":" in host else host
    out.print(f"dslrify serve: open http://{shown}:{port}/  (Ctrl+C to stop)", highlight=False)
    uvicorn.run(app_, host=host, port=port, log_level="warning")


if __name__ == "__main__":  # `python -m dslrify.cli`, as torchrun's -m needs
    app()
