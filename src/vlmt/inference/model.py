"""A trained model on new inputs: `vlmt.load(path)`.

`load` rebuilds a model and the heads of its tasks from a model folder (`vlmt export`) or a run
folder (its `model/` folder and a checkpoint: best, last or a step), with no dataset, no cache and no network, and
returns a `TrainedModel` whose methods are the ones its heads support:

    model = vlmt.load("exported/")
    model.answer("x.png", "what color is the square?", top_k=5)   # VQA head
    model.ground("x.png", "a red square left of a blue circle")   # grounding head
    model.retrieve(["a.png", "b.png"], ["a red square", "two circles"])   # retrieval head
    model.recognize("x.png")                                      # SVLR recognition
    model.choose("x.png", "what color is the square?", ["red", "blue", "green"])  # SVLR, also zero-shot

An image is a path, a `PIL.Image` or an H x W x 3 uint8 array: its regions are the pixel
proposals (`vlmt.data.features.proposals`) and their features come from the region CNN saved with
the model. A user with region features of their own (e.g. bottom-up features) passes them instead:
`regions=` (T, D) and `boxes=` (T, 4). Every call runs in eval mode without gradients, so the same
inputs always give the same outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from vlmt.data.features.extractor import RegionExtractor
from vlmt.data.features.proposals import load_image, proposals
from vlmt.data.parts import data_part
from vlmt.data.svlr_datasets import SVLRAssets
from vlmt.data.vl_datasets import VLAssets, caption_tokens, question_tokens
from vlmt.errors import ConfigError, DataError
from vlmt.models.hierarchical import HierarchicalVL
from vlmt.tasks.base import EvalMode
from vlmt.tasks.collate import pad_tokens
from vlmt.tasks.svlr_vqa_mc import MultipleChoiceEvaluation
from vlmt.training import checkpoint as ckpt
from vlmt.training.build import EXTRACTOR, MODEL_FOLDER, Parts, build_from_model_folder

WEIGHTS = "model.safetensors"

# method -> the task types that provide it, in order of preference
METHODS = {"answer": ("vqa",), "ground": ("grounding",), "retrieve": ("retrieval",),
           "recognize": ("svlr_recognition", "composed_recognition"),
           "choose": ("svlr_vqa_mc", "composed_vqa_mc", "svlr_zero_shot", "composed_zero_shot")}


def load(path: str | Path, *, checkpoint: str = "best", device: str = "cpu") -> TrainedModel:
    """The model of an exported folder (config.json + model.safetensors) or of a run folder (its
    `checkpoint`: best, else last), ready to use; nothing else is read."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / WEIGHTS).is_file():
        folder, weights = path, path / WEIGHTS
    elif (path / MODEL_FOLDER / "config.json").is_file():
        folder = path / MODEL_FOLDER
        weights = ckpt.find_checkpoint(path, checkpoint) / WEIGHTS
    elif (path / "config.yaml").is_file():
        raise ConfigError(f"{path}: a run folder without {MODEL_FOLDER}/ (trained before vlmt saved model folders); "
                          f"train it again to use it with vlmt.load")
    elif path.is_dir():
        raise ConfigError(f"{path}: neither a model folder (config.json + {WEIGHTS}) nor a run folder")
    else:
        raise ConfigError(f"{path}: no such folder")
    info, parts = build_from_model_folder(folder, device=device)
    expected = (info.get("checkpoint") or {}).get("sha256") if folder == path else None
    if expected and ckpt.sha256(weights) != expected:
        raise DataError(weights, "does not match the checksum in config.json (damaged or cut short); export the "
                                 "model again")
    ckpt.load_weights(weights.parent, parts.objective)
    parts.objective.eval()
    extractor = RegionExtractor.load(folder / EXTRACTOR) if (folder / EXTRACTOR / RegionExtractor.META).is_file() \
        else None
    return TrainedModel(info, parts, extractor=extractor, source=path)


