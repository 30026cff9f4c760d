"""`vlmt serve` under load and under abuse, on loopback: a real server process (the JSON API alone),
clients in threads of this process.

    PYTHONPATH=src python benchmarks/serve.py [MODEL ...] [--clients 1,8,32,64] [--requests 400]
        [--soak 10000] [--soak-seconds 900] [--workers 2] [--json OUT]

Without MODEL folders it trains and exports the shipped `tiny` and `svlr_tiny` configs first (the
first MODEL must have a VQA head: the load test asks it).

- **Baseline**: the same call in this process without HTTP (`vlmt.load(MODEL).answer`), so the
  figures read as ratios on any machine.
- **Load**: at each client count, `--requests` `/api/answer` calls (an uploaded 128 x 128 picture
  and a question; the server decodes it, proposes regions and extracts their features), each
  client on a keep-alive connection, as fast as they can send: p50 / p95 / p99 latency, requests
  per second, failures (any status but 200).
- **Soak**: `--soak` requests from 8 clients, mixed: 3 good for every 2 hostile. The good ones
  ask, ground, retrieve and choose with new random words each time (so every text cache sees
  new keys); the hostile ones are non-pictures, formats not served, pictures over the pixel
  limit, bodies over the byte limit, blank and over-long text, bad numbers, unknown fields and
  models, JSON bodies, wrong methods and made-up paths. A good request must get 200, a hostile one
  a 4xx with a JSON `{"error": ...}`. The server's resident memory is read after a warm-up of
  1,000 requests of the same mix and again at the end; the soak stops early at `--soak-seconds`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
from PIL import Image

from vlmt.cli import at_least
from vlmt.errors import reports_errors

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_models(folder: Path) -> list[Path]:
    out = []
    for name, config, iters in (("tiny", "tiny", 90), ("svlr", "svlr_tiny", 60)):
        run = folder / "runs" / name
        for args in (["train", config, "--out", str(run), "--set", f"train.max_iters={iters}",
                      "--set", "train.progress=false"],
                     ["export", str(run), "--out", str(folder / name), "--metrics", "none"]):
            subprocess.run([sys.executable, "-m", "vlmt", *args], check=True, stdout=subprocess.DEVNULL)
        out.append(folder / name)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def picture() -> bytes:
    pixels = np.full((128, 128, 3), 235, np.uint8)
    pixels[20:70, 20:70] = (220, 30, 30)
    pixels[80:120, 60:110] = (30, 30, 220)
    return png(pixels)


def encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(out, format=fmt)
    return out.getvalue()


def huge_png() -> bytes:
    """A small file that says 6,000 x 6,000 pixels (36 MP, over the server's 16 MP)."""
    out = io.BytesIO()
    Image.new("L", (6000, 6000), 0).save(out, format="PNG", optimize=True)
    return out.getvalue()


def words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(n))


class Server:
    def __init__(self, models: list[Path], workers: int, log: Path, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out = open(log, "w")
        # a PYTHONPATH given first (e.g. another copy of src/ to compare with), then this checkout's
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"),
                                                                          str(ROOT / "src")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "vlmt", "serve", *map(str, models), "--port",
                                      str(self.port), "--workers", str(workers), "--no-page", *extra],
                                     stdout=self.out, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"{self.url}/api/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the server did not start; see {log}")
            time.sleep(0.3)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.out.close()


def direct_p50_ms(model: Path, image: bytes, repeats: int = 30) -> float:
    """The median time of the same answer call in this process, no HTTP."""
    import torch

    import vlmt

    torch.set_num_threads(1)  # as each of the server's workers (--threads 1)
    loaded = vlmt.load(model)
    pixels = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    times = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        loaded.answer(pixels, "what color is the square?", top_k=3)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times[3:]) * 1000, 2)


def load_level(url: str, clients: int, requests: int, image: bytes) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        nonlocal failures
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                try:
                    got = http.post(f"{url}/api/answer", files={"image": ("x.png", image, "image/png")},
                                    data={"question": "what color is the square?", "top_k": "3"})
                    ok = got.status_code == 200
                except httpx.HTTPError:
                    ok = False
                seconds = time.perf_counter() - start
                with lock:
                    latencies.append(seconds)
                    failures += not ok

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"clients": clients, "requests": len(latencies), "p50_ms": round(q[49] * 1000, 1),
            "p95_ms": round(q[94] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
            "requests_per_s": round(len(latencies) / wall, 1), "failures": failures}


