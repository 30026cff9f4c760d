"""The demo's report: tables of the test numbers, training curves and attention pictures, written
as report.md and a self-contained report.html (see `vlmt.experiments.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from vlmt.reports.report import Block, Figure, Heading, Paragraph, Table, write_report


def _iterations(run_dir: Path) -> str:
    """What the run trained: iterations and schedule, from its saved config and summary."""
    from vlmt.io import load_json
    from vlmt.training.build import run_config

    cfg = run_config(run_dir)
    summary = load_json(run_dir / "summary.json")
    trained = cfg.schedule.order or list(cfg.tasks)
    tasks = ", ".join(f"{n} (batch {cfg.tasks[n].batch_size})" for n in trained)
    evaluated = [n for n in cfg.tasks if n not in trained]
    return (f"{summary['step']} iterations, {cfg.schedule.kind} schedule, trained tasks {tasks}"
            f"{'; evaluated only: ' + ', '.join(evaluated) if evaluated else ''}; "
            f"{summary['seconds']:.0f} s of training")


def retrieval_ceiling(size: str, seed: int) -> dict[str, Any]:
    """The retrieval ceiling of the demo's world on its test split (`vlmt.tasks.retrieval_ceiling`):
    expected Recall@K of the truth oracle under both readings, as report.json holds it."""
    from vlmt.tasks.retrieval_ceiling import world_ceiling

    c = world_ceiling(size, seed)
    recall = {reading: {side: {k: round(v, 2) for k, v in ks.items()} for side, ks in sides.items()}
              for reading, sides in c.recall.items()}
    return {"images": c.images, "captions": c.captions, **recall,
            "images_per_caption": c.images_per_caption["generated"]}


def _ceiling_rows(ceiling: dict[str, Any] | None) -> list[list[Any]]:
    if not ceiling:
        return []
    g = ceiling["generated"]
    return [["retrieval ceiling", "image -> caption (oracle)", *(g["i2t"][k] for k in ("r1", "r5", "r10"))],
            ["retrieval ceiling", "caption -> image (oracle)", *(g["t2i"][k] for k in ("r1", "r5", "r10"))]]


# Why the default world's models sit far below the ceiling, and the config that narrows the gap
DEFAULT_WORLD_RETRIEVAL = (
    "On the default world the models are further below it mostly because they memorise its 560 training "
    "pictures' captions: `configs/hierarchical_world_train2240.yaml` (four times the training pictures, 3,000 "
    "retrieval updates, about 380 s of one core) roughly doubles the hierarchical model's retrieval R@1 with "
    "VQA and grounding level (docs/hierarchical.md, \"A config for retrieval on the world\"). The regions "
    "are the other limit: `vlmt demo --size sharp` runs the same on these pictures read through a "
    "longer-trained detector and square crops, where retrieval reaches the level of the true boxes "
    "(docs/hierarchical.md, \"Which part of the regions: their boxes\").")


def _ceiling_note(ceiling: dict[str, Any] | None, size: str | None = None) -> list[Block]:
    if not ceiling:
        return []
    more = f" {DEFAULT_WORLD_RETRIEVAL}" if size == "default" else ""
    return [Paragraph(
        f"The retrieval ceiling rows are an oracle that knows every test picture's true scene and matches a "
        f"caption to the pictures it is true of (`vlmt.tasks.retrieval_ceiling`, the generator's reading: a "
        f"singular phrase names exactly one object); ties are broken at random and the recall is its "
        f"expected value. A test caption is true of {ceiling['images_per_caption']:.1f} of the "
        f"{ceiling['images']} test pictures on average, so no retriever that only knows what a caption says "
        f"can rank its own picture first every time (docs/hierarchical.md, \"The ceiling\").{more}")]


def demo_blocks(report: dict[str, Any], result: Any, *, parts: Sequence[Any], not_built: str) -> list[Block]:
    """The report's content."""
    h, s = report["hierarchical"], report["svlr"]
    ceiling = report.get("retrieval_ceiling")
    blocks: list[Block] = [Paragraph(
        f"`vlmt demo --size {report['size']}` on the synthetic world (seed {report['seed']}): "
        f"{report['seconds']:.0f} s in all. Every number is a percentage on the world's test split; "
        f"the models are trained for a few minutes on a CPU, far from the papers' schedules, so read "
        f"them as a working pipeline, not as the papers' results.")]
    cpu = report.get("part_cpu_seconds", {})
    stage_rows = [[name, secs, None] for name, secs in report.get("stage_seconds", {}).items()]
    stage_rows += [[f"{name} (train, evaluate, draw)", secs, cpu.get(name)]
                   for name, secs in report.get("part_seconds", {}).items()]
    if stage_rows:
        blocks.append(Table(["stage", "wall seconds", "CPU seconds"], stage_rows))
    for name in report["not_built"]:
        part = next(p for p in parts if p.name == name)
        blocks.append(Paragraph(f"**{part.title}: {not_built}.** Its numbers are empty (null in report.json)."))

    blocks.append(Heading("Hierarchical multi-task model"))
    blocks.append(Table(["task", "metric", "R@1 / accuracy", "R@5", "R@10"], [
        ["VQA", "accuracy", h["vqa"]["accuracy"], None, None],
        ["retrieval", "image -> caption", *(h["retrieval"]["i2t"][k] for k in ("r1", "r5", "r10"))],
        ["retrieval", "caption -> image", *(h["retrieval"]["t2i"][k] for k in ("r1", "r5", "r10"))],
        *_ceiling_rows(ceiling),
        ["grounding", "phrase -> box (IoU >= 0.5)", h["grounding"]["r1"], h["grounding"]["r5"], h["grounding"]["r10"]],
    ]))
    blocks.extend(_ceiling_note(ceiling, report.get("size")))
    blocks.append(Heading("SVLR"))
    blocks.append(Table(["training", "task", "metric", "value"], [
        ["joint", "multiple-choice VQA", "accuracy", s["vqa_mc"]["accuracy"]],
        ["joint", "recognition", "object accuracy", s["recognition"]["object_accuracy"]],
        ["joint", "recognition", "attribute accuracy", s["recognition"]["attribute_accuracy"]],
        ["recognition only", "zero-shot multiple-choice VQA", "accuracy", s["zero_shot_vqa_mc"]["accuracy"]],
    ]))
    c = report.get("composed")
    if c is not None:
        blocks.append(Heading("Both papers on one encoder"))
        blocks.append(Paragraph("The hierarchical encoder trained on its three tasks and on SVLR's recognition of "
                                "objects and attributes, read from its region outputs (docs/composed.md). Its "
                                "multiple-choice score (Eq. 9) is not zero-shot here: this encoder also trained "
                                "open-ended VQA."))
        blocks.append(Table(["task", "metric", "R@1 / accuracy", "R@5", "R@10"], [
            ["VQA", "accuracy", c["vqa"]["accuracy"], None, None],
            ["retrieval", "image -> caption", *(c["retrieval"]["i2t"][k] for k in ("r1", "r5", "r10"))],
            ["retrieval", "caption -> image", *(c["retrieval"]["t2i"][k] for k in ("r1", "r5", "r10"))],
            *_ceiling_rows(ceiling),
            ["grounding", "phrase -> box (IoU >= 0.5)", c["grounding"]["r1"], c["grounding"]["r5"],
             c["grounding"]["r10"]],
            ["recognition", "object accuracy", c["recognition"]["object_accuracy"], None, None],
            ["recognition", "attribute accuracy", c["recognition"]["attribute_accuracy"], None, None],
            ["multiple-choice VQA", "Eq. 9 score", c["zero_shot_vqa_mc"]["accuracy"], None, None],
        ]))

    for part in parts:
        run_dir = result.runs.get(part.name)
        if run_dir is None:
            continue
        blocks.append(Heading(part.title, 3))
        which = ("the last checkpoint (end of the schedule)" if part.checkpoint == "last"
                 else "the best checkpoint by the config's validation metric")
        blocks.append(Paragraph(f"Run folder `{report['runs'][part.name]}`: {_iterations(run_dir)}. "
                                f"Test numbers and pictures come from {which}."))
        blocks.extend(Figure(Path(path), caption) for path, caption in result.figures.get(part.name, []))
    return blocks


def write_demo_report(out: Path, report: dict[str, Any], result: Any, *, parts: Sequence[Any],
                      not_built: str) -> tuple[Path, Path]:
    """Write report.md / report.html. Adds `report["retrieval_ceiling"]` (the world's retrieval
    ceiling on the test split, beside the models' numbers) when it is missing, so report.json,
    written after, holds it too."""
    if "retrieval_ceiling" not in report:
        report["retrieval_ceiling"] = retrieval_ceiling(report["size"], report["seed"])
    return write_report(out, demo_blocks(report, result, parts=parts, not_built=not_built),
                        title="vlmt demo report")
