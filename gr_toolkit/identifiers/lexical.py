"""The ``lexical`` scheme: items identified by spans of their titles, decoded over a suffix-array index.

Build: train a sentencepiece tokenizer on the catalog's titles (case-folded), tokenize every title,
and index the token sequences (``TokenSuffixIndex``: spans never cross titles). No item vectors.

Token convention (``identifiers.base``): identifier tokens are the sentencepiece ids
``0..sp_vocab-1`` plus the span SEPARATOR ``= sp_vocab``; so ``vocab_size = sp_vocab + 1``,
``bos_id = sp_vocab + 1``, ``eos_id = sp_vocab + 2``. A decoded identifier is
``span (SEP span)* EOS`` (``FMIndexConstraint``); ``rank`` maps it back to items with SEAL scoring.

Training targets depend on the query, not only on the item: ``decoder_targets(items, queries)``
returns "query -> multi-span" targets (``spans.multispan_targets``), or the SEAL single-span /
title baselines (``target_mode``). Without queries (history data) the spans are chosen by corpus
rarity alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.data.types import Catalog
from gr_toolkit.decoding.constraint import Constraint
from gr_toolkit.decoding.fm_constraint import FMIndexConstraint
from gr_toolkit.identifiers.base import (
    INDEX_TYPES,
    SCHEMES,
    BeamOutput,
    IdentifierScheme,
    ItemIndex,
    RankedItems,
)
from gr_toolkit.identifiers.fm_index import TokenSuffixIndex
from gr_toolkit.identifiers.spans import TARGET_MODES, multispan_targets
from gr_toolkit.retrieval.seal_scoring import seal_rank
from gr_toolkit.text.tokenizer import SentencePieceTokenizer

TOKENIZER_FILE = "tokenizer.model"
FM_PREFIX = "fm__"
PAD = -1


@dataclass
class LexicalConfig:
    """Options of the ``lexical`` scheme (YAML: ``indexes/configs/lexical.yaml``; CLI: ``--name value``)."""

    #: Catalog text field whose spans identify an item.
    text_field: str = "title"
    #: Only "sentencepiece" (trained on the catalog's titles) is built in.
    tokenizer: str = "sentencepiece"
    #: Upper bound on the sentencepiece vocabulary (smaller catalogs get fewer pieces).
    vocab_size: int = 8000
    #: Longest span, in tokens (bounds decoding; also the cut for ``target_mode: title``).
    max_span_len: int = 8
    #: Most spans per identifier (1 = SEAL's single n-gram).
    n_spans: int = 3
    #: A span shorter than this may end only where it cannot continue in any title.
    min_span_tokens: int = 1
    #: Training targets: "multispan" (query -> few spans), "seal" (one span), "title" (query -> title).
    target_mode: str = "multispan"
    #: Weight of a span's corpus rarity against its query-matched information when picking target spans.
    rarity_weight: float = 0.5
    #: Length of the rarity-chosen span for a query that shares no token with its item's title.
    fallback_span_len: int = 3
    #: How the separator token is printed when a decoded identifier is shown as text.
    separator: str = " | "
    #: Spans seen more often than this are not located at ranking time (too common to identify items).
    max_occurrences: int = 10_000
    #: Prefixes seen more often than this get their next-token sets precomputed (decoding speed).
    wide_threshold: int = 256
    seed: int = 0

    def validate(self) -> None:
        if self.tokenizer != "sentencepiece":
            raise ValueError(f"lexical: tokenizer {self.tokenizer!r} is not supported; use 'sentencepiece'")
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"lexical: target_mode {self.target_mode!r} is not one of {', '.join(TARGET_MODES)}")
        if self.n_spans < 1 or self.max_span_len < 1 or not 1 <= self.min_span_tokens <= self.max_span_len:
            raise ValueError(
                f"lexical: need n_spans >= 1 and 1 <= min_span_tokens <= max_span_len; got n_spans={self.n_spans}, "
                f"min_span_tokens={self.min_span_tokens}, max_span_len={self.max_span_len}"
            )


@INDEX_TYPES.register("lexical")
class LexicalIndex(ItemIndex):
    """Tokenizer + token suffix index over the titles + config (see the module docstring)."""

    index_type: ClassVar[str] = "lexical"
    #: Trainers should pass each example's query to ``decoder_targets`` (query -> multi-span).
    targets_need_queries: ClassVar[bool] = True
    #: At a span start every corpus token is allowed (thousands), so scoring only the allowed
    #: candidates by gathering their embeddings ([rows, W, d]) costs far more than one full-vocabulary
    #: projection: decode with ``beam_search(normalize="full")`` and train the gen loss with
    #: ``full_softmax=True`` (SEAL, too, masks a full softmax).
    preferred_normalize: ClassVar[str] = "full"

    def __init__(
        self,
        tokenizer: SentencePieceTokenizer,
        fm: TokenSuffixIndex,
        n_items: int,
        catalog_fingerprint: str,
        config: dict[str, Any],
        notes: list[str] | None = None,
    ) -> None:
        self.scheme = "lexical"
        self.tokenizer = tokenizer
        self.fm = fm
        self.n_items = int(n_items)
        self.catalog_fingerprint = catalog_fingerprint
        self.config = dict(config)
        self.cfg = LexicalConfig(**self.config)
        self.notes = list(notes or [])
        if fm.vocab_size != tokenizer.vocab_size:
            raise ArtifactError(
                f"lexical index: suffix index alphabet {fm.vocab_size} != tokenizer vocabulary {tokenizer.vocab_size}"
            )
        self.vocab_size = tokenizer.vocab_size + 1
        self._constraints: dict[str, Constraint] = {}

    @property
    def separator_id(self) -> int:
        return self.vocab_size - 1

    @property
    def n_spans(self) -> int:
        """Spans per identifier in decoding (1 for the SEAL and title target modes)."""
        return 1 if self.cfg.target_mode in ("seal", "title") else self.cfg.n_spans

    @property
    def max_length(self) -> int:
        """Longest identifier in tokens, EOS not counted (``CodeIndex.max_length`` semantics)."""
        return self.n_spans * (self.cfg.max_span_len + 1) - 1

    @property
    def variable_length(self) -> bool:
        return True

    # ------------------------------------------------------------------ text <-> tokens
    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(self.tokenizer.encode(t), dtype=np.int64) for t in texts]

    def title_tokens(self, item: int) -> np.ndarray:
        return self.fm.doc_tokens(int(item))

    def to_text(self, ids: np.ndarray | list[int]) -> str:
        """A decoded identifier as text: spans decoded by the tokenizer, joined by ``config.separator``."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        parts, cur = [], []
        for t in ids.tolist():
            if 0 <= t < self.separator_id:
                cur.append(t)
            else:
                if cur:
                    parts.append(self.tokenizer.decode(cur))
                cur = []
                if t == self.eos_id:
                    break
        if cur:
            parts.append(self.tokenizer.decode(cur))
        return self.cfg.separator.join(parts)

    # ------------------------------------------------------------------ training targets
    def decoder_targets(
        self, items: np.ndarray | torch.Tensor, queries: list[str] | None = None, mode: str | None = None
    ) -> torch.Tensor:
        """Teacher-forcing targets ``[B, T]`` (decoder vocab, EOS-terminated, padded with -1).

        ``queries[i]`` is the query that led to ``items[i]``; without queries spans are chosen by
        rarity (every target span then comes from the item's title, but not from a query match).
        """
        items = np.asarray(items.cpu() if isinstance(items, torch.Tensor) else items, dtype=np.int64).ravel()
        if len(items) and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"item ids must be in 0..{self.n_items - 1}")
        if queries is not None and len(queries) != len(items):
            raise ValueError(f"{len(queries)} queries for {len(items)} items")
        q_tokens = self.encode(queries) if queries is not None else [np.zeros(0, dtype=np.int64)] * len(items)
        titles = [self.title_tokens(i) for i in items]
        c = self.cfg
        rows = multispan_targets(
            q_tokens, titles, self.fm, self.separator_id, self.eos_id, n_spans=c.n_spans,
            max_span_len=c.max_span_len, rarity_weight=c.rarity_weight, fallback_span_len=c.fallback_span_len,
            mode=mode or c.target_mode,
        )
        width = max((len(r) for r in rows), default=1)
        out = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.from_numpy(r)
        return out

    # ------------------------------------------------------------------ decoding / ranking
    def constraint(self, device: torch.device | str = "cpu") -> Constraint:
        key = str(device)
        if key not in self._constraints:
            c = self.cfg
            self._constraints[key] = FMIndexConstraint(
                self.fm, self.separator_id, self.eos_id, n_spans=self.n_spans, max_span_len=c.max_span_len,
                min_span_tokens=c.min_span_tokens,
            )
        return self._constraints[key]

    def rank(self, beams: BeamOutput, top_k: int) -> RankedItems:
        return seal_rank(
            self.fm, beams.tokens, beams.scores, beams.alive, top_k,
            token_scores=getattr(beams, "token_scores", None), max_occurrences=self.cfg.max_occurrences,
            span_text=self.tokenizer.decode,
        )

    # ------------------------------------------------------------------ persistence
    def arrays(self) -> dict[str, np.ndarray]:
        return self.fm.arrays(prefix=FM_PREFIX)

    def meta(self) -> dict[str, Any]:
        return {
            "fm": self.fm.meta(),
            "tokenizer_file": TOKENIZER_FILE,
            "tokenizer_sha256": hashlib.sha256(self.tokenizer.model_proto).hexdigest(),
            "sp_vocab_size": self.tokenizer.vocab_size,
            "separator_id": self.separator_id,
            "corpus_tokens": self.fm.n_tokens,
            "notes": self.notes,
        }

    def extra_files(self, directory: Path) -> None:
        self.tokenizer.save(Path(directory) / TOKENIZER_FILE)

    @classmethod
    def from_saved(cls, manifest: dict[str, Any], arrays: dict[str, np.ndarray], directory: Path) -> LexicalIndex:
        meta = manifest["meta"]
        path = Path(directory) / meta["tokenizer_file"]
        if not path.exists():
            raise ArtifactError(f"{directory}: tokenizer file {meta['tokenizer_file']} is missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != meta["tokenizer_sha256"]:
            raise ArtifactError(f"{path}: checksum mismatch (tokenizer file corrupt or replaced)")
        tokenizer = SentencePieceTokenizer.load(path)
        fm = TokenSuffixIndex.from_arrays(meta["fm"], arrays, prefix=FM_PREFIX)
        index = cls(tokenizer, fm, manifest["n_items"], manifest["catalog_fingerprint"], manifest["config"],
                    notes=meta.get("notes"))
        if index.vocab_size != manifest["vocab_size"]:
            raise ArtifactError(f"{directory}: vocab_size {manifest['vocab_size']} does not match the tokenizer")
        return index


@SCHEMES.register("lexical")
class LexicalScheme(IdentifierScheme):
    """Build a ``LexicalIndex`` from a catalog's titles (no item vectors needed)."""

    name = "lexical"
    config_class = LexicalConfig
    needs_vectors: ClassVar[bool] = False

    def build(self, catalog: Catalog, vectors: np.ndarray | None = None) -> LexicalIndex:
        cfg: LexicalConfig = self.config
        cfg.validate()
        texts = catalog.text(cfg.text_field)
        tokenizer = SentencePieceTokenizer.train(texts, vocab_size=cfg.vocab_size, seed=cfg.seed)
        notes = list(tokenizer.notes)
        docs = [np.asarray(ids, dtype=np.int64) for ids in _encode_all(tokenizer, texts)]
        n_empty = sum(1 for d in docs if len(d) == 0)
        if n_empty:
            notes.append(f"{n_empty} item(s) have an empty {cfg.text_field!r}: no span can retrieve them")
        fm = TokenSuffixIndex.build(
            docs, tokenizer.vocab_size, wide_threshold=cfg.wide_threshold, cache_depth=cfg.max_span_len
        )
        return LexicalIndex(tokenizer, fm, len(catalog), catalog.fingerprint(), asdict(cfg), notes=notes)


def _encode_all(tokenizer: SentencePieceTokenizer, texts: list[str], chunk: int = 4096) -> list[list[int]]:
    out: list[list[int]] = []
    for s in range(0, len(texts), chunk):
        ids, mask = tokenizer.encode_batch(texts[s : s + chunk], max_len=1 << 16)
        out.extend(row[m].tolist() for row, m in zip(ids, mask, strict=True))
    return out
