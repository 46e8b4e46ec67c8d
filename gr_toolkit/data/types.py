"""The data model every stage shares: a ``Catalog`` of items and ``Examples`` (source -> target items).

Internal item ids are dense ``0..n_items-1`` positions in the catalog; external ids (ASIN, sku,
product_uid) are kept for output. An example's source is either query text (search) or an item
history (sequential recommendation); its targets are one or more internal item ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gr_toolkit.artifacts import fingerprint_strings

SourceKind = Literal["query", "history"]


class DataError(ValueError):
    """Bad input data: the message names the file, field and offending value."""


@dataclass
class Catalog:
    """Items with stable external ids and text fields (``fields[name][i]`` is item i's text)."""

    name: str
    ids: list[str]
    fields: dict[str, list[str]] = field(default_factory=dict)
    # Extra per-item attributes that are not free text (e.g. category for the synthetic catalog).
    attributes: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {}
        for i, ext in enumerate(self.ids):
            if ext in self._index:
                raise DataError(f"catalog {self.name!r}: duplicate item id {ext!r} (positions {self._index[ext]} and {i})")
            self._index[ext] = i
        for fname, values in {**self.fields, **self.attributes}.items():
            if len(values) != len(self.ids):
                raise DataError(
                    f"catalog {self.name!r}: field {fname!r} has {len(values)} values for {len(self.ids)} items"
                )

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, external_id: str) -> int:
        try:
            return self._index[external_id]
        except KeyError:
            raise DataError(f"catalog {self.name!r}: unknown item id {external_id!r}") from None

    def indices_of(self, external_ids: list[str]) -> np.ndarray:
        return np.array([self.index_of(e) for e in external_ids], dtype=np.int64)

    def has(self, external_id: str) -> bool:
        return external_id in self._index

    def text(self, field_name: str = "title") -> list[str]:
        """The named text field for all items; ``"text"`` joins every text field."""
        if field_name == "text" and "text" not in self.fields:
            names = list(self.fields)
            return [" ".join(self.fields[n][i] for n in names if self.fields[n][i]) for i in range(len(self))]
        try:
            return self.fields[field_name]
        except KeyError:
            raise DataError(
                f"catalog {self.name!r} has no text field {field_name!r}; fields: {', '.join(self.fields) or '(none)'}"
            ) from None

    def fingerprint(self) -> str:
        return fingerprint_strings(self.ids)


@dataclass
class Examples:
    """Source -> target(s) pairs of one split.

    ``queries[i]`` (search) or ``histories[i]`` (sequences, internal item ids, oldest first) is the
    source of example i; ``targets[i]`` its relevant items. ``weights[i]`` is its traffic (clicks /
    frequency; 1 when the data has none). ``target_grades[i]`` optionally holds a graded relevance
    per target (Home Depot), aligned with ``targets[i]``. ``negatives[i]`` optionally holds judged
    non-relevant items for the source (used for preference pairs).
    """

    kind: SourceKind
    targets: list[np.ndarray]
    queries: list[str] | None = None
    histories: list[np.ndarray] | None = None
    weights: np.ndarray | None = None
    target_grades: list[np.ndarray] | None = None
    negatives: list[np.ndarray] | None = None
    # Ids that tie an example to its origin (query string, user id) for reports and leakage checks.
    keys: list[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.targets)
        if self.kind == "query" and (self.queries is None or len(self.queries) != n):
            raise DataError("query examples need one query string per example")
        if self.kind == "history" and (self.histories is None or len(self.histories) != n):
            raise DataError("history examples need one item history per example")
        if self.weights is None:
            self.weights = np.ones(n, dtype=np.float64)
        if len(self.weights) != n:
            raise DataError(f"{len(self.weights)} weights for {n} examples")
        for name in ("target_grades", "negatives", "keys"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise DataError(f"{name}: {len(v)} entries for {n} examples")

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def sources(self) -> list:
        return self.queries if self.kind == "query" else self.histories  # type: ignore[return-value]

    def subset(self, idx: np.ndarray | list[int]) -> Examples:
        idx = np.asarray(idx, dtype=np.int64)

        def pick(v):
            return None if v is None else [v[i] for i in idx]

        return Examples(
            kind=self.kind,
            targets=pick(self.targets),
            queries=pick(self.queries),
            histories=pick(self.histories),
            weights=None if self.weights is None else np.asarray(self.weights)[idx],
            target_grades=pick(self.target_grades),
            negatives=pick(self.negatives),
            keys=pick(self.keys),
        )

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Flatten to (example index, target item) training pairs."""
        ex = np.repeat(np.arange(len(self)), [len(t) for t in self.targets])
        items = np.concatenate(self.targets) if len(self) else np.zeros(0, dtype=np.int64)
        return ex, items.astype(np.int64)


@dataclass
class Dataset:
    """A catalog with train/valid/test examples under a named protocol."""

    name: str
    catalog: Catalog
    train: Examples
    valid: Examples
    test: Examples
    protocol: str  # "leave-one-out" | "query-split" | "given-split"
    # How head/torso/tail is defined here: "traffic", "proxy:<name>" or "none".
    bucketing: str = "traffic"
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> SourceKind:
        return self.train.kind

    def split(self, name: str) -> Examples:
        if name not in ("train", "valid", "test"):
            raise DataError(f"unknown split {name!r}; use train, valid or test")
        return getattr(self, name)
