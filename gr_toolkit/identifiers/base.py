"""The ``IdentifierScheme`` / ``ItemIndex`` seam.

A scheme turns a catalog (+ item vectors) into an ``ItemIndex``: per item a token sequence over the
index's identifier vocabulary, the vocabulary's structure (parent and level of every token), a
``Constraint`` for decoding, and the way back from decoded sequences to ranked items.

Token-id convention shared by every scheme, model and the decoder: identifier tokens are
``0..vocab_size-1``; ``bos_id = vocab_size`` starts decoding; ``eos_id = vocab_size + 1`` ends a
variable-length identifier; ``decoder_vocab_size = vocab_size + 2``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from gr_toolkit.artifacts import (
    ArtifactError,
    atomic_dir,
    read_arrays,
    read_manifest,
    require_fields,
    write_arrays,
    write_manifest,
)
from gr_toolkit.data.types import Catalog
from gr_toolkit.decoding.constraint import Constraint
from gr_toolkit.registry import Registry

INDEX_FORMAT_VERSION = 1


@dataclass
class RankedItems:
    """Top-K retrieval output for a batch: ``items[b, j]`` (internal id, -1 = empty slot) and scores."""

    items: torch.Tensor  # [B, K] long
    scores: torch.Tensor  # [B, K] float
    # Optional per-result explanation (e.g. the matched spans of a lexical index).
    evidence: list[list[Any]] | None = None


@dataclass
class BeamOutput:
    """What the constrained beam search hands to ``ItemIndex.rank``."""

    tokens: torch.Tensor  # [B, beam, T] decoded tokens (decoder vocab), padded with -1
    scores: torch.Tensor  # [B, beam] sequence log-probabilities, -inf for dropped beams
    states: torch.Tensor  # [B * beam, ...] final constraint states
    alive: torch.Tensor  # [B, beam] bool: a complete, valid identifier
    #: [B, beam, T] log-probability of each decoded token (0 on padding), when the search records them;
    #: lets a ranker score parts of an identifier (e.g. each span of a lexical identifier) on their own.
    token_scores: torch.Tensor | None = None


class ItemIndex(ABC):
    """A built index. Subclasses register their loader in ``INDEX_TYPES`` under ``index_type``."""

    index_type: ClassVar[str]
    scheme: str
    n_items: int
    vocab_size: int
    config: dict[str, Any]
    catalog_fingerprint: str

    @property
    def bos_id(self) -> int:
        return self.vocab_size

    @property
    def eos_id(self) -> int:
        return self.vocab_size + 1

    @property
    def decoder_vocab_size(self) -> int:
        return self.vocab_size + 2

    @abstractmethod
    def constraint(self, device: torch.device | str = "cpu") -> Constraint: ...

    @abstractmethod
    def rank(self, beams: BeamOutput, top_k: int) -> RankedItems:
        """Map decoded identifiers back to items and return the top ``top_k`` per query."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """Arrays to persist (numeric only)."""

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """JSON-serialisable fields to persist besides the arrays."""

    @classmethod
    @abstractmethod
    def from_saved(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], directory: Path) -> ItemIndex: ...

    def extra_files(self, directory: Path) -> None:  # noqa: B027 - optional hook
        """Write non-array files (e.g. a sentencepiece model) into ``directory`` before it is published."""

    # -- persistence -----------------------------------------------------------------------------
    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        directory = Path(directory)
        with atomic_dir(directory, overwrite=overwrite) as tmp:
            entries = write_arrays(tmp, self.arrays())
            self.extra_files(tmp)
            write_manifest(
                tmp,
                {
                    "format": "gr-toolkit-index",
                    "version": INDEX_FORMAT_VERSION,
                    "index_type": self.index_type,
                    "scheme": self.scheme,
                    "n_items": int(self.n_items),
                    "vocab_size": int(self.vocab_size),
                    "catalog_fingerprint": self.catalog_fingerprint,
                    "config": self.config,
                    "meta": self.meta(),
                    "arrays": entries,
                },
            )
        return directory


def load_index(directory: str | Path, catalog: Catalog | None = None) -> ItemIndex:
    """Load any saved index; with ``catalog``, refuse one built for a different catalog."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("format") != "gr-toolkit-index":
        raise ArtifactError(f"{directory}: not a gr-toolkit index (format={manifest.get('format')!r})")
    if manifest.get("version") != INDEX_FORMAT_VERSION:
        raise ArtifactError(
            f"{directory}: index format version {manifest.get('version')} is not supported (expected {INDEX_FORMAT_VERSION})"
        )
    require_fields(manifest, ("catalog_fingerprint", "index_type", "arrays"), directory)
    if catalog is not None and manifest["catalog_fingerprint"] != catalog.fingerprint():
        raise ArtifactError(
            f"{directory}: index was built for catalog fingerprint {manifest['catalog_fingerprint']}, "
            f"but catalog {catalog.name!r} has {catalog.fingerprint()} (different items or order)"
        )
    cls = INDEX_TYPES.get(manifest["index_type"])
    arrays = read_arrays(directory, manifest["arrays"])
    index = cls.from_saved(manifest, arrays, directory)
    return index


def manifest_summary(directory: str | Path) -> str:
    m = read_manifest(directory)
    return json.dumps({k: m[k] for k in ("scheme", "index_type", "n_items", "vocab_size", "config")}, indent=2)


INDEX_TYPES: Registry[type[ItemIndex]] = Registry("index type")


class IdentifierScheme(ABC):
    """Builds an ``ItemIndex`` from a catalog and item vectors. Register with ``SCHEMES``."""

    name: ClassVar[str]
    #: Whether ``build`` consumes item vectors (lexical schemes read titles only).
    needs_vectors: ClassVar[bool] = True
    #: The scheme's config dataclass (loadable from YAML, overridable with ``--field value``).
    config_class: ClassVar[type]

    def __init__(self, config: Any | None = None) -> None:
        self.config = config if config is not None else self.config_class()

    @abstractmethod
    def build(self, catalog: Catalog, vectors: np.ndarray | None) -> ItemIndex: ...


SCHEMES: Registry[type[IdentifierScheme]] = Registry("identifier scheme")
