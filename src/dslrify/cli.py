"""The ``dslrify`` command: a thin shell over the batch runner, evaluate(), the trainer and the model table.

Each command parses its options, calls the library and prints; errors the user can fix
(DslrifyError, or a bad option) are one line on stderr and a non-zero exit, with a traceback only
under ``--debug``. User text (paths, advice) is printed as plain text, never as rich markup.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from dslrify import __version__
from dslrify.errors import DslrifyError
from dslrify.shell import (
    OneLineErrors,
    batch_progress,
    dataset_progress,
    for_shell,
    make_console,
    say,
    sigterm_as_interrupt,
    train_progress,
)

F = TypeVar("F", bound=Callable[..., Any])
STATE = {"debug": False}


out, err = make_console(), make_console(stderr=True)


# photo.DEFAULT_MAX_PIXELS, written out so that `dslrify --help` does not import torch (tested equal).
MAX_PIXELS = 100_000_000

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    help="Turn phone photos into DSLR-quality photos.",
)


def friendly(func: F) -> F:
    """Turn a DslrifyError into one line on stderr and exit code 1 (traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DslrifyError as e:
            if STATE["debug"]:
                raise
            say(err, "error", "red", for_shell(e))
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
    global out, err
    out, err = make_console(), make_console(stderr=True)  # the streams of this run (a test runner swaps them)
    STATE["debug"] = debug


def _device(value: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", value):
        raise typer.BadParameter(f"{value!r} is not a device; choose auto, cpu, cuda, cuda:N or mps")
    return value


@app.command()
@friendly
def enhance(
    inputs: Annotated[
        list[str], typer.Argument(help="Photos, videos, folders or glob patterns.", show_default=False)
    ],
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="Output folder (created if needed); default: beside each input."),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model", "-m", help="Model name (see `dslrify models`), checkpoint folder or .onnx file."
        ),
    ] = "default",
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="Run on a Ray cluster: auto (the running one), local (start one here) or its ADDRESS. "
            "Inputs and -o may then be s3://, gs:// or hdfs:// URIs; a re-run does what is left.",
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(min=1, help="Ray workers; default: as many as the cluster's CPUs (or GPUs) allow."),
    ] = None,
    ray_gpus_per_worker: Annotated[
        float, typer.Option(min=0.0, help="GPUs per Ray worker (0: CPU workers; 0.5: two share a GPU).")
    ] = 0.0,
    ray_manifest: Annotated[
        Path | None,
        typer.Option(
            help="The Ray job's JSON Lines record; default OUT/dslrify-manifest.jsonl, or ./ for URIs."
        ),
    ] = None,
    device: Annotated[str, typer.Option(callback=_device, help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads for the model.")] = None,
    tile: Annotated[
        int | None,
        typer.Option(min=0, help="Tile size in pixels (0: never tile); default: from free memory."),
    ] = None,
    strength: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Blend with the input: 0 = input, 1 = full effect.")
    ] = 1.0,
    suffix: Annotated[str, typer.Option(help="Added to each output's file name.")] = "_dslr",
    ext: Annotated[
        str, typer.Option(help="Output format: same, jpg, jpeg, png, tif, tiff, webp (or heic).")
    ] = "same",
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG/WebP quality.")] = 95,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into subfolders and mirror them in -o.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse photos larger than this (decompression-bomb guard).")
    ] = MAX_PIXELS,
    raw_wb: Annotated[str, typer.Option(help="White balance of RAW/DNG inputs: camera or auto.")] = "camera",
    allow_truncated: Annotated[
        bool,
        typer.Option("--allow-truncated", help="Enhance what a truncated file holds instead of refusing it."),
    ] = False,
    backend: Annotated[
        str | None, typer.Option(help="torch or onnxruntime; default: onnxruntime for a .onnx --model.")
    ] = None,
    half: Annotated[
        bool,
        typer.Option(
            "--half",
            help="Half precision: fp16 on CUDA, bfloat16 on CPUs that have it natively (AVX512-BF16, AMX); "
            "faster for the full-resolution models, a few 8-bit levels off.",
        ),
    ] = False,
    crf: Annotated[
        int | None, typer.Option(min=0, max=63, help="Video quality (lower: better); default per codec.")
    ] = None,
    codec: Annotated[
        str | None, typer.Option(help="Video encoder; default: libx264 (libvpx-vp9 for .webm).")
    ] = None,
    look: Annotated[
        Path | None,
        typer.Option("--look", help="Apply a 3D LUT (.cube or Hald CLUT image) instead of a model."),
    ] = None,
) -> None:
    """Enhance photos and videos; outputs are named STEM + suffix + ext and keep their metadata.

    Photos keep EXIF, XMP and colour profile; videos keep their container, timing, rotation and sound.
    """
    onnx = backend == "onnxruntime" or model.lower().endswith(".onnx")
    if half and (look is not None or onnx):
        advice = "drop --half: an ONNX model or a --look runs as it is"
        raise DslrifyError("--half is for PyTorch models", advice)
    if ray is not None:
        if overwrite or device != "auto" or onnx:
            raise DslrifyError(
                "--ray runs torch models on CPU or, with --ray-gpus-per-worker, CUDA, and never replaces "
                "an output (a re-run resumes)",
                "leave out --overwrite, --device and ONNX models with --ray",
            )
        _enhance_on_ray(
            ray,
            inputs,
            output,
            model if look is None else _look_engine(look, model, backend),
            workers=ray_workers,
            gpus_per_worker=ray_gpus_per_worker,
            manifest=ray_manifest,
            threads=threads,
            tile=tile,
            strength=strength,
            quality=quality,
            suffix=suffix,
            ext=ext,
            recursive=recursive,
            max_pixels=max_pixels,
            half=half,
            allow_truncated=allow_truncated,
            raw_wb=raw_wb,
        )
    if output is not None and "://" in output:
        raise DslrifyError(f"-o {output}: URIs are for Ray jobs", "add --ray local (or auto, or an address)")
    from dslrify.batch import plan_jobs, run_batch
    from dslrify.enhancer import Enhancer
    from dslrify.video_io import check_encoder

    if codec is not None:
        check_encoder(codec)
    plan = plan_jobs(inputs, output, suffix=suffix, ext=ext, recursive=recursive)
    engine = _engine(model, backend) if look is None else _look_engine(look, model, backend)
    enhancer = Enhancer(
        engine,
        device=device,
        tile=tile,
        strength=strength,
        threads=threads,
        max_pixels=max_pixels,
        half=half,
        allow_truncated=allow_truncated,
        raw_wb=raw_wb,
    )
    with batch_progress(err, enhancer.name, plan) as (on_result, on_frame), sigterm_as_interrupt():
        report = run_batch(
            enhancer,
            plan,
            quality=quality,
            overwrite=overwrite,
            on_result=on_result,
            crf=crf,
            codec=codec,
            on_frame=on_frame,
        )
    if report.interrupted:
        for job in report.done:
            say(err, "finished", "green", str(job.dst))
    err.print(report.summary())
    raise typer.Exit(report.exit_code)


