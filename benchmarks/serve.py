"""Latency and throughput of `vlmt serve`'s JSON API under concurrent clients.

    PYTHONPATH=src python benchmarks/serve.py MODEL [--clients 8] [--requests 20] [--workers 2] [--json]

Starts `vlmt serve MODEL --no-page` in its own process, then: one client asking in sequence (the
unloaded latency), and `clients` clients asking at once (each `requests` times): p50 / p95 latency
and requests per second. Every request uploads a PNG of the model's gallery (so the server decodes
it, proposes regions and extracts their features, as for any upload) with a question. The same
call made in this process without HTTP (`vlmt.load(MODEL).answer`) is the baseline the figures are
compared with, so they read as ratios on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", help="model, run or demo folder (one with a VQA head)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20, help="requests per client")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    import vlmt
    from vlmt.serve.models import load_models

    torch.set_num_threads(args.threads)
    served = load_models([args.model], log=lambda _: None)
    name, sm = next((n, m) for n, m in served.items() if "answer" in m.methods)
    if not len(sm.gallery):
        raise SystemExit(f"{args.model}: the model's data is not on this machine, so there are no pictures to send")
    pictures = [im.path.read_bytes() for im in sm.gallery.images[:16]]
    question = "what color is the shape?"
    model = vlmt.load(Path(args.model) / "runs" / name if (Path(args.model) / "report.json").is_file() else args.model)
    from vlmt.data.features.proposals import load_image

    pixels = [load_image(im.path) for im in sm.gallery.images[:16]]
    direct = []
    for i in range(20):
        t = time.perf_counter()
        model.answer(pixels[i % len(pixels)], question)
        direct.append(time.perf_counter() - t)

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                                      os.environ.get("PYTHONPATH", "")]))}
    server = subprocess.Popen([sys.executable, "-m", "vlmt", "serve", args.model, "--no-page", "--port", str(port),
                               "--workers", str(args.workers), "--threads", str(args.threads)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
            if server.poll() is not None or time.time() > deadline:
                log = server.stderr.read().decode()[-2000:] if server.stderr else ""
                raise SystemExit(f"the server did not start: {log}")

        local = threading.local()

        def ask(i: int) -> float:
            if not hasattr(local, "client"):  # one keep-alive connection per client thread
                local.client = httpx.Client(timeout=300)
            t = time.perf_counter()
            upload = {"image": ("p.png", pictures[i % len(pictures)], "image/png")}
            got = local.client.post(f"{url}/answer", files=upload,
                                    data={"question": question, "model": name})
            elapsed = time.perf_counter() - t
            if got.status_code != 200:
                raise SystemExit(f"request {i}: {got.status_code} {got.text[:200]}")
            return elapsed

        for i in range(4):
            ask(i)
        single = [ask(i) for i in range(args.requests)]
        total = args.clients * args.requests
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            loaded = list(pool.map(ask, range(total)))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    direct_p50 = statistics.median(direct)
    result = {"model": name, "workers": args.workers, "threads": args.threads, "clients": args.clients,
              "requests": total, "direct_call_p50_s": round(direct_p50, 4),
              "one_client": {"p50_s": round(percentile(single, 50), 4), "p95_s": round(percentile(single, 95), 4),
                             "p50_over_direct": round(percentile(single, 50) / direct_p50, 2)},
              "concurrent": {"p50_s": round(percentile(loaded, 50), 4), "p95_s": round(percentile(loaded, 95), 4),
                             "requests_per_s": round(total / wall, 2),
                             "throughput_over_direct": round((total / wall) * direct_p50, 2), "errors": 0}}
    if args.json:
        print(json.dumps(result))
    else:
        one = result["one_client"]["p50_s"] * 1000
        print(f"{name}: direct call {direct_p50 * 1000:.1f} ms; one client p50 {one:.1f} ms; "
              f"{args.clients} clients p50 {result['concurrent']['p50_s'] * 1000:.1f} ms, "
              f"p95 {result['concurrent']['p95_s'] * 1000:.1f} ms, {result['concurrent']['requests_per_s']} requests/s")


if __name__ == "__main__":
    main()
