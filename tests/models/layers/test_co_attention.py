"""The dense co-attention layer as the paper writes it (Eq. 1-3)."""

from __future__ import annotations

import math

import pytest
import torch

from vlmt.models.layers.co_attention import DenseCoAttentionLayer

D, K, M = 16, 4, 3


def inputs(b=2, n=5, t=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, n, D, generator=g, dtype=dtype)
    regions = torch.randn(b, t, D, generator=g, dtype=dtype)
    word_mask = torch.ones(b, n, dtype=torch.bool)
    region_mask = torch.ones(b, t, dtype=torch.bool)
    word_mask[0, 3:] = False  # first sentence has 3 words
    region_mask[1, 4:] = False  # second image has 4 regions
    return words, regions, word_mask, region_mask


def equations(layer: DenseCoAttentionLayer, words, regions, word_mask, region_mask):
    """Eq. 1-3 written out head by head, one example at a time, on the real positions only."""
    d, m, k = layer.dim, layer.null_slots, layer.heads
    hd = d // k
    p_s, p_i = layer.word_projection.weight, layer.region_projection.weight
    w_s, b_s = layer.word_fusion.weight, layer.word_fusion.bias
    w_i, b_i = layer.region_fusion.weight, layer.region_fusion.bias
    out_w, out_r = torch.zeros_like(words), torch.zeros_like(regions)
    for b in range(words.shape[0]):
        s = words[b][word_mask[b]]  # (N, d)
        i = regions[b][region_mask[b]]  # (T, d)
        s_ext = torch.cat([layer.word_nulls, s])  # null slots prepended
        i_ext = torch.cat([layer.region_nulls, i])
        ps, pi = s_ext @ p_s.T, i_ext @ p_i.T
        maps_w, maps_r = [], []
        for h in range(k):
            sl = slice(h * hd, (h + 1) * hd)
            aff = ps[:, sl] @ pi[:, sl].T / math.sqrt(hd)  # (m+N, m+T)
            maps_w.append(torch.softmax(aff[m:], dim=1))  # each word over nulls + regions
            maps_r.append(torch.softmax(aff[:, m:].T, dim=1))  # each region over nulls + words
        att_i = torch.stack(maps_w).mean(0) @ i_ext  # î for each word
        att_s = torch.stack(maps_r).mean(0) @ s_ext  # ŝ for each region
        out_w[b][word_mask[b]] = s + torch.relu(torch.cat([s, att_i], 1) @ w_s.T + b_s)  # Eq. 2
        out_r[b][region_mask[b]] = i + torch.relu(torch.cat([i, att_s], 1) @ w_i.T + b_i)  # Eq. 3
    return out_w, out_r


def test_layer_computes_the_equations():
    torch.manual_seed(0)
    layer = DenseCoAttentionLayer(dim=D, heads=K, null_slots=M).eval()
    with torch.no_grad():  # non-zero biases so they are checked too
        layer.word_fusion.bias.normal_()
        layer.region_fusion.bias.normal_()
    w, r, wm, rm = inputs()
    got_w, got_r = layer(w, r, wm, rm)
    ref_w, ref_r = equations(layer, w, r, wm, rm)
    torch.testing.assert_close(got_w[wm], ref_w[wm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_r[rm], ref_r[rm], rtol=1e-5, atol=1e-5)


def test_parameters_have_the_papers_shapes_and_glorot_init():
    layer = DenseCoAttentionLayer(dim=64, heads=K, null_slots=M)
    assert layer.word_fusion.weight.shape == (64, 128) and layer.word_fusion.bias.shape == (64,)  # W_S, b_S
    assert layer.region_fusion.weight.shape == (64, 128)  # W_I
    assert layer.word_projection.weight.shape == (64, 64) and layer.word_projection.bias is None
    assert float(layer.word_fusion.weight.detach().abs().max()) <= math.sqrt(6 / (64 + 128))
    assert float(layer.word_projection.weight.detach().abs().max()) <= math.sqrt(6 / (64 + 64))
    assert (layer.word_fusion.bias == 0).all()


def test_attention_maps_are_distributions_that_ignore_padding():
    layer = DenseCoAttentionLayer(dim=D, heads=K, null_slots=M)
    w, r, wm, rm = inputs()
    s = torch.cat([layer.word_nulls.expand(2, -1, -1), w], 1)
    i = torch.cat([layer.region_nulls.expand(2, -1, -1), r], 1)
    w2r, r2w = layer.attention_maps(s, i, wm, rm)
    assert w2r.shape == (2, 5, M + 7) and r2w.shape == (2, 7, M + 5)
    torch.testing.assert_close(w2r.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(r2w.sum(-1), torch.ones(2, 7))
    assert (w2r[1, :, M + 4:] == 0).all()  # padded regions of image 2
    assert (r2w[0, :, M + 3:] == 0).all()  # padded words of sentence 1
    assert (w2r[..., :M] > 0).all()  # the null slots always take some weight


def test_padding_never_changes_real_outputs():
    torch.manual_seed(1)
    layer = DenseCoAttentionLayer(dim=D, heads=K, null_slots=M).eval()
    w, r, wm, rm = inputs()
    s, i = layer(w, r, wm, rm)
    w2 = torch.cat([w, 100 * torch.randn(2, 4, D)], dim=1)
    r2 = torch.cat([r, 100 * torch.randn(2, 6, D)], dim=1)
    wm2 = torch.cat([wm, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    rm2 = torch.cat([rm, torch.zeros(2, 6, dtype=torch.bool)], dim=1)
    s2, i2 = layer(w2, r2, wm2, rm2)
    torch.testing.assert_close(s2[:, :5][wm], s[wm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(i2[:, :7][rm], i[rm], rtol=1e-5, atol=1e-5)


def test_gradients_reach_every_parameter_and_match_finite_differences():
    torch.manual_seed(0)
    layer = DenseCoAttentionLayer(dim=8, heads=2, null_slots=2, dropout=0.0).double()
    w = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    wm = torch.tensor([[True, True, False], [True, True, True]])
    rm = torch.tensor([[True, True, True, True], [True, False, True, False]])
    s, i = layer(w, r, wm, rm)
    (s[wm].sum() + i[rm].square().sum()).backward()
    for name, param in layer.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    params = [layer.word_fusion.weight, layer.region_nulls, layer.word_projection.weight]

    def run(w, r, *ps):
        s, i = layer(w, r, wm, rm)
        return s * wm[..., None], i * rm[..., None]

    assert torch.autograd.gradcheck(run, (w, r, *params), atol=1e-6)


def test_constructor_validation():
    with pytest.raises(ValueError):
        DenseCoAttentionLayer(dim=10, heads=4)
    with pytest.raises(ValueError):
        DenseCoAttentionLayer(dim=16, heads=4, null_slots=0)