class TrainedModel:
    """A model and the heads of its tasks, with the methods those heads support (see `load`)."""

    def __init__(self, info: dict[str, Any], parts: Parts, *, extractor: RegionExtractor | None, source: Path):
        self.info = info
        self.parts = parts
        self.model = parts.model
        self.tasks = parts.tasks
        self.assets = parts.data
        self.vl_assets = data_part(parts.data, VLAssets)  # the vocabulary side (hierarchical and composed models)
        self.extractor = extractor
        self.source = source
        self.device = next(parts.objective.parameters()).device

    def __repr__(self) -> str:
        return f"TrainedModel({self.info['model_type']}, heads: {self.describe_heads()}; from {self.source})"

    @property
    def heads(self) -> dict[str, str]:
        """Task name -> task type of every task the model was trained with."""
        return dict(self.info["tasks"])

    def describe_heads(self) -> str:
        return ", ".join(f"{name} ({kind})" for name, kind in self.heads.items()) or "none"

    def _task(self, method: str, kinds: Sequence[str] | None = None) -> Any:
        for kind in kinds or METHODS[method]:
            for name, task_kind in self.heads.items():
                if task_kind == kind:
                    return self.tasks[name]
        wanted = " or ".join(kinds or METHODS[method])
        raise ConfigError(f"{method}: this model has no {wanted} head; its heads: {self.describe_heads()}")

    # -- inputs -------------------------------------------------------------------------------------
    def regions(self, image: Any = None, *, regions: Any = None, boxes: Any = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(features (T, D), boxes (T, 4), pixels or None) of one image: given region features, or the
        pixel proposals of the picture with features from the model's region CNN."""
        dim = self._feature_dim()
        pixels = None
        if image is not None:
            pixels = image if isinstance(image, np.ndarray) and image.ndim == 3 else None
            if pixels is None:
                pixels = load_image(image) if isinstance(image, (str, Path)) else np.asarray(image.convert("RGB"))
            if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
                raise DataError("image", f"expected an H x W x 3 uint8 array, got {pixels.dtype} {pixels.shape}")
        if regions is not None:
            feats = np.asarray(regions, dtype=np.float32)
            box = np.asarray(boxes if boxes is not None else np.zeros((len(feats), 4)), dtype=np.float32)
            if feats.ndim != 2 or feats.shape[1] != dim or len(feats) < 1:
                raise DataError("regions", f"expected (T, {dim}) region features with T >= 1, got {feats.shape}")
            if box.shape != (len(feats), 4):
                raise DataError("boxes", f"expected ({len(feats)}, 4) boxes, got {box.shape}")
            return feats, box, pixels
        if pixels is None:
            raise ConfigError("give an image (path, PIL.Image or H x W x 3 uint8 array) or regions=... and boxes=...")
        if self.extractor is None:
            raise ConfigError(f"{self.source}: the model has no region extractor (it was trained on features it did "
                              f"not compute from pixels); pass regions=... and boxes=... instead of an image")
        box = np.asarray(proposals(pixels), dtype=np.float32)
        return self.extractor.extract([pixels], [box])[0], box, pixels

    def _feature_dim(self) -> int:
        config = self.model.config
        dim = getattr(config, "region_feature_dim", None) or getattr(config, "region_dim", None)
        assert isinstance(dim, int)
        return dim

    def _tokens(self, words: list[str], what: str) -> tuple[Tensor, Tensor, list[str]]:
        if not words:
            raise ConfigError(f"{what}: no word")
        ids = self.vl_assets.encode_words(words)
        unknown = [w for w, i in zip(words, ids.tolist()) if i == self.vl_assets.vocab.unk_index]
        return torch.from_numpy(ids)[None].to(self.device), torch.tensor([len(ids)], device=self.device), unknown

    def _hierarchical(self, method: str) -> HierarchicalVL:
        if not isinstance(self.model, HierarchicalVL):
            raise ConfigError(f"{method}: needs the hierarchical encoder, this model is {self.info['model_type']}")
        return self.model

    # -- hierarchical heads -------------------------------------------------------------------------
    @torch.no_grad()
    def answer_details(self, image: Any = None, question: str = "", *, top_k: int = 5, regions: Any = None,
                       boxes: Any = None) -> dict[str, Any]:
        """`answer` with what is behind it: the tokens, words the model never saw, the regions and the
        VQA head's attention over regions and words."""
        task = self._task("answer")
        model = self._hierarchical("answer")
        feats, box, pixels = self.regions(image, regions=regions, boxes=boxes)
        words = question_tokens(question)
        tokens, lengths, unknown = self._tokens(words, "question")
        batch = {"tokens": tokens, "lengths": lengths, "region_features": torch.from_numpy(feats)[None].to(self.device),
                 "region_mask": torch.ones(1, len(feats), dtype=torch.bool, device=self.device)}
        logits, maps = task.explain(model, batch)
        scores = torch.sigmoid(logits)[0].float().cpu()
        order = scores.argsort(descending=True)[:max(1, top_k)].tolist()
        return {"question": question, "words": words, "unknown_words": unknown,
                "answers": [{"answer": task.pool.answers[a], "score": float(scores[a])} for a in order],
                "boxes": box, "region_attention": maps["regions"][0].cpu().numpy(),
                "word_attention": maps["words"][0].cpu().numpy(), "pixels": pixels}

    def answer(self, image: Any = None, question: str = "", *, top_k: int = 5, regions: Any = None,
               boxes: Any = None) -> list[dict[str, Any]]:
        """The `top_k` answers of the VQA head, best first: [{"answer": str, "score": float in [0, 1]}]."""
        if top_k < 1:
            raise ConfigError(f"top_k: must be >= 1, got {top_k}")
        return self.answer_details(image, question, top_k=top_k, regions=regions, boxes=boxes)["answers"]

    @torch.no_grad()
    def ground(self, image: Any = None, sentence: str = "", *, phrases: Sequence[str] | None = None,
               regions: Any = None, boxes: Any = None) -> list[dict[str, Any]]:
        """The best region of every noun phrase of `sentence`: [{"phrase", "box": [x1, y1, x2, y2],
        "score"}]. Phrases are found by the phrase lexicon of the training data, or given."""
        task = self._task("ground")
        model = self._hierarchical("ground")
        feats, box, _ = self.regions(image, regions=regions, boxes=boxes)
        words = caption_tokens(sentence)
        tokens, lengths, _ = self._tokens(words, "sentence")
        spans = self._phrase_spans(words, phrases)
        if not spans:
            return []
        batch = {"tokens": tokens, "lengths": lengths, "region_features": torch.from_numpy(feats)[None].to(self.device),
                 "region_mask": torch.ones(1, len(feats), dtype=torch.bool, device=self.device),
                 "spans": torch.tensor([spans], device=self.device)}
        scores = task.attention_maps(model, batch)["phrase_regions"][0].float().cpu()  # (P, T)
        out = []
        for (first, last), row in zip(spans, scores):
            best = int(row.argmax())
            out.append({"phrase": " ".join(words[first:last + 1]), "box": [float(v) for v in box[best]],
                        "score": float(row[best])})
        return out

    def _phrase_spans(self, words: list[str], phrases: Sequence[str] | None) -> list[tuple[int, int]]:
        if phrases is None:
            if self.vl_assets.phrases is None:
                raise ConfigError("ground: the model keeps no phrase lexicon; pass phrases=[...]")
            return self.vl_assets.phrases.chunks(words)
        spans = []
        for phrase in phrases:
            toks = caption_tokens(phrase)
            at = next((i for i in range(len(words) - len(toks) + 1) if words[i:i + len(toks)] == toks), None)
            if not toks or at is None:
                raise ConfigError(f"phrases: {phrase!r} is not in the sentence")
            spans.append((at, at + len(toks) - 1))
        return spans

    def _image_cache(self, model: HierarchicalVL, feats: Sequence[np.ndarray]) -> Any:
        t = max(len(f) for f in feats)
        features = torch.zeros(len(feats), t, feats[0].shape[1])
        mask = torch.zeros(len(feats), t, dtype=torch.bool)
        for i, f in enumerate(feats):
            features[i, :len(f)] = torch.from_numpy(f)
            mask[i, :len(f)] = True
        return model.encode_images(features.to(self.device), mask.to(self.device))

    def _caption_cache(self, model: HierarchicalVL, captions: Sequence[str]) -> Any:
        ids = []
        for c in captions:
            words = caption_tokens(c)
            if not words:
                raise ConfigError(f"captions: {c!r} has no word")
            ids.append(self.vl_assets.encode_words(words))
        tokens, lengths = pad_tokens(ids)
        return model.encode_captions(tokens.to(self.device), lengths.to(self.device))

    def _features(self, images: Sequence[Any] | None, regions: Sequence[Any] | None) -> list[np.ndarray]:
        if regions is not None:
            return [self.regions(regions=f, boxes=b)[0] for f, b in regions]
        return [self.regions(image)[0] for image in images or ()]

    @torch.no_grad()
    def retrieve(self, images: Sequence[Any], captions: Sequence[str], *, regions: Sequence[Any] | None = None
                 ) -> np.ndarray:
        """(n_images, n_captions) relevance scores in [0, 1] of every image x caption pair. `regions`
        may give (features, boxes) per image instead of the images."""
        task = self._task("retrieve")
        model = self._hierarchical("retrieve")
        feats = self._features(images, regions)
        if not feats or not captions:
            raise ConfigError("retrieve: needs at least one image and one caption")
        logits = task.score_pairs(model, self._image_cache(model, feats), self._caption_cache(model, captions))
        return torch.sigmoid(logits).float().cpu().numpy()

    @property
    def has_shortlist(self) -> bool:
        """Whether the retrieval head comes with a shortlist head (two-stage ranking)."""
        kinds = [name for name, kind in self.heads.items() if kind == "retrieval"]
        return bool(kinds) and getattr(self.tasks[kinds[0]], "shortlist", None) is not None

    @torch.no_grad()
    def rank(self, *, images: Sequence[Any] | None = None, captions: Sequence[str], query: str,
             regions: Sequence[Any] | None = None, k: int | None = None) -> list[dict[str, Any]]:
        """Rank the other side for one query: `query="image"` ranks `captions` for the single image
        of `images` / `regions`; `query="caption"` ranks the images for the single caption. With `k`
        and a shortlist head, only the k candidates most similar by the shortlist are re-scored by the
        full model (two-stage), the rest follow ranked by similarity. Returns [{"index", "score",
        "stage": "full" | "shortlist"}], best first; "score" is the model's relevance in [0, 1] for
        re-scored candidates and the shortlist's cosine similarity for the others."""
        task = self._task("retrieve")
        model = self._hierarchical("retrieve")
        feats = self._features(images, regions)
        if query not in ("image", "caption"):
            raise ConfigError(f"rank: query must be 'image' or 'caption', got {query!r}")
        if not feats or not captions:
            raise ConfigError("rank: needs at least one image and one caption")
        if (len(feats) if query == "image" else len(captions)) != 1:
            raise ConfigError(f"rank: a {query} query is one {query}")
        image_cache, caption_cache = self._image_cache(model, feats), self._caption_cache(model, captions)
        n = len(captions) if query == "image" else len(feats)
        chosen = list(range(n))
        similarity = None
        if k is not None and k < n and task.shortlist is not None:
            head = task.shortlist
            sim = head.similarity(head.embed_images(image_cache.regions, image_cache.mask),
                                  head.embed_captions(caption_cache.words, caption_cache.mask))
            similarity = (sim[0] if query == "image" else sim[:, 0]).float().cpu()
            chosen = similarity.topk(k).indices.tolist()
        index = torch.tensor(chosen, device=self.device)
        zeros = torch.zeros_like(index)
        pairs = (zeros, index) if query == "image" else (index, zeros)
        scores = torch.sigmoid(task.score_pair_list(model, image_cache, caption_cache, *pairs)).float().cpu()
        out: list[dict[str, Any]] = [{"index": i, "score": float(v), "stage": "full"}
                                     for i, v in sorted(zip(chosen, scores.tolist()), key=lambda p: -p[1])]
        if similarity is not None:
            rest = sorted(set(range(n)) - set(chosen), key=lambda i: -float(similarity[i]))
            out += [{"index": i, "score": float(similarity[i]), "stage": "shortlist"} for i in rest]
        return out

    # -- SVLR (also on the composed model's encoder) ----------------------------------------------------
    @property
    def svlr_assets(self) -> SVLRAssets:
        part = data_part(self.assets, SVLRAssets)
        if part is None:
            raise ConfigError(f"this model ({self.info['model_type']}) has no SVLR label sets")
        return part

    @torch.no_grad()
    def recognize(self, image: Any = None, *, top_k: int = 3, regions: Any = None, boxes: Any = None
                  ) -> list[dict[str, Any]]:
        """Objects (f_o·g, best first) and attributes (sigmoid of f_a·g) of every region:
        [{"box", "objects": [{"label", "score"}], "attributes": [{"label", "score"}]}]."""
        task = self._task("recognize")
        feats, box, _ = self.regions(image, regions=regions, boxes=boxes)
        objects, attributes = task.scores_for_image(self.model, torch.from_numpy(feats).to(self.device))
        objects, attributes = objects.float().cpu(), torch.sigmoid(attributes.float()).cpu()
        labels_o, labels_a = self.svlr_assets.object_labels, self.svlr_assets.attribute_labels
        k_o, k_a = min(top_k, len(labels_o)), min(top_k, len(labels_a))
        out = []
        for b, o, a in zip(box, objects, attributes):
            out.append({"box": [float(v) for v in b],
                        "objects": [{"label": labels_o[i], "score": float(o[i])} for i in o.topk(k_o).indices],
                        "attributes": [{"label": labels_a[i], "score": float(a[i])} for i in a.topk(k_a).indices]})
        return out

    @torch.no_grad()
    def choose(self, image: Any = None, question: str = "", choices: Sequence[str] = (), *,
               zero_shot: bool | None = None, regions: Any = None, boxes: Any = None) -> list[dict[str, Any]]:
        """The choices ranked by the multiple-choice head (Eq. 7), or by the zero-shot score (Eq. 9)
        with `zero_shot=True` or when the model has no multiple-choice head: [{"answer", "score"}]."""
        mc, zs = ("svlr_vqa_mc", "composed_vqa_mc"), ("svlr_zero_shot", "composed_zero_shot")
        kinds = {None: mc + zs, True: zs, False: mc}[zero_shot]
        task: MultipleChoiceEvaluation = self._task("choose", kinds)
        if not question.strip() or not choices:
            raise ConfigError("choose: needs a question and at least one choice")
        feats, _, _ = self.regions(image, regions=regions, boxes=boxes)
        assets = self.svlr_assets
        q = assets.reader().question(question, list(choices))
        known = assets.words.__contains__
        q = type(q)(**{**q.__dict__,  # words without a vector (a word-vector file's unseen words) are left out
                       "bins": tuple(tuple(w for w in b if known(w)) for b in q.bins),
                       "nouns": tuple(w for w in q.nouns if known(w)),
                       "adjectives": tuple(w for w in q.adjectives if known(w)),
                       "choice_words": tuple(tuple(w for w in c if known(w)) for c in q.choice_words),
                       "choice_nouns": tuple(tuple(w for w in c if known(w)) for c in q.choice_nouns),
                       "choice_adjectives": tuple(tuple(w for w in c if known(w)) for c in q.choice_adjectives)})
        inputs = task.batch_of([q], features=[feats]).inputs.to(self.device)
        with EvalMode(self.model, task):
            scores = task.choice_scores(self.model, inputs)[0].float().cpu()
        order = scores.argsort(descending=True).tolist()
        return [{"answer": choices[i], "score": float(scores[i])} for i in order]
