"""Losses of the hierarchical model's decoders."""

from __future__ import annotations

import math

import pytest
import torch

from vlmt.tasks.grounding import box_iou, grounding_loss, grounding_targets
from vlmt.tasks.retrieval import retrieval_loss, retrieval_pairs, retrieval_softmax_loss
from vlmt.tasks.vqa import vqa_loss


def test_retrieval_pairs_positives_then_mismatched_captions_and_images():
    ids = torch.tensor([10, 11, 12, 13, 14])
    img, cap, target = retrieval_pairs(ids, generator=torch.Generator().manual_seed(0))
    assert img.shape == cap.shape == target.shape == (15,)
    assert img[:5].tolist() == cap[:5].tolist() == list(range(5))
    assert img[5:10].tolist() == list(range(5))  # each image with someone else's caption
    assert cap[10:].tolist() == list(range(5))  # each caption with someone else's image
    assert target.tolist() == [1.0] * 5 + [0.0] * 10
    assert (ids[img[5:]] != ids[cap[5:]]).all()


def test_retrieval_pairs_label_by_image_id_when_captions_share_an_image():
    ids = torch.tensor([7, 7, 8])
    for seed in range(10):
        img, cap, target = retrieval_pairs(ids, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(target, (ids[img] == ids[cap]).float())
        # a different image is always available, so every drawn partner is a true negative
        assert target[3:].sum() == 0
    img, cap, target = retrieval_pairs(torch.tensor([5, 5]))
    assert target.tolist() == [1.0] * 6  # no other image: partners are (correctly) positives


def test_retrieval_pairs_draw_partners_uniformly():
    ids = torch.arange(4)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(600):
        _, cap, _ = retrieval_pairs(ids, generator=g)
        counts += torch.bincount(cap[4:5], minlength=4).float()  # partner of example 0
    assert counts[0] == 0
    assert (counts[1:] > 150).all()


def test_retrieval_pairs_with_several_negatives_draw_distinct_other_examples():
    ids = torch.tensor([10, 11, 12, 13, 14])
    img, cap, target = retrieval_pairs(ids, generator=torch.Generator().manual_seed(0), negatives=3)
    assert img.shape == (5 + 2 * 15,)
    assert img[5:20].tolist() == [b for b in range(5) for _ in range(3)]  # each image, 3 other captions
    assert cap[20:].tolist() == [b for b in range(5) for _ in range(3)]   # each caption, 3 other images
    for b in range(5):
        assert len(set(cap[5 + 3 * b:8 + 3 * b].tolist()) | {b}) == 4  # distinct, never itself
        assert len(set(img[20 + 3 * b:23 + 3 * b].tolist()) | {b}) == 4
    assert target.tolist() == [1.0] * 5 + [0.0] * 30
    # one negative is the default pairing, draw for draw
    one = retrieval_pairs(ids, generator=torch.Generator().manual_seed(4), negatives=1)
    default = retrieval_pairs(ids, generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(one, default))
    with pytest.raises(ValueError, match="negatives"):
        retrieval_pairs(ids, negatives=6)


def test_retrieval_softmax_loss_is_cross_entropy_over_each_positive_and_its_negatives():
    # B = 2, n = 2: positives, then 2 negative captions per image, then 2 negative images per caption
    logits = torch.tensor([2.0, 0.0, 1.0, -1.0, 0.5, 0.5, 0.0, 3.0, -2.0, 1.0], requires_grad=True)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    loss = retrieval_softmax_loss(logits, target, negatives=2)
    ce = torch.nn.functional.cross_entropy
    captions = ce(torch.tensor([[2.0, 1.0, -1.0], [0.0, 0.5, 0.5]]), torch.tensor([0, 0]))
    images = ce(torch.tensor([[2.0, 0.0, 3.0], [0.0, -2.0, 1.0]]), torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(0.5 * (captions + images).item(), rel=1e-6)
    loss.backward()
    assert (logits.grad[:2] < 0).all() and (logits.grad[2:] > 0).all()
    # a partner of the same image counts as a positive, not as a competitor
    target[2] = 1.0
    both = retrieval_softmax_loss(logits.detach(), target, negatives=2)
    first = -math.log((math.exp(2.0) + math.exp(1.0)) / (math.exp(2.0) + math.exp(1.0) + math.exp(-1.0)))
    second = ce(torch.tensor([[0.0, 0.5, 0.5]]), torch.tensor([0])).item()
    assert both.item() == pytest.approx(0.5 * (0.5 * (first + second) + images.item()), rel=1e-6)
    with pytest.raises(ValueError, match="pairs of one batch"):
        retrieval_softmax_loss(torch.zeros(9), torch.zeros(9), negatives=2)


def test_retrieval_loss_balances_positives_and_negatives():
    logits = torch.tensor([2.0, -1.0, 0.5], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0])
    loss = retrieval_loss(logits, target)
    pos = -math.log(torch.sigmoid(torch.tensor(2.0)).item())
    neg = (-math.log(1 - torch.sigmoid(torch.tensor(-1.0)).item())
           - math.log(1 - torch.sigmoid(torch.tensor(0.5)).item())) / 2
    assert loss.item() == pytest.approx((pos + neg) / 2, rel=1e-5)
    loss.backward()
    assert logits.grad[0] < 0 and (logits.grad[1:] > 0).all()
    assert retrieval_loss(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        retrieval_loss(torch.zeros(2), torch.zeros(3))


def test_vqa_loss_is_soft_score_bce_summed_over_answers():
    logits = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.0, 0.0]])
    scores = torch.tensor([[1.0, 0.3, 0.0], [0.6, 0.0, 0.0]])
    p = torch.sigmoid(logits)
    manual = -(scores * p.log() + (1 - scores) * (1 - p).log()).sum() / 2
    assert vqa_loss(logits, scores).item() == pytest.approx(manual.item(), rel=1e-5)
    # the minimum over logits sits at the soft score, not at 0/1
    x = torch.zeros(1, 1, requires_grad=True)
    opt = torch.optim.SGD([x], lr=1.0)
    for _ in range(300):
        opt.zero_grad()
        vqa_loss(x, torch.tensor([[0.3]])).backward()
        opt.step()
    assert torch.sigmoid(x).item() == pytest.approx(0.3, abs=1e-3)
    with pytest.raises(ValueError):
        vqa_loss(logits, scores * 2)


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 5.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 1 / 3, 0.0, 0.5]]))


