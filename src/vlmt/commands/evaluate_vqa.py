"""`vlmt evaluate vqa`: official VQA accuracy from the official question, annotation and result
files (open-ended v1/v2, and v1 multiple choice)."""

from __future__ import annotations

import argparse
import json
import sys

from vlmt.metrics.vqa import evaluate_vqa
from vlmt.metrics.vqa_files import read_vqa_files
from vlmt.metrics.vqa_multiple_choice import evaluate_multiple_choice

EXAMPLES = """\
  vlmt evaluate vqa --questions v2_OpenEnded_mscoco_val2014_questions.json \\
      --annotations v2_mscoco_val2014_annotations.json --results results.json
  vlmt evaluate vqa --questions MultipleChoice_mscoco_val2014_questions.json \\
      --annotations mscoco_val2014_annotations.json --results mc.json --json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", required=True, metavar="Q.json", help="official question file")
    parser.add_argument("--annotations", required=True, metavar="A.json", help="official annotation file")
    parser.add_argument("--results", required=True, metavar="R.json",
                        help='results: [{"question_id": int, "answer": str}, ...]')
    parser.add_argument("--task", choices=["auto", "open-ended", "multiple-choice"], default="auto",
                        help="multiple-choice checks that every answer is one of the question's "
                             "choices; auto reads the question file's task_type (default)")
    parser.add_argument("--corrected-normalization", action="store_true",
                        help="NOT the official metric: normalise every answer with the documented "
                             "rules (see docs/metrics.md); numbers differ from published ones")
    parser.add_argument("--rounding", choices=["python2", "python3"], default="python2",
                        help="python2 (default, as published): ties away from zero; python3: ties to even")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args: argparse.Namespace) -> int:
    files = read_vqa_files(args.questions, args.annotations, args.results)
    multiple_choice = files.is_multiple_choice if args.task == "auto" else args.task == "multiple-choice"
    options = dict(corrected=args.corrected_normalization, rounding=args.rounding)
    if multiple_choice:
        scores = evaluate_multiple_choice(files.annotations, files.results, files.questions,
                                          results_path=files.results_path, **options)
    else:
        scores = evaluate_vqa(files.annotations, files.results, **options)
    out = scores.to_json()
    task = "multiple-choice" if multiple_choice else "open-ended"
    if args.json:
        print(json.dumps(out))
        print(f"{task}, {len(files.annotations)} questions", file=sys.stderr)
        return 0
    print(f"VQA accuracy ({task}, {len(files.annotations)} questions)"
          + (" [corrected normalisation: not the official metric]" if args.corrected_normalization else ""),
          file=sys.stderr)
    print(f"Overall Accuracy is: {out['overall']:.2f}", file=sys.stderr)
    print("Per Answer Type Accuracy:", file=sys.stderr)
    for k, v in out["perAnswerType"].items():
        print(f"  {k} : {v:.2f}", file=sys.stderr)
    print("Per Question Type Accuracy:", file=sys.stderr)
    for k, v in out["perQuestionType"].items():
        print(f"  {k} : {v:.2f}", file=sys.stderr)
    return 0
