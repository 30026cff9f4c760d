"""VQA answer normalisation, exactly as the official VQA evaluation does it, and the answer pool.

The normalisation reproduces the official evaluation (GT-Vision-Lab/VQA,
`vqaEvaluation/vqaEval.py`, 2021 version) step by step, including the places where the code
does something other than what its comments and the VQA web page describe; docs/metrics.md lists
every such quirk with a worked example. `normalize_answer(..., corrected=True)` offers the
intended behaviour instead, for users who want it knowingly; it is never the default.

The answer pool is the set of training answers seen more than N times (N = 8 in the hierarchical
paper, following Teney et al.), each question's target is the soft score min(1, count / 3) of
every pooled answer given by `count` of its annotators.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from vlmt.data.examples import VQAExample

# Punctuation characters of the 2021 official evaluation. Apostrophe and colon are absent on
# purpose (possessives, times such as 2:50); the full stop is handled by its own rule below.
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)

# Number words the official evaluation turns into digits; "none" becomes "0" as well.
NUMBER_WORDS: Mapping[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# Contractions written without apostrophe -> with apostrophe. The table is the official one,
# including its odd entries: keys with capitals ("Im", "Ive", ...) that can never match because
# words are lower-cased first, identity entries, and "somebody'd" -> "somebodyd", which removes
# an apostrophe instead of adding one.
CONTRACTIONS: Mapping[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": the intended look-behind "(?<!\d)" is written as
# a look-ahead for the two characters "<=" and a digit, which can never match in front of a ".",
# so the only rule left is "a full stop not followed by a digit is deleted".
_OFFICIAL_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
# What the VQA web page describes: keep a full stop only as a decimal point (digit on both sides).
_INTENDED_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
# The official call passes re.UNICODE (= 32) in the position of `count`, so at most 32 full
# stops are deleted per answer.
_OFFICIAL_PERIOD_COUNT = int(re.UNICODE)
_PUNCTUATION_SET = frozenset(PUNCTUATION)


def clean_whitespace(text: str) -> str:
    """Newlines and tabs to spaces, then strip: applied to every answer before comparing."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str, *, corrected: bool = False) -> str:
    """The official punctuation step.

    Each punctuation mark is deleted when it touches a space anywhere in the *input* answer, or
    when the input contains a digit-comma-digit group anywhere (then *every* mark is deleted);
    otherwise it is replaced by a space. Full stops not followed by a digit are then deleted (at
    most 32 of them). With `corrected=True` the rules are the documented ones instead: only
    commas between digits are deleted by the digit rule, full stops are kept only between
    digits, and there is no 32-stop limit.

    Marks absent from the answer are skipped, and a pattern runs only when its character is
    there: replacing a mark never creates another one, so the result is that of every step.
    """
    if corrected and "," in text:
        text = _DIGIT_COMMA_DIGIT.sub(r"\1\3", text)
    out = text
    if not _PUNCTUATION_SET.isdisjoint(text):
        deletes = not corrected and "," in text and _DIGIT_COMMA_DIGIT.search(text) is not None
        for mark in PUNCTUATION:
            if mark not in text:
                continue
            if deletes or (mark + " " in text) or (" " + mark in text):
                out = out.replace(mark, "")
            else:
                out = out.replace(mark, " ")
    if "." not in out:
        return out
    if corrected:
        return _INTENDED_PERIOD.sub("", out)
    return _OFFICIAL_PERIOD.sub("", out, count=_OFFICIAL_PERIOD_COUNT)


def process_digit_article(text: str, *, corrected: bool = False) -> str:
    """The official word step: lower-case, split on whitespace, number words to digits, drop
    articles, restore contractions, join with single spaces. With `corrected=True` the
    contraction keys are matched case-insensitively (so "im" becomes "i'm")."""
    table = _LOWER_CONTRACTIONS if corrected else CONTRACTIONS
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join([table.get(w, w) for w in words if w not in ARTICLES])


_LOWER_CONTRACTIONS: Mapping[str, str] = {k.lower(): v for k, v in CONTRACTIONS.items()}


def normalize_answer(text: str, *, corrected: bool = False) -> str:
    """Whitespace cleaning, punctuation step, then word step: what the official evaluation does
    to an answer whenever it normalises one (see `vlmt.metrics.vqa` for *when*)."""
    return process_digit_article(process_punctuation(clean_whitespace(text), corrected=corrected),
                                 corrected=corrected)


# ---------------------------------------------------------------------------------------------
# Answer pool and soft scores


@dataclass(frozen=True)
class AnswerPool:
    """The answers a VQA classifier scores, in a fixed order, with their training counts."""

    answers: tuple[str, ...]
    counts: tuple[int, ...]
    index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.answers) != len(self.counts):
            raise ValueError("answers and counts differ in length")
        index = {a: i for i, a in enumerate(self.answers)}
        if len(index) != len(self.answers):
            raise ValueError("answer pool holds an answer twice")
        object.__setattr__(self, "index", index)

    def __len__(self) -> int:
        return len(self.answers)

    def __contains__(self, answer: object) -> bool:
        return answer in self.index

    def to_dict(self) -> dict:
        return {"answers": list(self.answers), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: Mapping) -> AnswerPool:
        return cls(tuple(data["answers"]), tuple(int(c) for c in data["counts"]))


def majority_answer(answers: Sequence[str]) -> str:
    """The most frequent normalised answer (first one seen wins a tie): the stand-in for
    `multiple_choice_answer` when an annotation lacks it."""
    if not answers:
        raise ValueError("no answers to choose from")
    normalised = [normalize_answer(a) for a in answers]
    counts = Counter(normalised)
    best = max(counts.values())
    return next(a for a in normalised if counts[a] == best)


def build_answer_pool(correct_answers: Iterable[str], *, more_than: int = 8) -> AnswerPool:
    """Pool of the normalised correct answers seen more than `more_than` times.

    `correct_answers` holds one answer per training question (its `multiple_choice_answer`, or
    `majority_answer` of its 10 answers). Order: most frequent first, ties alphabetical, so the
    pool is the same whatever the order of the questions.
    """
    counts = Counter(normalize_answer(a) for a in correct_answers)
    counts.pop("", None)
    kept = sorted(((a, c) for a, c in counts.items() if c > more_than), key=lambda ac: (-ac[1], ac[0]))
    return AnswerPool(tuple(a for a, _ in kept), tuple(c for _, c in kept))


def soft_scores(answers: Sequence[str], pool: AnswerPool) -> dict[int, float]:
    """Target of one question: pool index -> min(1, n / 3), n = annotators giving that answer.

    Answers are normalised before counting; answers outside the pool get no target.
    """
    counts = Counter(normalize_answer(a) for a in answers)
    return {pool.index[a]: min(1.0, n / 3.0) for a, n in counts.items() if a in pool.index}


def correct_answer(example: VQAExample) -> str:
    """A question's correct answer: its `multiple_choice_answer`, else the majority answer."""
    if example.multiple_choice_answer:
        return example.multiple_choice_answer
    return majority_answer(example.answers)


def answer_pool_from_examples(examples: Iterable[VQAExample], *, more_than: int = 8) -> AnswerPool:
    """`build_answer_pool` over the correct answers of training examples (those with answers)."""
    return build_answer_pool((correct_answer(e) for e in examples if e.answers or e.multiple_choice_answer),
                             more_than=more_than)
