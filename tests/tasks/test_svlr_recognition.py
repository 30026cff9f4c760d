"""Object loss (Eq. 1) and attribute loss (Eq. 2) against hand-computed values and loops."""

from __future__ import annotations

import math

import pytest
import torch

from vlmt.models.heads.word_region import recognition_scores
from vlmt.models.svlr import SVLR, SVLRConfig
from vlmt.tasks.svlr_batches import RecognitionBatch, hypernym_labels
from vlmt.tasks.svlr_data import GenomeRegion, SVLRAssets
from vlmt.tasks.svlr_recognition import SVLRRecognitionConfig, SVLRRecognitionTask, attribute_loss, object_loss
from vlmt.tasks.svlr_text import WordTable

torch.set_num_threads(1)


def loop_object_loss(scores, positives, label_set, margin, row_mask=None):
    """Eq. 1 written as the paper's sums, one term at a time."""
    M, K = scores.shape
    O = [k for k in range(K) if label_set[k]]
    terms = []
    for j in range(M):
        if row_mask is not None and not row_mask[j]:
            continue
        H = [k for k in range(K) if positives[j, k]]
        if not H:
            continue
        total = 0.0
        for l in H:
            inner = sum(max(0.0, margin + float(scores[j, k]) - float(scores[j, l])) for k in O if k not in H)
            total += inner / len(O)
        terms.append(total / len(H))
    return sum(terms) / len(terms)


def test_object_loss_single_label_by_hand():
    scores = torch.tensor([[1.0, 0.8, -1.0], [3.0, 1.0, 0.5]])
    positives = torch.tensor([[True, False, False], [True, False, False]])
    # region 0: (1 + 0.8 - 1) + max(0, 1 - 1 - 1) = 0.8, over |O| = 3; region 1: all margins met
    expected = (0.8 / 3 + 0.0) / 2
    assert object_loss(scores, positives).item() == pytest.approx(expected)


def test_object_loss_hypernym_is_a_positive_never_pushed_below_others():
    # columns: dog, animal (hypernym of dog), car, tree; the region is a dog
    scores = torch.tensor([[2.0, 1.5, 0.2, 1.2]], requires_grad=True)
    positives = torch.tensor([[True, True, False, False]])
    loss = object_loss(scores, positives, margin=1.0)
    # dog:    (max(0, 1 + 0.2 - 2) + max(0, 1 + 1.2 - 2)) / 4 = 0.2 / 4
    # animal: (max(0, 1 + 0.2 - 1.5) + max(0, 1 + 1.2 - 1.5)) / 4 = 0.7 / 4
    assert loss.item() == pytest.approx((0.2 / 4 + 0.7 / 4) / 2)
    loss.backward()
    assert scores.grad[0, 1] < 0  # the hypernym is pulled up: it must beat the non-labels itself
    assert scores.grad[0, 0] < 0
    assert scores.grad[0, 2:].ge(0).all()
    # the hypernym is not a negative of the label: raising it above "dog" costs nothing
    higher = torch.tensor([[2.0, 9.0, 0.2, 1.2]])
    assert object_loss(higher, positives).item() == pytest.approx((0.2 / 4 + 0.0) / 2)
    # without the hypernym annotation "animal" would be a negative and the loss would grow
    assert object_loss(higher, torch.tensor([[True, False, False, False]])).item() > 2


def test_object_loss_hypernym_outside_label_set_is_positive_only():
    # columns: 3 labels in O, then 1 extra hypernym word not in O
    label_set = torch.tensor([True, True, True, False])
    scores = torch.tensor([[2.0, 0.5, 0.0, 5.0], [0.0, 2.0, 0.0, 0.4]])
    positives = torch.tensor([[True, False, False, True], [False, True, False, False]])
    got = object_loss(scores, positives, label_set=label_set)
    # region 0: label 0 vs {1, 2}: 0 + 0 ; hypernym (5.0) vs {1, 2}: 0 + 0  -> 0
    # region 1: label 1 vs {0, 2} (the extra column is never a negative): 0 + 0 -> 0
    assert got.item() == 0.0
    scores[1, 3] = 100.0
    assert object_loss(scores, positives, label_set=label_set).item() == 0.0


