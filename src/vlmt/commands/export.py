"""`vlmt export RUN --out DIR [--checkpoint best|last|best:TASK|STEP] [--metrics test|val|none] [--json]`:
write a run's trained model as a folder of its own (`vlmt.inference.export`), which `vlmt.load`
and `vlmt predict` read with no dataset, cache or network. By default the checkpoint's test
metrics are measured first (on the run's data) and written into config.json and the model card.
A model folder holds one set of weights: in a run trained with `train.keep_best: per_task`,
`best` is the checkpoint chosen on train.best_metric and `best:TASK` the one chosen for TASK; the
card's metrics are every task's at that one checkpoint (not each task at its own best).
"""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
  vlmt train tiny --out runs/tiny
  vlmt export runs/tiny --out models/tiny
  vlmt export runs/tiny --out models/tiny-150 --checkpoint 150 --metrics none
  python -c 'import vlmt; print(vlmt.load("models/tiny").answer("x.png", "what color is the square?"))'"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="run folder written by `vlmt train`")
    parser.add_argument("--out", required=True, metavar="DIR", help="the model folder to write (must not exist)")
    parser.add_argument("--checkpoint", default="best", metavar="best|last|best:TASK|STEP",
                        help="which checkpoint: best (default, chosen on train.best_metric; a run without "
                             "validation uses last), last, best:TASK (TASK's own best in a run trained with "
                             "train.keep_best: per_task), or a kept step number")
    parser.add_argument("--metrics", default="test", choices=("test", "val", "none"),
                        help="split whose metrics the model card reports (default test; needs the run's data); "
                             "none skips the evaluation")
    parser.add_argument("--device", default=None, help="device for measuring the metrics (default: the run's)")
    parser.add_argument("--json", action="store_true", help="print {out, files, bytes, metrics} as one JSON object")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vlmt.errors import VlmtError
    from vlmt.inference.export import check_export, export_run
    from vlmt.training.evaluate import evaluate_run

    check_export(Path(args.run_dir), Path(args.out), args.checkpoint)  # before minutes of evaluation
    metrics, note = None, None
    if args.metrics != "none":
        try:
            metrics = evaluate_run(args.run_dir, split=args.metrics, checkpoint=args.checkpoint, device=args.device,
                                   own_best=False)  # the card's numbers are those of the weights exported
        except VlmtError as e:  # the data may be gone: the model is still worth exporting, without numbers
            note = f"{args.metrics} metrics not measured: {e}"
            print(f"warning: {note}", file=sys.stderr)
    out = export_run(args.run_dir, args.out, checkpoint=args.checkpoint, metrics=metrics, metrics_split=args.metrics,
                     metrics_note=note)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(f"model folder: {out}  ({len(files)} files, {size / 1e6:.2f} MB)", file=sys.stderr)
    if args.json:
        print(json.dumps({"out": str(out), "files": [str(p.relative_to(out)) for p in files], "bytes": size,
                          "metrics": metrics or {}}))
    return 0
