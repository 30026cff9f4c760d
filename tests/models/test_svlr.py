"""SVLR model: each equation against hand-computed values or an independent loop."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vlmt.config import bundled_config
from vlmt.models.heads.multiple_choice import MultipleChoiceScorer, SVLRVQAOutput
from vlmt.models.heads.word_region import encode_vqa, open_vocabulary_scores, recognition_scores, zero_shot_scores
from vlmt.models.svlr import SVLR, SVLRConfig, SVLRVQAInputs, pad_ids
from vlmt.tasks.svlr_recognition import attribute_loss, object_loss
from vlmt.tasks.svlr_vqa_mc import SVLRVQAConfig, answer_ranking_loss
from vlmt.training.build import load_experiment

torch.set_num_threads(1)
BN_SCALE = 1 / math.sqrt(1 + 1e-5)  # an eval-mode BatchNorm at its initial statistics


def small_config(**kw) -> SVLRConfig:
    base = dict(word_dim=5, region_dim=6, embed_dim=4, word_hidden=5, region_hidden=7,
                num_objects=3, num_attributes=2)
    base.update(kw)
    return SVLRConfig(**base)


class MultipleChoice:
    """The SVLR encoder with the multiple-choice head of Eq. 5-7 on top: inputs -> SVLRVQAOutput."""

    def __init__(self, model: SVLR, fusion_dim: int = 6):
        self.model = model
        self.head = MultipleChoiceScorer(num_labels=model.num_labels, embed_dim=model.config.embed_dim,
                                         fusion_dim=fusion_dim)

    def __call__(self, inputs: SVLRVQAInputs) -> SVLRVQAOutput:
        return self.head(encode_vqa(self.model, inputs), inputs)

    def train(self, mode: bool = True) -> MultipleChoice:
        self.model.train(mode)
        self.head.train(mode)
        return self

    def eval(self) -> MultipleChoice:
        return self.train(False)


def identity_model(**kw) -> SVLR:
    """A 2-d model whose g is the identity on non-negative vectors and whose f_o, f_a are
    ReLU times BN_SCALE^2 in eval mode, so equations can be worked out by hand."""
    cfg = SVLRConfig(word_dim=2, region_dim=2, embed_dim=2, word_hidden=2, region_hidden=2,
                     num_objects=2, num_attributes=1, **kw)
    model = SVLR(cfg)
    with torch.no_grad():
        for lin in (model.g.fc1, model.g.fc2, model.f_o.fc1, model.f_o.fc2, model.f_a.fc1, model.f_a.fc2):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    model.set_label_vectors(objects=torch.tensor([[1.0, 0.0], [0.0, 1.0]]), attributes=torch.tensor([[1.0, 1.0]]))
    return model.eval()


def make_inputs(regions, region_mask, words, q_nouns, q_adjs, bins, a_words, a_nouns, a_adjs, choice_mask,
                pad_to=None) -> SVLRVQAInputs:
    return SVLRVQAInputs.from_lists(region_features=regions, region_mask=region_mask, word_vectors=words,
                                    question_nouns=q_nouns, question_adjectives=q_adjs, question_bins=bins,
                                    answer_words=a_words, answer_nouns=a_nouns, answer_adjectives=a_adjs,
                                    choice_mask=choice_mask, pad_to=pad_to)


def random_inputs(cfg: SVLRConfig, seed: int = 0, P: int = 3, C: int = 4, T: int = 5) -> tuple[SVLRVQAInputs, dict]:
    g = torch.Generator().manual_seed(seed)
    W = 9
    words = torch.randn(W, cfg.word_dim, generator=g)
    regions = torch.randn(P, T, cfg.region_dim, generator=g)
    region_mask = torch.ones(P, T, dtype=torch.bool)
    region_mask[1, 3:] = False
    choice_mask = torch.ones(P, C, dtype=torch.bool)
    choice_mask[2, 3] = False

    def pick(n):
        return torch.randint(0, W, (n,), generator=g).tolist()

    spec = dict(
        q_nouns=[pick(2), [], pick(1)],
        q_adjs=[pick(1), pick(2), []],
        bins=[[pick(2), pick(1), [], pick(3)], [pick(2), [], pick(2), pick(1)], [pick(2), pick(1), pick(1), []]],
        a_words=[[pick(1 + (c % 2)) for c in range(C)] for _ in range(P)],
        a_nouns=[[pick(c % 2) for c in range(C)] for _ in range(P)],
        a_adjs=[[pick((c + 1) % 2) for c in range(C)] for _ in range(P)],
    )
    spec["a_nouns"][2] = [[] for _ in range(C)]  # question 2: no answer nouns at all
    spec["q_adjs"][2] = []
    return make_inputs(regions, region_mask, words, choice_mask=choice_mask, **spec), spec


# ----- SVLR module --------------------------------------------------------------------------

def test_word_embedding_is_fc_relu_fc():
    model = SVLR(small_config())
    x = torch.randn(4, 5)
    fc1, fc2 = model.g.fc1, model.g.fc2
    expected = torch.relu(x @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias
    torch.testing.assert_close(model.embed_words(x), expected)
    assert model.embed_words(torch.randn(2, 3, 5)).shape == (2, 3, 4)


def test_region_embedding_fc_bn_relu_fc_bn_in_train_mode_uses_only_real_rows():
    model = SVLR(small_config()).train()
    x = torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, False, True], [True, False, False, True]])
    f_o, f_a = model.embed_regions(x, mask)
    rows = x[mask]  # the 5 real regions

    def bn(h):
        return (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)

    for net, out in ((model.f_o, f_o), (model.f_a, f_a)):
        h = torch.relu(bn(rows @ net.fc1.weight.T + net.fc1.bias))
        expected = bn(h @ net.fc2.weight.T + net.fc2.bias)
        torch.testing.assert_close(out[mask], expected, atol=1e-5, rtol=1e-4)
        assert torch.all(out[~mask] == 0)
    assert not torch.allclose(f_o[mask], f_a[mask])  # separate object and attribute networks


def test_xavier_initialisation_and_no_scorer_biases():
    model = SVLR(small_config(num_objects=40, num_attributes=30))
    head = MultipleChoice(model, fusion_dim=50).head
    w = head.w1.weight.detach()  # (50, 70)
    bound = math.sqrt(6 / (70 + 50))
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert model.g.fc1.bias.abs().sum() == 0
    assert head.w1.bias is None and head.w2.bias is None and head.w3.bias is None


# ----- recognition scores (Sec. 3.2.1) -----------------------------------------------------------

def test_recognition_scores_are_inner_products_with_g_of_labels():
    model = identity_model()
    regions = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    obj, atr = recognition_scores(model, regions)
    s = BN_SCALE**2  # f(R) = relu(R) * s in eval mode
    torch.testing.assert_close(obj, torch.tensor([[2.0, 0.0], [1.0, 3.0]]) * s)
    torch.testing.assert_close(atr, torch.tensor([[2.0], [4.0]]) * s)
    # open vocabulary: any word vector, here a word outside both label sets
    o, a = open_vocabulary_scores(model, regions, torch.tensor([[0.5, 2.0]]))
    torch.testing.assert_close(o, torch.tensor([[1.0], [6.5]]) * s)
    torch.testing.assert_close(a, o)
    # extra columns (hypernyms outside O) are appended after the label set
    obj2, _ = recognition_scores(model, regions, extra_object_vectors=torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(obj2[:, 2], torch.tensor([2.0, 4.0]) * s)


def test_joint_multitask_recognition_uses_per_class_vectors_not_g():
    model = SVLR(small_config(recognition_vectors="per_class")).eval()
    regions = torch.randn(4, 6)
    f_o, f_a = model.embed_regions(regions)
    obj, atr = recognition_scores(model, regions)
    torch.testing.assert_close(obj, f_o @ model.object_class_vectors.T)
    torch.testing.assert_close(atr, f_a @ model.attribute_class_vectors.T)
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    torch.testing.assert_close(recognition_scores(model, regions)[0], obj)  # label words play no part
    model.train()
    obj, atr = recognition_scores(model, torch.randn(4, 6))
    (obj.sum() + atr.sum()).backward()
    assert all(p.grad is None for p in model.g.parameters())  # g is not shared with recognition
    with pytest.raises(ValueError):
        recognition_scores(model, regions, extra_object_vectors=torch.randn(1, 5))


def test_shared_recognition_trains_g():
    model = SVLR(small_config()).train()
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    obj, atr = recognition_scores(model, torch.randn(4, 6))
    (obj.sum() + atr.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.g.parameters())


# ----- multiple-choice VQA: Eq. 3-5 by hand --------------------------------------------------------

def hand_inputs(q_nouns, q_adjs, a_nouns, a_adjs, *, regions=None, region_mask=None):
    words = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # 0 "dog", 1 "red", 2 "big"
    if regions is None:
        regions = torch.tensor([[[2.0, 0.0], [0.0, 3.0]]])  # one image, two regions
    if region_mask is None:
        region_mask = torch.ones(regions.shape[:2], dtype=torch.bool)
    return make_inputs(regions, region_mask, words, q_nouns=[q_nouns], q_adjs=[q_adjs],
                       bins=[[[0], [], [1], []]], a_words=[[[0], [1]]], a_nouns=[a_nouns], a_adjs=[a_adjs],
                       choice_mask=torch.ones(1, 2, dtype=torch.bool))


def softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_attention_eq3_eq4_by_hand():
    model = identity_model()
    s = BN_SCALE**2
    # Q nouns {dog}, Q adjectives {red}; choice 0 adds noun "red" (as a noun), choice 1 nothing.
    out = MultipleChoice(model, 3)(hand_inputs([0], [1], [[1], []], [[], []]))
    # choice 0: nouns {dog, red}: R1 max(2, 0)=2, R2 max(0, 3)=3; adjective red: R1 0, R2 3
    expected0 = softmax([s * (2 + 0), s * (3 + 3)])
    # choice 1: nouns {dog}: R1 2, R2 0; adjective red: R1 0, R2 3
    expected1 = softmax([s * (2 + 0), s * (0 + 3)])
    torch.testing.assert_close(out.attention[0], torch.tensor([expected0, expected1]), atol=1e-5, rtol=1e-5)


def test_attention_without_nouns_or_adjectives():
    model = identity_model()
    s = BN_SCALE**2
    # no nouns anywhere: only the adjective term counts
    out = MultipleChoice(model, 3)(hand_inputs([], [2], [[], []], [[], []]))  # adjective "big" = (1, 1): R1 2, R2 3
    torch.testing.assert_close(out.attention[0, 0], torch.tensor(softmax([2 * s, 3 * s])), atol=1e-5, rtol=1e-5)
    # no words at all: a'(R) = 0 everywhere, uniform attention
    out = MultipleChoice(model, 3)(hand_inputs([], [], [[], []], [[], []]))
    torch.testing.assert_close(out.attention, torch.full((1, 2, 2), 0.5))


def test_attention_softmax_ignores_padded_regions():
    model = identity_model()
    regions = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [50.0, 50.0]]])
    mask = torch.tensor([[True, True, False]])
    out = MultipleChoice(model, 3)(hand_inputs([0], [1], [[1], []], [[], []], regions=regions, region_mask=mask))
    ref = MultipleChoice(model, 3)(hand_inputs([0], [1], [[1], []], [[], []]))
    torch.testing.assert_close(out.attention[..., :2], ref.attention)
    assert torch.all(out.attention[..., 2] == 0)


def test_image_vector_eq5_by_hand():
    model = identity_model()
    s = BN_SCALE**2
    out = MultipleChoice(model, 3)(hand_inputs([0], [1], [[1], []], [[], []]))
    a = softmax([s * 2, s * 3])  # choice 1
    # s_o(R) over O = {(1,0), (0,1)}: R1 (2, 0) s, R2 (0, 3) s; s_a(R) over T = {(1,1)}: R1 2 s, R2 3 s
    expected = [s * (a[0] * 2), s * (a[1] * 3), s * (a[0] * 2 + a[1] * 3)]
    torch.testing.assert_close(out.image_vector[0, 1], torch.tensor(expected), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.object_scores[0], torch.tensor([[2.0, 0.0], [0.0, 3.0]]) * s)


# ----- Eq. 6-7 and the language side against an independent loop -----------------------------

def reference_scores(mc: MultipleChoice, inputs: SVLRVQAInputs, spec: dict, train_bn: bool) -> torch.Tensor:
    """A straightforward per-(question, choice) loop over Python lists of word ids."""
    model, head = mc.model, mc.head
    P, C = inputs.choice_mask.shape
    G = model.embed_words(inputs.word_vectors)
    f_o, f_a = model.embed_regions(inputs.region_features, inputs.region_mask)
    L_o, L_a = model.label_embeddings()

    def best(f_r, ids):
        return max(float(f_r @ G[i]) for i in ids) if ids else 0.0

    images, langs, cells = [], [], []
    for p in range(P):
        real = [t for t in range(inputs.region_mask.shape[1]) if inputs.region_mask[p, t]]
        q_parts = []
        for b in spec["bins"][p]:
            q_parts.append(torch.stack([G[i] for i in b]).mean(0) if b else torch.zeros(G.shape[1]))
        q = torch.cat(q_parts)
        for c in range(C):
            if not inputs.choice_mask[p, c]:
                continue
            nouns = spec["q_nouns"][p] + spec["a_nouns"][p][c]
            adjs = spec["q_adjs"][p] + spec["a_adjs"][p][c]
            logits = torch.tensor([best(f_o[p, t], nouns) + best(f_a[p, t], adjs) for t in real])
            att = torch.softmax(logits, 0)
            image = sum(att[k] * torch.cat([f_o[p, t] @ L_o.T, f_a[p, t] @ L_a.T]) for k, t in enumerate(real))
            a = torch.stack([G[i] for i in spec["a_words"][p][c]]).mean(0)
            images.append(image)
            langs.append(torch.cat([q, a]))
            cells.append((p, c))
    X1 = torch.stack(images) @ head.w1.weight.T
    X2 = torch.stack(langs) @ head.w2.weight.T

    def bn(x, layer):
        if train_bn:
            mean, var = x.mean(0), x.var(0, unbiased=False)
        else:
            mean, var = layer.running_mean, layer.running_var
        return (x - mean) / torch.sqrt(var + layer.eps) * layer.weight + layer.bias

    beta = bn(X1, head.b1) + bn(X2, head.b2)
    S = torch.relu(beta) @ head.w3.weight.T
    out = torch.full((P, C), float("-inf"))
    for k, (p, c) in enumerate(cells):
        out[p, c] = S[k, 0]
    return out


@pytest.mark.parametrize("mode", ["shared", "per_class"])
def test_answer_scores_eq6_eq7_match_loop(mode):
    torch.manual_seed(0)
    model = SVLR(small_config(recognition_vectors=mode))
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    mc = MultipleChoice(model)
    inputs, spec = random_inputs(model.config)
    with torch.no_grad():
        mc.train()
        out = mc(inputs)
        ref = reference_scores(mc, inputs, spec, train_bn=True)
        torch.testing.assert_close(out.scores, ref, atol=1e-4, rtol=1e-4)
        mc.eval()
        torch.testing.assert_close(mc(inputs).scores, reference_scores(mc, inputs, spec, train_bn=False),
                                   atol=1e-4, rtol=1e-4)
    assert out.scores[2, 3] == float("-inf")


def test_padding_never_changes_results():
    torch.manual_seed(1)
    cfg = small_config()
    model = SVLR(cfg).train()
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    mc = MultipleChoice(model).train()
    inputs, spec = random_inputs(cfg)
    # same questions with wider padding everywhere, garbage in every padded slot
    P, C, T = 3, 4, 5
    g = torch.Generator().manual_seed(7)
    wide = make_inputs(
        torch.cat([inputs.region_features, 100 * torch.randn(P, 2, cfg.region_dim, generator=g)], 1),
        torch.cat([inputs.region_mask, torch.zeros(P, 2, dtype=torch.bool)], 1),
        inputs.word_vectors, spec["q_nouns"], spec["q_adjs"], spec["bins"],
        [r + [[5]] for r in spec["a_words"]], [r + [[6]] for r in spec["a_nouns"]], [r + [[7]] for r in spec["a_adjs"]],
        torch.cat([inputs.choice_mask, torch.zeros(P, 1, dtype=torch.bool)], 1), pad_to=6)
    masks = {"question_nouns": "question_noun_mask", "question_adjectives": "question_adjective_mask",
             "question_bins": "question_bin_mask", "answer_words": "answer_word_mask",
             "answer_nouns": "answer_noun_mask", "answer_adjectives": "answer_adjective_mask"}
    for name, mask_name in masks.items():
        index, mask = getattr(wide, name), getattr(wide, mask_name)
        index[~mask] = torch.randint(0, 9, (int((~mask).sum()),), generator=g)
    wide.region_features[~wide.region_mask] = 1e3
    with torch.no_grad():
        a, b = mc(inputs), mc(wide)
        torch.testing.assert_close(b.scores[:, :C], a.scores)
        torch.testing.assert_close(b.attention[:, :C, :T], a.attention)
        assert torch.all(b.attention[:, :, T:] == 0)
        za, zb = zero_shot_scores(model.eval(), inputs)[0], zero_shot_scores(model, wide)[0]
        torch.testing.assert_close(zb[:, :C], za)


# ----- zero-shot (Eq. 9) by hand ------------------------------------------------------------

def test_zero_shot_eq9_by_hand():
    model = identity_model()
    s = BN_SCALE**2
    # question noun "dog", no question adjective; choice 0 answer adjective "red", choice 1 answer noun "dog"
    inputs = hand_inputs([0], [], [[], [0]], [[1], []])
    scores, attention = zero_shot_scores(model, inputs)
    # p_q(R) = f_o(R)·dog: R1 2s, R2 0
    # choice 0: p_a(R) = f_a(R)·red: R1 0, R2 3s; a'(R) = [2s + 0, 0 + 3s]
    a0 = softmax([2 * s, 3 * s])
    expected0 = a0[0] * min(2 * s, 0) + a0[1] * min(0, 3 * s)
    # choice 1: p_a(R) = f_o(R)·dog: R1 2s, R2 0; a'(R) = [2s, 0]
    a1 = softmax([2 * s, 0])
    expected1 = a1[0] * min(2 * s, 2 * s) + a1[1] * 0
    torch.testing.assert_close(scores[0], torch.tensor([expected0, expected1]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attention[0], torch.tensor([a0, a1]), atol=1e-5, rtol=1e-5)
    assert scores[0, 1] > scores[0, 0]  # the answer that can be localised with the question wins


# ----- training contracts -----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["shared", "per_class"])
def test_gradients_reach_every_parameter(mode):
    torch.manual_seed(2)
    cfg = small_config(recognition_vectors=mode)
    model = SVLR(cfg).train()
    model.set_label_vectors(objects=torch.randn(3, 5), attributes=torch.randn(2, 5))
    mc = MultipleChoice(model).train()
    inputs, _ = random_inputs(cfg)
    vqa = answer_ranking_loss(mc(inputs).scores, torch.tensor([0, 1, 2]), inputs.choice_mask)
    objects, attributes = recognition_scores(model, torch.randn(6, 6))
    rec = object_loss(objects, torch.eye(6, 3, dtype=torch.bool)) + attribute_loss(
        attributes, torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 0]], dtype=torch.bool))
    (vqa + 0.1 * rec).backward()
    for name, p in [*model.named_parameters(), *mc.head.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert torch.isfinite(vqa) and torch.isfinite(rec)


def test_defaults_and_the_paper_config_hold_the_papers_settings():
    cfg = SVLRConfig()
    assert (cfg.embed_dim, cfg.word_hidden, cfg.region_hidden, cfg.region_output_norm) == (300, 300, 2048, True)
    assert SVLRVQAConfig().fusion_dim == 2500  # beta in R^2500
    paper = load_experiment(bundled_config("svlr_paper.yaml"))
    o = paper.optim
    assert (o.lr, o.lr_decay, o.lr_step, o.weight_decay) == (1e-3, 0.5, 24_000, 1e-5)
    assert o.lr_decay_style == "continuous"  # "an exponentially decaying learning rate schedule"
    vqa, rec = paper.tasks["vqa"], paper.tasks["recognition"]
    assert (rec.batch_size, vqa.batch_size, rec.eta_obj, vqa.eta_ans) == (200, 50, 1.0, 1.0)
    assert (vqa.loss_weight, rec.loss_weight) == (1.0, 0.1)  # VR -> VQA (Sec. 5.2)
    svlr = paper.data.families["svlr"]
    assert (svlr.num_objects, svlr.num_attributes) == (1000, 1000)  # W1 in R^{2500 x 2000}
    assert paper.train.keep_best == "per_task"  # Sec. 5.1: VQA on the hold-out, recognition on Genome val
    head = MultipleChoice(SVLR(small_config(embed_dim=300, num_objects=1000, num_attributes=1000)), 2500).head
    assert head.w1.weight.shape == (2500, 2000) and head.w2.weight.shape == (2500, 1500)


def test_model_rebuilds_from_its_config():
    small = small_config(recognition_vectors="per_class")
    model = SVLR(small)
    rebuilt = SVLR(SVLRConfig(**dataclasses.asdict(small)))
    rebuilt.load_state_dict(model.state_dict())
    assert "object_label_vectors" in model.state_dict()
    with pytest.raises(ValueError, match="recognition_vectors"):
        SVLR(small_config(recognition_vectors="fixed"))
    with pytest.raises(ValueError, match="needed"):
        SVLR(SVLRConfig())


def test_inputs_check_rejects_mismatched_shapes():
    cfg = small_config()
    inputs, _ = random_inputs(cfg)
    inputs.answer_word_mask = inputs.answer_word_mask[:, :, :1]
    with pytest.raises(ValueError, match="answer_words"):
        inputs.check()
    inputs, _ = random_inputs(cfg)
    inputs.region_mask[0] = False
    with pytest.raises(ValueError, match="region"):
        inputs.check()


def test_pad_ids_pads_with_masks():
    index, mask = pad_ids([[3, 1], [], [2]])
    assert index.tolist() == [[3, 1], [0, 0], [2, 0]]
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    index, mask = pad_ids([[[1], []], [[4, 5, 6], [7]]])
    assert index.shape == (2, 2, 3) and mask.sum() == 5 and index[1, 0].tolist() == [4, 5, 6]
    with pytest.raises(ValueError):
        pad_ids([[1, 2, 3]], pad_to=2)
