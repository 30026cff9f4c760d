"""Retrieval scoring on the encoder: pair lists from per-modality caches, and the dual-encoder
shortlist head."""

from __future__ import annotations

import pytest
import torch

from vlmt.models.heads.retrieval import RetrievalHead
from vlmt.models.heads.shortlist import ShortlistHead
from vlmt.models.hierarchical import HierarchicalConfig, HierarchicalVL, ImageCache
from vlmt.tasks.retrieval import score_pair_list, shortlist_embeddings


def model_and_heads(detach: bool = True) -> tuple[HierarchicalVL, RetrievalHead, ShortlistHead]:
    torch.manual_seed(0)
    model = HierarchicalVL(HierarchicalConfig(vocab_size=40, region_feature_dim=12, dim=16, word_dim=8))
    return model, RetrievalHead(dim=16, heads=4), ShortlistHead(dim=16, embed_dim=8, heads=4, detach=detach)


def inputs(b=3, n=6, t=5):
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([6, 3, 4][:b])
    tokens = torch.randint(1, 40, (b, n), generator=g)
    tokens[torch.arange(n)[None, :] >= lengths[:, None]] = 0
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 3:] = False
    return {"tokens": tokens, "lengths": lengths, "region_features": torch.randn(b, t, 12, generator=g),
            "region_mask": mask}


def test_shortlist_embeddings_are_unit_vectors_and_ignore_padding():
    model, _, head = model_and_heads()
    model.eval(), head.eval()
    b = inputs()
    images, captions = shortlist_embeddings(model, head, b)
    assert images.shape == captions.shape == (3, 8)
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(captions.norm(dim=-1), torch.ones(3))
    # more padding (longer token rows, garbage in padded regions) changes nothing
    noisy = dict(b, tokens=torch.cat([b["tokens"], torch.zeros(3, 4, dtype=torch.long)], dim=1),
                 region_features=b["region_features"].clone())
    noisy["region_features"][1, 3:] = 100.0
    again_images, again_captions = shortlist_embeddings(model, head, noisy)
    torch.testing.assert_close(again_images, images)
    torch.testing.assert_close(again_captions, captions)


def test_a_detached_shortlist_head_leaves_the_encoder_untrained_and_an_attached_one_trains_it():
    for detach, encoder_gets_gradient in ((True, False), (False, True)):
        model, _, head = model_and_heads(detach)
        images, captions = shortlist_embeddings(model, head, inputs())
        (images @ captions.T).sum().backward()
        assert head.image_proj.weight.grad is not None
        assert (model.regions.proj.weight.grad is not None) == encoder_gets_gradient
        shared = [p.grad for p in model.language.parameters() if p.requires_grad]
        assert any(g is not None for g in shared) == encoder_gets_gradient


def test_pair_list_scores_equal_scoring_each_pair_alone():
    model, head, _ = model_and_heads()
    model.eval(), head.eval()
    b = inputs()
    images = ImageCache.cat([model.encode_images(b["region_features"][:2], b["region_mask"][:2]),
                             model.encode_images(b["region_features"][2:], b["region_mask"][2:])])
    captions = model.encode_captions(b["tokens"], b["lengths"])
    img, cap = torch.tensor([2, 0, 1, 2, 0]), torch.tensor([0, 2, 1, 2, 0])
    picked = score_pair_list(model, head, images, captions, img, cap, layer=3, pair_batch=2)
    for p, (i, c) in enumerate(zip(img.tolist(), cap.tolist())):
        enc = model(b["tokens"][c:c + 1], b["lengths"][c:c + 1], b["region_features"][i:i + 1],
                    b["region_mask"][i:i + 1], depth=3)
        torch.testing.assert_close(picked[p], head(enc.words, enc.regions, enc.word_mask, enc.region_mask)[0],
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="eval mode"):
        score_pair_list(model.train(), head, images, captions, img, cap, layer=3)
