"""The ``Constraint`` seam: which identifier tokens may come next, for a whole batch of beams at once.

A constraint is a small state machine over the decoder vocabulary. States are a tensor whose first
dimension is the beam (``[N]`` for a trie node id, ``[N, S]`` for e.g. FM-index ranges), so the beam
search can reorder them with one ``index_select``. Every call is batched; implementations must not
loop over beams in Python.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Constraint(ABC):
    """Answers "which tokens may follow?" for a batch of beam states, and advances them."""

    #: Longest identifier, in decoding steps (EOS included where the scheme uses one).
    max_steps: int

    @abstractmethod
    def start(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """States for ``n`` empty prefixes."""

    @abstractmethod
    def candidates(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [N, W], valid [N, W])``: allowed next tokens per state, padded to the batch's widest.

        A state with no valid candidate and ``is_done`` False is a dead end: the decoder drops that
        beam, it never decodes it unconstrained.
        """

    @abstractmethod
    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """States after appending ``tokens [N]`` (which must be among the candidates)."""

    @abstractmethod
    def is_done(self, states: torch.Tensor) -> torch.Tensor:
        """``[N]`` bool: the prefix is a complete identifier and nothing more is decoded for it."""

    def items_of(self, states: torch.Tensor) -> torch.Tensor:
        """``[N]`` internal item id of a finished identifier state, -1 where it names no single item.

        Schemes whose identifiers map to many items (lexical spans) return -1 and resolve items in
        their ``ItemIndex.rank``.
        """
        return torch.full(states.shape[:1], -1, dtype=torch.long, device=states.device)

    def to(self, device: torch.device | str) -> Constraint:
        return self
