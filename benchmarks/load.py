"""Load test of ``ofa serve``: N concurrent clients on loopback for a fixed duration, with
dynamic batching on and then off (max batch size 1), and the throughput and latency of each.

    .venv/bin/python benchmarks/load.py [--model shapes-demo] [--clients 8] [--duration 30]
        [--task caption] [--write BENCHMARKS.md]

Each run starts its own server (``python -m ofa.cli serve --port 0``), warms it up, then
every client sends one request, waits for the answer and sends the next until the time is
up. Reports requests per second, p50/p99 latency seen by the clients, the mean batch size
(from the server's /metrics) and errors (any answer but 200, or no answer).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ofa.demo import DEMO_IMAGE, DEMO_QUERIES  # noqa: E402

BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"


@dataclass
class Run:
    label: str
    max_batch_size: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_batch: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    if begin in text:
        return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    return text + "\n" + block + "\n"


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = math.ceil(q * len(sorted_values)) - 1  # nearest-rank percentile
    return sorted_values[min(len(sorted_values) - 1, max(0, rank))]


def request_body(task: str, image: Path) -> dict:
    queries = json.loads(DEMO_QUERIES.read_text(encoding="utf-8"))
    body = {"image": base64.b64encode(image.read_bytes()).decode("ascii")}
    if task == "vqa":
        body["question"] = queries["question"]
    elif task == "ground":
        body["text"] = queries["text"]
    elif task != "caption":
        raise SystemExit(f"--task must be caption, vqa or ground, got {task}")
    return body


class Server:
    """``ofa serve`` in a child process on a free loopback port."""

    def __init__(self, model: str, device: str, max_batch_size: int, max_wait_ms: float,
                 queue_size: int) -> None:
        cmd = [sys.executable, "-m", "ofa.cli", "serve", "--model", model, "--port", "0",
               "--device", device, "--max-batch-size", str(max_batch_size),
               "--max-wait-ms", str(max_wait_ms), "--queue-size", str(queue_size),
               "--log-level", "warning"]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        env.pop("OFA_API_KEY", None)
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        ready = threading.Event()

        def drain() -> None:
            for line in self.proc.stderr:
                self.lines.append(line)
                if "serving" in line:
                    ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(300):
            self.stop()
            raise SystemExit("the server did not start:\n" + "".join(self.lines))
        self.url = re.search(r"http://[\d.]+:\d+", "".join(self.lines)).group(0)

    def batch_stats(self) -> tuple[float, float]:
        """(sum, count) of the ofa_batch_size histogram, all tasks."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith("ofa_batch_size_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("ofa_batch_size_count"):
                count += float(line.rsplit(" ", 1)[1])
        return total, count

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def drive(url: str, task: str, body: dict, clients: int,
                seconds: float) -> tuple[list[float], int, float]:
    """``clients`` closed-loop clients for ``seconds``: latencies of the 200s, errors, time."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def one_client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    r = await client.post(f"/v1/{task}", json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


def measure(label: str, args: argparse.Namespace, body: dict, max_batch_size: int) -> Run:
    server = Server(args.model, args.device, max_batch_size, args.max_wait_ms,
                    queue_size=max(64, 4 * args.clients))
    try:
        asyncio.run(drive(server.url, args.task, body, args.clients, args.warmup))
        before = server.batch_stats()
        latencies, errors, seconds = asyncio.run(
            drive(server.url, args.task, body, args.clients, args.duration))
        after = server.batch_stats()
    finally:
        server.stop()
    latencies.sort()
    batches = after[1] - before[1]
    mean_batch = (after[0] - before[0]) / batches if batches else float("nan")
    run = Run(label, max_batch_size, len(latencies), errors, seconds,
              percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000,
              mean_batch)
    print(f"{label:14s} {run.throughput:7.2f} req/s  p50 {run.p50_ms:7.1f} ms  "
          f"p99 {run.p99_ms:7.1f} ms  mean batch {run.mean_batch:4.1f}  "
          f"errors {run.errors}", flush=True)
    return run


def report(args: argparse.Namespace, runs: list[Run]) -> str:
    on, off = runs
    speedup = on.throughput / off.throughput if off.throughput else float("nan")
    met = speedup >= 2 and on.errors == 0 and off.errors == 0
    cmd = "`.venv/bin/python " + shlex.join(["benchmarks/load.py", *sys.argv[1:]]) + "`"
    try:
        import torch

        torch_info = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        torch_info = "torch not importable here"
    lines = [BEGIN, "",
             f"Command: {cmd}. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
             f"{torch_info}, device {args.device}. Server and clients share the machine; "
             f"clients send `{args.task}` requests (the demo image, JSON with base64) back to "
             f"back; {args.warmup:g} s of warm-up are not counted.",
             "",
             "| batching | max batch | max wait | clients | requests | throughput | p50 | p99 "
             "| mean batch | errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        wait = f"{args.max_wait_ms:g} ms" if r.max_batch_size > 1 else "–"
        lines.append(f"| {r.label} | {r.max_batch_size} | {wait} | {args.clients} | "
                     f"{r.requests} | {r.throughput:.1f} req/s | {r.p50_ms:.0f} ms | "
                     f"{r.p99_ms:.0f} ms | {r.mean_batch:.1f} | {r.errors} |")
    lines += ["", f"Dynamic batching gives **{speedup:.2f}x** the throughput of batch size 1 "
                  f"(target: at least 2x with {args.clients} clients and no errors: "
                  f"{'met' if met else 'NOT met'}).", "", END]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="shapes-demo", help="model to serve (default: "
                                                           "shapes-demo)")
    ap.add_argument("--task", default="caption", choices=["caption", "vqa", "ground"])
    ap.add_argument("--image", type=Path, default=DEMO_IMAGE, help="image to send")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    ap.add_argument("--duration", type=float, default=30.0,
                    help="seconds measured per run (default: 30)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds not counted (default: 3)")
    ap.add_argument("--max-batch-size", type=int, default=8,
                    help="max batch size with batching on (default: 8)")
    ap.add_argument("--max-wait-ms", type=float, default=10.0,
                    help="batching wait (default: 10)")
    ap.add_argument("--device", default="cpu", help="device of the server (default: cpu)")
    ap.add_argument("--write", type=Path, default=None, help="update this markdown file")
    args = ap.parse_args()
    if args.clients < 1 or args.duration <= 0 or args.warmup < 0:
        raise SystemExit("--clients must be >= 1, --duration > 0 and --warmup >= 0")
    body = request_body(args.task, args.image)
    runs = [measure("on", args, body, args.max_batch_size),
            measure("off", args, body, 1)]
    block = report(args, runs)
    print(block)
    if args.write:
        text = args.write.read_text(encoding="utf-8") if args.write.exists() else ""
        if BEGIN not in text:
            text = text.rstrip("\n") + "\n\n## Serving under load (`ofa serve`)\n"
        args.write.write_text(replace_block(text, BEGIN, END, block), encoding="utf-8")


if __name__ == "__main__":
    main()