def _enhance_on_ray(
    address: str, inputs: list[str], output: str | None, model: Any, **options: Any
) -> NoReturn:
    """``enhance --ray``: the job on a Ray cluster (:func:`dslrify.cluster.enhance_dataset`)."""
    from dslrify.cluster import enhance_dataset

    with dataset_progress(err) as on_result, sigterm_as_interrupt():
        report = enhance_dataset(inputs, output, model=model, address=address, on_result=on_result, **options)
    err.print(report.summary())
    raise typer.Exit(report.exit_code)


def _engine(model: str, backend: str | None) -> Any:
    """What Enhancer runs: the model name or folder for torch, an OnnxModel for onnxruntime."""
    backend = backend or ("onnxruntime" if model.lower().endswith(".onnx") else "torch")
    if backend == "torch":
        return model
    if backend == "onnxruntime":
        from dslrify.export import OnnxModel

        return OnnxModel(model)
    raise DslrifyError(f"--backend {backend!r} is not supported", "choose torch or onnxruntime")


def _look_engine(path: Path, model: str, backend: str | None) -> Any:
    """The LookModel of a LUT file for ``--look`` (which replaces --model and --backend)."""
    if model != "default" or backend is not None:
        raise DslrifyError("--look replaces the model", "give either --look or --model/--backend")
    from dslrify.look import Look

    return Look.load(path).model()


