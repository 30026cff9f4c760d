"""Answer ranking loss (Eq. 8) and the multiple-choice / zero-shot tasks."""

from __future__ import annotations

import pytest
import torch

from vlmt.errors import ConfigError
from vlmt.models.heads.word_region import zero_shot_scores
from vlmt.models.svlr import SVLR, SVLRConfig, SVLRVQAInputs
from vlmt.tasks.svlr_batches import RecognitionBatch, VQAMCBatch
from vlmt.tasks.svlr_recognition import SVLRRecognitionConfig, SVLRRecognitionTask
from vlmt.tasks.svlr_vqa_mc import SVLRVQAConfig, SVLRVQATask, answer_ranking_loss, predict_choices
from vlmt.tasks.svlr_zero_shot import SVLRZeroShotConfig, SVLRZeroShotTask

torch.set_num_threads(1)


def test_answer_ranking_loss_by_hand():
    scores = torch.tensor([[2.0, 1.5, 0.0, 3.0], [0.0, 5.0, 1.0, -2.0]])
    correct = torch.tensor([0, 1])
    mask = torch.ones(2, 4, dtype=torch.bool)
    # q0: (1 + 1.5 - 2) + 0 + (1 + 3 - 2) = 2.5 ; q1: all negatives beaten by >= 1: 0 ; N P = 6
    assert answer_ranking_loss(scores, correct, mask, margin=1.0).item() == pytest.approx(2.5 / 6)
    assert answer_ranking_loss(scores, correct, mask, margin=2.0).item() == pytest.approx((1.5 + 0 + 3 + 0 + 0 + 0) / 6)


def test_answer_ranking_loss_padded_choices_do_not_count():
    scores = torch.tensor([[2.0, 1.5, float("-inf"), float("-inf")], [0.0, 5.0, 1.0, -2.0]], requires_grad=True)
    correct = torch.tensor([0, 1])
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    loss = answer_ranking_loss(scores, correct, mask)
    assert loss.item() == pytest.approx(0.5 / 4)  # 1 + 3 negative pairs
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad[0, 0] < 0 and scores.grad[0, 1] > 0


def test_answer_ranking_loss_matches_loop():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 6, generator=g)
    correct = torch.randint(0, 6, (5,), generator=g)
    mask = torch.ones(5, 6, dtype=torch.bool)
    total = sum(max(0.0, 1.0 + float(scores[j, i]) - float(scores[j, correct[j]]))
                for j in range(5) for i in range(6) if i != correct[j])
    assert answer_ranking_loss(scores, correct, mask).item() == pytest.approx(total / (5 * 5), rel=1e-6)


def test_answer_ranking_loss_rejects_padded_correct_choice():
    with pytest.raises(ValueError, match="padded"):
        answer_ranking_loss(torch.zeros(1, 3), torch.tensor([2]), torch.tensor([[True, True, False]]))


def test_predict_choices_never_picks_padding():
    scores = torch.tensor([[0.1, float("-inf"), -0.5]])
    assert predict_choices(scores).tolist() == [0]


def _task_batch():
    cfg = SVLRConfig(word_dim=5, region_dim=6, embed_dim=4, word_hidden=5, region_hidden=7,
                     num_objects=3, num_attributes=2)
    model = SVLR(cfg)
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    choice_mask = torch.ones(3, 4, dtype=torch.bool)
    choice_mask[2, 3] = False
    inputs = SVLRVQAInputs.from_lists(
        region_features=torch.randn(3, 5, 6), region_mask=torch.ones(3, 5, dtype=torch.bool),
        word_vectors=torch.randn(9, 5),
        question_nouns=[[0, 1], [], [2]], question_adjectives=[[3], [4, 5], []],
        question_bins=[[[6, 7], [0], [1], []], [[6, 8], [], [], [4, 5]], [[6, 7], [2], [], []]],
        answer_words=[[[1], [2], [3, 4], [5]], [[0], [8], [2], [1]], [[3], [4], [5], [0]]],
        answer_nouns=[[[1], [2], [], []], [[0], [8], [2], [1]], [[], [], [], []]],
        answer_adjectives=[[[], [], [3, 4], [5]], [[], [], [], []], [[3], [4], [5], []]],
        choice_mask=choice_mask)
    return model, VQAMCBatch(inputs=inputs, correct=torch.tensor([0, 2, 1]))


