"""The sentence encoder: GloVe-style word vectors -> 2-layer BiLSTM -> d-wide word features."""

from __future__ import annotations

import math

import torch

from vlmt.models.layers.language import LanguageEncoder, init_lstm_gates_


def test_lstm_gates_get_their_own_glorot_bound():
    # d = 1024 (hidden 512 per direction), 300-d word vectors: the paper's widths.
    torch.manual_seed(0)
    enc = LanguageEncoder(vocab_size=5, dim=1024, word_dim=300)
    hidden = 512
    for name, weight in enc.lstm.named_parameters():
        if not name.startswith("weight"):
            assert torch.count_nonzero(weight) == 0, name  # biases start at zero
            continue
        fan_in = weight.shape[1]  # 300, 1024 (layer 2 reads both directions) or 512 (recurrent)
        bound = math.sqrt(6.0 / (fan_in + hidden))  # Glorot for one (hidden, fan_in) gate
        stacked = math.sqrt(6.0 / (fan_in + 4 * hidden))
        for gate in weight.detach().chunk(4, dim=0):  # i, f, g, o
            assert gate.abs().max() <= bound
            # uniform on [-bound, bound]: the largest of ~150k-500k draws sits at the bound and
            # far above the stacked bound; the variance is bound^2 / 3
            assert gate.abs().max() > 0.99 * bound > 1.4 * stacked
            assert math.isclose(gate.var().item(), bound**2 / 3, rel_tol=0.02)


def test_init_lstm_gates_writes_in_place_and_keeps_grad():
    weight = torch.nn.Parameter(torch.zeros(4 * 8, 6))
    out = init_lstm_gates_(weight)
    assert out is weight and weight.requires_grad
    assert weight.detach().chunk(4)[3].abs().max() > 0  # the last gate block is written too
    assert weight.abs().max() <= math.sqrt(6.0 / (6 + 8))
