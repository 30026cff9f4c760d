"""`vlmt evaluate run RUN [--split val|test] [--checkpoint best|last] [--json]`: evaluate a run folder.

Works for any model and tasks registered in `vlmt.config`: the parts are rebuilt from the run's
`config.yaml` with the trainer's `build_parts`, the checkpoint's weights are loaded, and every
task's `evaluate(model, split, device)` is called. `--json` prints exactly
`{task_name: {metric: value}}` on stdout; the human-readable table goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by `vlmt train`")
    parser.add_argument("--split", default="test", choices=("val", "test"), help="split to evaluate (default test)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="which checkpoint (default best; a run without one uses last)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's train.device)")
    parser.add_argument("--json", action="store_true", help="print {task: {metric: value}} as one JSON object")
    parser.add_argument("--predictions", metavar="DIR", default=None,
                        help="also write each task's predictions in the official formats into DIR (VQA results "
                             "JSON for the evaluation server, ranked grounding boxes, the retrieval score matrix)")
    parser.add_argument("--rerank", metavar="K", type=int, default=None,
                        help="retrieval: re-score only each query's K best pairs by the shortlist head "
                             "(needs a run trained with tasks.<retrieval>.shortlist_dim > 0); default: every pair")


def evaluate_run(run_dir: str | Path, *, split: str = "test", checkpoint: str = "best",
                 device: str | None = None, predictions: str | Path | None = None,
                 rerank: int | None = None) -> dict[str, dict[str, float]]:
    """{task name: {metric: value}} of a run's checkpoint on `split`; with `predictions`, each
    task's predictions are first written there (vlmt.reports.predictions), so a split without
    annotations (VQA test-dev) still yields a results file before its scoring is refused. `rerank`
    sets every retrieval task's `rerank_k` (two-stage scoring) for this evaluation."""
    import torch

    from vlmt import config as C
    from vlmt.errors import ConfigError
    from vlmt.training import checkpoint as ckpt
    from vlmt.training.trainer import build_parts, resolve_device, seed_everything

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: not found; is {run_dir} a run folder written by `vlmt train`?")
    cfg = C.load_config(config_path)
    directory = ckpt.checkpoint_dir(run_dir, checkpoint)
    if directory is None and checkpoint == "best":
        directory = ckpt.checkpoint_dir(run_dir, "last")
    if directory is None:
        raise ConfigError(f"{run_dir / ckpt.CHECKPOINTS}: no checkpoint yet (expected last.json)")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dev = resolve_device(device or cfg.train.device)
    seed_everything(cfg.train.seed)  # the same construction order and data as training
    model, tasks, modules = build_parts(cfg, dev)
    ckpt.load_weights(directory, modules)
    if rerank is not None:
        _set_rerank(cfg, tasks, rerank)
    modules.eval()
    out: dict[str, dict[str, float]] = {}
    bf16 = cfg.train.precision == "bf16"
    with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
        if predictions is not None:
            from vlmt.reports.predictions import write_predictions

            for path in write_predictions(tasks, model, split, predictions, device=dev):
                print(f"predictions: {path}", file=sys.stderr)
        for name, task in tasks.items():
            out[name] = {k: float(v) for k, v in task.evaluate(model, split, device=dev).items()}
    return out


def _set_rerank(cfg, tasks: dict, k: int) -> None:
    from vlmt.errors import ConfigError

    if k < 1:
        raise ConfigError(f"--rerank must be >= 1, got {k}")
    retrieval = {name: task for name, task in tasks.items() if getattr(task, "kind", "") == "retrieval"}
    if not retrieval:
        raise ConfigError("--rerank: this run has no retrieval task")
    for name, task in retrieval.items():
        if cfg.tasks[name].shortlist_dim == 0:
            raise ConfigError(f"--rerank: tasks.{name} has no shortlist head; train with "
                              f"tasks.{name}.shortlist_dim > 0 (e.g. --set tasks.{name}.shortlist_dim=64)")
        task.rerank_k = k


def run(args: argparse.Namespace) -> int:
    results = evaluate_run(args.run_dir, split=args.split, checkpoint=args.checkpoint, device=args.device,
                           predictions=args.predictions, rerank=args.rerank)
    for task, metrics in results.items():
        print(f"{task} ({args.split}): " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()), file=sys.stderr)
    if args.json:
        print(json.dumps(results))
    return 0
