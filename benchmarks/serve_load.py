"""Bounded load test of ``dslrify serve`` on loopback: N concurrent uploads + enhancements of a 12 MP photo.

Starts the server in a subprocess on 127.0.0.1 (the ``fast`` model when the zoo has it, else ``default``),
sends a fixed number of requests at once (upload, then enhance; a 503 "busy" answer is retried after its
Retry-After, as the page does), and prints requests/s, p50/p95 latency, errors and the server's peak RSS.
Everything stops at ``--time-limit`` seconds. Standard library only (psutil is used when installed).

    .venv/bin/python benchmarks/serve_load.py            # 20 requests of the 12 MP sunset photo
    .venv/bin/python benchmarks/serve_load.py -n 8 --photo my.jpg --queue 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "photos" / "sunset_by_Aitzol_Berasategi.jpg"
HOST = "127.0.0.1"  # loopback only, always
RSS_TARGET = 3 * 1024**3


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: bytes | None, timeout: float) -> tuple[int, dict, dict]:
    """One HTTP request on a fresh connection -> (status, JSON body, headers)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json" if method == "POST" and path.startswith("/api/enh")
                   else "application/octet-stream"}  # fmt: skip
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError:
            parsed = {"bytes": len(data)}
        return r.status, parsed, dict(r.getheaders())
    finally:
        conn.close()


def one_request(
    port: int, photo: bytes, name: str, model: str, deadline: float
) -> tuple[float, str | None, int]:
    """Upload + enhance one photo -> (seconds, error or None, number of 503 retries)."""
    start, retries = time.perf_counter(), 0
    try:
        left = max(1.0, deadline - time.monotonic())
        status, info, _ = call(port, "POST", f"/api/upload?name={urllib.parse.quote(name)}", photo, left)
        if status != 200:
            return time.perf_counter() - start, f"upload HTTP {status}: {info.get('error')}", retries
        body = json.dumps({"model": model, "strength": 1.0}).encode()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return time.perf_counter() - start, "time limit reached", retries
            status, out, headers = call(port, "POST", f"/api/enhance/{info['id']}", body, left)
            if status == 503:  # busy (memory budget or queue full): back off as told, like the page
                retries += 1
                time.sleep(float(headers.get("retry-after", 1)))
                continue
            if status != 200:
                return time.perf_counter() - start, f"enhance HTTP {status}: {out.get('error')}", retries
            return time.perf_counter() - start, None, retries
    except (OSError, http.client.HTTPException) as e:
        return time.perf_counter() - start, f"{type(e).__name__}: {e}", retries


class PeakRss:
    """Peak resident memory of a process: psutil sampling when installed, and Linux's VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        try:
            import psutil

            self._proc = psutil.Process(pid)
        except ImportError:
            self._proc = None
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            if self._proc is not None:
                try:
                    self.peak = max(self.peak, self._proc.memory_info().rss)
                except Exception:  # the process ended
                    return

    def vm_hwm(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.vm_hwm())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("-n", "--requests", type=int, default=20, help="concurrent upload+enhance requests")
    parser.add_argument("--model", default=None, help="default: fast when the zoo has it, else default")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--queue", type=int, default=8, help="server queue; beyond it clients retry on 503")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds for the whole run")
    args = parser.parse_args()

    if not args.photo.is_file():
        print(f"skipped: {args.photo} is absent (pass --photo PATH)")
        return 0
    if args.model is None:
        from dslrify.zoo import MODELS, is_checkpoint_dir

        args.model = "fast" if "fast" in MODELS and is_checkpoint_dir(MODELS["fast"].path) else "default"
    photo = args.photo.read_bytes()
    port = free_port()
    cmd = [
        sys.executable, "-m", "dslrify.cli", "serve", "--host", HOST, "--port", str(port),
        "--model", args.model, "--workers", str(args.workers), "--queue", str(args.queue),
        "--device", args.device,
    ]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + args.time_limit
    try:
        while True:  # wait until it answers (the model is loaded before it listens)
            try:
                if call(port, "GET", "/api/models", None, 2)[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print(server.stdout.read() if server.stdout else "", file=sys.stderr)
                print("error: the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.2)
        rss = PeakRss(server.pid)
        idle_rss = rss.vm_hwm()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.requests) as pool:
            futures = [
                pool.submit(one_request, port, photo, f"photo{i:02d}.jpg", args.model, deadline)
                for i in range(args.requests)
            ]
            results = [f.result() for f in futures]
        wall = time.perf_counter() - start
        peak = rss.stop()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    latencies = sorted(r[0] for r in results)
    errors = [r[1] for r in results if r[1]]
    ok = len(results) - len(errors)
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    mb = len(photo) / 1e6
    rows = [
        ("photo", f"{args.photo.name} ({mb:.1f} MB)"),
        ("model / device", f"{args.model} / {args.device}"),
        ("workers / queue", f"{args.workers} / {args.queue}"),
        ("requests (concurrent)", str(args.requests)),
        ("completed / errors", f"{ok} / {len(errors)}"),
        ("503 retries", str(sum(r[2] for r in results))),
        ("wall time", f"{wall:.1f} s"),
        ("requests/s", f"{ok / wall:.2f}"),
        ("latency p50", f"{statistics.median(latencies):.1f} s"),
        ("latency p95", f"{p95:.1f} s"),
        ("server RSS idle (model loaded)", f"{idle_rss / 1024**3:.2f} GB"),
        ("server peak RSS", f"{peak / 1024**3:.2f} GB (target <= {RSS_TARGET / 1024**3:.0f} GB)"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'metric':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")
    for e in errors[:5]:
        print(f"error: {e}", file=sys.stderr)
    return 0 if not errors and peak <= RSS_TARGET else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
