"""easy-VQA (the `easy-vqa` package: 4,000 training and 1,000 test pictures of one coloured shape,
with questions about its shape and colour): the source `root: easy_vqa` converts it once into
VQA v2 open-ended files with region features extracted from its pixels
(`vlmt.data.prepare.easy_vqa`), so a data section reads it as the `vqa` dataset."""

from __future__ import annotations

from pathlib import Path

from vlmt.data.datasets.base import CheckContext, CheckUnit, FileFormat, Found, register_format
from vlmt.data.datasets.sources import PreparedSource, register_source
from vlmt.data.readers import easy_vqa
from vlmt.data.readers._common import collector

NAME = "easy_vqa"
MAX_MISSING = 20  # pictures missing: list this many, then count the rest


def prepared_folder() -> Path | None:
    """The folder `root: easy_vqa` resolves to, when the conversion is on this machine."""
    from vlmt.data.prepare.easy_vqa import easy_vqa_dir

    folder = easy_vqa_dir()
    return folder if folder.is_dir() else None


def find(folder: Path, subfolders: list[str], names: list[str]) -> Found:
    """The package's own layout (answers.txt, train/ and test/ with questions.json and images/)."""
    if "answers.txt" in names and any((folder / s / "questions.json").exists() for s in easy_vqa.SPLITS):
        return Found([CheckUnit("easy_vqa", folder)], set(names), whole=True)
    return Found()


def check(unit: CheckUnit, ctx: CheckContext) -> None:
    root = unit.path
    problems, collect = collector()
    for split in easy_vqa.SPLITS:
        if not (root / split / "questions.json").exists():
            continue
        examples = easy_vqa.read_easy_vqa(split, root=root, report=collect)
        missing = [e for e in examples if not easy_vqa.image_path(split, e.image_id, root=root).exists()]
        for e in missing[:MAX_MISSING]:
            collect(root / split / "questions.json",
                    f"image {e.image_id - easy_vqa.SPLIT_OFFSET[split]}.png is missing",
                    record=f"[{e.question_id - easy_vqa.SPLIT_OFFSET[split]}]", field="image_id")
        if len(missing) > MAX_MISSING:
            collect(root / split / "questions.json", f"... and {len(missing) - MAX_MISSING} more questions "
                    "whose image is missing", field="image_id")
        if not problems:
            ctx.summaries.append(f"easy-VQA {split}: {len(examples)} questions, "
                                 f"{len({e.image_id for e in examples})} images")
    ctx.problems += problems


register_format(FileFormat("easy_vqa", find, check))
register_source(NAME, PreparedSource(prepare="vlmt.data.prepare.easy_vqa:ensure_easy_vqa", find=prepared_folder))
