"""Latency and throughput of ``adue serve`` against offline prediction, on loopback only.

Starts ``adue serve BUNDLE`` on 127.0.0.1 (a free port) as a subprocess, sends single-text
requests from 1, 8 and 32 concurrent clients (bounded: ``--requests`` per level and a time
limit), and prints p50 / p95 / p99 latency, throughput in texts per second and errors, next
to the offline throughput of ``UncertainClassifier.predict`` on the same texts in the same run
(same batch size, same threads). Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_serve.py BUNDLE --data-dir ../shared/data

Without BUNDLE, a bundle is fitted first, in a temporary folder: the packaged MiniLM with a
logistic-regression head on 400 SST-2 rows (tests/_checkpoint.py), ``sr`` method, threshold at
80% coverage of the calibration rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(bundle: str, port: int, max_batch: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "adue", "serve", bundle, "--port", str(port), "--max-batch", str(max_batch)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"adue serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("adue serve did not become healthy within 120 s")


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, body: bytes) -> int:
    """One HTTP/1.1 keep-alive POST /predict; returns the status code (body read and dropped)."""
    writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (port, len(body), body))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return status


async def load_level(port: int, texts: list[str], clients: int, time_limit: float) -> dict:
    """``clients`` keep-alive connections each send one text per request until the texts run out.

    The load generator is a minimal asyncio HTTP/1.1 client, so that its own CPU time (the
    server and the clients share this machine's cores) stays small next to the server's.
    """
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for t in texts:
        queue.put_nowait(json.dumps({"inputs": t}).encode())
    stop_at = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty() and time.perf_counter() < stop_at:
                body = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    ok = await _post(reader, writer, port, body) == 200
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"clients": clients, "requests": len(latencies), "errors": errors, "p50": q[49], "p95": q[94],
            "p99": q[98], "texts_per_s": len(latencies) / wall}


def offline_rate(bundle: str, texts: list[str], batch_size: int) -> float:
    from adue.classifier import UncertainClassifier

    clf = UncertainClassifier.load(bundle)
    clf.predict(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        clf.predict(texts[i : i + batch_size])
    return len(texts) / (time.perf_counter() - t0)


def sst2_texts(data_dir: str, n: int) -> list[str]:
    from adue.data import load_dataset

    ds = load_dataset("sst2", data_dir=data_dir, max_test=n)
    return list(ds["test"]["text"])[:n]


def make_bundle(data_dir: str, root: Path) -> str:
    """A small MiniLM bundle (see the module docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _checkpoint import make_minilm_checkpoint

    from adue.classifier import UncertainClassifier

    ckpt = make_minilm_checkpoint(root / "ckpt", data_dir)
    clf = UncertainClassifier.fit(ckpt, "sst2", data_dir=data_dir, method="sr", coverage=0.8, max_rows=500)
    return str(clf.save(root / "bundle"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--time-limit", type=float, default=120.0, help="seconds per level at most")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    bundle = args.bundle or make_bundle(args.data_dir, Path(tmp.name))
    texts = sst2_texts(args.data_dir, args.requests)
    offline = offline_rate(bundle, texts, args.max_batch)
    port = free_port()
    proc = start_server(bundle, port, args.max_batch)
    try:
        rows = []
        for c in args.levels.split(","):
            before = httpx.get(f"http://127.0.0.1:{port}/info").json()["serving"]
            row = asyncio.run(load_level(port, texts, int(c), args.time_limit))
            after = httpx.get(f"http://127.0.0.1:{port}/info").json()["serving"]
            row["mean_batch"] = (after["texts"] - before["texts"]) / max(1, after["batches"] - before["batches"])
            rows.append(row)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    print(f"threads {os.environ.get('OMP_NUM_THREADS', 'default')}, max batch {args.max_batch}, "
          f"{len(texts)} SST-2 test texts; offline predict {offline:.1f} texts/s (batch {args.max_batch})\n")
    print("| clients | requests | errors | p50 ms | p95 ms | p99 ms | mean batch | texts/s | vs offline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['p50'] * 1e3:.1f} | {r['p95'] * 1e3:.1f} | "
              f"{r['p99'] * 1e3:.1f} | {r['mean_batch']:.1f} | {r['texts_per_s']:.1f} | {r['texts_per_s'] / offline:.2f}x |")


if __name__ == "__main__":
    main()
