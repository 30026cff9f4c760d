"""The datasets vlmt reads, one module per dataset kind (its files config, reader, checks and
examples per split): `vqa` (VQA v2 open-ended), `vqa_mc` (VQA v1 multiple choice), `captions`
(Karpathy splits of COCO / Flickr30k), `entities` (Flickr30k Entities), `genome` (Visual Genome),
and the sources a data section's `root` may name (`sources`: a folder, a synthetic world,
`easy_vqa`).

The data section (`vlmt.data.section`, `type: datasets`) names the datasets it reads by their
kind (`vlmt.data.datasets.base.KINDS`); each model family's preprocessing (vocabulary and answer
pool, SVLR's label sets and question bins) sits with that family's tasks and reads the datasets
through these modules. The gallery of a served model finds its test pictures through the same
modules (`find_test_images`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from vlmt.data.datasets import captions, easy_vqa, entities, genome, vqa, vqa_mc  # noqa: F401  (registers the kinds)
from vlmt.data.datasets.base import FORMATS, KINDS, SPLITS, DatasetKind, TestImage
from vlmt.data.datasets.sources import resolve_source, source_folder, source_name

__all__ = ["FORMATS", "KINDS", "SPLITS", "DatasetKind", "TestImage", "dataset_kind", "files_config", "find_test_images",
           "resolve_source", "source_folder", "source_name"]


def dataset_kind(name: str) -> DatasetKind:
    """The dataset kind `name`; KeyError naming the known ones otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r} (known: {', '.join(KINDS)})") from None


def files_config(name: str, raw: dict[str, Any] | None) -> Any:
    """A dataset's files config from a saved data section's plain dict (a model folder's
    config.json): its keys that the config has, the rest left at their defaults."""
    cls = dataset_kind(name).files
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (raw or {}).items() if k in known})


def find_test_images(root: Path, datasets: dict[str, Any]) -> tuple[str, list[TestImage]]:
    """The test images of the first of `datasets` (name -> files config) that has any, preferring
    one whose images have captions (retrieval then has candidates): (dataset name, images)."""
    found = [(name, dataset_kind(name).test_images(root, files)) for name, files in datasets.items()]
    found = [(name, images) for name, images in found if images]
    with_captions = [f for f in found if any(im.captions for im in f[1])]
    return (with_captions or found or [("", [])])[0]
