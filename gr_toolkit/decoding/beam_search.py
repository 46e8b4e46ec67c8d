"""The one constrained beam search: any ``GenerativeRetriever`` x any ``Constraint``.

All beams of all queries are one flat batch of ``N = B * beam`` rows; the only Python loop is over
decoding steps. Per step:

1. ``constraint.candidates(states)`` -> allowed tokens ``[N, W]`` (W = widest state in the batch);
2. ``model.step`` scores ONLY those candidates (incremental, with the model's cache);
3. log-softmax over the allowed candidates (``normalize="allowed"``: SEATER's children-only softmax,
   no full-vocabulary logits ever) or over the full decoder vocabulary (``normalize="full"``: the
   model's ``step`` is called with ``candidates=None`` and must return ``[N, decoder_vocab]`` logits;
   use it for models trained with a full-vocabulary softmax, e.g. plain HF seq2seq);
4. one ``topk`` over ``[B, beam * W]`` picks the next beams; states, cache and history are reordered
   with one ``index_select`` each; the constraint advances the chosen rows.

Finished beams (``is_done``) carry their score forward unchanged (one dummy candidate with log-prob 0,
token -1). Dead ends (no allowed token, not finished) get score -inf and are dropped; nothing is ever
decoded unconstrained. Step 0 keeps only beam 0 of each query alive, so no duplicates appear.

Cost per step: O(N * W) for constraint and selection plus one model step over N rows; memory
O(N * (W + T)) besides the model cache.
"""

from __future__ import annotations

from typing import Any

import torch

from gr_toolkit.decoding.constraint import Constraint
from gr_toolkit.identifiers.base import BeamOutput
from gr_toolkit.models.base import GenerativeRetriever, SourceBatch

NORMALIZATIONS = ("allowed", "full")


def beam_search(
    model: GenerativeRetriever,
    constraint: Constraint,
    batch: SourceBatch,
    beam_size: int,
    max_steps: int | None = None,
    length_normalize: bool = False,
    normalize: str = "allowed",
    bos_id: int | None = None,
    memory: Any = None,
) -> BeamOutput:
    """Constrained beam search for a batch of sources.

    ``bos_id`` defaults to ``model.bos_id``, else ``model.decoder_vocab_size - 2`` (the identifier vocab
    size, see ``identifiers.base``).
    ``memory`` may be passed when the caller already ran ``model.encode(batch)``.
    Returns ``BeamOutput`` with beams sorted by score (best first); ``alive[b, j]`` is True exactly
    for complete, valid identifiers. With ``length_normalize`` the final scores are divided by the
    number of emitted tokens (EOS included); the search itself ranks by summed log-probability.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}; got {normalize!r}")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1; got {beam_size}")
    if bos_id is None:
        bos_id = getattr(model, "bos_id", None)
        if bos_id is None and getattr(model, "decoder_vocab_size", None) is not None:
            bos_id = int(model.decoder_vocab_size) - 2  # identifiers.base convention: BOS = vocab_size
        if bos_id is None:
            raise ValueError("beam_search needs bos_id (the index's bos_id) when the model has no bos_id attribute")
    steps = constraint.max_steps if max_steps is None else int(max_steps)
    device = batch.tokens.device
    b, k = len(batch), beam_size
    n = b * k
    neg_inf = float("-inf")

    if memory is None:
        memory = model.encode(batch)
    rows = torch.arange(b, device=device).repeat_interleave(k)
    memory = model.expand_memory(memory, rows)  # beams of a query share its memory: expanded once
    batch_mask = batch.mask.index_select(0, rows)
    row_base = (torch.arange(b, device=device) * k).unsqueeze(1)  # [B, 1]

    states = constraint.start(n, device)
    # Optional fast path: constraints whose candidate columns name children directly (TrieConstraint).
    fast_slots = hasattr(constraint, "advance_slot") and states.dim() == 1
    scores = torch.full((b, k), neg_inf, device=device)
    scores[:, 0] = 0.0
    last = torch.full((n,), int(bos_id), dtype=torch.long, device=device)
    history = torch.full((n, steps), -1, dtype=torch.long, device=device)
    cache = None

    for t in range(steps):
        done = constraint.is_done(states)
        live = torch.isfinite(scores).view(-1)
        if not bool((live & ~done).any()):
            history = history[:, :t]
            break
        cand, valid = constraint.candidates(states)
        if cand.shape[1] == 0:  # every state is finished or a dead end
            cand, valid = cand.new_full((n, 1), -1), valid.new_zeros((n, 1))
        # Finished beams: exactly one dummy candidate (token -1, log-prob 0).
        valid = valid & ~done.unsqueeze(1)
        valid[:, 0] |= done
        cand = cand.masked_fill(done.unsqueeze(1), -1)
        model_cand = cand.clamp_min(0)  # padding/dummy slots need a real token id; their logits are ignored

        if normalize == "allowed":
            logits, cache = model.step(memory, batch_mask, last, cache, model_cand)
            logits = logits.float().masked_fill(~valid, neg_inf)
            logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        else:
            full, cache = model.step(memory, batch_mask, last, cache, None)
            logp = torch.log_softmax(full.float(), dim=1).gather(1, model_cand)
        logp = torch.where(valid, logp, neg_inf)
        logp = logp.masked_fill(done.unsqueeze(1) & valid, 0.0)

        width = cand.shape[1]
        total = (scores.view(n, 1) + logp).view(b, k * width)
        top = min(k, k * width)
        scores, flat = total.topk(top, dim=1)
        if top < k:  # fewer candidates than beams (tiny tries): pad with dropped beams
            scores = torch.cat([scores, scores.new_full((b, k - top), neg_inf)], dim=1)
            flat = torch.cat([flat, flat.new_zeros((b, k - top))], dim=1)
        src = (row_base + torch.div(flat, width, rounding_mode="floor")).view(-1)
        col = (flat % width).view(-1)
        chosen_ok = valid[src, col] & torch.isfinite(scores.view(-1))
        token = torch.where(chosen_ok, cand[src, col], -1)

        states = states.index_select(0, src)
        history = history.index_select(0, src)
        last = last.index_select(0, src)
        cache = model.reorder_cache(cache, src)
        history[:, t] = token
        if fast_slots:  # the trie knows the child in each candidate column: no token search
            states = torch.where(token >= 0, constraint.advance_slot(states, col), states)
        else:
            move = (token >= 0).nonzero().squeeze(1)
            if move.numel():
                states = states.clone()
                states[move] = constraint.advance(states[move], token[move])
        last = torch.where(token >= 0, token, last)
        scores = scores.masked_fill(~chosen_ok.view(b, k), neg_inf)

    alive = torch.isfinite(scores) & constraint.is_done(states).view(b, k)
    scores = scores.masked_fill(~alive, neg_inf)
    if length_normalize:
        lengths = (history >= 0).sum(1).clamp_min(1).view(b, k).to(scores.dtype)
        scores = torch.where(alive, scores / lengths, scores)
    scores, order = scores.sort(dim=1, descending=True)
    src = (row_base + order).view(-1)
    return BeamOutput(
        tokens=history.index_select(0, src).view(b, k, -1),
        scores=scores,
        states=states.index_select(0, src),
        alive=alive.gather(1, order),
    )
