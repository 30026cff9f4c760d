"""Standard splits and contamination checks.

- COCO retrieval (Karpathy splits): 5K test = the images marked "test"; 1K test = five folds of
  1,000 of them (results averaged over folds); 1K val. Train = "train" (82,783 images, as in the
  hierarchical paper); "restval" (30,504) may be added.
- Flickr30k (Karpathy): 1K val, 1K test, the rest train.
- Flickr30k Entities: the release's train.txt / val.txt / test.txt (`readers.flickr30k_entities.read_split`).
- Contamination: any image shared between a training split of one task and an evaluation split
  of another (or the same) task, within one image namespace ("coco", "flickr30k", ...).
- Sec. 5.1 of the hierarchical paper: two training runs, so VQA can train on train+val (COCO
  val2014 images, which hold the retrieval test images) without retrieval or grounding being
  evaluated after the shared encoder saw their test images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from vlmt.data.examples import CaptionedImage
from vlmt.errors import ConfigError

FOLD_SIZE = 1000


def karpathy_split_ids(images: Iterable[CaptionedImage], split: str, *, include_restval: bool = False) -> list[int]:
    """Image ids of one Karpathy split, in file order; `include_restval` adds restval to train."""
    wanted = {split} | ({"restval"} if include_restval and split == "train" else set())
    if split not in ("train", "val", "test", "restval"):
        raise ConfigError(f"unknown Karpathy split {split!r}; expected train, restval, val or test")
    return [im.image_id for im in images if im.split in wanted]


def split_folds(test_ids: Sequence[int], *, fold_size: int = FOLD_SIZE) -> list[list[int]]:
    """Consecutive folds of `fold_size` images of a test split, in file order: the COCO 1K test
    protocol is five folds of the 5K test images, results averaged over folds. A trailing partial
    fold is an error (it would not be the standard protocol)."""
    if len(test_ids) % fold_size:
        raise ConfigError(f"{len(test_ids)} test images do not make whole folds of {fold_size}")
    return [list(test_ids[i:i + fold_size]) for i in range(0, len(test_ids), fold_size)]


@dataclass(frozen=True)
class SplitImages:
    """The images of one (task, split); `namespace` says which image ids are comparable
    (VQA, COCO captions and Visual Genome's coco_id share "coco")."""

    task: str
    split: str
    namespace: str
    image_ids: frozenset[int]


@dataclass(frozen=True)
class Overlap:
    """Images a model trains on (train_task/train_split) that another task evaluates on."""

    train_task: str
    train_split: str
    eval_task: str
    eval_split: str
    namespace: str
    image_ids: tuple[int, ...]

    def describe(self) -> str:
        ids = ", ".join(map(str, self.image_ids[:5])) + (" ..." if len(self.image_ids) > 5 else "")
        return (f"{len(self.image_ids)} {self.namespace} image(s) of {self.eval_task}/{self.eval_split} (evaluation) "
                f"are in {self.train_task}/{self.train_split} (training): {ids}")


def contamination_report(training: Iterable[SplitImages], evaluation: Iterable[SplitImages]) -> list[Overlap]:
    """Every image shared between a training split and an evaluation split (any tasks, the same
    namespace). An empty list means the combination is clean."""
    evaluation = list(evaluation)
    out = []
    for tr in training:
        for ev in evaluation:
            if tr.namespace != ev.namespace:
                continue
            shared = tr.image_ids & ev.image_ids
            if shared:
                out.append(Overlap(tr.task, tr.split, ev.task, ev.split, tr.namespace, tuple(sorted(shared))))
    return out


@dataclass(frozen=True)
class Stage:
    """One training run of a protocol: the splits each task trains on and what is evaluated."""

    name: str
    train: Mapping[str, tuple[str, ...]]
    evaluate: Mapping[str, str]


# Sec. 5.1: (i) all tasks on their train splits, evaluate retrieval and grounding on test;
# (ii) from scratch, retrieval and grounding on train, VQA on train+val, evaluate VQA on test.
SEC51_STAGES = (
    Stage("retrieval-grounding", {"retrieval": ("train",), "grounding": ("train",), "vqa": ("train",)},
          {"retrieval": "test", "grounding": "test"}),
    Stage("vqa", {"retrieval": ("train",), "grounding": ("train",), "vqa": ("train", "val")}, {"vqa": "test"}),
)


def check_stage(stage: Stage, splits: Iterable[SplitImages]) -> list[Overlap]:
    """Contamination of one stage given the images of every (task, split) involved. A (task,
    split) the stage needs but `splits` lacks is a ConfigError (not silently clean)."""
    by_key = {(s.task, s.split): s for s in splits}

    def get(task: str, split: str) -> SplitImages:
        if (task, split) not in by_key:
            raise ConfigError(f"stage {stage.name!r} needs the images of {task}/{split}")
        return by_key[(task, split)]

    training = [get(t, s) for t, ss in stage.train.items() for s in ss]
    evaluation = [get(t, s) for t, s in stage.evaluate.items() if (t, s) in by_key]
    return contamination_report(training, evaluation)


def sec51_report(splits: Iterable[SplitImages]) -> dict[str, list[Overlap]]:
    """Overlaps of each Sec. 5.1 stage (evaluation splits without known images are skipped,
    e.g. VQA test-std whose images are COCO test2015)."""
    splits = list(splits)
    return {stage.name: check_stage(stage, splits) for stage in SEC51_STAGES}
