"""The ``GenerativeRetriever`` seam: one interface for the SEATER encoder-decoder, HF seq2seq and HF
causal LMs, so that one beam search, one set of loss plug-ins and one trainer drive them all.

Decoder token ids follow ``gr_toolkit.identifiers.base`` (identifier tokens, then BOS, then EOS).
``memory`` and ``cache`` are pytrees (dicts/tuples/lists) of tensors whose first dimension is the
batch row; the default ``select`` reorders them with one ``index_select`` per tensor. Models whose
cache is an object (HF ``Cache``) override ``reorder_cache``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._pytree import tree_leaves, tree_map

from gr_toolkit.registry import Registry


@dataclass
class SourceBatch:
    """Encoder input: ``tokens [B, T]`` (item ids for histories, text token ids for queries), ``mask [B, T]``
    (True = real position). Histories are right-aligned or left-aligned as the featurizer chose;
    models must only rely on ``mask``."""

    tokens: torch.Tensor
    mask: torch.Tensor
    kind: str  # "history" | "query"
    #: Precomputed per-position input vectors ``[B, T, F]`` (a frozen pretrained text encoder's token
    #: states, aligned with ``mask``) that a model reads instead of embedding ``tokens``; None = tokens only.
    features: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> SourceBatch:
        feats = None if self.features is None else self.features.to(device)
        return SourceBatch(self.tokens.to(device), self.mask.to(device), self.kind, feats)

    def select(self, rows: torch.Tensor) -> SourceBatch:
        """The batch of ``rows`` (an index tensor), every per-row tensor included."""
        feats = None if self.features is None else self.features.index_select(0, rows)
        return SourceBatch(self.tokens.index_select(0, rows), self.mask.index_select(0, rows), self.kind, feats)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def select_rows(tree: Any, index: torch.Tensor) -> Any:
    """``index_select`` along dim 0 for every tensor in a pytree."""
    return tree_map(lambda t: t.index_select(0, index) if isinstance(t, torch.Tensor) else t, tree)


class GenerativeRetriever(nn.Module, ABC):
    """A sequence model that generates identifier tokens for a source.

    Training uses ``encode`` + ``decode`` (teacher forcing over whole target sequences) + ``score``;
    inference uses ``encode`` + ``step`` (one token at a time with a cache). ``score`` restricted to
    candidate tokens is how SEATER's "softmax over the current node's children only" is expressed,
    and also how a big-vocabulary HF model avoids full-vocabulary logits under a constraint.
    """

    #: Width of pooled states / token embeddings (used by the alignment and ranking losses).
    hidden_size: int

    @abstractmethod
    def encode(self, batch: SourceBatch) -> Any:
        """Encoder memory for a batch (pytree of tensors with batch-first dims)."""

    @abstractmethod
    def decode(self, memory: Any, batch: SourceBatch, decoder_input: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder hidden states ``[B, T, d]`` for ``decoder_input [B, T]`` (BOS first,
        padding -1 allowed after the end)."""

    @abstractmethod
    def score(self, hidden: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        """Logits of ``candidates [..., W]`` given ``hidden [..., d]`` (``None``: the full decoder vocab)."""

    @abstractmethod
    def step(
        self, memory: Any, batch_mask: torch.Tensor, last_tokens: torch.Tensor, cache: Any, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        """One incremental decoding step for ``N`` beams: logits ``[N, W]`` of ``candidates`` given the
        last emitted token ``[N]`` (BOS at step 0) and the cache (``None`` at step 0)."""

    @abstractmethod
    def token_embeddings(self) -> torch.Tensor:
        """The identifier-token embedding table ``[decoder_vocab, d]`` (alignment loss)."""

    def pool_memory(self, memory: Any, batch: SourceBatch) -> torch.Tensor:
        """Mean-pooled encoder states ``[B, d]`` (ranking loss ``z_x``). Default: ``memory['states']``."""
        states = memory["states"]
        m = batch.mask.unsqueeze(-1).to(states.dtype)
        return (states * m).sum(1) / m.sum(1).clamp_min(1.0)

    def expand_memory(self, memory: Any, index: torch.Tensor) -> Any:
        return select_rows(memory, index)

    def item_vector_widths(self) -> tuple[int, ...]:
        """Widths of item vectors :func:`~gr_toolkit.models.vector_init.init_tokens_from_item_vectors` accepts:
        the token width, plus any width :meth:`adopt_item_vectors` can reduce."""
        return (int(self.token_embeddings().shape[1]),)

    def adopt_item_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Item vectors at the token width (default: they must already be). A model may reduce wider
        vectors and set up its own layers to match (SEATER's source skip)."""
        width = int(self.token_embeddings().shape[1])
        if vectors.shape[1] != width:
            raise ValueError(f"item vectors are {vectors.shape[1]}-d, token embeddings {width}-d")
        return vectors

    def broadcast_memory(self, memory: Any, width: int) -> Any:
        """Memory for ``width`` consecutive rows per source (the beams of a query), i.e.
        ``expand_memory(memory, arange(B).repeat_interleave(width))``. Models whose attention can read
        one memory row for a group of decoder rows override this to copy nothing."""
        first = next(t for t in tree_leaves(memory) if isinstance(t, torch.Tensor))
        rows = torch.arange(first.shape[0], device=first.device).repeat_interleave(width)
        return self.expand_memory(memory, rows)

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        return select_rows(cache, index)


MODELS: Registry[Any] = Registry("model")
