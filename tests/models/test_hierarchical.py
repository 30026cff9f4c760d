"""The whole hierarchical model: config, task forwards, depths, all-pairs retrieval scoring."""

from __future__ import annotations

import pytest
import torch

from vlmt.models.hierarchical import HierarchicalConfig, HierarchicalVL


def small_config(**overrides):
    args = dict(vocab_size=40, num_answers=6, region_feature_dim=12, dim=16, word_dim=8)
    args.update(overrides)
    return HierarchicalConfig(**args)


def batch(b=3, n=6, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 3, 4][:b])
    tokens = torch.randint(1, 40, (b, n), generator=g)
    tokens[torch.arange(n)[None, :] >= lengths[:, None]] = 0
    region_mask = torch.ones(b, t, dtype=torch.bool)
    region_mask[1, 3:] = False
    return dict(
        tokens=tokens,
        lengths=lengths,
        region_features=torch.randn(b, t, 12, generator=g),
        region_mask=region_mask,
    )


SPANS = torch.tensor([[[0, 1], [2, 5]], [[0, 0], [1, 2]], [[3, 3], [0, 3]]])


def test_paper_defaults():
    config = HierarchicalConfig(vocab_size=10)
    assert config.dim == 1024 and config.num_layers == 5 and config.heads == 4 and config.null_slots == 3
    assert config.decoder_layers == {"retrieval": 3, "vqa": 5, "grounding": 2}
    assert (config.fc_dropout, config.lstm_dropout) == (0.3, 0.1)


def test_config_validation():
    with pytest.raises(ValueError, match="outside"):
        small_config(decoder_layers={"vqa": 6})
    with pytest.raises(ValueError, match="unknown"):
        small_config(decoder_layers={"captioning": 1})


def test_every_task_forward_shapes_and_every_parameter_trained_by_some_task():
    torch.manual_seed(0)
    model = HierarchicalVL(small_config()).train()
    b = batch()
    assert model("retrieval", **b).shape == (3,)
    assert model("vqa", **b).shape == (3, 6)
    assert model("grounding", **b, spans=SPANS).shape == (3, 2, 5)
    loss = model("retrieval", **b).sum() + model("vqa", **b).sum()
    loss = loss + model("grounding", **b, spans=SPANS)[b["region_mask"][:, None, :].expand(3, 2, 5)].sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_a_task_runs_only_the_layers_up_to_its_decoder():
    model = HierarchicalVL(small_config(decoder_layers={"grounding": 2, "vqa": 5}))
    model("grounding", **batch(), spans=SPANS).clamp_min(-1e3).sum().backward()
    assert model.encoder.layers[1].word_in.weight.grad is not None
    for layer in model.encoder.layers[2:]:
        assert all(p.grad is None for p in layer.parameters())


def test_padding_never_changes_task_outputs():
    torch.manual_seed(0)
    model = HierarchicalVL(small_config()).eval()
    b = batch()
    padded = dict(b)
    padded["tokens"] = torch.cat([b["tokens"], torch.zeros(3, 3, dtype=torch.long)], 1)
    padded["region_features"] = torch.cat([b["region_features"], 7 * torch.randn(3, 2, 12)], 1)
    padded["region_mask"] = torch.cat([b["region_mask"], torch.zeros(3, 2, dtype=torch.bool)], 1)
    torch.testing.assert_close(model("vqa", **padded), model("vqa", **b), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model("retrieval", **padded), model("retrieval", **b), rtol=1e-5, atol=1e-5)
    g_pad = model("grounding", **padded, spans=SPANS)[..., :5]
    g = model("grounding", **b, spans=SPANS)
    real = b["region_mask"][:, None, :].expand_as(g)
    torch.testing.assert_close(g_pad[real], g[real], rtol=1e-5, atol=1e-5)


def test_score_pairs_equals_scoring_each_pair_separately():
    torch.manual_seed(0)
    model = HierarchicalVL(small_config()).eval()
    b = batch()
    images = model.encode_images(b["region_features"], b["region_mask"])
    captions = model.encode_captions(b["tokens"], b["lengths"])
    scores = model.score_pairs(images, captions, pair_batch=4)  # chunks cross image boundaries
    assert scores.shape == (3, 3)
    for i in range(3):
        for c in range(3):
            pair = dict(
                tokens=b["tokens"][c : c + 1],
                lengths=b["lengths"][c : c + 1],
                region_features=b["region_features"][i : i + 1],
                region_mask=b["region_mask"][i : i + 1],
            )
            torch.testing.assert_close(scores[i, c], model("retrieval", **pair)[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="eval"):
        model.train().score_pairs(images, captions)


def test_glove_vectors_are_frozen_and_rebuild_from_config():
    vectors = torch.randn(40, 8)
    model = HierarchicalVL(small_config(), word_vectors=vectors)
    assert not model.language.embedding.weight.requires_grad
    rebuilt = HierarchicalVL(HierarchicalConfig(**{**model.config.to_dict(), "freeze_word_vectors": True}))
    rebuilt.load_state_dict(model.state_dict())
    assert not rebuilt.language.embedding.weight.requires_grad
    model.eval()
    rebuilt.eval()
    torch.testing.assert_close(rebuilt("vqa", **batch()), model("vqa", **batch()))


def test_bf16_autocast_forward_is_finite():
    model = HierarchicalVL(small_config()).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model("vqa", **batch())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_missing_decoder_and_regionless_image_are_clear_errors():
    model = HierarchicalVL(small_config(num_answers=0))
    with pytest.raises(KeyError, match="no 'vqa' decoder"):
        model("vqa", **batch())
    b = batch()
    b["region_mask"][0] = False
    with pytest.raises(ValueError, match="at least one real region"):
        model("retrieval", **b)