@app.command("look")
@friendly
def look_cmd(
    photos: Annotated[
        list[Path], typer.Argument(help="Photos (or folders, globs) whose look to fit.", show_default=False)
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="LUT file to write: .cube or .png (Hald).")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model name (see `dslrify models`) or checkpoint folder.")
    ] = "default",
    size: Annotated[
        int | None, typer.Option(help="Entries per side of a .cube LUT (2-256); default 33.")
    ] = None,
    format: Annotated[
        str | None, typer.Option("--format", help="cube or hald; default: from the output's extension.")
    ] = None,
    hald_level: Annotated[
        int, typer.Option(help="Hald CLUT level L: L² entries per side (8 gives 64³).")
    ] = 8,
    strength: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Blend with the identity: 0 = none, 1 = full look.")
    ] = 1.0,
    check: Annotated[
        list[Path] | None,
        typer.Option(
            "--check",
            help="Photo, folder or quoted glob to measure the fit on, not fitted (one per --check).",
        ),
    ] = None,
    device: Annotated[str, typer.Option(callback=_device, help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
) -> None:
    """Export the model's colour and tone transform on PHOTOS as a 3D LUT (.cube or Hald CLUT PNG)."""
    from dslrify.look import lut_format
    from dslrify.lookfit import fit_look

    fmt, n = lut_format(output, format, size, hald_level)
    with err.status("fitting the look") as status:
        look = fit_look(
            photos, model, size=n, check=check or [], strength=strength, device=device,
            on_photo=lambda name: status.update(Text(f"running the model on {name}")),
        )  # fmt: skip
    for line in look.fit.lines() if look.fit else []:
        out.print(line, highlight=False)
    out.print(f"wrote {look.save(output, fmt)} ({n}³, trilinear)", highlight=False)


@app.command("models")
@friendly
def list_models() -> None:
    """List the shipped models (for their speed on this machine: python benchmarks/speed.py)."""
    from dslrify.zoo import MODELS, measured_speed

    speed = measured_speed()
    caption = "12.2 MP photo JPEG -> JPEG as measured by benchmarks/speed.py; on this machine: run it"
    table = Table(title="dslrify models", caption=caption)
    for col in ("name", "architecture", "description", "speed", "training data", "licence"):
        table.add_column(col)
    for e in MODELS.values():
        cells = (e.name, e.architecture, e.description, speed.get(e.name, "-"), e.training_data, e.licence)
        table.add_row(*(Text(v) for v in cells))
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
    device: Annotated[str, typer.Option(callback=_device, help="auto, cpu, cuda or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write the summary table as CSV.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the summary as JSON.")] = None,
    per_image: Annotated[Path | None, typer.Option(help="Write per-pair metrics as CSV.")] = None,
    save_images: Annotated[
        Path | None, typer.Option(help="Write input | output | target strips here.")
    ] = None,
) -> None:
    """Score models on paired data: PSNR and SSIM with 95 % bootstrap intervals, MS-SSIM, ΔE00, speed."""
    from rich.progress import Progress

    from dslrify.data import open_pairs
    from dslrify.evaluate import PROTOCOL, load_models
    from dslrify.evaluate import evaluate as run_evaluation

    if split not in ("test", "train"):
        raise DslrifyError(f"--split {split!r}: choose test or train")
    dataset = open_pairs(data, phone, split=split)  # type: ignore[arg-type]
    models = load_models(model, baseline, device)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(dataset))
        result = run_evaluation(
            models, dataset, batch_size, lambda done, _: progress.update(task, completed=done), save_images
        )
    out.print(result.table(f"{data} ({split}, n={len(dataset)})"))
    for line in [PROTOCOL, *result.comparison_lines()]:
        out.print(Text(line))
    for path, write in (
        (json_path, result.write_json),
        (csv_path, result.write_csv),
        (per_image, result.write_per_image_csv),
    ):
        if path:
            write(path)


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
    progress, on_event = train_progress(err)
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

    progress, on_event = train_progress(err)
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
    test_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of photo pairs held out for testing.")
    ] = 0.1,
    match: Annotated[str, typer.Option(help="Pair by name (same stem), time (EXIF) or order.")] = "name",
    seed: Annotated[int, typer.Option(help="Seed of the test split.")] = 0,
    max_error: Annotated[
        float, typer.Option(min=0.0, help="Drop patches misaligned by more than this (px).")
    ] = 1.0,
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
        int | None,
        typer.Option(min=9, max=20, help="ONNX opset (9-20); default: the lowest the model needs."),
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
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model selected first (see `dslrify models`) or folder.")
    ] = "default",
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest upload accepted, in MB (413 beyond).")
    ] = 100,
    max_pixels: Annotated[
        int | None, typer.Option(min=1, help="Largest photo accepted, in pixels; default 50,000,000.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Photos enhanced at the same time.")] = 1,
    queue: Annotated[int, typer.Option(min=0, help="Photos waiting beyond those; more get 503 (busy).")] = 8,
    device: Annotated[str, typer.Option(callback=_device, help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    allow_host: Annotated[
        list[str] | None,
        typer.Option("--allow-host", help="Another host name the page answers to (repeatable)."),
    ] = None,
) -> None:
    """Start a local web page: drop photos, compare before/after, download the results."""
    import ipaddress

    from dslrify.serve import DEFAULT_SERVE_MAX_PIXELS, bind_socket, create_app, run_app

    sock = bind_socket(host, port)  # a busy port is one line, before anything is printed
    app_ = create_app(
        model=model, max_upload_mb=max_upload_mb, max_pixels=max_pixels or DEFAULT_SERVE_MAX_PIXELS,
        queue=queue, workers=workers, device=device, preload=True, host=host, allow_hosts=allow_host or (),
    )  # fmt: skip
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        say(
            err, "warning", "yellow", f"bound to {host}: anyone who can reach this machine can upload "
            "photos and use its CPU/GPU (no login). Use --host 127.0.0.1 to keep it local.",
        )  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    out.print(f"dslrify serve: open http://{shown}:{port}/  (Ctrl+C to stop)", highlight=False)
    run_app(app_, sock)


@app.command("cv-collect")
@friendly
def cv_collect(
    roots: Annotated[
        list[Path] | None, typer.Argument(help="Folders holding cv-NAME/cv.json (from dslrify cv).")
    ] = None,
    data: Annotated[Path, typer.Option(help="DPED root of the folds.")] = Path("../shared/data/dped"),
    dped: Annotated[Path, typer.Option(help="DPED's model (import-dped).")] = Path("runs/dped-iphone"),
    ppcn: Annotated[Path, typer.Option(help="PPCN's teacher (import-ppcn).")] = Path("runs/ppcn-teacher"),
    student: Annotated[Path, typer.Option(help="PPCN's student.")] = Path("runs/ppcn-student"),
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for cv-results.*")] = Path(
        "docs/models"
    ),
    shipped: Annotated[list[str], typer.Option(help="MODEL=CANDIDATE; default: the shipped table.")] = [],  # noqa: B006
    recipe: Annotated[list[str], typer.Option(help="NAME=TEXT: what a candidate is.")] = [],  # noqa: B006
    merge: Annotated[bool, typer.Option(help="Keep the candidates already in OUTPUT.")] = False,
) -> None:
    """Gather cross-validation results with the reference models into OUTPUT/cv-results.{json,md}."""
    from dslrify.train.cv import assignments, collect_cv

    refs = {"dped-official": dped, "ppcn-teacher": ppcn, "ppcn-student": student}
    table = collect_cv(
        roots or [], data, refs, output, assignments(shipped) or None, merge, assignments(recipe)
    )
    out.print(f"{len(table['candidates'])} candidates; wrote {output / 'cv-results.json'} and .md")


if __name__ == "__main__":  # `python -m dslrify.cli`, as torchrun's -m needs
    app()
