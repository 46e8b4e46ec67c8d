"""Ranking loss (SEATER eq. 7-8, section 3.3.3): teach the model to rank identifiers by how many
prefix tokens they share with the ground truth.

For each positive identifier ``y+`` of length ``l`` we sample ``N`` negative items with ``N``
different shared-prefix lengths ``s`` (an item sharing exactly ``s`` leading tokens with ``y+`` and
differing at position ``s``). ``prefixes="deepest"`` (default) takes ``s = l-1, l-2, ..., l-N``: the
sibling leaf, then a cousin, ... (the hard negatives the decoder must tell apart at the last steps);
``prefixes="shallowest"`` takes ``s = 0, 1, ..., N-1`` (the paper's Figure 2 example). Lengths that do
not exist (``s < 0`` or ``s >= l``) or prefixes with no other item are masked out.

``z_x`` = mean-pooled encoder states, ``z_y`` = mean-pooled decoder states of ``[BOS] + y`` (every
token of the identifier is read, so siblings differ). ``s(p, q) = sigmoid(p^T W q)`` with a learned
``W`` (a parameter of this loss, trained with the model). For every ordered pair where ``y‡`` shares
more prefix than ``y†``: ``max(0, s(z_x, z_y†) - s(z_x, z_y‡) + beta * (num(y‡) - num(y†)))``, with
``num(y+) = l``. The loss is the sum over pairs, averaged over the batch.

Sampling is vectorised: codes are sorted lexicographically once, so the items sharing a prefix form a
contiguous range; a uniform draw from "range of prefix s minus range of prefix s+1" is one random
number and an offset per (example, negative).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gr_toolkit.losses.base import LOSSES, LossContext


class PrefixSampler:
    """Samples items that share exactly ``s`` leading identifier tokens with a given item."""

    def __init__(self, codes: np.ndarray, lengths: np.ndarray) -> None:
        codes = np.asarray(codes, dtype=np.int64)
        n, L = codes.shape
        order = np.lexsort(codes.T[::-1])  # lexicographic over columns, first column most significant
        sc = codes[order]
        lo = np.zeros((n, L + 1), dtype=np.int64)
        hi = np.full((n, L + 1), n, dtype=np.int64)
        for s in range(1, L + 1):
            new = np.ones(n, dtype=bool)
            new[1:] = (sc[1:, :s] != sc[:-1, :s]).any(1)
            gid = np.cumsum(new) - 1
            starts = np.flatnonzero(new)
            ends = np.append(starts[1:], n)
            lo[:, s], hi[:, s] = starts[gid], ends[gid]
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        self.order = torch.from_numpy(order)
        self.rank = torch.from_numpy(rank)
        self.lo, self.hi = torch.from_numpy(lo), torch.from_numpy(hi)
        self.lengths = torch.from_numpy(np.asarray(lengths, dtype=np.int64))
        self.max_len = L

    def to(self, device: torch.device | str) -> PrefixSampler:
        for name in ("order", "rank", "lo", "hi", "lengths"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def shared_lengths(self, items: torch.Tensor, n: int, mode: str) -> torch.Tensor:
        """``[B, n]`` requested shared-prefix lengths per positive, -1 where none exists."""
        length = self.lengths[items].unsqueeze(1)
        j = torch.arange(n, device=items.device).unsqueeze(0)
        if mode == "deepest":
            s = length - 1 - j
        elif mode == "shallowest":
            s = j.expand(len(items), n)
        else:
            raise ValueError(f"prefixes must be 'deepest' or 'shallowest', got {mode!r}")
        return torch.where((s >= 0) & (s < length), s, torch.full_like(s, -1))

    def sample(
        self, items: torch.Tensor, shared: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(negatives [B, n], valid [B, n])``: an item sharing exactly ``shared[b, j]`` tokens with
        ``items[b]`` (uniform among such items)."""
        p = self.rank[items].unsqueeze(1).expand_as(shared)
        s = shared.clamp_min(0)
        lo_s, hi_s = self.lo[p, s], self.hi[p, s]
        lo_n, hi_n = self.lo[p, s + 1], self.hi[p, s + 1]
        inner = hi_n - lo_n
        count = (hi_s - lo_s) - inner
        u = torch.rand(shared.shape, device=shared.device, generator=generator)
        r = (u * count.clamp_min(1)).long().clamp_max((count - 1).clamp_min(0))
        q = lo_s + r
        q = q + (q >= lo_n).long() * inner
        valid = (shared >= 0) & (count > 0)
        q = torch.where(valid, q, p)
        return self.order[q], valid


