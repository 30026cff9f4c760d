"""easy-VQA (the `easy-vqa` package: 4,000 training and 1,000 test pictures of one coloured shape,
with questions about its shape and colour): the source `root: easy_vqa` converts it once into
VQA v2 open-ended files with region features extracted from its pixels
(`vlmt.data.prepare.easy_vqa`), so a data section reads it as the `vqa` dataset."""

from __future__ import annotations

from pathlib import Path

from vlmt.data.datasets.sources import PreparedSource, register_source

NAME = "easy_vqa"


def prepared_folder() -> Path | None:
    """The folder `root: easy_vqa` resolves to, when the conversion is on this machine."""
    from vlmt.data.prepare.easy_vqa import easy_vqa_dir

    folder = easy_vqa_dir()
    return folder if folder.is_dir() else None


register_source(NAME, PreparedSource(prepare="vlmt.data.prepare.easy_vqa:ensure_easy_vqa", find=prepared_folder))
