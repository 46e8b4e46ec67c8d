"""Indexing examples: teach a generative retriever the identifier of EVERY catalog item, not only of the
items some training query led to (DSI's "indexing" task, Tay et al. 2022; the pseudo-queries of
industrial generative search).

Two kinds, both query examples whose one target is the item itself:
- ``title``: the item's text field (e.g. its title) -> item;
- ``spans``: ``spans_per_item`` random contiguous word spans of that text (``span_words`` long, drawn
  with a seeded generator) -> item, which look more like real queries than whole titles do.

Items whose text is empty have nothing to index from: they are counted in the returned notes, never
dropped silently. Histories (sequential recommendation) have no text source, so indexing examples
apply to query datasets only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from gr_toolkit.data.types import Catalog, DataError, Dataset, Examples

INDEXING_KINDS = ("title", "spans")


@dataclass
class IndexingOptions:
    kinds: tuple[str, ...] = ("title", "spans")
    field: str = "title"
    spans_per_item: int = 2
    #: Span length range in words (inclusive); a text shorter than the minimum gives one whole-text span.
    min_words: int = 2
    max_words: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in INDEXING_KINDS]
        if bad or not self.kinds:
            raise ValueError(f"indexing kinds must be a non-empty subset of {', '.join(INDEXING_KINDS)}; got "
                             f"{','.join(self.kinds) or '(none)'}")
        if self.spans_per_item < 1 or not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"need spans_per_item >= 1 and 1 <= min_words <= max_words; got {self.spans_per_item}, "
                             f"{self.min_words}, {self.max_words}")


def parse_kinds(text: str) -> tuple[str, ...]:
    """``"title,spans"`` -> ``("title", "spans")``; empty -> ``()`` (no indexing examples)."""
    return tuple(k.strip() for k in text.split(",") if k.strip())


def indexing_examples(catalog: Catalog, options: IndexingOptions) -> tuple[Examples, list[str]]:
    """Indexing examples for every catalog item with text, and notes on what was left out."""
    texts = catalog.text(options.field)
    rng = np.random.default_rng(options.seed)
    queries: list[str] = []
    targets: list[int] = []
    keys: list[str] = []
    empty = 0
    for item, text in enumerate(texts):
        words = text.split()
        if not words:
            empty += 1
            continue
        if "title" in options.kinds:
            queries.append(" ".join(words))
            targets.append(item)
            keys.append(f"index:title:{item}")
        if "spans" in options.kinds:
            hi = min(options.max_words, len(words))
            lo = min(options.min_words, hi)
            lengths = rng.integers(lo, hi + 1, size=options.spans_per_item)
            starts = (rng.random(options.spans_per_item) * (len(words) - lengths + 1)).astype(np.int64)
            for j, (s, n) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
                queries.append(" ".join(words[s:s + n]))
                targets.append(item)
                keys.append(f"index:span{j}:{item}")
    notes = []
    if empty:
        notes.append(f"{empty:,} of {len(texts):,} items have an empty {options.field!r}: no indexing example for them")
    if not queries:
        raise DataError(f"catalog {catalog.name!r}: no item has {options.field!r} text, so no indexing examples exist")
    ex = Examples(kind="query", targets=[np.array([t], dtype=np.int64) for t in targets], queries=queries, keys=keys)
    return ex, notes


def concat_examples(first: Examples, second: Examples) -> Examples:
    """``first`` followed by ``second`` (same source kind). Optional per-example fields that only one side
    has are filled for the other: no negatives (an empty array) and an unknown grade (NaN)."""
    if first.kind != second.kind:
        raise DataError(f"cannot join {first.kind} examples with {second.kind} examples")

    def join(name: str, fill):
        a, b = getattr(first, name), getattr(second, name)
        if a is None and b is None:
            return None
        a = a if a is not None else [fill(t) for t in first.targets]
        b = b if b is not None else [fill(t) for t in second.targets]
        return list(a) + list(b)

    return Examples(
        kind=first.kind,
        targets=list(first.targets) + list(second.targets),
        queries=join("queries", lambda t: ""),
        histories=join("histories", lambda t: np.zeros(0, dtype=np.int64)),
        weights=np.concatenate([np.asarray(first.weights, np.float64), np.asarray(second.weights, np.float64)]),
        target_grades=join("target_grades", lambda t: np.full(len(t), np.nan)),
        negatives=join("negatives", lambda t: np.zeros(0, dtype=np.int64)),
        keys=join("keys", lambda t: ""),
    )


def with_indexing_examples(dataset: Dataset, options: IndexingOptions) -> tuple[Dataset, int, list[str]]:
    """``dataset`` whose training split is followed by indexing examples; also how many training examples
    came first (examples from that position on are indexing examples) and notes."""
    if dataset.kind != "query":
        raise DataError(f"indexing examples need query text; dataset {dataset.name!r} has {dataset.kind} sources")
    extra, notes = indexing_examples(dataset.catalog, options)
    n_train = len(dataset.train)
    return replace(dataset, train=concat_examples(dataset.train, extra)), n_train, notes
