"""TREC run files: ``qid Q0 docid rank score tag`` per line, as pyserini / trec_eval read and write them.

Ranks are 1-based; lines of a query are written best first. Ids may not contain whitespace (the
format is whitespace-separated), which ``write_run`` checks. Files are written atomically.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

Run = dict[str, list[tuple[str, float]]]


class TrecFormatError(ValueError):
    """A run file line is malformed: the message names the file, line number and content."""


def _check_id(kind: str, v: str) -> str:
    v = str(v)
    if not v or any(c.isspace() for c in v):
        raise TrecFormatError(f"{kind} {v!r} is empty or contains whitespace; TREC run files are whitespace-separated")
    return v


def write_run(path: str | Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str = "gr-toolkit") -> Path:
    """Write ``run`` (qid -> [(docid, score), ...] best first) to ``path``."""
    path = Path(path)
    tag = _check_id("tag", tag)
    lines = []
    for qid, hits in run.items():
        q = _check_id("query id", qid)
        for rank, (doc, score) in enumerate(hits, start=1):
            s = float(score)
            if math.isnan(s):
                raise TrecFormatError(f"query {q}: score of {doc!r} is NaN")
            lines.append(f"{q} Q0 {_check_id('doc id', doc)} {rank} {s:.6f} {tag}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_run(path: str | Path) -> Run:
    """Read a run file into qid -> [(docid, score), ...] sorted by rank (then by score, descending)."""
    path = Path(path)
    if not path.exists():
        raise TrecFormatError(f"run file not found: {path}")
    rows: dict[str, list[tuple[int, float, str]]] = {}
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise TrecFormatError(f"{path}:{ln}: expected 6 fields 'qid Q0 docid rank score tag', got {len(parts)}: {line.strip()!r}")
            qid, _, doc, rank, score, _tag = parts
            try:
                r, s = int(rank), float(score)
            except ValueError:
                raise TrecFormatError(f"{path}:{ln}: rank {rank!r} / score {score!r} are not numbers") from None
            rows.setdefault(qid, []).append((r, -s, doc))
    return {q: [(d, -ns) for _, ns, d in sorted(v)] for q, v in rows.items()}


def run_from_arrays(qids: Sequence[str], items: np.ndarray, scores: np.ndarray, item_ids: Sequence[str]) -> Run:
    """Ranked internal ids (``-1`` = empty) and scores -> a run keyed by ``qids`` with external doc ids."""
    if len(qids) != items.shape[0] or items.shape != scores.shape:
        raise ValueError(f"{len(qids)} qids, items {items.shape}, scores {scores.shape} do not line up")
    return {str(q): [(item_ids[int(i)], float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
            for q, row_i, row_s in zip(qids, items, scores, strict=True)}


def arrays_from_run(run: Run, qids: Sequence[str], index_of: Mapping[str, int], k: int) -> tuple[np.ndarray, np.ndarray]:
    """A run back to ``(items [n, k], scores [n, k])`` in ``qids`` order; unknown docids raise."""
    items = np.full((len(qids), k), -1, dtype=np.int64)
    scores = np.full((len(qids), k), -np.inf, dtype=np.float64)
    for r, q in enumerate(qids):
        for j, (doc, s) in enumerate(run.get(str(q), [])[:k]):
            if doc not in index_of:
                raise TrecFormatError(f"query {q}: doc id {doc!r} is not in the catalog")
            items[r, j] = index_of[doc]
            scores[r, j] = s
    return items, scores
