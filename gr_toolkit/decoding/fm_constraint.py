"""``FMIndexConstraint``: decode one or more spans, each of which occurs in some title (SEAL-style).

A decoded identifier is ``span (SEP span)* EOS``: up to ``n_spans`` spans of 1..``max_span_len``
corpus tokens, joined by the separator token. While a span is open, the allowed tokens are exactly
those that follow it somewhere in the corpus (from the suffix-array index), so every generated
span is a substring of at least one title. After a separator the next span starts again from the
whole corpus. Where a span has no continuation (it reached the end of every title it occurs in, or
``max_span_len``), only the separator and EOS remain: the span is finished, never decoded
unconstrained. Spans are bounded in number and length, so decoding always terminates within
``max_steps = n_spans * (max_span_len + 1)`` steps.

State per beam (``LongTensor [N, 5]``): ``lo, hi`` (suffix-array range of the open span), ``span_len``
(tokens in the open span), ``spans_done`` (closed spans), ``done`` (EOS emitted). The next-token
computation runs in numpy on the CPU (the index lives there); results move to the states' device.
"""

from __future__ import annotations

import numpy as np
import torch

from gr_toolkit.decoding.constraint import Constraint
from gr_toolkit.identifiers.fm_index import TokenSuffixIndex

LO, HI, SPAN_LEN, SPANS_DONE, DONE = range(5)
STATE_WIDTH = 5


class FMIndexConstraint(Constraint):
    """Constrain decoding to spans of the indexed corpus (see the module docstring).

    ``separator_id`` and ``eos_id`` are decoder-vocabulary ids outside the corpus alphabet
    (``index.vocab_size`` tokens). ``min_span_tokens``: a span shorter than this may end only where
    it cannot continue (e.g. at the end of a title).
    """

    def __init__(
        self,
        index: TokenSuffixIndex,
        separator_id: int,
        eos_id: int,
        n_spans: int = 3,
        max_span_len: int = 8,
        min_span_tokens: int = 1,
    ) -> None:
        if n_spans < 1:
            raise ValueError(f"n_spans must be >= 1, got {n_spans}")
        if max_span_len < 1 or not 1 <= min_span_tokens <= max_span_len:
            raise ValueError(
                f"need 1 <= min_span_tokens <= max_span_len, got min_span_tokens={min_span_tokens}, "
                f"max_span_len={max_span_len}"
            )
        for name, tok in (("separator_id", separator_id), ("eos_id", eos_id)):
            if tok < index.vocab_size:
                raise ValueError(f"{name}={tok} collides with corpus tokens 0..{index.vocab_size - 1}")
        if separator_id == eos_id:
            raise ValueError("separator_id and eos_id must differ")
        self.index = index
        self.separator_id = int(separator_id)
        self.eos_id = int(eos_id)
        self.n_spans = int(n_spans)
        self.max_span_len = int(max_span_len)
        self.min_span_tokens = int(min_span_tokens)
        self.max_steps = self.n_spans * (self.max_span_len + 1)

    def start(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        states = torch.zeros(n, STATE_WIDTH, dtype=torch.long, device=device)
        states[:, HI] = self.index.root[1]
        return states

    def candidates(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        st = states.detach().cpu().numpy()
        n = len(st)
        lo, hi, span_len = st[:, LO], st[:, HI], st[:, SPAN_LEN]
        done = st[:, DONE] > 0
        alive = ~done & (hi > lo)  # an empty range only arises from an invalid token: a dead end
        can_grow = alive & (span_len < self.max_span_len)
        rows = np.flatnonzero(can_grow)
        nt = self.index.next_tokens_batch(np.stack([lo[rows], hi[rows]], axis=1), span_len[rows], with_counts=False)
        n_cont = np.zeros(n, dtype=np.int64)
        n_cont[rows] = nt.widths
        can_end = alive & (span_len >= 1) & ((span_len >= self.min_span_tokens) | (n_cont == 0))
        allow_sep = can_end & (st[:, SPANS_DONE] + 1 < self.n_spans)
        allow_eos = can_end
        width = n_cont + allow_sep + allow_eos
        w = max(1, int(width.max(initial=0)))
        tokens = np.zeros((n, w), dtype=np.int64)
        valid = np.arange(w)[None, :] < width[:, None]
        # Continuations fill columns 0..n_cont-1 of their row, then SEP, then EOS (flat scatter).
        flat = tokens.reshape(-1)
        shift = rows * w - nt.offsets[:-1]
        flat[np.arange(len(nt.tokens)) + np.repeat(shift, nt.widths)] = nt.tokens
        sep_rows = np.flatnonzero(allow_sep)
        tokens[sep_rows, n_cont[sep_rows]] = self.separator_id
        eos_rows = np.flatnonzero(allow_eos)
        tokens[eos_rows, n_cont[eos_rows] + allow_sep[eos_rows]] = self.eos_id
        dev = states.device
        return torch.from_numpy(tokens).to(dev), torch.from_numpy(valid).to(dev)

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        st = states.detach().cpu().numpy().copy()
        tok = tokens.detach().cpu().numpy().astype(np.int64).ravel()
        if len(tok) != len(st):
            raise ValueError(f"advance got {len(tok)} tokens for {len(st)} states")
        live = st[:, DONE] == 0
        is_eos = live & (tok == self.eos_id)
        is_sep = live & (tok == self.separator_id)
        is_span = live & ~is_eos & ~is_sep
        # Tokens that were not candidates leave an empty range: the beam becomes a dead end.
        bad_sep = is_sep & ((st[:, SPAN_LEN] == 0) | (st[:, SPANS_DONE] + 1 >= self.n_spans))
        bad_span = is_span & (st[:, SPAN_LEN] >= self.max_span_len)
        st[is_eos, DONE] = 1
        st[is_eos | is_sep, SPANS_DONE] += 1
        st[is_sep, LO], st[is_sep, HI], st[is_sep, SPAN_LEN] = 0, self.index.root[1], 0
        rows = np.flatnonzero(is_span)
        if len(rows):
            new_lo, new_hi = self.index.narrow(st[rows, LO], st[rows, HI], st[rows, SPAN_LEN], tok[rows])
            st[rows, LO], st[rows, HI] = new_lo, new_hi
            st[rows, SPAN_LEN] += 1
        dead = bad_sep | bad_span
        st[dead, LO] = st[dead, HI] = 0
        return torch.from_numpy(st).to(states.device)

    def is_done(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, DONE] > 0