def test_object_loss_matches_loop_with_padding_and_unlabelled_rows():
    g = torch.Generator().manual_seed(0)
    M, K = 7, 9
    scores = torch.randn(M, K, generator=g) * 2
    positives = torch.rand(M, K, generator=g) < 0.3
    positives[3] = False  # a region with no object label: left out
    label_set = torch.ones(K, dtype=torch.bool)
    label_set[7:] = False
    positives[0, 8] = True
    row_mask = torch.ones(M, dtype=torch.bool)
    row_mask[5] = False
    got = object_loss(scores, positives, label_set=label_set, margin=0.7, row_mask=row_mask)
    expected = loop_object_loss(scores, positives, label_set, 0.7, row_mask)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    scores2 = scores.clone()
    scores2[5] = 1e6  # padded row content is irrelevant
    assert object_loss(scores2, positives, label_set=label_set, margin=0.7, row_mask=row_mask).item() == \
        pytest.approx(expected, rel=1e-5)


def loop_attribute_loss(logits, targets):
    M, K = logits.shape
    total = 0.0
    for t in range(K):
        gamma = sum(bool(targets[j, t]) for j in range(M)) / M
        for j in range(M):
            p = 1 / (1 + math.exp(-float(logits[j, t])))
            if targets[j, t]:
                total += (1 - gamma) * math.log(p)
            else:
                total += gamma * math.log(1 - p)
    return -total / M


def test_attribute_loss_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.0], [-1.0, 0.5], [1.0, 0.0]])
    targets = torch.tensor([[1, 1], [0, 1], [0, 1], [0, 0]], dtype=torch.bool)
    # attribute 0: G = 1/4; positives weigh 3/4, negatives 1/4. attribute 1: G = 3/4.
    ls = lambda x: math.log(1 / (1 + math.exp(-x)))  # noqa: E731 - log sigmoid
    a0 = 0.75 * ls(2.0) + 0.25 * (ls(-0.0) + ls(1.0) + ls(-1.0))
    a1 = 0.25 * (ls(-1.0) + ls(1.0) + ls(0.5)) + 0.75 * ls(-0.0)
    expected = -(a0 + a1) / 4
    assert attribute_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_attribute_loss_matches_loop_and_ignores_padding():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=g) * 3
    targets = torch.rand(6, 5, generator=g) < 0.4
    expected = loop_attribute_loss(logits, targets)
    assert attribute_loss(logits, targets).item() == pytest.approx(expected, rel=1e-5)
    padded_logits = torch.cat([logits, torch.randn(3, 5, generator=g) * 100])
    padded_targets = torch.cat([targets, torch.ones(3, 5, dtype=torch.bool)])  # would change G if counted
    row_mask = torch.tensor([True] * 6 + [False] * 3)
    assert attribute_loss(padded_logits, padded_targets, row_mask=row_mask).item() == pytest.approx(expected, rel=1e-5)


