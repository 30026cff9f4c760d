from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from vlmt.models.layers.fused import DenseCoAttentionLayer, DenseCoAttentionStack, residual_relu_dropout

D, K, M = 16, 4, 3


def inputs(b=2, n=5, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, n, D, generator=g)
    regions = torch.randn(b, t, D, generator=g)
    word_mask = torch.ones(b, n, dtype=torch.bool)
    region_mask = torch.ones(b, t, dtype=torch.bool)
    word_mask[0, 3:] = False  # first sentence has 3 words
    region_mask[1, 4:] = False  # second image has 4 regions
    return words, regions, word_mask, region_mask


def reference_layer(layer: DenseCoAttentionLayer, words, regions, word_mask, region_mask):
    """The layer written out from the equations, head by head, one example at a time."""
    d, m, k = layer.dim, layer.null_slots, layer.heads
    hd = d // k
    p_w, w_own = layer.word_in.weight[:d], layer.word_in.weight[d:]
    p_r, r_own = layer.region_in.weight[:d], layer.region_in.weight[d:]
    out_w, out_r = torch.zeros_like(words), torch.zeros_like(regions)
    for b in range(words.shape[0]):
        s = words[b][word_mask[b]]  # (N, d)
        i = regions[b][region_mask[b]]  # (T, d)
        s_ext = torch.cat([layer.word_nulls, s])  # nulls prepended
        i_ext = torch.cat([layer.region_nulls, i])
        ps, pi = s_ext @ p_w.T, i_ext @ p_r.T
        maps_w, maps_r = [], []
        for h in range(k):
            sl = slice(h * hd, (h + 1) * hd)
            aff = ps[:, sl] @ pi[:, sl].T / math.sqrt(hd)  # (m+N, m+T)
            maps_w.append(torch.softmax(aff[m:], dim=1))  # each word over nulls + regions
            maps_r.append(torch.softmax(aff[:, m:].T, dim=1))  # each region over nulls + words
        att_i = torch.stack(maps_w).mean(0) @ i_ext  # î for each word
        att_s = torch.stack(maps_r).mean(0) @ s_ext  # ŝ for each region
        new_s = s + torch.relu(s @ w_own.T + att_i @ layer.word_attended.weight.T + layer.word_bias)
        new_i = i + torch.relu(i @ r_own.T + att_s @ layer.region_attended.weight.T + layer.region_bias)
        out_w[b][word_mask[b]] = new_s
        out_r[b][region_mask[b]] = new_i
    return out_w, out_r


