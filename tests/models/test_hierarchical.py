"""The hierarchical encoder: its config, the layers a call runs, padding, pair encoding, and the
two co-attention implementations."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vlmt import config as C
from vlmt.models.hierarchical import HierarchicalConfig, HierarchicalVL, ImageCache


def small_config(**overrides) -> HierarchicalConfig:
    args = dict(vocab_size=40, region_feature_dim=12, dim=16, word_dim=8)
    args.update(overrides)
    return HierarchicalConfig(**args)


def batch(b=3, n=6, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 3, 4][:b])
    tokens = torch.randint(1, 40, (b, n), generator=g)
    tokens[torch.arange(n)[None, :] >= lengths[:, None]] = 0
    region_mask = torch.ones(b, t, dtype=torch.bool)
    region_mask[1, 3:] = False
    return dict(tokens=tokens, lengths=lengths, region_features=torch.randn(b, t, 12, generator=g),
                region_mask=region_mask)


def encode(model, b, **kw):
    return model(b["tokens"], b["lengths"], b["region_features"], b["region_mask"], **kw)


def test_paper_defaults():
    config = HierarchicalConfig()
    assert config.dim == 1024 and config.num_layers == 5 and config.heads == 4 and config.null_slots == 3
    assert (config.fc_dropout, config.lstm_dropout) == (0.3, 0.1)
    assert config.co_attention == "fused"


def test_sizes_come_from_the_data_and_experiment_files_cannot_set_them():
    with pytest.raises(ValueError, match="vocab_size and region_feature_dim"):
        HierarchicalVL(HierarchicalConfig(dim=16, word_dim=8))
    raw = {"model": {"type": "hierarchical", "vocab_size": 10}, "tasks": {"s": {"type": "sanity_linear"}}}
    with pytest.raises(Exception, match="model.vocab_size.*set from the data section"):
        C.from_dict(raw)
    # the resolved experiment config never carries them
    assert "vocab_size" not in C.to_dict(small_config())


def test_outputs_of_every_layer_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = HierarchicalVL(small_config()).train()
    b = batch()
    encoded = encode(model, b)
    assert len(encoded.layers) == 6  # (S_0, I_0) .. (S_5, I_5)
    for words, regions in encoded.layers:
        assert words.shape == (3, 6, 16) and regions.shape == (3, 5, 16)
        assert torch.isfinite(words).all() and torch.isfinite(regions).all()
    assert encoded.word_mask.tolist()[1] == [True] * 3 + [False] * 3
    (encoded.words[encoded.word_mask].sum() + encoded.regions[encoded.region_mask].square().sum()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_a_call_runs_only_the_layers_up_to_its_depth():
    model = HierarchicalVL(small_config())
    encoded = encode(model, batch(), depth=2)
    assert len(encoded.layers) == 3
    encoded.words.sum().backward()
    assert model.layers[1].word_in.weight.grad is not None
    for layer in model.layers[2:]:
        assert all(p.grad is None for p in layer.parameters())
    with pytest.raises(ValueError, match="depth 6"):
        encode(model, batch(), depth=6)


def test_padding_never_changes_real_outputs():
    torch.manual_seed(0)
    model = HierarchicalVL(small_config()).eval()
    b = batch()
    padded = dict(b)
    padded["tokens"] = torch.cat([b["tokens"], torch.zeros(3, 3, dtype=torch.long)], 1)
    padded["region_features"] = torch.cat([b["region_features"], 7 * torch.randn(3, 2, 12)], 1)
    padded["region_mask"] = torch.cat([b["region_mask"], torch.zeros(3, 2, dtype=torch.bool)], 1)
    ref, got = encode(model, b), encode(model, padded)
    for (w, r), (w2, r2) in zip(ref.layers, got.layers):
        torch.testing.assert_close(w2[:, :6][ref.word_mask], w[ref.word_mask], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(r2[:, :5][ref.region_mask], r[ref.region_mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("co_attention", ["fused", "paper"])
def test_encoding_pairs_from_caches_equals_encoding_each_pair(co_attention):
    torch.manual_seed(0)
    model = HierarchicalVL(small_config(co_attention=co_attention)).eval()
    b = batch()
    images = ImageCache.cat([model.encode_images(b["region_features"][:2], b["region_mask"][:2]),
                             model.encode_images(b["region_features"][2:], b["region_mask"][2:])])
    captions = model.encode_captions(b["tokens"], b["lengths"])
    img, cap = torch.tensor([2, 0, 1, 2]), torch.tensor([0, 2, 1, 2])
    pairs = model.encode_pairs(images, captions, img, cap, depth=3)
    single = model(b["tokens"][cap], b["lengths"][cap], b["region_features"][img], b["region_mask"][img], depth=3)
    torch.testing.assert_close(pairs.words, single.words, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pairs.regions, single.regions, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="equal-length"):
        model.encode_pairs(images, captions, img, cap[:2], depth=3)


def test_paper_and_fused_layers_give_the_same_encoder():
    torch.manual_seed(0)
    fused = HierarchicalVL(small_config()).eval()
    paper = HierarchicalVL(small_config(co_attention="paper")).eval()
    state = {k: v for k, v in fused.state_dict().items() if not k.startswith("layers.")}
    for i, layer in enumerate(fused.layers):
        state.update({f"layers.{i}.{k}": v for k, v in layer.paper_state_dict().items()})
    paper.load_state_dict(state)
    a, b = encode(fused, batch()), encode(paper, batch())
    torch.testing.assert_close(a.words, b.words, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.regions, b.regions, rtol=1e-5, atol=1e-5)


def test_word_vectors_are_frozen_and_the_model_rebuilds_from_its_config():
    vectors = torch.randn(40, 8)
    model = HierarchicalVL(small_config(), word_vectors=vectors)
    assert not model.language.embedding.weight.requires_grad
    rebuilt = HierarchicalVL(HierarchicalConfig(**{**dataclasses.asdict(model.config), "freeze_word_vectors": True}))
    rebuilt.load_state_dict(model.state_dict())
    assert not rebuilt.language.embedding.weight.requires_grad
    torch.testing.assert_close(encode(rebuilt.eval(), batch()).words, encode(model.eval(), batch()).words)


@pytest.mark.parametrize("freeze", [None, True, False])
def test_freeze_word_vectors_decides_whether_the_given_vectors_train(freeze):
    torch.manual_seed(0)
    vectors = torch.randn(40, 8)
    model = HierarchicalVL(small_config(freeze_word_vectors=freeze), word_vectors=vectors).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=1e-2)
    b = batch()
    encode(model, b).words.pow(2).mean().backward()
    optimizer.step()
    embedding = model.language.embedding.weight
    used = b["tokens"][b["tokens"] > 0].unique()  # rows of the batch's words (0 is padding)
    if freeze is False:  # fine-tuned: the batch's rows get gradients and move
        assert embedding.requires_grad and embedding.grad is not None
        assert embedding.grad[used].abs().sum(-1).gt(0).all()
        assert not torch.equal(embedding[used].detach(), vectors[used])
    else:  # default (None) and True: GloVe stays as given
        assert not embedding.requires_grad and embedding.grad is None
        assert torch.equal(embedding.detach(), vectors)
        assert model.language.out.weight.grad is not None  # the rest of the encoder trains


def test_freeze_word_vectors_is_a_model_key_resolved_against_the_data():
    raw = {"model": {"type": "hierarchical", "freeze_word_vectors": False}, "tasks": {"s": {"type": "sanity_linear"}}}
    assert C.from_dict(raw).model.freeze_word_vectors is False
    assert HierarchicalConfig().freeze_word_vectors is None  # frozen when the data gives vectors


def test_the_config_is_frozen():
    model = HierarchicalVL(small_config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.dim = 32  # type: ignore[misc]


def test_bf16_autocast_forward_is_finite_and_close_to_fp32():
    model = HierarchicalVL(small_config()).eval()
    ref = encode(model, batch())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encode(model, batch())
    assert out.regions.dtype == torch.float32  # the region stream starts fp32 (L2-normalised) and stays so
    for got, want in ((out.words, ref.words), (out.regions, ref.regions)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got.float(), want, rtol=0.1, atol=0.1)


def test_regionless_image_is_a_clear_error():
    model = HierarchicalVL(small_config())
    b = batch()
    b["region_mask"][0] = False
    with pytest.raises(ValueError, match="at least one real region"):
        encode(model, b)