def soak_requests(image: bytes) -> tuple[list[Callable[[httpx.Client, str, random.Random], httpx.Response]],
                                          list[Callable[[httpx.Client, str, random.Random], httpx.Response]]]:
    """(good, hostile) request makers."""
    upload = {"image": ("x.png", image, "image/png")}
    tiff, ico, huge = encoded("TIFF"), encoded("ICO"), huge_png()
    too_big = os.urandom(3 * 2**20)  # the server runs with --max-upload-mb 2

    good = [
        lambda c, u, r: c.post(f"{u}/api/answer", files=upload, data={"question": f"what color is the {words(r, 2)}?"}),
        lambda c, u, r: c.post(f"{u}/api/answer", data={"gallery": str(r.randint(0, 7)), "question": words(r, 5)}),
        lambda c, u, r: c.post(f"{u}/api/ground", files=upload, data={"sentence": f"the red {words(r, 3)}"}),
        lambda c, u, r: c.post(f"{u}/api/retrieve", data={"caption": words(r, 4), "top_k": "3"}),
        lambda c, u, r: c.post(f"{u}/api/choose", data={"gallery": str(r.randint(0, 7)), "question": words(r, 4),
                                                       "choices": ", ".join(words(r, 1) for _ in range(4))}),
        lambda c, u, r: c.post(f"{u}/api/choose", files=upload, data={
            "question": "what color is it?", "choices": f"red, blue, {words(r, 2)}", "zero_shot": "true"}),
    ]
    hostile = [
        lambda c, u, r: c.post(f"{u}/api/answer", files={"image": ("x.png", os.urandom(20_000), "image/png")},
                               data={"question": "what?"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files={"image": ("x.tif", tiff, "image/tiff")},
                               data={"question": "what?"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files={"image": ("x.ico", ico, "image/png")},
                               data={"question": "what?"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files={"image": ("x.png", huge, "image/png")},
                               data={"question": "what?"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files={"image": ("x.png", too_big, "image/png")},
                               data={"question": "what?"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files={"image": ("x.png", image[:300], "image/png")},
                               data={"question": "what?"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files=upload, data={"question": "   "}),
        lambda c, u, r: c.post(f"{u}/api/answer", files=upload, data={"question": words(r, 200)}),
        lambda c, u, r: c.post(f"{u}/api/answer", files=upload, data={"question": "what?", "top_k": "1e9"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files=upload, data={"question": "what?", words(r, 1): "x"}),
        lambda c, u, r: c.post(f"{u}/api/answer", files=upload, data={"question": "what?", "model": words(r, 1)}),
        lambda c, u, r: c.post(f"{u}/api/answer", json={"question": "what?"}),
        lambda c, u, r: c.post(f"{u}/api/choose", data={"gallery": "0", "question": "what?", "choices": "one"}),
        lambda c, u, r: c.post(f"{u}/api/recognize", data={"gallery": "99999"}),
        lambda c, u, r: c.get(f"{u}/api/answer"),
        lambda c, u, r: c.get(f"{u}/api/{words(r, 1)}"),
    ]
    return good, hostile


def soak(server: Server, total: int, seconds: float, image: bytes, *, warmup: int = 1000) -> dict[str, Any]:
    good, hostile = soak_requests(image)
    lock = threading.Lock()
    counts = {"good": 0, "good_failed": 0, "hostile": 0, "hostile_not_4xx_json": 0}
    examples: list[str] = []
    issued = 0
    memory: dict[str, float] = {"start_mb": round(rss_mb(server.proc.pid), 1)}
    deadline = time.time() + seconds

    def run_one(http: httpx.Client, rng: random.Random) -> None:
        is_good = rng.random() < 0.6
        make = rng.choice(good if is_good else hostile)
        try:
            got = make(http, server.url, rng)
            status, body = got.status_code, got.text
        except httpx.HTTPError as e:
            status, body = 0, str(e)
        with lock:
            if is_good:
                counts["good"] += 1
                failed = status != 200
                counts["good_failed"] += failed
            else:
                counts["hostile"] += 1
                try:
                    json_error = set(json.loads(body)) == {"error"}
                except ValueError:
                    json_error = False
                failed = not (400 <= status < 500 and json_error)
                counts["hostile_not_4xx_json"] += failed
            if failed and len(examples) < 10:
                examples.append(f"{'good' if is_good else 'hostile'} {status}: {body[:200]}")

    def client(seed: int, stop_at: int) -> None:
        nonlocal issued
        rng = random.Random(seed)
        with httpx.Client(timeout=120) as http:
            while time.time() < deadline:
                with lock:
                    if issued >= stop_at:
                        return
                    issued += 1
                run_one(http, rng)

    def phase(stop_at: int, seed: int) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: client(seed * 100 + i, stop_at), range(8)))

    phase(min(warmup, total), 1)
    memory["after_warmup_mb"] = round(rss_mb(server.proc.pid), 1)
    start = time.perf_counter()
    phase(total, 2)
    wall = time.perf_counter() - start
    memory["after_soak_mb"] = round(rss_mb(server.proc.pid), 1)
    memory["growth_pct"] = round(100 * (memory["after_soak_mb"] / memory["after_warmup_mb"] - 1), 2)
    return {"requests": counts["good"] + counts["hostile"], "stopped_early": issued < total, **counts,
            "soak_s": round(wall, 1), "memory": memory, "failures": examples}


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--requests", type=at_least(1), default=400, help="requests per client count")
    parser.add_argument("--soak", type=at_least(0), default=10_000)
    parser.add_argument("--soak-seconds", type=float, default=900)
    parser.add_argument("--workers", type=at_least(1), default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        models = args.models or train_models(Path(tmp))
        image = picture()
        server = Server(models, args.workers, Path(tmp) / "server.log", ["--max-upload-mb", "2"])
        try:
            result: dict[str, Any] = {"cpus": os.cpu_count(), "workers": args.workers,
                                      "direct_call_p50_ms": direct_p50_ms(models[0], image), "load": []}
            print(json.dumps({"direct_call_p50_ms": result["direct_call_p50_ms"]}), flush=True)
            for clients in (int(c) for c in args.clients.split(",") if c):
                level = load_level(server.url, clients, args.requests, image)
                result["load"].append(level)
                print(json.dumps(level), flush=True)
            if args.soak:
                result["soak"] = soak(server, args.soak, args.soak_seconds, image)
                print(json.dumps(result["soak"]), flush=True)
        finally:
            server.close()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