def test_vqa_task_trains_towards_the_correct_choice():
    torch.manual_seed(0)
    model, batch = _task_batch()
    model.train()
    task = SVLRVQATask(name="vqa", config=SVLRVQAConfig(eta_ans=1.0, fusion_dim=6), data=None, model=model, seed=0)
    opt = torch.optim.Adam([*model.parameters(), *task.parameters()], lr=1e-2)
    first = task(model, batch)
    expected = answer_ranking_loss(task.choice_scores(model, batch.inputs), batch.correct, batch.inputs.choice_mask)
    assert first["loss"].item() == pytest.approx(expected.item(), rel=1e-5)  # Eq. 8; alpha_ans is its loss_weight
    for _ in range(30):
        opt.zero_grad()
        task(model, batch)["loss"].backward()
        opt.step()
    last = task(model, batch)
    assert last["loss"] < first["loss"]
    assert last["accuracy"].item() == 1.0


def test_zero_shot_task_scores_with_eq9_and_refuses_training():
    torch.manual_seed(0)
    model, batch = _task_batch()
    task = SVLRZeroShotTask(name="zero_shot", config=SVLRZeroShotConfig(), data=None)
    model.eval()
    with torch.no_grad():
        expected, _ = zero_shot_scores(model, batch.inputs)
        scores = task.choice_scores(model, batch.inputs)
    torch.testing.assert_close(scores, expected)
    assert scores[2, 3] == float("-inf")
    assert list(task.parameters()) == []
    with pytest.raises(ConfigError, match="never trained"):
        task(model, batch)


def test_zero_shot_answers_from_recognition_training_alone():
    """Sec. 3.4 end to end on a toy world: regions show one object with one colour; the model
    learns recognition only, then answers "what colour is the <object>?" with Eq. 9."""
    import random

    import torch.nn.functional as F

    torch.manual_seed(0)
    rng = random.Random(0)
    n_obj, n_col, V, D = 20, 8, 16, 32
    word_vectors = torch.randn(n_obj + n_col, V)
    look = torch.randn(n_obj + n_col, D)

    def region(o, c):
        return look[o] + look[n_obj + c] + 0.3 * torch.randn(D)

    cfg = SVLRConfig(word_dim=V, region_dim=D, embed_dim=16, word_hidden=16, region_hidden=64,
                     num_objects=n_obj, num_attributes=n_col)
    model = SVLR(cfg)
    model.set_label_vectors(objects=word_vectors[:n_obj], attributes=word_vectors[n_obj:])
    task = SVLRRecognitionTask(name="recognition", config=SVLRRecognitionConfig(), data=None, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        o, c = torch.randint(0, n_obj, (64,)), torch.randint(0, n_col, (64,))
        batch = RecognitionBatch(region_features=torch.stack([region(int(a), int(b)) for a, b in zip(o, c)]),
                                 object_targets=F.one_hot(o, n_obj).bool(),
                                 attribute_targets=F.one_hot(c, n_col).bool())
        opt.zero_grad()
        task(model, batch)["loss"].backward()
        opt.step()

    P, T, C = 100, 3, 4
    feats, nouns, answers, correct = [], [], [], []
    for _ in range(P):
        objs, cols = rng.sample(range(n_obj), T), [rng.randrange(n_col) for _ in range(T)]
        feats.append(torch.stack([region(o, c) for o, c in zip(objs, cols)]))
        k = rng.randrange(T)
        nouns.append([objs[k]])
        choices = [cols[k]] + rng.sample([c for c in range(n_col) if c != cols[k]], C - 1)
        rng.shuffle(choices)
        correct.append(choices.index(cols[k]))
        answers.append([[n_obj + c] for c in choices])
    inputs = SVLRVQAInputs.from_lists(
        region_features=torch.stack(feats), region_mask=torch.ones(P, T, dtype=torch.bool), word_vectors=word_vectors,
        question_nouns=nouns, question_adjectives=[[] for _ in range(P)],
        question_bins=[[[], n, [], []] for n in nouns],
        answer_words=answers, answer_nouns=[[[] for _ in range(C)] for _ in range(P)], answer_adjectives=answers,
        choice_mask=torch.ones(P, C, dtype=torch.bool))
    zero_shot = SVLRZeroShotTask(name="zero_shot", config=SVLRZeroShotConfig(), data=None)
    with torch.no_grad():
        picked = predict_choices(zero_shot.choice_scores(model.eval(), inputs))
    accuracy = (picked == torch.tensor(correct)).float().mean()
    assert accuracy.item() > 0.7  # chance is 0.25; about 0.9 with this seed
