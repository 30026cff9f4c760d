"""Typed examples: what every reader produces, whatever the source (official files, fixtures,
or the synthetic world written in the same formats). Boxes are pixel xyxy floats."""

from __future__ import annotations

from dataclasses import dataclass, field

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


def union_box(boxes: tuple[Box, ...] | list[Box]) -> Box:
    """Smallest box holding all `boxes` (the Flickr30k Entities rule for multi-box phrases)."""
    if not boxes:
        raise ValueError("union of no boxes")
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


@dataclass(frozen=True)
class VQAExample:
    """One VQA question; `answers` are the annotators' raw answers (10 in VQA v1/v2), empty for
    test splits; `choices` is the 18-answer list of the v1 multiple-choice task, else None."""

    question_id: int
    image_id: int
    question: str
    answers: tuple[str, ...] = ()
    answer_type: str | None = None
    question_type: str | None = None
    multiple_choice_answer: str | None = None
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CaptionedImage:
    """An image with its captions (Karpathy split files / COCO captions)."""

    image_id: int
    filename: str
    split: str
    captions: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Phrase:
    """A phrase of a Flickr30k Entities sentence. `first_word_index` indexes the sentence's
    whitespace-split words; `boxes` are all boxes of its entity (empty for nobox/scene)."""

    entity_id: str
    phrase_types: tuple[str, ...]
    text: str
    first_word_index: int
    boxes: tuple[Box, ...] = ()
    nobox: bool = False
    scene: bool = False

    @property
    def num_words(self) -> int:
        return len(self.text.split())

    @property
    def ground_truth_box(self) -> Box | None:
        """The union of the entity's boxes, or None when it has none."""
        return union_box(self.boxes) if self.boxes else None


@dataclass(frozen=True)
class GroundedSentence:
    """One sentence of a Flickr30k Entities image with its phrases."""

    image_id: int
    sentence_index: int
    sentence: str
    phrases: tuple[Phrase, ...]

    @property
    def words(self) -> list[str]:
        return self.sentence.split()


@dataclass(frozen=True)
class GenomeObject:
    """A Visual Genome object region: its names, synsets and attributes."""

    object_id: int
    box: Box
    names: tuple[str, ...]
    synsets: tuple[str, ...] = ()
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenomeImage:
    """A Visual Genome image with its objects; `coco_id` links it to COCO/VQA images."""

    image_id: int
    width: int
    height: int
    coco_id: int | None = None
    url: str | None = None
    objects: tuple[GenomeObject, ...] = field(default_factory=tuple)