def pairwise_margin_loss(score: torch.Tensor, num: torch.Tensor, ok: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 8 for ``score, num, ok [B, M]``: over ordered pairs (a, c) with ``num[a] > num[c]`` (a shares
    more prefix with ``y+``) and both valid, ``max(0, score[c] - score[a] + beta * (num[a] - num[c]))``;
    summed over pairs, averaged over the batch."""
    gap = num.unsqueeze(2) - num.unsqueeze(1)  # [B, a, c] = num[a] - num[c]
    use = (gap > 0) & ok.unsqueeze(2) & ok.unsqueeze(1)
    hinge = (score.unsqueeze(1) - score.unsqueeze(2) + beta * gap).clamp_min(0)
    return (hinge * use).sum() / score.shape[0]


@LOSSES.register("rank")
class RankingLoss(nn.Module):
    """SEATER ranking loss; holds the bilinear similarity matrix ``W`` (``hidden_size``^2)."""

    name = "rank"

    def __init__(
        self,
        hidden_size: int,
        weight: float = 0.05,
        n_negatives: int = 4,
        beta: float = 0.001,
        prefixes: str = "deepest",
        max_examples: int | None = None,
    ) -> None:
        super().__init__()
        #: Use only the first ``max_examples`` rows of each (shuffled) batch: the ranking loss decodes
        #: 1 + N identifiers per row, so this bounds its cost on CPU (None = every row, as in the paper).
        self.max_examples = max_examples
        self.weight = weight
        self.n_negatives = n_negatives
        self.beta = beta
        self.prefixes = prefixes
        # W = I/d: p^T W q starts as a scaled dot product of LayerNorm-ed states, away from saturation.
        self.W = nn.Parameter(torch.eye(hidden_size) / hidden_size)
        self._samplers: dict[tuple[int, str], PrefixSampler] = {}

    def sampler(self, index: Any, device: torch.device) -> PrefixSampler:
        key = (id(index), str(device))
        if key not in self._samplers:
            if getattr(index, "targets_need_queries", False) or not hasattr(index, "codes"):
                # Negatives are sampled by shared identifier prefix, which needs one fixed code per item.
                raise ValueError(f"the rank loss needs an index with one fixed identifier per item (seater, rq, "
                                 f"random, atomic); the {getattr(index, 'scheme', type(index).__name__)!r} "
                                 "index's identifiers depend on the query")
            self._samplers = {k: v for k, v in self._samplers.items() if k[0] == id(index)}
            self._samplers[key] = PrefixSampler(index.codes, index.lengths).to(device)
        return self._samplers[key]

    def similarity(self, zx: torch.Tensor, zy: torch.Tensor) -> torch.Tensor:
        """``sigmoid(z_x^T W z_y)`` for ``zx [B, d]`` and ``zy [B, M, d]`` -> ``[B, M]``."""
        return torch.sigmoid(((zx @ self.W).unsqueeze(1) * zy).sum(-1))

    def forward(self, ctx: LossContext) -> torch.Tensor:
        device = ctx.hidden.device
        rows_used = len(ctx.target_items) if self.max_examples is None else min(self.max_examples, len(ctx.target_items))
        items = ctx.target_items[:rows_used].to(device)
        b, n = len(items), self.n_negatives
        smp = self.sampler(ctx.index, device)
        shared = smp.shared_lengths(items, n, self.prefixes)
        negs, valid = smp.sample(items, shared)
        cand = torch.cat([items.unsqueeze(1), negs], dim=1)  # [B, 1+N]
        num = torch.cat([smp.lengths[items].unsqueeze(1), shared], dim=1).float()
        ok = torch.cat([valid.new_ones(b, 1), valid], dim=1)

        # Teacher-forced decode of [BOS] + identifier for all 1+N candidates of every example.
        tgt = ctx.index.decoder_targets(cand.reshape(-1).cpu()).to(device)
        dec_in = torch.cat([tgt.new_full((len(tgt), 1), ctx.index.bos_id), tgt], dim=1)
        rows = torch.arange(b, device=device).repeat_interleave(n + 1)
        memory = ctx.model.expand_memory(ctx.memory, rows)
        batch = ctx.batch.select(rows)
        states = ctx.model.decode(memory, batch, dec_in)  # [B*(1+N), T+1, d]
        m = (dec_in >= 0).unsqueeze(-1).to(states.dtype)
        zy = ((states * m).sum(1) / m.sum(1)).view(b, n + 1, -1)
        zx = ctx.model.pool_memory(ctx.memory, ctx.batch)[:b]
        score = self.similarity(zx, zy)  # [B, 1+N]

        return pairwise_margin_loss(score, num, ok, self.beta)
