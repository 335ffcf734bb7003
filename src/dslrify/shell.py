"""What the command line prints, and how: plain-text consoles, one-line errors, progress, signals.

User text (paths, advice such as ``pip install 'dslrify[serve]'``) is never read as rich markup; on a
pipe or a file nothing is wrapped, so paths and tables stay whole; under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from dslrify.errors import DslrifyError, OutputExistsError

if TYPE_CHECKING:
    from dslrify.batch import Job, OnFrame, OnResult, Plan
    from dslrify.cluster.manifest import ManifestRow

try:  # recent typer carries its own copy of click
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - typer before 0.2x uses click itself
    from click import exceptions as click_errors  # type: ignore[no-redef]


def is_main_process() -> bool:
    """False on every rank but 0 under ``torchrun`` (RANK set), so that one process reports."""
    return os.environ.get("RANK", "0") == "0"


def make_console(stderr: bool = False) -> Console:
    """Plain text (no highlighting); on a pipe or file no line wrapping, so paths and tables stay whole."""
    # markup=False: a path like x[bold].jpg or advice like pip install 'dslrify[serve]' prints as it is.
    quiet = not is_main_process()
    console = Console(stderr=stderr, highlight=False, markup=False, quiet=quiet)
    if not console.is_terminal:
        console = Console(
            stderr=stderr, highlight=False, markup=False, quiet=quiet, width=100_000, soft_wrap=True
        )
    return console


def say(console: Console, label: str, style: str, text: str) -> None:
    """``label: text`` with only the label styled: ``text`` (paths, advice) is never read as markup."""
    console.print(Text.assemble((f"{label}:", style), " ", text))


def for_shell(error: DslrifyError) -> str:
    """The error in the CLI's words: the Python API's ``overwrite=True`` is ``--overwrite`` here."""
    if isinstance(error, OutputExistsError):
        return f"{error.message} — pass --overwrite to replace it"
    return str(error)


class OneLineErrors(TyperGroup):
    """Bad options and arguments are one ``error:`` line (click's usage errors, without a panel)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False  # errors come back here to be printed as one line
        try:
            code = super().main(*args, **kwargs)
        except click_errors.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click_errors.UsageError as e:
            command = e.ctx.command_path if e.ctx else "dslrify"
            say(make_console(stderr=True), "error", "red", f"{e.format_message()} — see {command} --help")
            sys.exit(e.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl+C, so that a killed batch stops as cleanly as an interrupted one."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: A video whose expected duration passes this many seconds gets a line saying how long it will take.
LONG_JOB_SECONDS = 30.0


@contextmanager
def batch_progress(console: Console, name: str, plan: Plan) -> Iterator[tuple[OnResult, OnFrame]]:
    """A progress line (photo name, count, elapsed time; also for one photo) and one line per result;
    for a video a second line (frames, frames/s, time left) and, once its speed is known, a line with
    its expected duration when that is long."""
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    jobs = plan.jobs
    count = TextColumn("{task.completed}/{task.total}")
    photo = TextColumn("{task.description}", markup=False)  # a file name is not markup
    rate, left = TextColumn("{task.fields[rate]}"), TimeRemainingColumn()
    columns = [SpinnerColumn(), photo, BarColumn(), count, rate, TimeElapsedColumn(), left]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        state = {"next": 0}
        task = progress.add_task("", total=len(jobs), rate="")
        clip: dict[str, Any] = {"job": None}

        def on_frame(job: Job, done: int, expected: int | None) -> None:
            now = time.perf_counter()
            if clip["job"] is not job:
                if clip["job"] is not None:
                    progress.remove_task(clip["task"])
                task_id: TaskID = progress.add_task(f"  {job.src.name}: frames", total=expected, rate="")
                clip.update(job=job, task=task_id, start=now, told=False)
            elapsed = now - clip["start"]
            fps = done / elapsed if elapsed > 0 else 0.0
            progress.update(clip["task"], completed=done, rate=f"{fps:.1f} frames/s")
            if not clip["told"] and expected and elapsed >= 2.0 and done < expected:
                clip["told"] = True
                total = expected / fps
                if total >= LONG_JOB_SECONDS:
                    progress.console.print(
                        Text(
                            f"{job.src}: {expected} frames at {fps:.1f} frames/s, about {total / 60:.1f} min"
                        )
                    )

        def describe() -> None:
            if state["next"] < len(jobs):
                progress.update(task, description=f"{name}: {jobs[state['next']].src.name}")

        def on_result(job: Job | None, error: DslrifyError | None) -> None:
            if job is not None:
                state["next"] += 1
                progress.advance(task)
                describe()
            if error is None and job is not None:
                progress.console.print(Text(f"{job.src} -> {job.dst}"))
            elif isinstance(error, OutputExistsError):
                say(progress.console, "skipped", "yellow", for_shell(error))
            elif error is not None:
                say(progress.console, "failed", "red", for_shell(error))

        describe()
        yield on_result, on_frame


@contextmanager
def dataset_progress(console: Console) -> Iterator[Callable[[ManifestRow], None]]:
    """A Ray job's progress: a count with photos/s on a terminal, and one line per failed photo (a job
    of millions prints no line per photo; its manifest has them)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("starting the Ray job")
        counts = {"done": 0, "skipped": 0, "failed": 0}
        start = time.perf_counter()

        def on_result(row: ManifestRow) -> None:
            counts[row.status] += 1
            rate = counts["done"] / max(time.perf_counter() - start, 1e-9)
            described = ", ".join(f"{n} {status}" for status, n in counts.items())
            progress.update(task, description=f"{described} ({rate:.2f} photos/s)")
            if row.status == "failed":
                say(progress.console, "failed", "red", row.error)

        yield on_result


def train_progress(console: Console) -> tuple[Any, Callable[..., None]]:
    """A rich progress bar (loss, step rate, ETA) fed by the trainer's events."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
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
