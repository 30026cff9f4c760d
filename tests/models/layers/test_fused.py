"""The fused fast path of the dense co-attention layer: the paper layer's numbers, faster."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from vlmt.models.layers.co_attention import DenseCoAttentionLayer
from vlmt.models.layers.fused import FusedDenseCoAttentionLayer, residual_relu_dropout

D, K, M = 16, 4, 3


def inputs(b=2, n=5, t=7, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(b, n, D, generator=g, dtype=dtype)
    regions = torch.randn(b, t, D, generator=g, dtype=dtype)
    word_mask = torch.ones(b, n, dtype=torch.bool)
    region_mask = torch.ones(b, t, dtype=torch.bool)
    word_mask[0, 3:] = False
    region_mask[1, 4:] = False
    return words, regions, word_mask, region_mask


def twins(dtype=torch.float64, seed=0):
    """A fused layer and a paper layer holding the same weights (non-zero biases)."""
    torch.manual_seed(seed)
    fused = FusedDenseCoAttentionLayer(dim=D, heads=K, null_slots=M, dropout=0.3).to(dtype)
    with torch.no_grad():
        fused.word_bias.normal_()
        fused.region_bias.normal_()
    paper = DenseCoAttentionLayer(dim=D, heads=K, null_slots=M, dropout=0.3).to(dtype)
    paper.load_state_dict(fused.paper_state_dict())
    return fused, paper


def test_fused_and_paper_layers_agree_on_outputs_and_gradients():
    fused, paper = twins()
    outputs, grads = {}, {}
    for name, layer in (("fused", fused), ("paper", paper)):
        layer.eval()
        w, r, wm, rm = inputs(dtype=torch.float64)
        w.requires_grad_(True)
        r.requires_grad_(True)
        s, i = layer(w, r, wm, rm)
        (s[wm].sin().sum() + i[rm].square().sum()).backward()
        outputs[name] = (s, i)
        grads[name] = {"words": w.grad, "regions": r.grad}
        state = {k: v.grad for k, v in layer.named_parameters()}
        grads[name]["params"] = state
    for a, b in zip(outputs["fused"], outputs["paper"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grads["fused"]["words"], grads["paper"]["words"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grads["fused"]["regions"], grads["paper"]["regions"], rtol=1e-10, atol=1e-10)
    # the fused layer's parameter gradients, mapped to the paper's names, are the paper layer's
    g = grads["fused"]["params"]
    mapped = {
        "word_nulls": g["word_nulls"], "region_nulls": g["region_nulls"],
        "word_projection.weight": g["word_in.weight"][:D], "region_projection.weight": g["region_in.weight"][:D],
        "word_fusion.weight": torch.cat([g["word_in.weight"][D:], g["word_attended.weight"]], 1),
        "word_fusion.bias": g["word_bias"],
        "region_fusion.weight": torch.cat([g["region_in.weight"][D:], g["region_attended.weight"]], 1),
        "region_fusion.bias": g["region_bias"],
    }
    for name, grad in grads["paper"]["params"].items():
        torch.testing.assert_close(mapped[name], grad, rtol=1e-10, atol=1e-10, msg=name)


def test_weights_map_both_ways():
    fused, paper = twins(torch.float32, seed=3)
    again = FusedDenseCoAttentionLayer(dim=D, heads=K, null_slots=M)
    again.load_paper_state_dict(paper.state_dict())
    for (name, a), b in zip(fused.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_training_mode_drops_out_at_the_same_rate_as_the_paper_layer():
    fused, paper = twins(torch.float32)
    w, r, wm, rm = inputs(b=64, n=12, t=20, seed=1)
    ref = paper.eval()(w, r, wm, rm)
    active = ref[0] != w  # positions whose fusion branch is positive in eval mode
    for layer in (fused.train(), paper.train()):
        s, _ = layer(w, r, wm, rm)
        dropped = ((s == w) & active).sum() / active.sum()  # the branch was zeroed: output = input
        assert abs(float(dropped) - 0.3) < 0.02


def test_cached_side_inputs_give_the_same_result():
    layer = FusedDenseCoAttentionLayer(dim=D, heads=K, null_slots=M).eval()
    w, r, wm, rm = inputs()
    direct = layer(w, r, wm, rm)
    cached = layer(w, r, wm, rm, word_side=layer.word_side(w), region_side=layer.region_side(r))
    for a, b in zip(direct, cached):
        torch.testing.assert_close(a, b)


def test_bf16_autocast_runs_and_stays_close_to_fp32():
    torch.manual_seed(0)
    layer = FusedDenseCoAttentionLayer(dim=D, heads=K, null_slots=M).eval()
    w, r, wm, rm = inputs()
    ref = layer(w, r, wm, rm)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = layer(w, r, wm, rm)
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
    torch.testing.assert_close(g.grad, y.detach())  # the gradient flows where the output was kept


def test_layer_gradients_match_finite_differences():
    torch.manual_seed(0)
    layer = FusedDenseCoAttentionLayer(dim=8, heads=2, null_slots=2, dropout=0.0).double()
    w = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    r = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    wm = torch.tensor([[True, True, False], [True, True, True]])
    rm = torch.tensor([[True, True, True, True], [True, False, True, False]])
    params = [layer.word_in.weight, layer.region_nulls, layer.word_bias, layer.region_attended.weight]

    def run(w, r, *ps):
        s, i = layer(w, r, wm, rm)
        return s * wm[..., None], i * rm[..., None]

    assert torch.autograd.gradcheck(run, (w, r, *params), atol=1e-6)


def test_constructor_validation():
    with pytest.raises(ValueError):
        FusedDenseCoAttentionLayer(dim=10, heads=4)
    with pytest.raises(ValueError):
        FusedDenseCoAttentionLayer(dim=16, heads=4, null_slots=0)
