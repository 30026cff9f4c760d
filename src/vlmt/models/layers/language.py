"""Sentence input of the hierarchical model: word vectors -> 2-layer BiLSTM; the word vector is
concatenated with the BiLSTM output, dropout (LSTM rate) is applied and a linear map gives the
d-wide word features S_0 (H Sec. 3.1 and the authors' dense co-attention encoder)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from vlmt.models.layers.masking import at_least_fp32, lengths_to_mask


def init_lstm_gates_(weight: Tensor) -> Tensor:
    """Glorot-uniform init of a stacked (4h, in) LSTM weight, one gate block (i, f, g, o) at a time.

    PyTorch stacks the four gates' matrices; Glorot on the stack would use fan_out = 4h and a
    bound sqrt(6 / (in + 4h)) instead of each gate's sqrt(6 / (in + h)) (about 0.6x at d = 1024).
    """
    for gate in weight.detach().chunk(4, dim=0):  # views: (h, in) each
        nn.init.xavier_uniform_(gate)
    return weight


class LanguageEncoder(nn.Module):
    """(B, N) token ids + (B,) lengths -> (B, N, d) word features; padded positions are zeros.

    `word_vectors` (V, E), e.g. 300-d GloVe, initialises the embedding and freezes it; without
    them the embedding is learned (Glorot init). `freeze_word_vectors` overrides that: False
    fine-tunes given vectors; True keeps the frozen state when a model is rebuilt from a
    checkpoint without the vectors at hand.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        dim: int,
        word_dim: int = 300,
        padding_idx: int = 0,
        dropout: float = 0.1,
        word_vectors: Tensor | None = None,
        freeze_word_vectors: bool | None = None,
    ):
        super().__init__()
        if word_vectors is not None:
            if tuple(word_vectors.shape) != (vocab_size, word_dim):
                raise ValueError(
                    f"word_vectors shape {tuple(word_vectors.shape)} != (vocab_size, word_dim) "
                    f"{(vocab_size, word_dim)}"
                )
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=padding_idx)
        if word_vectors is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(word_vectors)
        else:
            nn.init.xavier_uniform_(self.embedding.weight)
            with torch.no_grad():
                self.embedding.weight[padding_idx].zero_()
        frozen = (word_vectors is not None) if freeze_word_vectors is None else freeze_word_vectors
        self.embedding.weight.requires_grad_(not frozen)
        # hidden d/2 per direction: the BiLSTM output is d wide
        self.lstm = nn.LSTM(
            word_dim, dim // 2, num_layers=2, bidirectional=True, batch_first=True, dropout=dropout
        )
        for name, param in self.lstm.named_parameters():
            if name.startswith("weight"):
                init_lstm_gates_(param)
            else:
                nn.init.zeros_(param)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(word_dim + 2 * (dim // 2), dim)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        b, n = tokens.shape
        if lengths.numel() != b or int(lengths.min()) < 1 or int(lengths.max()) > n:
            raise ValueError(f"lengths must be in 1..{n} for each of the {b} sentences")
        vectors = self.embedding(tokens)  # (B, N, E)
        # Packing keeps padding out of both LSTM directions, so padding never changes outputs.
        packed = pack_padded_sequence(at_least_fp32(vectors), lengths.cpu(), batch_first=True, enforce_sorted=False)
        with torch.autocast(tokens.device.type, enabled=False):  # LSTM kernels stay in fp32
            hidden, _ = self.lstm(packed)
        hidden, _ = pad_packed_sequence(hidden, batch_first=True, total_length=n)  # (B, N, d)
        words = self.out(self.dropout(torch.cat([vectors.to(hidden.dtype), hidden], dim=-1)))
        mask = lengths_to_mask(lengths.to(tokens.device), n)
        return words * mask.to(words.dtype)[..., None]
