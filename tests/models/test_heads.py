"""Retrieval, VQA and grounding decoders."""

from __future__ import annotations

import torch

from vlmt.models.heads.grounding import GroundingHead, phrase_pooling_weights
from vlmt.models.heads.retrieval import RetrievalHead
from vlmt.models.heads.vqa import VQAHead

D = 16


def features(b=2, n=5, t=6):
    torch.manual_seed(0)
    words, regions = torch.randn(b, n, D), torch.randn(b, t, D)
    wm = torch.ones(b, n, dtype=torch.bool)
    rm = torch.ones(b, t, dtype=torch.bool)
    wm[0, 3:] = False
    rm[1, 4:] = False
    return words, regions, wm, rm


def pad(words, regions, wm, rm):
    b = words.shape[0]
    return (
        torch.cat([words, 9 * torch.randn(b, 2, D)], 1),
        torch.cat([regions, 9 * torch.randn(b, 3, D)], 1),
        torch.cat([wm, torch.zeros(b, 2, dtype=torch.bool)], 1),
        torch.cat([rm, torch.zeros(b, 3, dtype=torch.bool)], 1),
    )


def all_params_get_grads(module):
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_retrieval_head_bilinear_score_and_padding():
    head = RetrievalHead(dim=D, heads=4).eval()
    w, r, wm, rm = features()
    logits = head(w, r, wm, rm)
    assert logits.shape == (2,)
    v_i, _ = head.image_summary(r, rm)
    v_s, _ = head.sentence_summary(w, wm)
    torch.testing.assert_close(logits, torch.einsum("bi,ij,bj->b", v_i, head.bilinear.weight, v_s))
    torch.testing.assert_close(head(*pad(w, r, wm, rm)), logits)
    head.train()(w, r, wm, rm).sum().backward()
    all_params_get_grads(head)


def test_vqa_head_scores_every_answer_and_ignores_padding():
    head = VQAHead(dim=D, num_answers=7, heads=4).eval()
    w, r, wm, rm = features()
    logits = head(w, r, wm, rm)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    torch.testing.assert_close(head(*pad(w, r, wm, rm)), logits)
    head.train()(w, r, wm, rm).sum().backward()
    all_params_get_grads(head)


def test_phrase_pooling_weights_average_the_span():
    spans = torch.tensor([[[0, 1], [2, 4]]])
    weights = phrase_pooling_weights(spans, 6)
    expected = torch.tensor([[[0.5, 0.5, 0, 0, 0, 0], [0, 0, 1 / 3, 1 / 3, 1 / 3, 0]]])
    torch.testing.assert_close(weights, expected)


def test_grounding_head_scores_phrase_mean_against_each_region():
    head = GroundingHead(dim=D)
    w, r, wm, rm = features()
    spans = torch.tensor([[[0, 2], [1, 1]], [[3, 4], [0, 0]]])
    logits = head(w, r, spans, rm)
    assert logits.shape == (2, 2, 6)
    p = w[0, 0:3].mean(0)
    torch.testing.assert_close(logits[0, 0], r[0] @ head.bilinear.weight @ p)
    assert (logits[1, :, 4:] < -1e30).all()  # padded regions never win
    wp, rp, _, rmp = pad(w, r, wm, rm)
    torch.testing.assert_close(head(wp, rp, spans, rmp)[..., :6][:, :, :4], logits[..., :4])
    logits[:, :, :4].sum().backward()
    all_params_get_grads(head)