def test_grounding_targets_use_iou_at_least_one_half_and_skip_padding():
    gt = torch.tensor([[[0.0, 0.0, 10.0, 10.0]]])  # (B=1, H=1, 4)
    proposals = torch.tensor([[[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 4.0], [1.0, 1.0, 10.0, 10.0],
                               [0.0, 0.0, 10.0, 10.0]]])
    mask = torch.tensor([[True, True, True, False]])
    targets = grounding_targets(gt, proposals, mask)
    assert targets.tolist() == [[[1.0, 0.0, 1.0, 0.0]]]  # IoU 0.5 counts; 0.4 does not; padding never


def test_grounding_loss_averages_real_pairs_only():
    logits = torch.tensor([[[2.0, -1.0, 5.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    targets = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    region_mask = torch.tensor([[True, True, False]])
    phrase_mask = torch.tensor([[True, False]])
    loss = grounding_loss(logits, targets, region_mask, phrase_mask)
    manual = (-math.log(torch.sigmoid(torch.tensor(2.0)).item())
              - math.log(torch.sigmoid(torch.tensor(1.0)).item())) / 2
    assert loss.item() == pytest.approx(manual, rel=1e-5)
    loss.backward()
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[0, 0, 2] == 0
    with pytest.raises(ValueError):
        grounding_loss(logits, targets, region_mask, torch.tensor([[False, False]]))


def test_shortlist_loss_by_hand_and_with_shared_images():
    from vlmt.tasks.retrieval import shortlist_loss

    images = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]), dim=-1)
    captions = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.1, 1.0], [1.0, 1.0]]), dim=-1)
    ids = torch.tensor([5, 7, 9])
    t = 0.5
    logits = captions @ images.T / t
    expected = 0.5 * ((-torch.log_softmax(logits, 1).diagonal()).mean()
                      + (-torch.log_softmax(logits.T, 1).diagonal()).mean())
    torch.testing.assert_close(shortlist_loss(images, captions, ids, temperature=t), expected)
    # two captions of one image: both image columns are positives for each, none is a negative
    shared = torch.tensor([5, 5, 9])
    got = shortlist_loss(images, captions, shared, temperature=t)
    pos = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    lse = torch.logsumexp
    by_caption = (lse(logits, 1) - lse(logits.masked_fill(~pos, float("-inf")), 1)).mean()
    by_image = (lse(logits.T, 1) - lse(logits.T.masked_fill(~pos, float("-inf")), 1)).mean()
    torch.testing.assert_close(got, 0.5 * (by_caption + by_image))
    # aligned embeddings score better than shuffled ones
    assert shortlist_loss(images, images, ids, temperature=t) < shortlist_loss(images, images.flip(0), ids,
                                                                               temperature=t)
    with pytest.raises(ValueError, match="temperature"):
        shortlist_loss(images, captions, ids, temperature=0.0)


def test_drop_regions_hides_real_regions_at_the_rate_and_never_a_whole_picture():
    from vlmt.tasks.retrieval import drop_regions

    mask = torch.zeros(400, 16, dtype=torch.bool)
    mask[:, :10] = True  # 10 real regions, 6 padding
    out = drop_regions(mask, 0.25, generator=torch.Generator().manual_seed(0))
    assert not (out & ~mask).any()  # padding stays padding
    assert abs(1 - out.sum().item() / mask.sum().item() - 0.25) < 0.02
    one = torch.zeros(500, 4, dtype=torch.bool)
    one[:, 0] = True  # a single region: dropping it would leave nothing, so it stays
    assert torch.equal(drop_regions(one, 0.9, generator=torch.Generator().manual_seed(1)), one)
    assert torch.equal(drop_regions(mask, 0.0), mask)
