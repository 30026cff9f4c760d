"""Rebuild docs/deviations.md from the "Choices and deviations" tables of every docs/*.md page.

Each topic page keeps its own table next to the explanation; this script gathers them into one
list so a reader sees every choice in one place. tests/test_docs.py fails when the collected
file is out of date:  python scripts/collect_deviations.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
HEADER = """# Choices where the papers are silent, and deviations from them

Every place where vlmt chooses something a paper does not state, or departs from what a paper
states, with its reason. Paper references: **H** = hierarchical multi-task (CVPR 2019),
**S** = SVLR (ICCV 2017). Each table is kept on its topic page (linked) and gathered here by
`scripts/collect_deviations.py`; edit the topic page, then rerun the script.
"""


def tables(page: Path) -> list[str]:
    """Table lines of the page's "Choices and deviations" section."""
    text = page.read_text(encoding="utf-8")
    match = re.search(r"^##+ Choices and deviations\s*$(.*?)(?=^##? |\Z)", text, re.S | re.M)
    if not match:
        return []
    return [line for line in match.group(1).splitlines() if line.startswith("|")]


def collect() -> str:
    parts = [HEADER]
    for page in sorted(DOCS.glob("*.md")):
        if page.name == "deviations.md":
            continue
        rows = tables(page)
        if not rows:
            continue
        title = page.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        parts.append(f"\n## {title} ([{page.name}]({page.name}))\n\n" + "\n".join(rows) + "\n")
    return "".join(parts)


def main() -> int:
    out = DOCS / "deviations.md"
    text = collect()
    if "--check" in sys.argv:
        if out.read_text(encoding="utf-8") != text:
            print(f"{out} is out of date: run python scripts/collect_deviations.py", file=sys.stderr)
            return 1
        return 0
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
