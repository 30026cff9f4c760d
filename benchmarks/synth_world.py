"""Time and size of the synthetic world (`vlmt data synth --size tiny|default`), and linear-probe
accuracies of its region features.

    PYTHONPATH=src python benchmarks/synth_world.py [--sizes tiny default] [--seed 0]

Each size is generated in a fresh subprocess (so peak memory is that run's alone) into a
temporary folder; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlmt.errors import reports_errors


def folder_size(path: Path) -> tuple[int, int]:
    total = count = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
            count += 1
    return total, count


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "default"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-probe", action="store_true")
    args = parser.parse_args(argv)
    results = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / size
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "vlmt", "data", "synth", "--size", size, "--seed",
                                   str(args.seed), "--out", str(out), "--json"], capture_output=True, text=True,
                                  check=True)
            wall = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            manifest = json.loads(proc.stdout)
            nbytes, nfiles = folder_size(out)
            row = {
                "wall_s": round(wall, 2), "stages_s": manifest["timings_s"],
                "peak_rss_mb": round(max(peak, before) / 1024, 1),
                "disk_mb": round(nbytes / 2**20, 2), "files": nfiles,
                "images": manifest["images"], "genome_images": manifest["genome_images"],
                "questions": manifest["questions"],
            }
            if not args.no_probe:
                import torch

                from vlmt.data.synth.probe import probe_world

                torch.set_num_threads(1)
                row["linear_probe_accuracy"] = {k: (round(v, 4) if isinstance(v, float) else v)
                                                for k, v in probe_world(out, size, args.seed).items()}
            results[size] = row
            print(f"{size}: {row['wall_s']} s, {row['disk_mb']} MB, {row['files']} files", file=sys.stderr)
    print(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
