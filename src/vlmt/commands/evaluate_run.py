"""`vlmt evaluate run RUN [--split val|test] [--checkpoint best|last|best:TASK|STEP] [--json]`: evaluate a
run folder.

Works for any registered model and tasks: the parts are rebuilt from the run's `config.yaml`, the
checkpoint's weights are loaded, and every task's `evaluate(model, split, device)` is called
(`vlmt.training.evaluate.evaluate_run`). A run trained with `train.keep_best: per_task` is judged
task by task at each task's own best checkpoint (`--checkpoint best`, the default). `--json`
prints exactly `{task_name: {metric: value}}` on stdout; the human-readable table goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
  vlmt evaluate run runs/tiny
  vlmt evaluate run runs/tiny --split val --checkpoint last --json
  vlmt evaluate run runs/h0 --predictions preds/        # also the official result files"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by `vlmt train`")
    parser.add_argument("--split", default="test", choices=("val", "test"), help="split to evaluate (default test)")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|best:TASK|STEP",
                        help="which checkpoint of a run: best (default; a run without validation uses last; a run "
                             "with train.keep_best: per_task judges each task at its own best), last, best:TASK "
                             "(TASK's own best, every task judged there), or a kept step number")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the run's train.device)")
    parser.add_argument("--json", action="store_true", help="print {task: {metric: value}} as one JSON object")
    parser.add_argument("--predictions", metavar="DIR", default=None,
                        help="also write each task's predictions in the official formats into DIR (VQA results "
                             "JSON for the evaluation server, ranked grounding boxes, the retrieval score matrix)")
    parser.add_argument("--rerank", metavar="K[/K_T2I]", type=_rerank_k, default=None,
                        help="retrieval: re-score only each query's K best pairs by the shortlist head "
                             "(needs a run trained with tasks.<retrieval>.shortlist_dim > 0); K/K_T2I: K captions "
                             "per image query, K_T2I images per caption query (e.g. 50/20); default: every pair")


def _rerank_k(text: str) -> int | tuple[int, int]:
    """`K` or `K_I2T/K_T2I` (argparse turns the ValueError into a usage error naming the option)."""
    a, slash, b = text.partition("/")
    return (int(a), int(b)) if slash else int(a)


def run(args: argparse.Namespace) -> int:
    from vlmt.reports.predictions import write_predictions
    from vlmt.training.evaluate import evaluate_run

    def predictions(parts, device) -> None:  # first, so a split without annotations still yields its file
        for path in write_predictions(parts.tasks, parts.model, args.split, args.predictions, device=device):
            print(f"predictions: {path}", file=sys.stderr)

    results = evaluate_run(args.run_dir, split=args.split, checkpoint=args.checkpoint, device=args.device,
                           rerank=args.rerank, before=predictions if args.predictions is not None else None)
    _say_checkpoint(args.run_dir, args.checkpoint, list(results))
    for task, metrics in results.items():
        for line in metric_lines(task, args.split, metrics):
            print(line, file=sys.stderr)
    if args.json:
        print(json.dumps(results))
    return 0


def metric_lines(task: str, split: str, metrics: dict[str, float]) -> list[str]:
    """One line per protocol: a retrieval task with fold keys gets a line for the whole split
    (COCO "5K" on the 5K test) and one for the mean over its folds (COCO "1K")."""
    def fmt(items: dict[str, float]) -> str:
        return "  ".join(f"{k} {v:.4g}" for k, v in items.items())

    if "fold_images" not in metrics:
        return [f"{task} ({split}): {fmt(metrics)}"]
    folds, size = int(metrics["folds"]), int(metrics["fold_images"])
    whole = {k: v for k, v in metrics.items() if not k.startswith("fold") and k != "images"}
    folded = {k.removeprefix("fold_"): v for k, v in metrics.items() if k.startswith("fold_") and k != "fold_images"}
    images = int(metrics.get("images", folds * size))
    return [f"{task} ({split}, all {images} images; COCO 5K protocol): {fmt(whole)}",
            f"{task} ({split}, mean of {folds} folds of {size} images; COCO 1K protocol): {fmt(folded)}"]


def _say_checkpoint(run_dir: str, which: str, tasks: list[str]) -> None:
    """Which checkpoint was evaluated; with several tasks at a best checkpoint chosen on one task's
    metric, say that the others are judged at a step picked for it; with per-task bests, which
    checkpoint judged which task."""
    from vlmt.training import checkpoint as ckpt
    from vlmt.training.evaluate import judging_checkpoints

    judges = judging_checkpoints(run_dir) if which == "best" else {}
    if judges:
        print("checkpoint: per task (train.keep_best: per_task)", file=sys.stderr)
        for task in tasks:
            step, why = judges[task]
            print(f"  {task}: step {step} ({why})", file=sys.stderr)
        return
    if which.startswith("best:"):
        chosen = ckpt.task_best_info(run_dir).get(which.partition(":")[2], {})
        print(f"checkpoint: {which}, step {chosen.get('step')} (selected on {chosen.get('metric')} = "
              f"{chosen.get('value')}); every task is judged there", file=sys.stderr)
        return
    best = ckpt.best_info(run_dir) if which == "best" else None
    if best is None:
        last = ckpt.checkpoint_dir(run_dir, "last") if which in ("best", "last") else None
        print(f"checkpoint: {which if which != 'best' else 'last (the run keeps no best)'}"
              + (f" ({last.name})" if last is not None else ""), file=sys.stderr)
        return
    chosen_for = str(best.get("metric", "")).split("/", 1)[0]
    print(f"checkpoint: best, step {best.get('step')} (selected on {best.get('metric')} = {best.get('value')})",
          file=sys.stderr)
    others = [t for t in tasks if t != chosen_for]
    if others and chosen_for in tasks:
        print(f"note: {', '.join(others)} are evaluated at the step chosen for {chosen_for}; "
              f"--checkpoint last evaluates every task at the end of its schedule", file=sys.stderr)

