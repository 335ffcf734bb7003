"""Speed of every model on this machine: one table, one run, ratios to the I/O floor (the machine is noisy).

    python benchmarks/speed.py [--device cpu|cuda] [--threads 2] [--half] [--save FILE]

`--half`: the Enhancer's half-precision autocast (fp16 on CUDA, bfloat16 on CPUs that have it natively).

Every row is a 12.2 MP JPEG -> JPEG (the `sunset` photo of the development data), each measured in its
own process, warm: `x floor` is its time over the I/O floor's (Pillow's bare decode + encode of that
photo, nothing else), then megapixels/s, seconds, and the peak RSS of that process.

- The shipped models (`fast`, `default`, `paper`) run the whole photo end to end through
  `Enhancer.enhance_file` (read, enhance, write, with tiling as the CLI does).
- DPED's generator and PPCN's teacher and student (imported from the released checkpoints) run on a crop
  (1024 px, DPED 512 px) of a tensor; their seconds are the I/O floor plus the crop's rate extrapolated to
  12.2 MP (DPED would take minutes).
- `look`: `dslrify enhance --look` with a 33³ `.cube`.
- `video`: a 1080p H.264 clip (a pan over the photo, made here) through `Enhancer.enhance_video` with
  `fast`, end to end (decode, enhance, encode overlapped); its floor is the same clip through an identity
  model (decode, colour conversion, encode), and the row gives frames/s. `--video 2160` for 4K on a GPU.
- Last, a folder of the 24 Kodak images, one `enhance_file` at a time versus the batch pipeline.

Targets (2-core CPU): `fast` <= 2x the floor, `default` <= 10x, peak RSS <= 1.2 GB; `--look` <= 0.5 s;
1080p video >= 5 frames/s. `--save FILE` writes the rows as JSON (the package's `weights/speed.json` is
what `dslrify models` shows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTO = SHARED / "photos" / "sunset_by_Aitzol_Berasategi.jpg"
WARM_AGAIN_S = 10.0  # a model faster than this on the photo is also timed on a second, warm call
REFERENCES = {  # name -> (importer, checkpoint prefix)
    "dped (architecture)": ("dped", SHARED / "dped-checkpoints/iphone_orig"),
    "ppcn-teacher": ("ppcn", SHARED / "ppcn-checkpoints/teacher.ckpt"),
    "ppcn-student": ("ppcn", SHARED / "ppcn-checkpoints/student.ckpt"),
}


def _peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GB (ru_maxrss is in KiB)


def child_io(photo: str) -> dict:
    from PIL import Image

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Image.open(photo) as im:
        im.load()
        im.save(Path(tmp) / "out.jpg", quality=95)
    return {"seconds": time.perf_counter() - start, "peak": _peak()}


def _model(spec: str, tmp: Path):
    if spec in REFERENCES:
        kind, prefix = REFERENCES[spec]
        from dslrify.convert.dped import import_dped
        from dslrify.convert.ppcn import import_ppcn

        return (import_dped if kind == "dped" else import_ppcn)(prefix, tmp / "m")
    return spec


def child_model(spec: str, height: int, width: int, device: str, half: bool, repeats: int) -> dict:
    import torch

    from dslrify.enhancer import Enhancer

    with tempfile.TemporaryDirectory() as tmp:
        enhancer = Enhancer(_model(spec, Path(tmp)), device=device, half=half)
        x = torch.rand(1, 3, height, width)
        enhancer.enhance_tensor(x[:, :, :64, :64])  # warm-up
        times = []
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            enhancer.enhance_tensor(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    return {"mp_per_s": height * width / 1e6 / seconds, "peak": _peak()}


def child_file(spec: str, photo: str, device: str, half: bool, repeats: int) -> dict:
    from dslrify.enhancer import Enhancer

    enhancer = Enhancer(spec, device=device, half=half)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        # The first call pays one-off costs (codec and allocator warm-up, page cache); a slow model
        # warms up on a small copy instead of a second whole run.
        if repeats < 2:
            from PIL import Image

            with Image.open(photo) as im:
                im.resize((256, 171)).save(Path(tmp) / "small.jpg")
            enhancer.enhance_file(Path(tmp) / "small.jpg", Path(tmp) / "small_out.jpg")

        def timed(out: str) -> None:
            start = time.perf_counter()
            enhancer.enhance_file(photo, Path(tmp) / out)
            times.append(time.perf_counter() - start)

        for i in range(max(repeats, 1) + (repeats >= 2)):
            timed(f"out{i}.jpg")
        if repeats < 2 and times[0] < WARM_AGAIN_S:
            # A model that takes seconds is timed once more, warm: its first whole-photo call also pays
            # the one-off costs of its tiles (oneDNN builds a kernel for every new tile shape).
            timed("again.jpg")
    warm = times[1:] if len(times) > 1 else times
    return {"seconds": min(warm), "cold": times[0], "peak": _peak()}


def child_look(photo: str, device: str) -> dict:
    """`dslrify enhance --look look.cube` on the photo: a 33³ .cube (a gamma and saturation change)."""
    import numpy as np

    from dslrify.enhancer import Enhancer
    from dslrify.look import Look, identity_table

    table = identity_table(33) ** 0.8
    table = np.clip(table.mean(-1, keepdims=True) + 1.3 * (table - table.mean(-1, keepdims=True)), 0, 1)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        Look(table, "benchmark").save(Path(tmp) / "look.cube")
        enhancer = Enhancer(Look.load(Path(tmp) / "look.cube").model(), device=device)
        for i in range(3):
            start = time.perf_counter()
            enhancer.enhance_file(photo, Path(tmp) / f"out{i}.jpg")
            times.append(time.perf_counter() - start)
    return {"seconds": min(times[1:]), "cold": times[0], "peak": _peak()}


def child_folder(spec: str, folder: str, device: str) -> dict:
    from dslrify.enhancer import Enhancer

    enhancer = Enhancer(spec, device=device)
    photos = sorted(Path(folder).glob("*.png"))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for p in photos:
            enhancer.enhance_file(p, Path(tmp) / f"a_{p.stem}.jpg")
        one_by_one = time.perf_counter() - start
        start = time.perf_counter()
        for _ in enhancer.enhance_files([(p, Path(tmp) / f"b_{p.stem}.jpg") for p in photos]):
            pass
        pipelined = time.perf_counter() - start
    return {"one_by_one": one_by_one, "pipelined": pipelined, "n": len(photos)}


def _clip(path: Path, photo: str, height: int, frames: int) -> None:
    """A ``frames``-long 16:9 H.264 clip ``height`` px high panning down over ``photo`` (24 frames/s)."""
    import av
    import numpy as np
    from PIL import Image

    width = height * 16 // 9
    with Image.open(photo) as im:
        im = im.convert("RGB")
        scale = max(width / im.width, height * 4 / 3 / im.height)
        strip = np.asarray(im.resize((round(im.width * scale), round(im.height * scale))))
    span = strip.shape[0] - height
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(frames):
            y = i * span // max(frames - 1, 1)
            rgb = np.ascontiguousarray(strip[y : y + height, :width])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))


def _identity_model():  # -> EnhancementModel, imported in the child only
    """An identity model for the video floor: decode, colour conversion and encode, no network."""
    import torch

    from dslrify.models.base import EnhancementModel, ModelSpec

    class Identity(EnhancementModel):
        def __init__(self) -> None:
            super().__init__()
            self.spec = ModelSpec(bytes_per_pixel=24)

        def enhance(self, x: torch.Tensor, context: object, origin: object) -> torch.Tensor:
            return x.clone()

    return Identity()


def child_video(spec: str, photo: str, device: str, half: bool, height: int, frames: int) -> dict:
    from dslrify.enhancer import Enhancer

    enhancer = Enhancer(_identity_model() if spec == "identity" else spec, device=device, half=half)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.mp4"
        _clip(src, photo, height, frames)
        start, cpu = time.perf_counter(), _cpu()
        enhancer.enhance_video(src, Path(tmp) / "out.mp4")
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    # CPU seconds per frame (all threads): what a busy machine's frames/s hides; cores / it is the
    # frames/s an idle machine would reach with perfect overlap.
    return {"fps": frames / seconds, "seconds": seconds, "cpu": cpu / frames, "peak": _peak()}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_child(*args: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--threads", str(threads), "--child", json.dumps(args)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"{args}: {res.stderr.strip().splitlines()[-1] if res.stderr else res.returncode}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--half", action="store_true", help="half-precision autocast: fp16 on CUDA, bf16 on CPU")
    ap.add_argument("--photo", default=str(PHOTO))
    ap.add_argument("--models", nargs="+", default=["fast", "balanced", "default", "paper", *REFERENCES])
    ap.add_argument("--fast", default="fast", help="which of --models is the fast model (name or folder)")
    ap.add_argument("--video", type=int, default=1080, help="height of the video row's clip (0: no row)")
    ap.add_argument("--video-frames", type=int, default=72)
    ap.add_argument("--save", help="also write the rows as JSON to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        import torch

        torch.set_num_threads(a.threads)
        kind, *rest = json.loads(a.child)
        fn = {
            "io": child_io,
            "model": child_model,
            "file": child_file,
            "folder": child_folder,
            "video": child_video,
            "look": child_look,
        }[kind]
        conv = [int(v) if v.isdigit() else (v == "True" if v in ("True", "False") else v) for v in rest]
        print(json.dumps(fn(*conv)))
        return
    from PIL import Image

    with Image.open(a.photo) as im:
        w, h = im.size
    mp = w * h / 1e6
    gpu = a.device.startswith("cuda")
    print(
        f"photo {Path(a.photo).name} {w}x{h} ({mp:.1f} MP); device {a.device}; threads {a.threads}"
        + (f" {half_name(a.device)}" if a.half else "")
    )
    rows: list[dict] = []

    def row(name: str, seconds: float, peak: float, how: str) -> None:
        rows.append({"row": name, "seconds": seconds, "peak_gb": peak, "how": how})
        ratio = seconds / rows[0]["seconds"]
        print(f"{name:<26} {ratio:8.1f} {mp / seconds:8.2f} {seconds:12.2f} {peak:8.2f}   {how}", flush=True)

    print(f"{'row':<26} {'x floor':>8} {'MP/s':>8} {'s / 12.2 MP':>12} {'RSS GB':>8}   how")
    io = run_child("io", a.photo, threads=a.threads)
    row("I/O floor (Pillow)", io["seconds"], io["peak"], "decode + encode (quality 95), nothing else")
    for spec in a.models:
        if spec in REFERENCES:
            side = 2048 if gpu else (512 if "dped" in spec else 1024)
            r = run_child("model", spec, str(side), str(side), a.device, str(a.half), "2", threads=a.threads)
            how = f"model on a {side}x{side} tensor, extrapolated, + the I/O floor"
            row(spec, io["seconds"] + mp / r["mp_per_s"], r["peak"], how)
        else:
            repeats = 2 if spec == a.fast else 1
            f = run_child("file", spec, a.photo, a.device, str(a.half), str(repeats), threads=a.threads)
            row(spec, f["seconds"], f["peak"], f"JPEG -> JPEG, whole photo (first call {f['cold']:.2f} s)")
    lk = run_child("look", a.photo, a.device, threads=a.threads)
    row("look (33³ .cube)", lk["seconds"], lk["peak"], "dslrify enhance --look, JPEG -> JPEG")
    if a.video and a.fast in a.models:
        n, height = a.video_frames, a.video
        vmp = n * height * (height * 16 // 9) / 1e6  # the clip's megapixels
        clip = (str(height), str(n))
        floor = run_child("video", "identity", a.photo, a.device, "False", *clip, threads=a.threads)
        v = run_child("video", a.fast, a.photo, a.device, str(a.half), *clip, threads=a.threads)
        x = v["seconds"] / floor["seconds"]
        print(
            f"{f'video {height}p, floor':<26} {'':>8} {vmp / floor['seconds']:8.2f} {'':>12} "
            f"{floor['peak']:8.2f}   identity model: decode + convert + encode, {floor['fps']:.1f} frames/s"
        )
        print(
            f"{f'video {height}p, {a.fast}':<26} {x:8.1f} {vmp / v['seconds']:8.2f} {'':>12} "
            f"{v['peak']:8.2f}   "
            f"H.264 -> H.264, {n} frames: {v['fps']:.1f} frames/s, {v['cpu']:.3f} CPU s per frame "
            "(x floor: over the video floor)"
        )
        rows.append({"row": f"video {height}p, {a.fast}", "fps": v["fps"], "floor_fps": floor["fps"]})
    kodak = SHARED / "photos" / "kodak24"
    if a.fast in a.models and kodak.is_dir():
        k = run_child("folder", a.fast, str(kodak), a.device, threads=a.threads)
        print(
            f"Kodak folder ({k['n']} images, {a.fast}): one at a time {k['one_by_one']:.2f} s, "
            f"pipelined {k['pipelined']:.2f} s ({k['one_by_one'] / k['pipelined']:.2f}x)"
        )
    if a.save:
        import os

        machine = f"{a.device}, {a.threads} threads on {os.cpu_count()} cores"
        machine += f", {half_name(a.device)}" if a.half else ""
        Path(a.save).write_text(
            json.dumps({"machine": machine, "photo_mp": mp, "rows": rows}, indent=1) + "\n"
        )


def half_name(device: str) -> str:
    """What ``--half`` means on ``device`` (the Enhancer's autocast dtype)."""
    return "fp16" if device.startswith("cuda") else "bf16"


if __name__ == "__main__":
    main()
