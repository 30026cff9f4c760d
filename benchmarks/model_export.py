"""Size of exported model folders and the time to load and use them, each in a fresh process.

    PYTHONPATH=src python benchmarks/model_export.py [RUN ...] [--repeats 3] [--json]

Without RUN folders it trains the shipped `tiny` and `svlr_tiny` configs first (seconds). For each
run: `vlmt export` (no metrics), the folder's bytes per file, then `repeats` fresh interpreters in
an empty folder with no cache each time `import vlmt`, `vlmt.load(DIR)` and the first call of a
method its heads support (answer / choose / recognize), on a 128 x 128 picture. The baseline in
the same run is a fresh interpreter that only imports torch, so the figures compare across
machines as ratios. Medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from vlmt.cli import at_least
from vlmt.errors import reports_errors

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
if sys.argv[1] == "-":
    print(json.dumps({"torch_import_s": t1 - t0})); raise SystemExit
import numpy as np
import vlmt
t2 = time.perf_counter()
model = vlmt.load(sys.argv[1])
t3 = time.perf_counter()
pixels = np.zeros((128, 128, 3), np.uint8); pixels[16:60, 16:60] = (230, 30, 30)
kinds = set(model.heads.values())
if "vqa" in kinds:
    call = "answer"; model.answer(pixels, "what color is the square?", top_k=5)
elif kinds & {"svlr_vqa_mc", "svlr_zero_shot"}:
    call = "choose"; model.choose(pixels, "what color is the square?", ["red", "blue", "green"])
else:
    call = "recognize"; model.recognize(pixels)
t4 = time.perf_counter()
print(json.dumps({"torch_import_s": t1 - t0, "vlmt_import_s": t2 - t1, "load_s": t3 - t2, "first_call": call,
                  "first_call_s": t4 - t3, "total_s": t4 - t0}))
"""


def probe(model_dir: str, where: Path) -> dict:
    env = {**os.environ, "VLMT_CACHE": str(where / "no-cache")}
    proc = subprocess.run([sys.executable, "-c", PROBE, model_dir], cwd=where, env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout)


def median_of(runs: list[dict]) -> dict:
    out: dict = {}
    for key, value in runs[0].items():
        out[key] = round(statistics.median(r[key] for r in runs), 3) if isinstance(value, float) else value
    return out


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="*", help="run folders (default: train tiny and svlr_tiny first)")
    parser.add_argument("--repeats", type=at_least(1), default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from vlmt.cli import main as vlmt_main

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs = [Path(r) for r in args.runs]
        if not runs:
            for name in ("tiny", "svlr_tiny"):
                assert vlmt_main(["train", name, "--out", str(tmp / name)]) == 0
                runs.append(tmp / name)
        baseline = median_of([probe("-", tmp) for _ in range(args.repeats)])
        rows = []
        for run in runs:
            out = tmp / "models" / run.name
            assert vlmt_main(["export", str(run), "--out", str(out), "--metrics", "none"]) == 0
            files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
            timing = median_of([probe(str(out), tmp) for _ in range(args.repeats)])
            rows.append({"run": run.name, "bytes": sum(files.values()), "files": files, **timing,
                         "load_over_torch_import": round(timing["load_s"] / baseline["torch_import_s"], 2)})
    result = {"python": sys.version.split()[0], "repeats": args.repeats, **baseline, "models": rows}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"importing torch alone: {baseline['torch_import_s']:.2f} s (median of {args.repeats} processes)")
        for r in rows:
            print(f"{r['run']:<16} {r['bytes'] / 1e6:7.2f} MB  import vlmt {r['vlmt_import_s']:.2f} s  "
                  f"load {r['load_s']:.2f} s  first {r['first_call']} {r['first_call_s']:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
