"""Summary attention, language encoder and region encoder."""

from __future__ import annotations

import pytest
import torch

from vlmt.models.layers.language import LanguageEncoder, lengths_to_mask
from vlmt.models.layers.regions import RegionEncoder
from vlmt.models.layers.summary import SummaryAttention

D = 16


def test_summary_is_the_averaged_k_map_weighted_sum():
    torch.manual_seed(0)
    summary = SummaryAttention(dim=D, heads=4).eval()
    x = torch.randn(2, 6, D)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    v, alpha = summary(x, mask)
    assert v.shape == (2, D) and alpha.shape == (2, 6)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2))
    assert (alpha[0, 4:] == 0).all()
    # Eq. 5 written out for example 0: softmax per head over the 4 real positions, mean over heads
    scores = summary.score(x[0, :4])  # (4, K)
    expected = torch.softmax(scores, dim=0).mean(dim=1)
    torch.testing.assert_close(alpha[0, :4], expected)
    torch.testing.assert_close(v[0], (expected[:, None] * x[0, :4]).sum(0))


def test_summary_padding_invariance_and_gradients():
    summary = SummaryAttention(dim=D, heads=4)
    x = torch.randn(2, 5, D, requires_grad=True)
    mask = torch.ones(2, 5, dtype=torch.bool)
    v, _ = summary.eval()(x, mask)
    x_pad = torch.cat([x, 50 * torch.randn(2, 3, D)], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(summary(x_pad, mask_pad)[0], v)
    summary.train()(x, mask)[0].square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in summary.parameters())
    assert x.grad.abs().sum() > 0


def test_language_encoder_shapes_padding_and_learned_embedding():
    torch.manual_seed(0)
    enc = LanguageEncoder(vocab_size=30, dim=D, word_dim=8).eval()
    tokens = torch.tensor([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11]])
    lengths = torch.tensor([3, 5])
    out = enc(tokens, lengths)
    assert out.shape == (2, 5, D)
    assert (out[0, 3:] == 0).all()  # padded positions are zeros
    # More padding (and different pad ids) changes nothing for the real words.
    tokens2 = torch.cat([tokens, torch.tensor([[3, 3], [0, 0]])], dim=1)
    torch.testing.assert_close(enc(tokens2, lengths)[:, :5], out)
    # Same sentence alone in a batch gives the same features (no leak across the batch).
    torch.testing.assert_close(enc(tokens[:1, :3], lengths[:1])[0], out[0, :3])
    enc.train()
    enc(tokens, lengths).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert enc.embedding.weight.requires_grad


def test_language_encoder_freezes_given_word_vectors():
    vectors = torch.randn(30, 8)
    enc = LanguageEncoder(vocab_size=30, dim=D, word_dim=8, word_vectors=vectors)
    torch.testing.assert_close(enc.embedding.weight, vectors)
    assert not enc.embedding.weight.requires_grad
    enc(torch.tensor([[1, 2, 3]]), torch.tensor([3])).sum().backward()
    assert enc.embedding.weight.grad is None
    assert enc.out.weight.grad is not None
    with pytest.raises(ValueError):
        LanguageEncoder(vocab_size=30, dim=D, word_dim=8, word_vectors=torch.randn(29, 8))
    with pytest.raises(ValueError):
        enc(torch.tensor([[1, 2, 3]]), torch.tensor([0]))


def test_lengths_to_mask():
    assert lengths_to_mask(torch.tensor([1, 3]), 3).tolist() == [[True, False, False], [True, True, True]]


def test_region_encoder_unit_norm_and_zero_padding():
    enc = RegionEncoder(feature_dim=12, dim=D)
    feats = torch.randn(2, 4, 12, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    out = enc(feats, mask)
    assert out.shape == (2, 4, D)
    norms = out.norm(dim=-1)
    torch.testing.assert_close(norms[mask], torch.ones(7))
    assert (out[0, 3] == 0).all()
    out.sum().backward()
    assert enc.proj.weight.grad.abs().sum() > 0
