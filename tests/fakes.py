"""Tiny deterministic ``GenerativeRetriever`` for tests (reusable by anyone's tests).

``TinyGRURetriever``: source embeddings -> mean-pooled memory; a GRU cell over the decoder tokens
starting from the pooled memory; logits = hidden . output-embedding(candidate) + bias. Teacher-forced
``decode`` and incremental ``step`` compute exactly the same hidden states, so exact scores and beam
scores can be compared. Weights come from a fixed seed (same seed -> same model).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gr_toolkit.models.base import GenerativeRetriever, SourceBatch


class TinyGRURetriever(GenerativeRetriever):
    """``decoder_vocab`` = identifier vocab + 2 (BOS = vocab, EOS = vocab + 1)."""

    def __init__(self, source_vocab: int, vocab_size: int, dim: int = 16, seed: int = 0, scale: float = 2.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.vocab_size = vocab_size
        self.bos_id = vocab_size
        self.eos_id = vocab_size + 1
        self.hidden_size = dim
        self.src_emb = nn.Parameter(torch.randn(source_vocab, dim, generator=gen))
        self.tok_emb = nn.Parameter(torch.randn(vocab_size + 2, dim, generator=gen))
        self.out_emb = nn.Parameter(torch.randn(vocab_size + 2, dim, generator=gen) * scale / dim**0.5)
        self.out_bias = nn.Parameter(torch.randn(vocab_size + 2, generator=gen))
        self.cell = nn.GRUCell(dim, dim)
        with torch.no_grad():
            for p in self.cell.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

    def encode(self, batch: SourceBatch) -> dict[str, torch.Tensor]:
        states = self.src_emb[batch.tokens.clamp_min(0)]
        m = batch.mask.unsqueeze(-1).to(states.dtype)
        pooled = torch.tanh((states * m).sum(1) / m.sum(1).clamp_min(1.0))
        return {"states": states, "pooled": pooled}

    def decode(self, memory: Any, batch: SourceBatch, decoder_input: torch.Tensor) -> torch.Tensor:
        h = memory["pooled"]
        out = []
        for t in range(decoder_input.shape[1]):
            h = self.cell(self.tok_emb[decoder_input[:, t].clamp_min(0)], h)
            out.append(h)
        return torch.stack(out, dim=1)

    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        if candidates is None:
            return hidden @ self.out_emb.T + self.out_bias
        return (hidden.unsqueeze(-2) * self.out_emb[candidates]).sum(-1) + self.out_bias[candidates]

    def step(
        self, memory: Any, batch_mask: torch.Tensor, last_tokens: torch.Tensor, cache: Any, candidates: torch.Tensor | None
    ) -> tuple[torch.Tensor, Any]:
        h = memory["pooled"] if cache is None else cache["h"]
        h = self.cell(self.tok_emb[last_tokens], h)
        return self.score(h, candidates), {"h": h}

    def token_embeddings(self) -> torch.Tensor:
        return self.tok_emb


def random_batch(n: int, source_vocab: int = 50, length: int = 6, seed: int = 0) -> SourceBatch:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, source_vocab, (n, length), generator=gen)
    lens = torch.randint(1, length + 1, (n,), generator=gen)
    mask = torch.arange(length).unsqueeze(0) < lens.unsqueeze(1)
    return SourceBatch(tokens.masked_fill(~mask, 0), mask, "query")
