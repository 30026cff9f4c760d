"""`vlmt configs list [--json]`: the experiment configs shipped with vlmt, one line each.

Any command that takes an experiment file also takes a shipped config's name (`vlmt train tiny`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys

EXAMPLES = """\
  vlmt configs list
  vlmt configs list --json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print [{name, model, tasks, summary}] as JSON")


def summary_line(text: str) -> str:
    """The first comment sentence of a config file."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    first = re.split(r"[.:]\s+(?=[A-Z`(])", " ".join(lines))[0].rstrip(".")
    return first if len(first) <= 100 else first[:99] + "…"


def run(args: argparse.Namespace) -> int:
    from vlmt.config import shipped_configs
    from vlmt.config.loader import read_yaml

    rows = []
    for name, path in shipped_configs().items():
        raw = read_yaml(path)
        rows.append({"name": name, "model": (raw.get("model") or {}).get("type", ""),
                     "tasks": list(raw.get("tasks") or {}), "summary": summary_line(path.read_text(encoding="utf-8"))})
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['model']:<13} {r['summary']}")
    print("\n`vlmt configs show NAME` prints one; `vlmt train NAME` trains it.", file=sys.stderr)
    return 0
