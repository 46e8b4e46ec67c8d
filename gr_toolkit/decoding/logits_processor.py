"""``ConstraintLogitsProcessor``: the SAME ``Constraint`` as a ``transformers`` ``LogitsProcessor``.

Use it with ``model.generate(..., logits_processor=LogitsProcessorList([proc]))`` for HF seq2seq or
causal LMs whose vocabulary holds the identifier tokens at ``token_map[t]`` (identifier token ``t`` <->
HF id ``token_map[t]``; the constraint's own EOS, if it has one, maps to the HF ``eos_token_id``).

Each call re-derives the constraint states of every row from the generated suffix of ``input_ids``
(``input_ids[:, prefix_length:]``) with one batched ``advance`` per generated position: O(T) batched
ops per call, O(T^2) per generation with T the identifier length (a handful). Recomputing is what makes
it correct under ``generate``'s beam reordering without tracking beam indices.

Per row: allowed = the constraint's candidates (mapped to HF ids); a complete identifier allows only
EOS; a row whose prefix left the constraint (a dead end, or a token the processor did not allow)
allows only EOS with score ``dead_end_score``, so it ends and ranks last; it is never decoded
unconstrained. Cost per call: O(R * (T * W + V)) for R rows and HF vocab V (the mask write).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from gr_toolkit.decoding.constraint import Constraint


class ConstraintLogitsProcessor(LogitsProcessor):
    """Constrain ``generate()`` to the identifiers of ``constraint``."""

    def __init__(
        self,
        constraint: Constraint,
        token_map: Sequence[int] | np.ndarray | torch.Tensor,
        eos_token_id: int,
        prefix_length: int = 1,
        pad_token_id: int | None = None,
        dead_end_score: float = -1e4,
    ) -> None:
        """``prefix_length``: columns of ``input_ids`` before the first generated identifier token (1 for
        encoder-decoders: the decoder start token; the (left-padded) prompt length for causal LMs)."""
        token_map = torch.as_tensor(np.asarray(token_map), dtype=torch.long).clone()
        eos_constraint = getattr(constraint, "eos_id", None)
        if eos_constraint is not None:  # the constraint's EOS is the HF EOS
            if token_map.numel() <= eos_constraint:
                token_map = torch.cat([token_map, token_map.new_full((eos_constraint + 1 - token_map.numel(),), -1)])
            token_map[eos_constraint] = eos_token_id
        mapped = token_map[token_map >= 0]
        if mapped.unique().numel() != mapped.numel():
            raise ValueError("token_map must map identifier tokens to distinct HF token ids")
        self.constraint = constraint
        self.token_map = token_map
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = pad_token_id
        self.prefix_length = int(prefix_length)
        self.dead_end_score = float(dead_end_score)
        hf_max = int(token_map.max()) + 1
        self.inverse = torch.full((max(hf_max, self.eos_token_id + 1),), -1, dtype=torch.long)
        ids = torch.nonzero(token_map >= 0).squeeze(1)
        self.inverse[token_map[ids]] = ids
        self._device: torch.device | None = None

    def _on(self, device: torch.device) -> None:
        if self._device != device:
            self.constraint = self.constraint.to(device)
            self.token_map = self.token_map.to(device)
            self.inverse = self.inverse.to(device)
            self._device = device

    def states(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(states, finished, dead)`` per row, re-derived from the generated suffix.

        ``finished``: the row emitted EOS (or pad) after a complete identifier; ``dead``: the row left
        the constraint (a token that was not allowed, or EOS/pad before the identifier was complete).
        """
        self._on(input_ids.device)
        c = self.constraint
        gen = input_ids[:, self.prefix_length :]
        rows = gen.shape[0]
        states = c.start(rows, input_ids.device)
        finished = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
        dead = torch.zeros_like(finished)
        for j in range(gen.shape[1]):  # loop over generated positions only
            hf = gen[:, j]
            in_range = (hf >= 0) & (hf < self.inverse.numel())
            tok = torch.where(in_range, self.inverse[hf.clamp(0, self.inverse.numel() - 1)], -1)
            ending = hf == self.eos_token_id
            if self.pad_token_id is not None:
                ending |= hf == self.pad_token_id
            done = c.is_done(states)
            active = ~finished & ~dead
            # A complete identifier followed by EOS/pad: finished (beyond it everything is ignored).
            finished |= active & done & ending
            stepping = active & ~done
            cand, valid = c.candidates(states)
            ok = stepping & ((cand == tok.unsqueeze(1)) & valid & (tok.unsqueeze(1) >= 0)).any(1)
            dead |= (active & ~done & ~ok) | (active & done & ~ending)
            move = ok.nonzero().squeeze(1)
            if move.numel():
                states = states.clone()
                states[move] = c.advance(states[move], tok[move])
        return states, finished, dead

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        states, finished, dead = self.states(input_ids)
        c = self.constraint
        rows, vocab = scores.shape
        if self.inverse.numel() > vocab:
            raise ValueError(f"token_map uses HF ids up to {self.inverse.numel() - 1}, but scores have only {vocab}")
        cand, valid = c.candidates(states)
        complete = c.is_done(states)
        dead = dead | (~finished & ~complete & ~valid.any(1))  # a dead end: nothing may follow
        done = complete & ~finished & ~dead
        stepping = ~finished & ~dead & ~done
        valid = valid & stepping.unsqueeze(1)
        hf_cand = self.token_map[cand.clamp_min(0)]
        # Empty slots write into a spare last column (scatter with duplicate indices must only write True).
        allowed = torch.zeros((rows, vocab + 1), dtype=torch.bool, device=scores.device)
        allowed.scatter_(1, torch.where(valid & (hf_cand >= 0), hf_cand, vocab), True)
        allowed = allowed[:, :vocab]
        allowed[:, self.eos_token_id] |= done | finished | dead
        if self.pad_token_id is not None:
            allowed[:, self.pad_token_id] |= finished
        out = scores.masked_fill(~allowed, float("-inf"))
        out[:, self.eos_token_id] = torch.where(dead, self.dead_end_score, out[:, self.eos_token_id])
        return out
