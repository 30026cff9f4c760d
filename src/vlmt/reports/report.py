"""Reports: training curves from a run's metrics, tables, and report.md / report.html.

A report is a list of blocks (`Heading`, `Paragraph`, `Table`, `Figure`). The same blocks render to
Markdown (pictures by relative link) and to one self-contained HTML page (pictures embedded as
base64 data, so the page can be mailed or opened anywhere). Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

from vlmt.errors import DataError
from vlmt.io import atomic_write

# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    path: Path          # PNG file (absolute, or relative to the report's folder)
    caption: str = ""


Block = Union[Heading, Paragraph, Table, Figure]


def format_cell(value: Any, digits: int = 1) -> str:
    """Numbers with `digits` decimals, None as an em dash, everything else as str."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 1) -> str:
    """A GitHub-flavoured Markdown table; numeric columns are right-aligned."""
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {i} has {len(row)} cells for {len(headers)} headers")
    numeric = [bool(rows) and all(isinstance(r[c], (int, float)) or r[c] is None for r in rows)
               for c in range(len(headers))]
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(esc(format_cell(v, digits)) for v in row) + " |")
    return "\n".join(lines)


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:
        return path.as_posix()


def render_markdown(blocks: Iterable[Block], base_dir: Path) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append((f"{b.caption}\n\n" if b.caption else "") + markdown_table(b.headers, b.rows))
        elif isinstance(b, Figure):
            path = b.path if b.path.is_absolute() else base_dir / b.path
            out.append(f"![{b.caption}]({_relative(path, base_dir)})" + (f"\n\n*{b.caption}*" if b.caption else ""))
        else:
            raise TypeError(f"not a report block: {b!r}")
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%}code{background:#f3f3f3}"""


def _inline(text: str) -> str:
    """Escape text for HTML, keeping `code` spans."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Iterable[Block], base_dir: Path, *, title: str, embed: bool = True) -> str:
    """One HTML page; with `embed` every picture is inlined as a base64 data URI."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            if b.caption:
                out.append(f"<p>{_inline(b.caption)}</p>")
            rows = ["<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in b.headers) + "</tr>"]
            for row in b.rows:
                cells = "".join(f"<td class='n'>{format_cell(v)}</td>" if isinstance(v, (int, float))
                                else f"<td>{html.escape(format_cell(v))}</td>" for v in row)
                rows.append(f"<tr>{cells}</tr>")
            out.append("<table>" + "".join(rows) + "</table>")
        elif isinstance(b, Figure):
            path = b.path if b.path.is_absolute() else base_dir / b.path
            if embed:
                src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
            else:
                src = html.escape(_relative(path, base_dir))
            cap = f"<figcaption>{_inline(b.caption)}</figcaption>" if b.caption else ""
            out.append(f"<figure><img src='{src}' alt='{html.escape(b.caption)}'>{cap}</figure>")
        else:
            raise TypeError(f"not a report block: {b!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(out_dir: str | Path, blocks: Sequence[Block], *, title: str, stem: str = "report",
                 embed: bool = True) -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.html` into `out_dir` atomically; returns both paths."""
    out_dir = Path(out_dir)
    blocks = [Heading(title, 1), *blocks]
    md_path, html_path = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
    with atomic_write(md_path, "w", encoding="utf-8") as f:
        f.write(render_markdown(blocks, out_dir))
    with atomic_write(html_path, "w", encoding="utf-8") as f:
        f.write(render_html(blocks, out_dir, title=title, embed=embed))
    return md_path, html_path


# --------------------------------------------------------------------------- training curves


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl (`{"step", "split", "<task>/<name>": value}`)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise DataError(path, "no metrics file; is this a run folder written by `vlmt train`?")
    from vlmt.training.run_folder import read_records

    records = [rec for _, rec in read_records(path)]
    for n, rec in enumerate(records, start=1):
        if "split" not in rec:
            raise DataError(path, "missing", record=f"record {n}", field="split")
    return records


def metric_series(records: Sequence[dict[str, Any]], split: str) -> dict[str, tuple[list[int], list[float]]]:
    """{key: (steps, values)} of every numeric scalar logged on `split`."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for rec in records:
        if rec["split"] != split:
            continue
        for key, value in rec.items():
            if key in ("step", "split") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(int(rec["step"]))
            values.append(float(value))
    return series


@dataclass
class CurvePanels:
    """Which series go into the training-curves picture."""

    losses: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    validation: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def headline_metric(key: str) -> bool:
    """A task's main percentages ("vqa/accuracy", "retrieval/i2t_r1"), not its breakdowns
    ("vqa/qtype/how_many", "vqa/atype/number"), ranks, sums or timings."""
    task, _, metric = key.partition("/")
    if not task or not metric or "/" in metric:
        return False
    return not (metric in ("seconds", "rsum", "fold_rsum", "images", "folds", "fold_images")
                or metric.endswith(("medr", "meanr")))


def curve_panels(records: Sequence[dict[str, Any]]) -> CurvePanels:
    """Training losses per task ("<task>/loss") and the headline validation metrics."""
    train = metric_series(records, "train")
    return CurvePanels(losses={k: v for k, v in train.items() if k.endswith("/loss")},
                       validation={k: v for k, v in metric_series(records, "val").items() if headline_metric(k)})


def training_curves(run_dir: str | Path, out_png: str | Path, *, title: str = "") -> Path:
    """PNG with two panels: each task's training loss against the step (log scale when positive),
    and the headline validation metrics (percentages) against the step."""
    from matplotlib import colormaps

    from vlmt.pictures import new_figure, save_figure

    panels = curve_panels(read_metrics(run_dir))
    fig, (left, right) = new_figure(1, 2, figsize=(10.0, 3.6), layout="constrained")
    palette = colormaps["tab10"]
    task_names = sorted({k.split("/", 1)[0] for k in [*panels.losses, *panels.validation]})
    colour_of = {t: palette(i % 10) for i, t in enumerate(task_names)}
    for key, (steps, values) in sorted(panels.losses.items()):
        task = key.rsplit("/", 1)[0]
        left.plot(steps, values, label=task, linewidth=1.2, color=colour_of[task.split("/", 1)[0]])
    if panels.losses and all(v > 0 for _, vals in panels.losses.values() for v in vals):
        left.set_yscale("log")
    left.set_xlabel("iteration")
    left.set_title("training loss per task", fontsize=9)
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "v", "D", "x", "*"]
    seen: dict[str, int] = {}
    for key, (steps, values) in sorted(panels.validation.items()):  # colour = task, style = metric
        task = key.split("/", 1)[0]
        n = seen[task] = seen.get(task, -1) + 1
        right.plot(steps, values, label=key, linewidth=1.2, color=colour_of[task], linestyle=styles[n % 4],
                   marker=markers[n % len(markers)], markersize=3)
    right.set_xlabel("iteration")
    right.set_title("validation metrics (%)", fontsize=9)
    for ax, series in ((left, panels.losses), (right, panels.validation)):
        if series:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        else:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out_png)
