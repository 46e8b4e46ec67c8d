"""``CodeIndex``: the index for schemes where each item has ONE token sequence (tree, RQ, random, atomic).

Codes may have equal length (balanced tree) or variable length (pruned RQ); variable-length codes end
with the EOS token in decoding so that a code that is a prefix of another stays decodable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.decoding.constraint import Constraint
from gr_toolkit.identifiers.base import INDEX_TYPES, BeamOutput, ItemIndex, RankedItems

PAD = -1


@INDEX_TYPES.register("codes")
class CodeIndex(ItemIndex):
    """Per-item codes ``[n_items, max_len]`` (padded with -1) over a vocabulary with parent/level structure.

    ``token_parent[t]`` is the token that must precede ``t`` (-1 for first-level tokens) when the
    vocabulary is a tree (every node its own token: SEATER, and RQ with ``tokens_are_prefixes``);
    for per-level codebooks it is -1 everywhere and ``token_level`` carries the level.
    ``leaf_is_item`` says that token ``i`` of the last level is item ``i`` (SEATER shares those
    embeddings with the item embeddings of the encoder).
    """

    index_type: ClassVar[str] = "codes"

    def __init__(
        self,
        scheme: str,
        codes: np.ndarray,
        lengths: np.ndarray,
        vocab_size: int,
        token_parent: np.ndarray,
        token_level: np.ndarray,
        catalog_fingerprint: str,
        config: dict[str, Any] | None = None,
        leaf_is_item: bool = False,
        extras: dict[str, np.ndarray] | None = None,
        meta_extra: dict[str, Any] | None = None,
    ) -> None:
        self.scheme = scheme
        self.codes = np.asarray(codes, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.n_items = int(self.codes.shape[0])
        self.vocab_size = int(vocab_size)
        self.token_parent = np.asarray(token_parent, dtype=np.int64)
        self.token_level = np.asarray(token_level, dtype=np.int64)
        self.catalog_fingerprint = catalog_fingerprint
        self.config = dict(config or {})
        self.leaf_is_item = bool(leaf_is_item)
        self.extras = dict(extras or {})
        self.meta_extra = dict(meta_extra or {})
        self._constraints: dict[str, Constraint] = {}
        self.validate()

    # -- structure -------------------------------------------------------------------------------
    @property
    def variable_length(self) -> bool:
        return bool(self.n_items and self.lengths.min() != self.lengths.max())

    @property
    def max_length(self) -> int:
        return int(self.codes.shape[1])

    def validate(self) -> None:
        """Fail loudly on codes that cannot be decoded: out-of-range tokens, bad padding, duplicates."""
        c, n = self.codes, self.n_items
        if c.ndim != 2 or self.lengths.shape != (n,):
            raise ArtifactError(f"codes must be [n_items, max_len] with one length per item; got {c.shape}, {self.lengths.shape}")
        if n == 0:
            raise ArtifactError("an index needs at least one item")
        if (self.lengths < 1).any() or (self.lengths > c.shape[1]).any():
            raise ArtifactError("every item needs a code of length 1..max_len")
        pos = np.arange(c.shape[1])[None, :]
        inside = pos < self.lengths[:, None]
        if ((c < 0) | (c >= self.vocab_size))[inside].any():
            bad = int(np.argwhere(((c < 0) | (c >= self.vocab_size)) & inside)[0, 0])
            raise ArtifactError(f"item {bad}: code {c[bad].tolist()} has tokens outside 0..{self.vocab_size - 1}")
        if (c[~inside] != PAD).any():
            raise ArtifactError("codes must be padded with -1 after their length")
        uniq = np.unique(np.concatenate([c, self.lengths[:, None]], axis=1), axis=0)
        if len(uniq) != n:
            raise ArtifactError(f"{n - len(uniq)} items share an identifier with another item; codes must be unique")
        if self.token_parent.shape != (self.vocab_size,) or self.token_level.shape != (self.vocab_size,):
            raise ArtifactError("token_parent and token_level need one entry per identifier token")

    def decoder_targets(self, items: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Teacher-forcing targets ``[B, T]`` (decoder vocab): the code, then EOS for variable-length
        indexes, padded with -1. ``T`` = max_len (+1 with EOS)."""
        items = torch.as_tensor(np.asarray(items), dtype=torch.long)
        codes = torch.from_numpy(self.codes)[items]
        if not self.variable_length:
            return codes
        lengths = torch.from_numpy(self.lengths)[items]
        out = torch.cat([codes, torch.full((len(items), 1), PAD, dtype=torch.long)], dim=1)
        out[torch.arange(len(items)), lengths] = self.eos_id
        return out

    # -- decoding --------------------------------------------------------------------------------
    def constraint(self, device: torch.device | str = "cpu") -> Constraint:
        key = str(device)
        if key not in self._constraints:
            from gr_toolkit.decoding.trie import TrieConstraint

            self._constraints[key] = TrieConstraint.from_codes(
                self.codes, self.lengths, eos_id=self.eos_id if self.variable_length else None
            ).to(device)
        return self._constraints[key]

    def rank(self, beams: BeamOutput, top_k: int) -> RankedItems:
        b, beam = beams.scores.shape
        items = self.constraint(beams.states.device).items_of(beams.states).view(b, beam)
        scores = beams.scores.masked_fill(~beams.alive | (items < 0), float("-inf"))
        k = min(top_k, beam)
        top_scores, order = scores.topk(k, dim=1)
        top_items = items.gather(1, order).masked_fill(torch.isinf(top_scores), -1)
        if k < top_k:  # fewer beams than K: pad with empty slots
            pad = top_k - k
            top_items = torch.cat([top_items, top_items.new_full((b, pad), -1)], dim=1)
            top_scores = torch.cat([top_scores, top_scores.new_full((b, pad), float("-inf"))], dim=1)
        return RankedItems(items=top_items, scores=top_scores)

    # -- persistence -----------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        base = {
            "codes": self.codes,
            "lengths": self.lengths,
            "token_parent": self.token_parent,
            "token_level": self.token_level,
        }
        clash = set(base) & set(self.extras)
        if clash:
            raise ArtifactError(f"extra arrays may not reuse reserved names: {sorted(clash)}")
        return {**base, **{f"extra__{k}": v for k, v in self.extras.items()}}

    def meta(self) -> dict[str, Any]:
        return {"leaf_is_item": self.leaf_is_item, **self.meta_extra}

    @classmethod
    def from_saved(cls, manifest: dict[str, Any], arrays: dict[str, np.ndarray], directory: Path) -> CodeIndex:
        meta = dict(manifest["meta"])
        leaf = meta.pop("leaf_is_item", False)
        extras = {k[len("extra__"):]: v for k, v in arrays.items() if k.startswith("extra__")}
        return cls(
            scheme=manifest["scheme"],
            codes=arrays["codes"],
            lengths=arrays["lengths"],
            vocab_size=manifest["vocab_size"],
            token_parent=arrays["token_parent"],
            token_level=arrays["token_level"],
            catalog_fingerprint=manifest["catalog_fingerprint"],
            config=manifest["config"],
            leaf_is_item=leaf,
            extras=extras,
            meta_extra=meta,
        )
