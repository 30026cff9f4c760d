"""Task numbers with detector regions against oracle regions: one experiment config trained on
the same world twice, once with each proposal method, for a few training seeds, evaluated on the
test split at the end of the schedule (`--checkpoint last`).

    PYTHONPATH=src python benchmarks/detector_tasks.py --config tiny --size tiny --seeds 0 1 2 [--json]
    PYTHONPATH=src python benchmarks/detector_tasks.py --config hierarchical_world --size default --seeds 0

Each run is `vlmt train CONFIG --set data.root=world:SIZE:0:METHOD --set train.seed=S` (the world's
seed stays 0: only the regions differ) followed by `vlmt evaluate run --split test --checkpoint last`.
Run folders go under --out (a temporary folder by default); the table gives mean and standard
deviation over the seeds of every headline metric.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlmt.errors import reports_errors

HEADLINES = ("accuracy", "object_accuracy", "attribute_accuracy", "i2t_r1", "t2i_r1", "rsum", "r1", "r5")


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


@reports_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny", help="experiment config name or file (default: tiny)")
    parser.add_argument("--size", default="tiny", help="world size for data.root (default: tiny)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    parser.add_argument("--methods", nargs="+", default=["oracle", "detector"], help="proposal methods")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)

    out = Path(args.out or tempfile.mkdtemp(prefix="vlmt-detector-tasks-"))
    vlmt = [sys.executable, "-m", "vlmt"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in args.methods}
    seconds: dict[str, list[float]] = {m: [] for m in args.methods}
    for seed in args.seeds:
        for method in args.methods:
            run_dir = out / f"{method}-seed{seed}"
            t = time.perf_counter()
            root = f"data.root=world:{args.size}:0:{method}"
            _run([*vlmt, "train", args.config, "--out", str(run_dir), "--set", root,
                  "--set", f"train.seed={seed}", *(x for kv in args.set for x in ("--set", kv))])
            seconds[method].append(time.perf_counter() - t)
            evaluated = _run([*vlmt, "evaluate", "run", str(run_dir), "--split", "test", "--checkpoint", "last",
                              "--json"])
            metrics = json.loads(evaluated.strip().splitlines()[-1])
            flat = {f"{task}/{k}": float(v) for task, m in metrics.items() for k, v in m.items()
                    if k in HEADLINES}
            results[method].append(flat)
            print(f"{method} seed {seed}: " + "  ".join(f"{k} {v:.2f}" for k, v in flat.items()), file=sys.stderr)
    keys = sorted({k for rows in results.values() for r in rows for k in r})
    summary = {m: {k: {"mean": statistics.fmean(r[k] for r in rows),
                       "sd": statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0,
                       "values": [r[k] for r in rows]} for k in keys} for m, rows in results.items()}
    result = {"config": args.config, "size": args.size, "seeds": args.seeds, "metrics": summary,
              "train_s": {m: [round(s, 1) for s in v] for m, v in seconds.items()}, "runs": str(out)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.config} on world:{args.size}, test split, seeds {args.seeds} (mean ± sd)")
    print(f"{'metric':<30}" + "".join(f"{m:>18}" for m in args.methods))
    for k in keys:
        print(f"{k:<30}" + "".join(f"{summary[m][k]['mean']:>11.2f} ± {summary[m][k]['sd']:<4.1f}"
                                   for m in args.methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
