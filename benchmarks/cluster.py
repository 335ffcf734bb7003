"""Throughput of `dslrify enhance --ray` with 1 and 2 workers beside the single-process CLI, same photos.

    python benchmarks/cluster.py [--model fast] [--big 6] [--phone 24] [--gpus-per-worker 1]

Two sets from ../shared/data: copies of the 12.2 MP sunset photo (``--big``), and 1024x682 phone photos
(``--phone``). Each set runs on this machine through the single-process CLI (``run_batch``, the
batch pipeline of ``dslrify enhance``, torch on every core), then ``enhance_dataset`` on a local Ray
cluster (``ray.init(num_cpus=CORES)``) with 1 and with 2 workers of 1 CPU and 1 torch thread each; the
CLI also runs on 1 thread, the per-core comparison (the CLI's rows run before Ray starts).
Columns: wall seconds of the call (Ray: from the call, actors starting and loading the model included;
the cluster is up already); the steady rate once every worker has written its first photo, from the
outputs' times, (n - workers) / (last - workers-th); for Ray, the median worker seconds a photo
(decode, model, encode, write: the manifest's ``seconds``; a worker's first photo is slower). JPEG ->
JPEG at quality 95.
The per-photo seconds of a 1-CPU worker are what docs/cluster.md's cost of 10 million photos uses.
``--gpus-per-worker G`` runs the CLI on cuda and the Ray workers with G GPUs each (and 1 CPU).
First line: the I/O floor, ``read_photo`` + ``write_photo`` of the 12.2 MP photo on one thread: the CPU
time a GPU worker spends per photo besides the model (how many CPUs keep a GPU fed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BIG = SHARED / "photos" / "sunset_by_Aitzol_Berasategi.jpg"
PHONE = SHARED / "phone-photos"


def make_sets(root: Path, big: int, phone: int) -> dict[str, Path]:
    """``root/12mp`` (``big`` copies of the 12.2 MP photo) and ``root/phone`` (the first ``phone``)."""
    sets = {"12.2 MP": root / "12mp", "0.7 MP phone": root / "phone"}
    for folder in sets.values():
        folder.mkdir()
    for i in range(big):
        shutil.copy(BIG, sets["12.2 MP"] / f"sunset_{i}.jpg")
    for i in range(phone):
        shutil.copy(PHONE / f"{i}.jpg", sets["0.7 MP phone"] / f"{i}.jpg")
    return sets


def io_floor(out: Path, repeats: int = 3) -> float:
    """Best seconds of decoding and encoding (JPEG q95) the 12.2 MP photo on one torch thread."""
    import torch

    from dslrify.photo import read_photo, write_photo

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        write_photo(out, read_photo(BIG), quality=95)
        best = min(best, time.perf_counter() - start)
    torch.set_num_threads(threads)
    return best


def single_process(folder: Path, out: Path, model: str, device: str, threads: int) -> tuple[float, float]:
    """(wall s, steady photos/s) of the CLI's batch runner in this process."""
    from dslrify.batch import plan_jobs, run_batch
    from dslrify.enhancer import Enhancer

    start = time.perf_counter()
    enhancer = Enhancer(model, device=device, threads=threads)
    plan = plan_jobs([str(folder)], out)
    report = run_batch(enhancer, plan)
    assert not report.failed, report.summary()
    return time.perf_counter() - start, steady(out, 1)


def steady(out: Path, workers: int) -> float:
    """Photos/s once every worker has written its first photo (start-up left out), from the times the
    outputs appeared (Ray delivers some results in bunches): ``(n - workers) / (last - workers-th)``."""
    t = sorted(p.stat().st_mtime for p in out.glob("*_dslr.*"))
    return (len(t) - workers) / (t[-1] - t[workers - 1])


def on_ray(folder: Path, out: Path, model: str, workers: int, gpus: float) -> tuple[float, float, float]:
    """(wall s, steady photos/s, median worker seconds a photo) of ``enhance_dataset``."""
    from dslrify.cluster import enhance_dataset

    per_photo: list[float] = []  # the worker's seconds of each photo
    start = time.perf_counter()
    report = enhance_dataset(
        [str(folder)],
        out,
        model=model,
        workers=workers,
        cpus_per_worker=1,
        gpus_per_worker=gpus,
        on_result=lambda row: per_photo.append(row.seconds),
    )
    wall = time.perf_counter() - start
    assert report.done == len(per_photo) and not report.failed, report.summary()
    return wall, steady(out, workers), sorted(per_photo)[len(per_photo) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast")
    parser.add_argument("--big", type=int, default=6, help="copies of the 12.2 MP photo")
    parser.add_argument("--phone", type=int, default=24, help="1024x682 phone photos")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPU workers; the CLI on cuda")
    args = parser.parse_args()
    if not BIG.is_file() or not PHONE.is_dir():
        raise SystemExit(f"needs {BIG} and {PHONE} (../shared/data)")
    import ray
    import torch

    cores, gpus = os.cpu_count() or 1, args.gpus_per_worker
    device, kind = ("cuda", f"{gpus:g} GPU + 1 CPU") if gpus else ("cpu", "1 CPU")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        floor = io_floor(Path(tmp) / "floor.jpg")
        sets = make_sets(Path(tmp), args.big, args.phone)
        single = {  # before Ray starts, whose idle processes would share the cores
            (name, threads): single_process(
                folder, Path(tmp) / f"cli{threads}" / folder.name, args.model, device, threads
            )
            for name, folder in sets.items()
            for threads in (cores, 1)
        }
        ray.init(
            num_cpus=cores, num_gpus=torch.cuda.device_count(), include_dashboard=False, log_to_driver=False
        )
        for name, folder in sets.items():
            # The CLI as best run here (all cores, or one thread when other work takes a core: OpenMP's
            # threads then wait on each other) is the baseline of the ratios.
            n, cli_rate = len(list(folder.iterdir())), max(single[name, t][1] for t in (cores, 1))
            for threads in (cores, 1):
                wall, rate = single[name, threads]
                rows.append(
                    (name, n, f"single-process CLI ({device}, {threads} thr.)", wall, rate, None, cli_rate)
                )
            for workers in (1, 2):
                out = Path(tmp) / f"out-ray{workers}" / folder.name
                wall, ray_rate, median = on_ray(folder, out, args.model, workers, gpus)
                rows.append((name, n, f"ray, {workers} x {kind}", wall, ray_rate, median, cli_rate))
        ray.shutdown()
    print(f"I/O floor, 12.2 MP JPEG decode + encode q95 on 1 thread: {floor:.2f} s")
    print(
        f"model {args.model}, {cores} cores; JPEG -> JPEG q95; photos/s once every worker is warm; "
        "vs CLI: against the faster CLI row"
    )
    print(
        f"{'photos':<14}{'n':>4}  {'runner':<36}{'wall s':>8}{'photos/s':>10}{'s/photo':>9}"
        f"{'worker s':>10}{'vs CLI':>8}"
    )
    for name, n, runner, wall, rate, median, cli_rate in rows:
        worker = f"{median:10.2f}" if median is not None else f"{'':>10}"
        print(
            f"{name:<14}{n:>4}  {runner:<36}{wall:8.1f}{rate:10.2f}{1 / rate:9.2f}{worker}"
            f"{rate / cli_rate:8.2f}"
        )


if __name__ == "__main__":
    main()
