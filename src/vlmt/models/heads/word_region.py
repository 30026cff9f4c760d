"""SVLR's scorers over aligned word and region embeddings (S Sec. 3.2-3.4): parameter-free heads
that read an aligner (`vlmt.models.encoders.WordRegionAligner`: g, f_o, f_a and the label
vectors), so the same scorers serve SVLR's own region features and any encoder's region outputs
(the composed model's I_l).

- recognition: f_o(R)·g(w), f_a(R)·g(w) over the label sets O and T             (Sec. 3.2.1)
- `encode_vqa`: the region attention of multiple-choice VQA (Eq. 3-4) and the label scores
  s_o(R), s_a(R) the image vector is made of (Eq. 5), read by the answer scorer
  (`vlmt.models.heads.multiple_choice`)                                           (Sec. 3.3)
- `zero_shot_scores`: Eq. 9, which has no parameters of its own                   (Sec. 3.4)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlmt.models.encoders import WordRegionAligner
from vlmt.models.layers.masking import masked_max
from vlmt.models.svlr import SVLRVQAInputs


@dataclass
class SVLRVQAEncoding:
    """The aligner's side of multiple-choice VQA for P questions x C choices over T regions."""

    attention: torch.Tensor  # (P, C, T) a(R) per (question, choice); 0 at padded regions
    object_scores: torch.Tensor  # (P, T, K_o) s_o(R) over the label set O
    attribute_scores: torch.Tensor  # (P, T, K_a) s_a(R) over the label set T
    words: torch.Tensor  # (W, E) g of the batch's word table


# ----- visual recognition (Sec. 3.2) ---------------------------------------------------------------


