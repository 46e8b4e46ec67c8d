"""Identifier ablations that ignore the item vectors.

- ``atomic``: one token per item (identifier length 1; token i IS item i). Decoding is a single
  softmax over the whole catalog: the "no structure" baseline.
- ``random``: random semantic IDs with the shape of an RQ index (TIGER's "Random ID" ablation):
  ``levels`` positions, each drawn from its own codebook of ``codebook_size`` tokens (token of
  level l, code c = ``l * codebook_size + c``), distinct for every item. It answers "does the
  structure learned from vectors matter, at the same length and vocabulary?".

The random *tree* (a balanced SEATER tree over a random partition, same shape as ``seater``) is the
``seater-random`` scheme in :mod:`gr_toolkit.identifiers.tree`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import SCHEMES, IdentifierScheme
from gr_toolkit.identifiers.codes import CodeIndex


@dataclass
class AtomicConfig:
    """The atomic scheme has no options."""


@SCHEMES.register("atomic")
class AtomicScheme(IdentifierScheme):
    """One token per item."""

    name: ClassVar[str] = "atomic"
    config_class: ClassVar[type] = AtomicConfig
    needs_vectors: ClassVar[bool] = False

    def build(self, catalog: Catalog, vectors: np.ndarray | None = None) -> CodeIndex:
        n = len(catalog)
        return CodeIndex(
            scheme=self.name,
            codes=np.arange(n, dtype=np.int64)[:, None],
            lengths=np.ones(n, dtype=np.int64),
            vocab_size=n,
            token_parent=np.full(n, -1, dtype=np.int64),
            token_level=np.zeros(n, dtype=np.int64),
            catalog_fingerprint=catalog.fingerprint(),
            config=dataclasses.asdict(self.config),
            leaf_is_item=True,
        )


@dataclass
class RandomCodesConfig:
    levels: int = 3
    codebook_size: int = 256
    seed: int = 0


def random_distinct_codes(n: int, levels: int, size: int, seed: int) -> np.ndarray:
    """``n`` distinct random codes ``[n, levels]`` with digits in ``0..size-1``."""
    space = size**levels
    if n > space:
        raise ValueError(
            f"random codes: {n} items do not fit in {size}^{levels} = {space} distinct codes; "
            "raise --levels or --codebook-size"
        )
    rng = np.random.default_rng(seed)
    if space <= 4 * n or space < 2**20:
        flat = rng.permutation(space)[:n] if space < 2**26 else rng.choice(space, n, replace=False)
    else:  # sparse: draw with replacement and redraw the (few) collisions
        flat = rng.integers(0, space, size=n, dtype=np.int64)
        while True:
            _, first = np.unique(flat, return_index=True)
            dup = np.setdiff1d(np.arange(n), first)
            if len(dup) == 0:
                break
            flat[dup] = rng.integers(0, space, size=len(dup), dtype=np.int64)
    digits = np.empty((n, levels), dtype=np.int64)
    for lv in range(levels - 1, -1, -1):
        flat, digits[:, lv] = np.divmod(flat, size)
    return digits


@SCHEMES.register("random")
class RandomCodesScheme(IdentifierScheme):
    """Random distinct codes over per-level codebooks (TIGER's random-ID ablation)."""

    name: ClassVar[str] = "random"
    config_class: ClassVar[type] = RandomCodesConfig
    needs_vectors: ClassVar[bool] = False

    def build(self, catalog: Catalog, vectors: np.ndarray | None = None) -> CodeIndex:
        cfg: RandomCodesConfig = self.config
        if cfg.levels < 1 or cfg.codebook_size < 2:
            raise ValueError(f"random codes need levels >= 1 and codebook_size >= 2; got {cfg.levels}, {cfg.codebook_size}")
        n = len(catalog)
        digits = random_distinct_codes(n, cfg.levels, cfg.codebook_size, cfg.seed)
        codes = digits + np.arange(cfg.levels)[None, :] * cfg.codebook_size
        vocab = cfg.levels * cfg.codebook_size
        return CodeIndex(
            scheme=self.name,
            codes=codes,
            lengths=np.full(n, cfg.levels, dtype=np.int64),
            vocab_size=vocab,
            token_parent=np.full(vocab, -1, dtype=np.int64),  # per-level codebooks: no tree parent
            token_level=np.repeat(np.arange(cfg.levels), cfg.codebook_size),
            catalog_fingerprint=catalog.fingerprint(),
            config=dataclasses.asdict(cfg),
        )
