"""``enhance_dataset``: one Ray Data pipeline from a list of photos to their outputs and a manifest.

    job list (driver) ─► read bytes (tasks, 1/4 CPU) ─► decode, enhance, encode, write (actor pool)
                     ─► one row per photo back to the driver ─► manifest + report

Resources: each actor asks for ``cpus_per_worker - 1/4`` CPUs (and ``gpus_per_worker`` GPUs), so
that a node whose CPUs are all promised to actors still runs the read tasks feeding them. An actor
runs the model on ``threads`` torch threads (default: its whole CPUs).

Memory stays bounded by backpressure: Ray Data's streaming executor starts a read only while the
photos waiting for actors fit its object store budget, each actor holds at most
:data:`TASKS_PER_WORKER` photos, and a block carries one photo (:data:`BLOCK_BYTES`); a worker holds
one photo decoded at a time.

Crashes: a worker process that dies is restarted (``max_restarts=-1``) and its batch retried on it
(``max_task_retries``); what the dead try had already written exists and is not redone. A batch whose
worker dies on every try is given up without stopping the job (``max_errored_blocks=-1``): its photos
are ``failed`` in the manifest unless their outputs exist. An unexpected exception in a worker (a bug)
stops the job with its traceback. A re-run skips every output that exists, so it finishes the job
whatever stopped it, the driver included.
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from dslrify.batch import Job, make_output_dirs, remove_empty_dirs
from dslrify.cluster.listing import DatasetJob, plan_dataset
from dslrify.cluster.manifest import MANIFEST_NAME, DatasetReport, Manifest, ManifestRow
from dslrify.cluster.storage import (
    Location,
    existing,
    locate,
    make_folder,
    parent,
    read_photos,
    remove_job_temporaries,
)
from dslrify.cluster.worker import CRASHED, DONE, FAILED, SKIPPED, EnhanceWorker, WorkerSettings
from dslrify.errors import DslrifyError, first_line
from dslrify.files import remove_stale_temporaries
from dslrify.models import EnhancementModel
from dslrify.photo import DEFAULT_MAX_PIXELS
from dslrify.zoo import MODELS

READ_CPUS = 0.25  # per read task; also what each worker leaves free of its share
READ_BATCH = 1  # photos per read call
# Ray Data cuts a map's output into blocks of at most this size: 1 byte gives one photo a block, so
# that a photo is the unit of scheduling, retry and progress (a block costs milliseconds, a photo a
# second), and backpressure counts photos. Left at its default, hundreds of small photos share a block.
BLOCK_BYTES = 1
TASKS_PER_WORKER = 2  # photos at an actor: one running, one ready
MAX_TASK_RETRIES = 3  # a photo is given up after its worker died this many times more
LIST_BLOCKS = 10_000  # the job list is cut into at most this many blocks (one read task each)

OnRow = Callable[[ManifestRow], None]


def enhance_dataset(
    inputs: Sequence[str],
    out: str | os.PathLike | None = None,
    *,
    model: str | os.PathLike | EnhancementModel = "default",
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    threads: int | None = None,
    tile: int | None = None,
    strength: float = 1.0,
    quality: int = 95,
    suffix: str = "_dslr",
    ext: str = "same",
    recursive: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    half: bool = False,
    allow_truncated: bool = False,
    raw_wb: str = "camera",
    filesystem: pafs.FileSystem | None = None,
    manifest: str | os.PathLike | None = None,
    on_result: OnRow | None = None,
) -> DatasetReport:
    """Enhance every photo that ``inputs`` name (local paths, folders, globs, or URIs such as
    ``s3://bucket/photos``) into ``out`` on a Ray cluster, as ``dslrify enhance`` would one by one.

    ``address``: ``"auto"`` (a running cluster), ``"local"`` (start one here; the default), or a
    cluster's address; an already connected session (``ray.init`` done) is used as it is.
    ``workers``: actors (default: as many as the cluster's CPUs or GPUs allow). ``filesystem``: a
    pyarrow filesystem holding every path (custom S3 endpoints and credentials). ``manifest``: the
    JSON Lines record (default ``OUT/dslrify-manifest.jsonl`` for a local ``out``, else in the current
    folder). ``on_result(row)`` follows each photo. The other options are ``dslrify enhance``'s.

    Outputs that exist are skipped, never replaced: running the same job again does what is left.
    A KeyboardInterrupt stops the job; what was written is whole, and the report says what is left.
    """
    if cpus_per_worker <= READ_CPUS or gpus_per_worker < 0:
        raise DslrifyError(
            f"a worker needs more than {READ_CPUS} CPUs and no negative GPUs",
            "use cpus_per_worker >= 1 and gpus_per_worker >= 0",
        )
    if workers is not None and workers < 1:
        raise DslrifyError(f"--ray-workers must be at least 1, got {workers}", "omit it to fill the cluster")
    if half and not gpus_per_worker:
        raise DslrifyError("--half needs GPU workers", "give --ray-gpus-per-worker, or drop --half")
    if not isinstance(model, EnhancementModel) and os.fspath(model) not in MODELS and Path(model).exists():
        # A checkpoint folder: absolute, since workers do not run in the driver's working folder.
        model = os.fspath(Path(model).resolve())
    settings = WorkerSettings(
        model if isinstance(model, (str, EnhancementModel)) else os.fspath(model),
        device="cuda" if gpus_per_worker else "cpu",
        threads=threads or max(1, round(cpus_per_worker)),
        tile=tile,
        strength=strength,
        max_pixels=max_pixels,
        half=half,
        allow_truncated=allow_truncated,
        raw_wb=raw_wb,
        quality=quality,
        filesystem=filesystem,
        job=secrets.token_hex(4),
    )
    _check_settings(settings)  # before any folder or manifest is made
    start = time.perf_counter()
    plan = plan_dataset(inputs, out, suffix=suffix, ext=ext, recursive=recursive, filesystem=filesystem)
    outputs = {job: locate(job.dst, filesystem) for job in plan.jobs}
    created = _prepare_folders(list(outputs.values()))
    present = existing(outputs.values())
    todo = [job for job in plan.jobs if outputs[job] not in present]
    path = manifest or _default_manifest(out, filesystem)
    report = DatasetReport(len(plan.jobs) + len(plan.refused), os.fspath(path))
    report.earlier_outputs = plan.earlier_outputs
    with Manifest(path) as log:

        def record(row: ManifestRow) -> None:
            log.write(row)
            report.add(row)
            if on_result is not None:
                on_result(row)

        for src, problem in plan.refused:
            record(ManifestRow(src, "", FAILED, str(problem)))
        for job in plan.jobs:
            if outputs[job] in present:
                record(ManifestRow(job.src, job.dst, SKIPPED, f"{job.dst} already exists: never replaced"))
        reported: set[str] = set()
        completed = False  # the pipeline ran to its end (not stopped by Ctrl+C or a bug)
        try:
            if todo:
                with ray_session(address) as ray:
                    report.workers = _pool_size(ray, workers, gpus_per_worker, cpus_per_worker, len(todo))
                    pipeline = _results(todo, settings, report.workers, gpus_per_worker, cpus_per_worker)
                    with closing(pipeline) as rows:  # closed on the way out: no new photo starts
                        _take(rows, reported, record)
            completed = True
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            _account_for_missing(todo, reported, outputs, completed, record)
            _clean_up(list(outputs.values()), created, settings.job)
    report.seconds = time.perf_counter() - start
    return report


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """The ``ray`` module, connected: the session already open in this process, or a new one to
    ``address`` (closed afterwards)."""
    try:
        import ray
    except ImportError as e:
        raise DslrifyError("running on Ray needs the ray package", "pip install 'dslrify[ray]'") from e
    if ray.is_initialized():
        yield ray
        return
    local = address in (None, "local")
    try:
        ray.init(address="local" if local else address, include_dashboard=False if local else None)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise DslrifyError(
            f"cannot connect to the Ray cluster at {address}: {first_line(e)}",
            "start it with `ray start --head`, give its address, or use --ray local",
        ) from e
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_settings(settings: WorkerSettings) -> None:
    """Refuse a bad model or option here, in one line, rather than in every worker of the cluster: an
    Enhancer is made once on this machine's CPU (the workers' device is theirs to check)."""
    settings.enhancer(on_driver=True)
    if not 1 <= settings.quality <= 100:
        raise DslrifyError(f"quality must be 1 to 100, got {settings.quality}", "JPEG/WebP quality, e.g. 95")


def _pool_size(ray: Any, workers: int | None, gpus: float, cpus: float, photos: int) -> int:
    """``workers``, or as many as the cluster's GPUs (with ``gpus`` each) or CPUs allow; at most one
    per photo."""
    if workers is None:
        resources = ray.cluster_resources()
        kind, each = ("GPU", gpus) if gpus else ("CPU", cpus)
        have = resources.get(kind, 0)
        workers = int(have // each)
        if workers < 1:
            raise DslrifyError(
                f"the Ray cluster has {have:g} {kind}s, less than one worker's {each:g}",
                "add nodes, or give --ray-workers for an autoscaling cluster",
            )
    return max(1, min(workers, photos))


def _results(
    todo: list[DatasetJob], settings: WorkerSettings, workers: int, gpus: float, cpus: float
) -> Generator[ManifestRow, None, None]:
    """Run the pipeline over ``todo``; yields each photo's row as it arrives (in no particular order)."""
    import ray.data

    per_block = max(READ_BATCH, -(-len(todo) // LIST_BLOCKS))
    blocks = [todo[i : i + per_block] for i in range(0, len(todo), per_block)]
    tables = [pa.table({"src": [j.src for j in b], "dst": [j.dst for j in b]}) for b in blocks]
    with warnings.catch_warnings():
        # Ray 2.60 warns about settings it renamed when a DataContext is copied, and about passing
        # max_restarts/max_task_retries as remote arguments, for which it has no named parameter yet;
        # the job's crash handling rests on them, so they are set here.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray.data.context")
        warnings.filterwarnings("ignore", message=".*ray_remote_args. is deprecated")
        context = ray.data.DataContext.get_current().copy()
        context.max_errored_blocks = -1  # a photo given up after its retries must not stop the job
        context.target_max_block_size = BLOCK_BYTES
        context.enable_progress_bars = False  # the caller reports progress (on_result)
        with ray.data.DataContext.current(context):
            dataset: Any = ray.data.from_arrow(tables)
            dataset = dataset.map_batches(
                read_photos,
                fn_kwargs={"filesystem": settings.filesystem},
                batch_size=READ_BATCH,
                num_cpus=READ_CPUS,
            )
            dataset = dataset.map_batches(
                EnhanceWorker,
                fn_constructor_args=(settings,),
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(
                    size=workers, max_tasks_in_flight_per_actor=TASKS_PER_WORKER
                ),
                num_cpus=cpus - READ_CPUS,
                num_gpus=gpus or None,
                max_restarts=-1,
                max_task_retries=MAX_TASK_RETRIES,
            )
    rows = iter(dataset.iter_rows())
    try:
        for row in rows:
            yield ManifestRow(
                row["src"], row["dst"], row["status"], row["error"], float(row["seconds"]), row["worker"]
            )
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # stops the executor: no new photo starts once the caller stops listening


def _take(rows: Iterator[ManifestRow], reported: set[str], record: OnRow) -> None:
    """Record each worker's row; a bug in a worker (status ``crashed``) stops the job with its traceback."""
    for row in rows:
        reported.add(row.input)
        if row.status == CRASHED:
            last = (row.error.strip().splitlines() or ["unexpected error"])[-1]
            record(ManifestRow(row.input, row.output, FAILED, last))
            raise RuntimeError(
                f"a worker failed on {row.input} (a bug in dslrify; please report it with this traceback). "
                "To finish the job meanwhile, move that photo out of the inputs and run the job again: "
                f"it resumes.\n{row.error}"
            )
        record(row)


def _account_for_missing(
    todo: list[DatasetJob],
    reported: set[str],
    outputs: dict[DatasetJob, Location],
    completed: bool,
    record: OnRow,
) -> None:
    """Rows for photos whose result never came: done if their output exists (written, then the result
    was lost with its worker, or written while stopping), else failed if the pipeline ran to its end
    (its worker died on every try)."""
    missing = [job for job in todo if job.src not in reported]
    written = existing(outputs[job] for job in missing)
    for job in missing:
        if outputs[job] in written:
            record(ManifestRow(job.src, job.dst, DONE))
        elif completed:
            tries = MAX_TASK_RETRIES + 1
            reason = (
                f"no result after {tries} tries: its worker died or its task raised (see the Ray logs); "
                "run the job again to retry it"
            )
            record(ManifestRow(job.src, job.dst, FAILED, f"{reason} — run the job again to retry it"))


def _prepare_folders(outputs: list[Location]) -> list[Path]:
    """Make the output folders (local: as ``dslrify enhance`` does, failing before any work); returns
    the local folders made, to remove again if they stay empty."""
    folders = {parent(loc) for loc in outputs}
    local = [Job(Path(loc.path), Path(loc.path)) for loc in outputs if loc.local]
    created = make_output_dirs(local)
    for folder in folders:
        if folder.local:
            remove_stale_temporaries(folder.path)  # of killed earlier runs on this machine
        else:
            make_folder(folder)
    return created


def _clean_up(outputs: list[Location], created: list[Path], job: str) -> None:
    """Remove the temporaries of workers killed during the job, and output folders left empty."""
    folders = {parent(loc) for loc in outputs}
    for folder in folders:
        if folder.local:
            remove_stale_temporaries(folder.path)
    remove_job_temporaries(folders, job)
    remove_empty_dirs(created)


def _default_manifest(out: str | os.PathLike | None, filesystem: pafs.FileSystem | None) -> Path:
    """``OUT/dslrify-manifest.jsonl`` for a local output folder, else in the current folder."""
    if out is not None:
        loc = locate(os.fspath(out), filesystem)
        if loc.local:
            return Path(loc.path) / MANIFEST_NAME
    return Path(MANIFEST_NAME)