def test_layer_matches_equations_written_head_by_head():
    torch.manual_seed(0)
    layer = DenseCoAttentionLayer(dim=D, heads=K, null_slots=M).eval()
    with torch.no_grad():  # non-zero biases so they are checked too
        layer.word_bias.normal_()
        layer.region_bias.normal_()
    w, r, wm, rm = inputs()
    got_w, got_r = layer(w, r, wm, rm)
    ref_w, ref_r = reference_layer(layer, w, r, wm, rm)
    torch.testing.assert_close(got_w[wm], ref_w[wm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_r[rm], ref_r[rm], rtol=1e-5, atol=1e-5)


def test_shapes_gradients_reach_every_parameter_and_input():
    stack = DenseCoAttentionStack(num_layers=3, dim=D, heads=K, null_slots=M, dropout=0.3).train()
    w, r, wm, rm = inputs()
    w.requires_grad_(True)
    r.requires_grad_(True)
    outputs = stack(w, r, wm, rm)
    assert len(outputs) == 4
    for s, i in outputs:
        assert s.shape == w.shape and i.shape == r.shape
        assert torch.isfinite(s).all() and torch.isfinite(i).all()
    s, i = outputs[-1]
    (s[wm].sum() + i[rm].square().sum()).backward()
    for name, param in stack.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert w.grad.abs().sum() > 0 and r.grad.abs().sum() > 0


def test_appending_padding_never_changes_real_outputs():
    torch.manual_seed(1)
    stack = DenseCoAttentionStack(num_layers=2, dim=D, heads=K, null_slots=M).eval()
    w, r, wm, rm = inputs()
    s, i = stack(w, r, wm, rm)[-1]
    # Pad both sides with large garbage: masked positions must not leak into real ones.
    w2 = torch.cat([w, 100 * torch.randn(2, 4, D)], dim=1)
    r2 = torch.cat([r, 100 * torch.randn(2, 6, D)], dim=1)
    wm2 = torch.cat([wm, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    rm2 = torch.cat([rm, torch.zeros(2, 6, dtype=torch.bool)], dim=1)
    s2, i2 = stack(w2, r2, wm2, rm2)[-1]
    torch.testing.assert_close(s2[:, :5][wm], s[wm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(i2[:, :7][rm], i[rm], rtol=1e-5, atol=1e-5)
    # Changing the values already under the mask does not matter either.
    w3 = w.clone()
    w3[~wm] = 1e4
    s3, i3 = stack(w3, r, wm, rm)[-1]
    torch.testing.assert_close(s3[wm], s[wm])
    torch.testing.assert_close(i3[rm], i[rm])


def test_attention_maps_are_distributions_that_ignore_padding():
    layer = DenseCoAttentionLayer(dim=D, heads=K, null_slots=M)
    w, r, wm, rm = inputs()
    w2r, r2w = layer.attention_maps(layer.word_side(w), layer.region_side(r), wm, rm)
    assert w2r.shape == (2, 5, M + 7) and r2w.shape == (2, 7, M + 5)
    torch.testing.assert_close(w2r.sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(r2w.sum(-1), torch.ones(2, 7))
    assert (w2r[1, :, M + 4 :] == 0).all()  # padded regions of image 2
    assert (r2w[0, :, M + 3 :] == 0).all()  # padded words of sentence 1
    assert (w2r[..., :M] > 0).all()  # the null slots always take some weight


def test_cached_side_inputs_give_the_same_result():
    layer = DenseCoAttentionLayer(dim=D, heads=K, null_slots=M).eval()
    w, r, wm, rm = inputs()
    direct = layer(w, r, wm, rm)
    cached = layer(w, r, wm, rm, word_side=layer.word_side(w), region_side=layer.region_side(r))
    for a, b in zip(direct, cached):
        torch.testing.assert_close(a, b)


def test_depth_runs_only_the_first_layers():
    stack = DenseCoAttentionStack(num_layers=4, dim=D, heads=K, null_slots=M).eval()
    w, r, wm, rm = inputs()
    full = stack(w, r, wm, rm)
    short = stack(w, r, wm, rm, depth=2)
    assert len(short) == 3
    torch.testing.assert_close(short[2][0], full[2][0])
    with pytest.raises(ValueError):
        stack(w, r, wm, rm, depth=5)


def test_bf16_autocast_runs_and_stays_close_to_fp32():
    torch.manual_seed(0)
    stack = DenseCoAttentionStack(num_layers=2, dim=D, heads=K, null_slots=M).eval()
    w, r, wm, rm = inputs()
    ref = stack(w, r, wm, rm)[-1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = stack(w, r, wm, rm)[-1]
    for a, b, mask in zip(got, ref, (wm, rm)):
        assert a.dtype == torch.float32  # the residual stream stays fp32
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a[mask], b[mask], rtol=0.05, atol=0.05)


def test_residual_relu_dropout_gradient_and_rate():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    z = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: residual_relu_dropout(a, b, 0.0), (x, z))
    torch.testing.assert_close(residual_relu_dropout(x, z, 0.0), x + F.relu(z))
    big = torch.ones(200_000)
    out = residual_relu_dropout(torch.zeros_like(big), big, 0.3)
    kept = (out != 0).float().mean().item()
    assert abs(kept - 0.7) < 0.01
    assert abs(out.mean().item() - 1.0) < 0.02  # inverted dropout keeps the expectation
    g = torch.ones_like(big, requires_grad=True)
    y = residual_relu_dropout(torch.zeros_like(big), g, 0.3)
    y.sum().backward()
    # the gradient flows exactly where the output was kept, scaled like the output
    torch.testing.assert_close(g.grad, y.detach())


def test_constructor_validation():
    with pytest.raises(ValueError):
        DenseCoAttentionLayer(dim=10, heads=4)
    with pytest.raises(ValueError):
        DenseCoAttentionLayer(dim=16, heads=4, null_slots=0)


def test_layer_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = DenseCoAttentionLayer(dim=8, heads=2, null_slots=2, dropout=0.0).double()
    w = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    wm = torch.tensor([[True, True, False], [True, True, True]])
    rm = torch.tensor([[True, True, True, True], [True, False, True, False]])
    params = [layer.word_in.weight, layer.region_nulls, layer.word_bias, layer.region_attended.weight]

    def run(w, r, *ps):
        s, i = layer(w, r, wm, rm)
        return s * wm[..., None], i * rm[..., None]

    assert torch.autograd.gradcheck(run, (w, r, *params), atol=1e-6)
