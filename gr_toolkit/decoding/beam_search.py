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
decoded unconstrained. Step 0 decodes one row per query (the empty prefix), so no duplicates appear;
afterwards the number of rows per query is the most finite candidates any query had, capped at
``beam_size`` (a k-ary tree decodes 1, k, k^2, ... rows until the beam is full), so the model never
runs on filler rows of the first steps. The memory is re-expanded (``model.expand_memory``) when
that width changes.

Cost per step: O(N * W) for constraint and selection plus one model step over N <= B * beam rows;
memory O(N * (W + T)) besides the model cache.
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
    neg_inf = float("-inf")

    if memory is None:
        memory = model.encode(batch)
    query = torch.arange(b, device=device)

    def expanded(width: int) -> tuple[Any, torch.Tensor]:
        """Memory and source mask with ``width`` rows per query (beams of a query share its memory)."""
        rows = query.repeat_interleave(width)
        return model.broadcast_memory(memory, width), batch.mask.index_select(0, rows)

    # Live width: rows per query actually decoded. It starts at 1 (only beam 0 exists at step 0) and
    # grows to ``beam_size`` as soon as the constraint offers enough candidates, so the first steps of
    # a tree (1, then k beams) do not run the model on -inf filler rows.
    width_live = 1
    mem, batch_mask = expanded(width_live)
    states = constraint.start(b, device)
    # Optional fast path: constraints whose candidate columns name children directly (TrieConstraint).
    fast_slots = hasattr(constraint, "advance_slot") and states.dim() == 1
    scores = torch.zeros((b, 1), device=device)
    last = torch.full((b,), int(bos_id), dtype=torch.long, device=device)
    history = torch.full((b, steps), -1, dtype=torch.long, device=device)
    token_logp = torch.zeros((b, steps), device=device)  # per-token log-probabilities (BeamOutput.token_scores)
    cache = None

    for t in range(steps):
        n = b * width_live
        done = constraint.is_done(states)
        live = torch.isfinite(scores).view(-1)
        if not bool((live & ~done).any()):
            history, token_logp = history[:, :t], token_logp[:, :t]
            break
        cand, valid = constraint.candidates(states)
        if cand.shape[1] == 0:  # every state is finished or a dead end
            cand, valid = cand.new_full((n, 1), -1), valid.new_zeros((n, 1))
        any_done = bool(done.any())
        if any_done:  # finished beams: exactly one dummy candidate (token -1, log-prob 0)
            valid = valid & ~done.unsqueeze(1)
            valid[:, 0] |= done
            cand = cand.masked_fill(done.unsqueeze(1), -1)
        model_cand = cand.clamp_min(0)  # padding/dummy slots need a real token id; their logits are ignored

        if normalize == "allowed":
            logits, cache = model.step(mem, batch_mask, last, cache, model_cand)
            logits = logits.float().masked_fill(~valid, neg_inf)
            logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        else:
            full, cache = model.step(mem, batch_mask, last, cache, None)
            logp = torch.log_softmax(full.float(), dim=1).gather(1, model_cand)
        logp = torch.where(valid, logp, neg_inf)
        if any_done:
            logp = logp.masked_fill(done.unsqueeze(1) & valid, 0.0)

        cw = cand.shape[1]
        total = (scores.view(n, 1) + logp).view(b, width_live * cw)
        # Next live width: the most finite candidates any query has, capped at the beam size.
        new_width = min(k, int(torch.isfinite(total).sum(1).max()))
        new_width = max(new_width, 1)
        scores, flat = total.topk(new_width, dim=1)
        row_base = (query * width_live).unsqueeze(1)
        src = (row_base + torch.div(flat, cw, rounding_mode="floor")).view(-1)
        col = (flat % cw).view(-1)
        chosen_ok = valid[src, col] & torch.isfinite(scores.view(-1))
        token = torch.where(chosen_ok, cand[src, col], -1)
        chosen_logp = logp[src, col]

        states = states.index_select(0, src)
        history = history.index_select(0, src)
        token_logp = token_logp.index_select(0, src)
        last = last.index_select(0, src)
        cache = model.reorder_cache(cache, src)
        if new_width != width_live:
            width_live = new_width
            mem, batch_mask = expanded(width_live)
        history[:, t] = token
        token_logp[:, t] = torch.where(token >= 0, chosen_logp, 0.0)
        if fast_slots:  # the trie knows the child in each candidate column: no token search
            states = torch.where(token >= 0, constraint.advance_slot(states, col), states)
        else:
            move = (token >= 0).nonzero().squeeze(1)
            if move.numel():
                states = states.clone()
                states[move] = constraint.advance(states[move], token[move])
        last = torch.where(token >= 0, token, last)
        scores = scores.masked_fill(~chosen_ok.view(b, width_live), neg_inf)

    alive = torch.isfinite(scores) & constraint.is_done(states).view(b, width_live)
    scores = scores.masked_fill(~alive, neg_inf)
    if length_normalize:
        lengths = (history >= 0).sum(1).clamp_min(1).view(b, width_live).to(scores.dtype)
        scores = torch.where(alive, scores / lengths, scores)
    scores, order = scores.sort(dim=1, descending=True)
    src = ((query * width_live).unsqueeze(1) + order).view(-1)
    history = history.index_select(0, src).view(b, width_live, -1)
    token_logp = token_logp.index_select(0, src).view(b, width_live, -1)
    states = states.index_select(0, src)
    alive = alive.gather(1, order)
    if width_live < k:  # fewer identifiers than beams: pad with dropped beams (start states, no tokens)
        pad = k - width_live
        history = torch.cat([history, history.new_full((b, pad, history.shape[2]), -1)], dim=1)
        token_logp = torch.cat([token_logp, token_logp.new_zeros((b, pad, token_logp.shape[2]))], dim=1)
        scores = torch.cat([scores, scores.new_full((b, pad), neg_inf)], dim=1)
        alive = torch.cat([alive, alive.new_zeros((b, pad))], dim=1)
        filler = constraint.start(b * pad, device).view(b, pad, *states.shape[1:])
        states = torch.cat([states.view(b, width_live, *states.shape[1:]), filler], dim=1).view(b * k, *states.shape[1:])
    return BeamOutput(tokens=history, scores=scores, states=states, alive=alive, token_scores=token_logp)
