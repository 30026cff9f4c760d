"""`vlmt train CONFIG --out RUN [--set key=value ...] [--resume]`: train one experiment."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# keys that do not change the trajectory of a run, so a resumed run may set them anew
RESUMABLE_CHANGES = ("train.max_iters", "train.progress", "train.tensorboard", "train.num_workers",
                     "train.log_every")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (e.g. configs/sanity.yaml)")
    parser.add_argument("--out", default=None,
                        help="run folder (default: runs/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.seed=3 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--json", action="store_true", help="print the run summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    from vlmt import config as C
    from vlmt.errors import ConfigError
    from vlmt.training.build import load_experiment
    from vlmt.training.trainer import train

    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    cfg = load_experiment(args.config, args.overrides)
    if args.resume:
        saved_path = out / "config.yaml"
        if not saved_path.is_file():
            raise ConfigError(f"{saved_path}: --resume needs the run's saved config; not found")
        saved = load_experiment(saved_path)
        changed = [k for k in C.diff(saved, cfg) if k not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(f"{saved_path}: the run was started with a different config "
                              f"({', '.join(changed)}); only {', '.join(RESUMABLE_CHANGES)} may change on --resume")
        if C.diff(saved, cfg):
            C.save_config(cfg, saved_path)
    summary = train(cfg, out, resume=args.resume)
    if summary.get("rank", 0) != 0:
        return 0  # under torchrun only the first process reports
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"run folder: {out}  (step {summary['step']}, best {summary['best']})", file=sys.stderr)
    return 0
