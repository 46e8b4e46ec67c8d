"""Exact scoring of every item's full identifier (small catalogs): the ground truth for beam search.

``exact_scores`` teacher-forces every item's code for every query (batched over items in chunks) and
sums, per position, the log-probability of the code's token under the SAME normalisation the beam
search uses (``"allowed"``: softmax over the trie children of the prefix; ``"full"``: over the whole
decoder vocabulary). Cost: O(B * n_items * T) decoder positions, O(B * chunk * T * W) memory per chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gr_toolkit.decoding.beam_search import NORMALIZATIONS
from gr_toolkit.decoding.trie import TrieConstraint
from gr_toolkit.models.base import GenerativeRetriever, SourceBatch


def _codes_of(index_or_codes: Any, bos_id: int | None, eos_id: int | None) -> tuple[np.ndarray, np.ndarray, int, int | None]:
    if hasattr(index_or_codes, "codes") and hasattr(index_or_codes, "lengths"):  # a CodeIndex
        idx = index_or_codes
        return idx.codes, idx.lengths, idx.bos_id, (idx.eos_id if idx.variable_length else None)
    codes, lengths = index_or_codes
    if bos_id is None:
        raise ValueError("exact_scores with raw (codes, lengths) needs bos_id")
    return np.asarray(codes), np.asarray(lengths), int(bos_id), eos_id


@torch.inference_mode()
def exact_scores(
    model: GenerativeRetriever,
    index_or_codes: Any,
    batch: SourceBatch,
    chunk_items: int = 1024,
    normalize: str = "allowed",
    bos_id: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """``[B, n_items]`` log-probability of each item's identifier (EOS included for variable length).

    ``index_or_codes``: a ``CodeIndex`` or ``(codes [n, L] padded -1, lengths)`` with ``bos_id`` (and
    ``eos_id`` for variable-length codes).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}; got {normalize!r}")
    codes, lengths, bos, eos = _codes_of(index_or_codes, bos_id, eos_id)
    device = batch.tokens.device
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=eos).to(device)
    paths = trie.paths(codes, lengths)  # [n, T] state before each target token, -1 after the end
    n, steps = paths.shape
    targets = torch.full((n, steps), -1, dtype=torch.long, device=device)
    targets[:, : codes.shape[1]] = torch.as_tensor(codes, device=device)
    lengths_t = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if eos is not None:
        targets[torch.arange(n, device=device), lengths_t] = eos
    present = paths >= 0
    # Column of each target token among its state's candidates (for the "allowed" softmax).
    cand, valid = trie.candidates(paths.clamp_min(0).view(-1))
    cand = cand.view(n, steps, -1)
    valid = valid.view(n, steps, -1) & present.unsqueeze(-1)
    col = (cand == targets.unsqueeze(-1)).to(torch.uint8).argmax(-1)

    memory = model.encode(batch)
    b = len(batch)
    out = torch.empty((b, n), device=device)
    for lo in range(0, n, chunk_items):  # loop over item chunks only
        hi = min(n, lo + chunk_items)
        c = hi - lo
        rows = torch.arange(b, device=device).repeat_interleave(c)
        items = torch.arange(lo, hi, device=device).repeat(b)
        dec_in = torch.cat([targets.new_full((c, 1), bos), targets[lo:hi, :-1]], dim=1)[items - lo]
        sub_batch = batch.select(rows)
        hidden = model.decode(model.expand_memory(memory, rows), sub_batch, dec_in)  # [b*c, T, d]
        if normalize == "allowed":
            cc, vv = cand[items], valid[items]
            logits = model.score(hidden, cc.clamp_min(0)).float().masked_fill(~vv, float("-inf"))
            logp = logits - torch.logsumexp(logits, -1, keepdim=True)
            tok_logp = logp.gather(-1, col[items].unsqueeze(-1)).squeeze(-1)
        else:
            logp = torch.log_softmax(model.score(hidden, None).float(), -1)
            tok_logp = logp.gather(-1, targets[items].clamp_min(0).unsqueeze(-1)).squeeze(-1)
        tok_logp = tok_logp.masked_fill(~present[items], 0.0)
        out[:, lo:hi] = tok_logp.sum(-1).view(b, c)
    return out


def exact_topk(
    model: GenerativeRetriever, index_or_codes: Any, batch: SourceBatch, k: int, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(items [B, k], scores [B, k])``: the best ``k`` items by exact identifier log-probability."""
    scores = exact_scores(model, index_or_codes, batch, **kwargs)
    top, items = scores.topk(min(k, scores.shape[1]), dim=1)
    return items, top
