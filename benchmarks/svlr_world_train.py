"""Time SVLR training on the synthetic world through the real trainer (data build excluded):
seconds for the whole run and per update, and the share spent in collation.

    PYTHONPATH=src python benchmarks/svlr_world_train.py [--config configs/svlr_world.yaml]
        [--iters 200] [--threads 1]

Prints one JSON line. Multiply seconds per update by the config's max_iters for a full run
(validation adds a few seconds per evaluation).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import torch

from vlmt.cli import at_least
from vlmt.errors import reports_errors
from vlmt.training.build import build_parts, load_experiment
from vlmt.training.trainer import train


@reports_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/svlr_world.yaml")
    parser.add_argument("--iters", type=at_least(1), default=200)
    parser.add_argument("--threads", type=at_least(1), default=1)
    args = parser.parse_args(argv)
    overrides = [f"train.max_iters={args.iters}", f"train.eval_every={args.iters}",
                 f"train.checkpoint_every={args.iters}", f"train.threads={args.threads}",
                 "train.progress=false", "train.tensorboard=false"]
    cfg = load_experiment(args.config, overrides)
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    tasks = build_parts(cfg, torch.device("cpu")).tasks  # also warms the data cache
    build_s = time.perf_counter() - t
    order = cfg.schedule.order or list(cfg.tasks)
    streams = {n: iter(tasks[n].batches("train")) for n in order}
    t = time.perf_counter()
    for _ in range(20):
        for s in streams.values():
            next(s)
    collate_s = (time.perf_counter() - t) / 20
    with tempfile.TemporaryDirectory() as run:
        summary = train(cfg, run)
    print(json.dumps({"config": args.config, "iters": args.iters, "threads": args.threads,
                      "data_build_s": round(build_s, 2), "run_s": summary["seconds"],
                      "s_per_update_incl_final_eval": round(summary["seconds"] / args.iters, 4),
                      "collate_s_per_update": round(collate_s, 4)}))


if __name__ == "__main__":
    sys.exit(main())
