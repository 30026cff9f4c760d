"""The dual-encoder shortlist head of the hierarchical model and pair-list scoring."""

from __future__ import annotations

import pytest
import torch

from vlmt.models.hierarchical import HierarchicalConfig, HierarchicalVL, ImageCache


def model_with_shortlist(**overrides) -> HierarchicalVL:
    args = dict(vocab_size=40, num_answers=6, region_feature_dim=12, dim=16, word_dim=8, shortlist_dim=8)
    args.update(overrides)
    torch.manual_seed(0)
    return HierarchicalVL(HierarchicalConfig(**args))


def inputs(b=3, n=6, t=5):
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([6, 3, 4][:b])
    tokens = torch.randint(1, 40, (b, n), generator=g)
    tokens[torch.arange(n)[None, :] >= lengths[:, None]] = 0
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 3:] = False
    return tokens, lengths, torch.randn(b, t, 12, generator=g), mask


def test_embeddings_are_unit_vectors_and_ignore_padding():
    model = model_with_shortlist().eval()
    tokens, lengths, features, mask = inputs()
    images, captions = model.shortlist_embeddings(tokens, lengths, features, mask)
    assert images.shape == captions.shape == (3, 8)
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(captions.norm(dim=-1), torch.ones(3))
    # more padding (longer token rows, garbage in padded regions) changes nothing
    padded_tokens = torch.cat([tokens, torch.zeros(3, 4, dtype=tokens.dtype)], dim=1)
    noisy = features.clone()
    noisy[1, 3:] = 100.0
    again_images, again_captions = model.shortlist_embeddings(padded_tokens, lengths, noisy, mask)
    torch.testing.assert_close(again_images, images)
    torch.testing.assert_close(again_captions, captions)


def test_detached_head_leaves_the_shared_encoder_untrained_and_attached_head_trains_it():
    for detach, encoder_gets_gradient in ((True, False), (False, True)):
        model = model_with_shortlist(shortlist_detach=detach).train()
        images, captions = model.shortlist_embeddings(*inputs())
        (images @ captions.T).sum().backward()
        assert model.shortlist.image_proj.weight.grad is not None
        assert (model.regions.proj.weight.grad is not None) == encoder_gets_gradient
        shared = [p.grad for p in model.language.parameters() if p.requires_grad]
        assert any(g is not None for g in shared) == encoder_gets_gradient


def test_attach_shortlist_and_rebuild_from_the_stored_config():
    model = model_with_shortlist(shortlist_dim=0)
    assert "shortlist" not in model.heads
    with pytest.raises(KeyError, match="shortlist_dim"):
        model.shortlist
    model.attach_shortlist(embed_dim=8)
    model.attach_shortlist(embed_dim=8)  # same head: kept
    with pytest.raises(ValueError, match="already attached"):
        model.attach_shortlist(embed_dim=4)
    rebuilt = HierarchicalVL(HierarchicalConfig(**model.config.to_dict()))
    assert rebuilt.load_state_dict(model.state_dict()) is not None  # strict: same parameters


def test_score_pair_list_equals_the_all_pairs_matrix_entries():
    model = model_with_shortlist().eval()
    tokens, lengths, features, mask = inputs()
    images = ImageCache.cat([model.encode_images(features[:2], mask[:2]),
                             model.encode_images(features[2:], mask[2:])])
    captions = model.encode_captions(tokens, lengths)
    full = model.score_pairs(images, captions, pair_batch=4)
    img = torch.tensor([2, 0, 1, 2, 0])
    cap = torch.tensor([0, 2, 1, 2, 0])
    picked = model.score_pair_list(images, captions, img, cap, pair_batch=2)
    torch.testing.assert_close(picked, full[img, cap], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="equal-length"):
        model.score_pair_list(images, captions, img, cap[:3])
