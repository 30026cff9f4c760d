"""Pictures of a trained run (`vlmt visualize`): each task draws its own (`pictures`, see
`vlmt.tasks.capabilities`), and this module writes them with an index.html.

With the shipped tasks: the VQA task draws Fig. 2 of the hierarchical paper (the top-1 region of each
noun phrase of a question, and the summary attention over regions and words of every decoder of
the run, with the predicted and the annotated answers), the grounding task its own sentences with
the annotated boxes dashed, and SVLR's multiple-choice task Fig. 4 of the SVLR paper (the region
relevance of the chosen answer and the most relevant region's predictions).

`visualize_run(run, out)` returns the pictures written (path + caption) and writes index.html.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, Sequence

from vlmt.errors import ConfigError
from vlmt.io import atomic_write
from vlmt.tasks.capabilities import Picture
from vlmt.training.build import rebuild


def write_index(out: Path, pictures: Sequence[Picture], *, title: str) -> Path:
    """index.html showing every picture with its caption (relative links)."""
    items = "\n".join(f"<figure><img src='{html.escape(p.path.relative_to(out).as_posix())}'>"
                      f"<figcaption>{html.escape(p.caption)}</figcaption></figure>" for p in pictures)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto}"
            "img{max-width:100%}figcaption{color:#555;font-size:.9em}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>\n{items}\n</body></html>\n")
    path = out / "index.html"
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path


def visualize_run(run_dir: str | Path, out: str | Path, *, split: str = "val", count: int = 3,
                  checkpoint: str = "best", say: Callable[[str], None] | None = None) -> list[Picture]:
    """Pictures of a checkpoint of the run (best, or last) for `count` examples of `split`, drawn by
    every task that draws pictures, plus index.html."""
    say = say or (lambda msg: None)
    run_dir, out = Path(run_dir), Path(out)
    if count < 1:
        raise ConfigError(f"--count: must be >= 1, got {count}")
    _, parts = rebuild(run_dir, checkpoint, device="cpu")
    model, tasks = parts.model, parts.tasks
    drawers = {name: task for name, task in tasks.items() if callable(getattr(task, "pictures", None))}
    if not drawers:
        raise ConfigError(f"{run_dir}: no task of this run draws pictures (tasks: {', '.join(tasks)})")
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    pictures: list[Picture] = []
    for name, task in drawers.items():
        drawn = task.pictures(model, split, count=count, out=out, peers=tasks)
        say(f"      {name}: {len(drawn)} pictures in {out}")
        pictures += drawn
    write_index(out, pictures, title=f"Pictures of {run_dir.name} ({split})")
    return pictures
