"""Logits of candidate tokens: ``hidden . e_token`` for each row's allowed tokens.

Two ways to compute the same numbers. Gathering the candidates' embeddings (``[rows, W, d]``) is
cheapest when each row allows a few tokens (a tree node's children). When a row allows a large part
of the vocabulary (a lexical index at a span start allows every corpus token), that gather costs
``rows * W * d`` floats, far more than one projection onto the whole table (``rows * V``) followed
by a column gather, so ``candidate_logits`` switches to the projection there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def use_full_projection(n_candidates: int, vocab: int, dim: int) -> bool:
    """Project onto the whole table when the candidate embeddings would hold more floats than the logits."""
    return n_candidates * dim > vocab


def candidate_logits(hidden: torch.Tensor, table: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
    """``hidden [..., d]`` x ``table [V, d]`` -> logits ``[..., V]`` (``candidates=None``) or ``[..., W]``.

    ``candidates [..., W]`` are token ids (negative ids are clamped to 0; callers mask those slots).
    """
    if candidates is None:
        return hidden @ table.T
    vocab, dim = table.shape
    cand = candidates.clamp(0, vocab - 1)
    if use_full_projection(cand.shape[-1], vocab, dim):
        full = hidden @ table.T  # [..., V]
        lead = torch.broadcast_shapes(full.shape[:-1], cand.shape[:-1])
        return full.expand(*lead, vocab).gather(-1, cand.expand(*lead, cand.shape[-1]))
    emb = F.embedding(cand, table)  # [..., W, d]
    return (emb @ hidden.unsqueeze(-1)).squeeze(-1)
