"""Wall time and peak memory of `vlmt demo` (the README's first command).

Runs `python -m vlmt demo --size SIZE --out DIR` as a child process and samples the resident
memory of the child and all its descendants from /proc every 0.1 s; reports the peak of that sum
(RSS including children), the kernel's peak RSS of the largest single process (getrusage), the
wall time, the demo's own per-stage seconds and the accuracies it reached (report.json).
CPU seconds (user + system) are reported too: on a shared, loaded machine they are the better
guide to the wall time on an idle one. The world is generated on the first run and reused
afterwards; `--fresh-world` points the cache at an empty folder so generation is included.

    PYTHONPATH=src python benchmarks/demo.py [--size default] [--json] [--save FILE] [--fresh-world]

Budget (issue 8): <= 300 s wall and < 4 GB peak on a 2-core CPU for --size default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from vlmt.errors import reports_errors


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree_rss_bytes(pid: int) -> int:
    """Resident bytes of `pid` and every descendant (0 for processes that already ended)."""
    total, stack, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * page
        except OSError:
            continue
        stack += _children(p)
    return total


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default", choices=["tiny", "default"])
    parser.add_argument("--out", default=None, help="demo output folder (default: a temporary one)")
    parser.add_argument("--fresh-world", action="store_true", help="generate the world instead of reusing the cache")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--save", default=None, help="also write the result to this JSON file")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    tmp = tempfile.TemporaryDirectory(prefix="vlmt-demo-bench-")
    if args.fresh_world:
        env["VLMT_CACHE"] = str(Path(tmp.name) / "cache")
    out = Path(args.out) if args.out else Path(tmp.name) / "demo"
    cmd = [sys.executable, "-m", "vlmt", "demo", "--size", args.size, "--out", str(out)]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env=env)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(child.pid))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = child.wait()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    if code != 0:
        print(f"vlmt demo failed with exit code {code}", file=sys.stderr)
        return code
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = json.loads((out / "report.json").read_text())
    result = {
        "command": " ".join(["vlmt", "demo", "--size", args.size]),
        "fresh_world": args.fresh_world,
        "wall_seconds": round(wall, 1),
        "demo_seconds": report["seconds"],
        "stage_seconds": report.get("stage_seconds", {}),
        "peak_rss_tree_mib": round(peak / 2**20, 1),
        "peak_rss_largest_process_mib": round(usage.ru_maxrss / 1024, 1),
        # CPU seconds of the demo: close to its wall time on an idle machine when it runs one thread
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "cpus": os.cpu_count(),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "hierarchical": report["hierarchical"],
        "svlr": report["svlr"],
        "not_built": report.get("not_built", []),
    }
    if args.save:
        sys.path.insert(0, src)
        from vlmt.io import write_json

        write_json(args.save, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