def recognition_scores(aligner: WordRegionAligner, region_features: torch.Tensor,
                       region_mask: torch.Tensor | None = None, *,
                       extra_object_vectors: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Object and attribute scores of regions over the label sets.

    region_features (..., D) -> object scores (..., K_o [+ X]), attribute scores (..., K_a).
    `extra_object_vectors` (X, V) appends columns scored with g (e.g. WordNet hypernyms of the true
    labels that are outside O, needed by Eq. 1); only where labels are scored as words.
    """
    f_o, f_a = aligner.embed_regions(region_features, region_mask)
    objects, attributes = aligner.label_embeddings()
    if extra_object_vectors is not None and extra_object_vectors.shape[0] > 0:
        if not aligner.labels_are_words:
            raise ValueError("per-class label vectors cannot score words outside the label set")
        objects = torch.cat([objects, aligner.embed_words(extra_object_vectors)], dim=0)
    return f_o @ objects.T, f_a @ attributes.T


def open_vocabulary_scores(aligner: WordRegionAligner, region_features: torch.Tensor, word_vectors: torch.Tensor,
                           region_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """f_o(R)·g(w) and f_a(R)·g(w) for any words: (..., D), (W, V) -> (..., W), (..., W)."""
    f_o, f_a = aligner.embed_regions(region_features, region_mask)
    words = aligner.embed_words(word_vectors)
    return f_o @ words.T, f_a @ words.T


# ----- multiple-choice VQA (Sec. 3.3) --------------------------------------------------------------


def _word_region_terms(f: torch.Tensor, words: torch.Tensor, index: torch.Tensor, mask: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Best match of each region among some words: max_w f(R)·g(w).

    f: (P, T, E); words: (W, E) = g(word table); index, mask: (P, [C,] L).
    Returns (best (P, [C,] T), present (P, [C,]) with best = 0 where no word).
    """
    gw = words[index]  # (P, [C,] L, E)
    if index.dim() == 2:
        sims = torch.einsum("pte,ple->ptl", f, gw)  # (P, T, L)
        return masked_max(sims, mask[:, None, :].expand_as(sims), dim=-1)[0], mask.any(-1)
    sims = torch.einsum("pte,pcle->pctl", f, gw)  # (P, C, T, L)
    return masked_max(sims, mask[:, :, None, :].expand_as(sims), dim=-1)[0], mask.any(-1)


def _union_max(q: torch.Tensor, q_present: torch.Tensor, a: torch.Tensor, a_present: torch.Tensor) -> torch.Tensor:
    """max over question words and answer words: q (P, T), a (P, C, T) -> (P, C, T).

    A side without words does not take part; with no words on either side the term is 0.
    """
    neg_inf = torch.tensor(float("-inf"), dtype=q.dtype, device=q.device)
    q_b = torch.where(q_present[:, None, None], q[:, None, :], neg_inf)  # (P, 1, T)
    a_b = torch.where(a_present[:, :, None], a, neg_inf)  # (P, C, T)
    best = torch.maximum(q_b, a_b)
    return torch.where(torch.isinf(best), torch.zeros_like(best), best)


def _regions_and_words(aligner: WordRegionAligner, inputs: SVLRVQAInputs
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    f_o, f_a = aligner.embed_regions(inputs.region_features, inputs.region_mask)  # (P, T, E) each
    words = aligner.embed_words(inputs.word_vectors)  # (W, E)
    qn, qn_any = _word_region_terms(f_o, words, inputs.question_nouns, inputs.question_noun_mask)
    qj, qj_any = _word_region_terms(f_a, words, inputs.question_adjectives, inputs.question_adjective_mask)
    an, an_any = _word_region_terms(f_o, words, inputs.answer_nouns, inputs.answer_noun_mask)
    aj, aj_any = _word_region_terms(f_a, words, inputs.answer_adjectives, inputs.answer_adjective_mask)
    terms = dict(qn=qn, qn_any=qn_any, qj=qj, qj_any=qj_any, an=an, an_any=an_any, aj=aj, aj_any=aj_any)
    return f_o, f_a, words, terms


def _attention(terms: dict[str, torch.Tensor], region_mask: torch.Tensor) -> torch.Tensor:
    """Eq. 3-4: a'(R) = max_n f_o·g(n) + max_j f_a·g(j) over the (Q, A) pair's nouns N and
    adjectives J; a(R) = softmax over the image's unpadded regions. -> (P, C, T)."""
    nouns = _union_max(terms["qn"], terms["qn_any"], terms["an"], terms["an_any"])
    adjectives = _union_max(terms["qj"], terms["qj_any"], terms["aj"], terms["aj_any"])
    logits = (nouns + adjectives).masked_fill(~region_mask[:, None, :], float("-inf"))  # (P, C, T)
    return torch.softmax(logits, dim=-1)


def encode_vqa(aligner: WordRegionAligner, inputs: SVLRVQAInputs) -> SVLRVQAEncoding:
    """What an answer scorer reads for every (question, choice) pair: the region attention a(R)
    (Eq. 3-4), the label scores s_o(R), s_a(R) of every region (the terms of Eq. 5) and g of the
    batch's word table."""
    f_o, f_a, words, terms = _regions_and_words(aligner, inputs)
    attention = _attention(terms, inputs.region_mask)  # (P, C, T)
    objects, attributes = aligner.label_embeddings()
    s_o = f_o @ objects.T  # (P, T, K_o)
    s_a = f_a @ attributes.T  # (P, T, K_a)
    return SVLRVQAEncoding(attention=attention, object_scores=s_o, attribute_scores=s_a, words=words)


# ----- zero-shot VQA (Sec. 3.4) --------------------------------------------------------------------


def zero_shot_scores(aligner: WordRegionAligner, inputs: SVLRVQAInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: S = sum_R a(R) min(p_q(R), p_a(R)); returns (scores (P, C), attention (P, C, T)).

    p_q(R) = max over question nouns of f_o·g + max over question adjectives of f_a·g (Eq. 3 with
    question words only); p_a(R) the same with the answer's words; a(R) is Eq. 4 over the whole
    (Q, A) pair. A missing word class adds 0. Padded choices score -inf. Call in eval mode (BN
    running statistics) and under torch.no_grad() when only scoring.
    """
    _, _, _, t = _regions_and_words(aligner, inputs)
    attention = _attention(t, inputs.region_mask)  # (P, C, T)
    p_q = (t["qn"] + t["qj"])[:, None, :]  # (P, 1, T)
    p_a = t["an"] + t["aj"]  # (P, C, T)
    scores = (attention * torch.minimum(p_q, p_a)).sum(-1)  # padded regions have a(R) = 0
    return scores.masked_fill(~inputs.choice_mask, float("-inf")), attention