def test_attribute_loss_batch_weighting_balances_positives_and_negatives():
    # at logit 0 the positive pull and the negative push on each attribute cancel, whatever its
    # frequency in the batch: sum_j y (1 - G) = M G (1 - G) = sum_j (1 - y) G
    targets = torch.tensor([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.bool)
    logits = torch.zeros(5, 3, requires_grad=True)
    attribute_loss(logits, targets).backward()
    torch.testing.assert_close(logits.grad.sum(0), torch.zeros(3), atol=1e-7, rtol=0)
    # a rare attribute's positive weighs more than a common attribute's positive
    assert logits.grad[0, 0] < logits.grad[1, 2] < 0
    # an attribute with no positive in the batch contributes nothing (G = 0)
    assert torch.all(logits.grad[:, 1] == 0)
    shifted = torch.zeros(5, 3)
    shifted[:, 1] = 50.0
    assert attribute_loss(shifted, targets).item() == pytest.approx(attribute_loss(torch.zeros(5, 3), targets).item())


def test_attribute_weight_depends_on_the_batch():
    # the same region and logits weigh differently next to different batch-mates
    region_logit = torch.tensor([[0.3]])
    alone = attribute_loss(torch.cat([region_logit, torch.tensor([[0.3]])]), torch.tensor([[True], [False]]))
    crowded = attribute_loss(torch.cat([region_logit, torch.tensor([[0.3]] * 3)]),
                             torch.tensor([[True], [True], [True], [False]]))
    ls = lambda x: math.log(1 / (1 + math.exp(-x)))  # noqa: E731
    assert alone.item() == pytest.approx(-(0.5 * ls(0.3) + 0.5 * ls(-0.3)) / 2)
    assert crowded.item() == pytest.approx(-(3 * 0.25 * ls(0.3) + 0.75 * ls(-0.3)) / 4)


def recognition_task(**config) -> SVLRRecognitionTask:
    """The `svlr_recognition` task as the trainer builds it (its data only serves batches)."""
    return SVLRRecognitionTask(name="recognition", config=SVLRRecognitionConfig(**config), data=None, seed=0)


def test_recognition_task_with_hypernym_columns():
    torch.manual_seed(0)
    cfg = SVLRConfig(word_dim=5, region_dim=6, embed_dim=4, word_hidden=5, region_hidden=7,
                     num_objects=3, num_attributes=2)
    model = SVLR(cfg).train()
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    extra = torch.randn(2, 5)
    obj_t = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    atr_t = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    batch = RecognitionBatch(region_features=torch.randn(4, 6), object_targets=obj_t, attribute_targets=atr_t,
                             extra_object_vectors=extra)
    out = recognition_task(eta_obj=1.0, object_weight=0.5, attribute_weight=2.0)(model, batch)
    obj, atr = recognition_scores(model, batch.region_features, extra_object_vectors=extra)
    label_set = torch.tensor([True, True, True, False, False])
    expected_obj = loop_object_loss(obj.detach(), obj_t, label_set, 1.0)
    assert out["object_loss"].item() == pytest.approx(expected_obj, rel=1e-5)
    assert out["attribute_loss"].item() == pytest.approx(loop_attribute_loss(atr.detach(), atr_t), rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.5 * out["object_loss"].item() + 2.0 * out["attribute_loss"].item(),
                                               rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.g.parameters())


def test_recognition_task_padded_regions_change_nothing():
    torch.manual_seed(3)
    cfg = SVLRConfig(word_dim=5, region_dim=6, embed_dim=4, word_hidden=5, region_hidden=7,
                     num_objects=3, num_attributes=2)
    model = SVLR(cfg).train()
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    feats = torch.randn(4, 6)
    obj_t = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    atr_t = torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=torch.bool)
    task = recognition_task()
    plain = task(model, RecognitionBatch(region_features=feats, object_targets=obj_t, attribute_targets=atr_t))
    padded = task(model, RecognitionBatch(
        region_features=torch.cat([feats, 1e3 * torch.ones(2, 6)]),
        object_targets=torch.cat([obj_t, torch.ones(2, 3, dtype=torch.bool)]),
        attribute_targets=torch.cat([atr_t, torch.ones(2, 2, dtype=torch.bool)]),
        region_mask=torch.tensor([True] * 4 + [False] * 2)))
    for key in ("loss", "object_loss", "attribute_loss"):
        assert padded[key].item() == pytest.approx(plain[key].item(), rel=1e-5)


def test_hypernym_labels_are_the_hypernyms_inside_the_label_set():
    assets = SVLRAssets(object_labels=["square", "rectangle", "circle"], attribute_labels=["red"],
                        words=WordTable({}, 4, source="none", coverage=None, fallback=True), hypernyms=None,
                        feature_dim=6, text_settings={})
    regions = [GenomeRegion(image_id=1, row=0, iou=1.0, objects=(0,), hypernyms=("rectangle", "polygon", "shape"),
                            attributes=()),
               GenomeRegion(image_id=1, row=1, iou=1.0, objects=(2,), hypernyms=("ellipse",), attributes=(0,)),
               GenomeRegion(image_id=2, row=0, iou=1.0, objects=(1,), hypernyms=(), attributes=())]
    # "polygon", "shape" and "ellipse" are not labels of O: they cannot be predicted, so they add nothing
    assert hypernym_labels(assets, regions) == [[1], [], []]
