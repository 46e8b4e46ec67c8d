"""From level-aligned RQ codes to identifier token sequences (vocabulary, disambiguation, token tree).

Input: ``level_codes[n, L]`` (codebook entry per RQ level) and a ``keep[n, L]`` mask (False = the token
was pruned for that item). Output: a ``TokenLayout`` that ``CodeIndex`` takes as is.

Two vocabularies:

- per-level codebooks (TIGER-style, default): level ``l`` entry ``c`` is token ``offset_l + c``
  (``offset_l`` = sum of the earlier levels' codebook sizes); disambiguation token ``j`` is
  ``offset_L + j``. Tokens are shared by all parents, so ``token_parent`` is -1 and ``token_level``
  names the RQ level (``L`` for disambiguation tokens). Because token ids carry their level, a pruned
  (shorter) code can never be mistaken for a different level's token.
- ``tokens_are_prefixes``: every distinct code PREFIX is its own token (as in the SEATER tree), so
  ``token_parent`` is a real tree (the alignment loss can read it) and ``token_level`` is the depth.

Disambiguation: items whose kept tokens are identical form a group; member ``j`` of a group gets the
extra token ``j``. ``disambiguate="all"`` appends it to EVERY item when any group has >1 member (codes
stay fixed length, TIGER); ``"colliding"`` appends it only to members of such groups (used for
variable-length, pruned codes: no decode step is spent on items that are already unique).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

PAD = -1


@dataclass
class TokenLayout:
    codes: np.ndarray  # [n, T] token ids, padded with -1
    lengths: np.ndarray  # [n]
    vocab_size: int
    token_parent: np.ndarray  # [V]
    token_level: np.ndarray  # [V]
    level_offsets: list[int]  # per-level vocabulary: first token id of each level (+ disambiguation level)
    n_disambig: int  # disambiguation tokens (0 when every kept code is already unique)
    n_disambiguated_items: int  # items that carry a disambiguation token


def group_rank(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: its rank among identical rows (0..g-1, in item order) and its group's size."""
    _, inv, size = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    order = np.argsort(inv, kind="stable")
    first = np.zeros(len(size), dtype=np.int64)
    first[1:] = np.cumsum(size)[:-1]
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - first[inv[order]]
    return rank, size[inv]


def compact_left(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the non-pad entries of each row to the front (order kept); drop all-pad trailing columns."""
    valid = tokens != PAD
    order = np.argsort(~valid, axis=1, kind="stable")
    packed = np.take_along_axis(tokens, order, axis=1)
    lengths = valid.sum(axis=1)
    width = int(lengths.max()) if len(lengths) else 0
    return packed[:, :width], lengths


def assemble(
    level_codes: np.ndarray,
    codebook_sizes: Sequence[int],
    keep: np.ndarray | None = None,
    disambiguate: Literal["all", "colliding"] = "all",
    tokens_are_prefixes: bool = False,
) -> TokenLayout:
    level_codes = np.asarray(level_codes, dtype=np.int64)
    n, n_levels = level_codes.shape
    keep = np.ones_like(level_codes, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    if keep.shape != level_codes.shape:
        raise ValueError(f"keep mask {keep.shape} does not match codes {level_codes.shape}")
    if not keep.any(axis=1).all():
        bad = int(np.flatnonzero(~keep.any(axis=1))[0])
        raise ValueError(f"item {bad} would have an empty identifier after pruning")
    kept = np.where(keep, level_codes, PAD)

    rank, group_size = group_rank(kept)
    any_collision = bool((group_size > 1).any())
    n_disambig = int(group_size.max()) if any_collision else 0
    if disambiguate == "all":
        has_d = np.full(n, any_collision)
    elif disambiguate == "colliding":
        has_d = group_size > 1
    else:
        raise ValueError(f"disambiguate must be 'all' or 'colliding', got {disambiguate!r}")

    offsets = np.concatenate([[0], np.cumsum(codebook_sizes)]).astype(np.int64)  # L+1 entries
    per_level = np.where(keep, level_codes + offsets[None, :n_levels], PAD)
    d_col = np.where(has_d, offsets[n_levels] + rank, PAD)[:, None]
    tokens, lengths = compact_left(np.concatenate([per_level, d_col], axis=1))
    vocab = int(offsets[n_levels]) + n_disambig
    token_level = np.repeat(np.arange(n_levels + 1), np.diff(np.concatenate([offsets, [vocab]])))
    token_parent = np.full(vocab, -1, dtype=np.int64)
    if tokens_are_prefixes:
        tokens, vocab, token_parent, token_level = prefix_tokens(tokens, lengths)
    return TokenLayout(
        codes=tokens,
        lengths=lengths.astype(np.int64),
        vocab_size=vocab,
        token_parent=token_parent,
        token_level=token_level.astype(np.int64),
        level_offsets=[int(o) for o in offsets],
        n_disambig=n_disambig,
        n_disambiguated_items=int(has_d.sum()),
    )


def prefix_tokens(tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Renumber so that every distinct prefix is one token; returns (codes, vocab, parent, level=depth)."""
    n, width = tokens.shape
    out = np.full_like(tokens, PAD)
    parents: list[np.ndarray] = []
    levels: list[np.ndarray] = []
    next_id = 0
    for depth in range(width):  # one vectorised step per depth (a handful of levels)
        alive = np.flatnonzero(lengths > depth)
        _, first, inv = np.unique(tokens[alive, : depth + 1], axis=0, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        out[alive, depth] = next_id + inv
        parent = out[alive[first], depth - 1] if depth > 0 else np.full(len(first), -1, dtype=np.int64)
        parents.append(parent)
        levels.append(np.full(len(first), depth, dtype=np.int64))
        next_id += len(first)
    return out, next_id, np.concatenate(parents), np.concatenate(levels)
