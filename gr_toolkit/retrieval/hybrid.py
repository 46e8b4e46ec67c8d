"""Hybrid retrieval: a generative run fused with a lexical one (BM25), fusion weight chosen on VALIDATION.

Rows are named ``<generative>+bm25-rrf`` (reciprocal-rank fusion) and ``<generative>+bm25-score``
(CombSUM of per-query min-max normalised scores). :func:`tune_fusion` tries every weight of the grid
on the validation rankings, records each candidate's validation score, and returns the best; the test
split is fused once, with that weight. :class:`HybridSearcher` serves raw queries with the chosen
setting through the pyserini-shaped ``search`` / ``batch_search``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gr_toolkit.baselines.fusion import Run, rrf, score_fusion
from gr_toolkit.evaluation.metrics import evaluate_rankings

FUSION_METHODS = ("rrf", "score")
#: Weight of the generative run relative to BM25's (1.0).
DEFAULT_WEIGHTS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def fuse(runs: Sequence[Run], method: str, weights: Sequence[float], k: int) -> Run:
    if method == "rrf":
        return rrf(runs, k=k, weights=weights)
    if method == "score":
        return score_fusion(runs, k=k, norm="minmax", weights=weights)
    raise ValueError(f"unknown fusion {method!r}; use {' or '.join(FUSION_METHODS)}")


@dataclass
class FusionChoice:
    method: str
    weight: float  # of the generative run; BM25 has 1.0
    valid: dict[str, float]
    metric: str
    grid: list[dict[str, Any]] = field(default_factory=list)


def tune_fusion(generative: Run, lexical: Run, valid_targets: Sequence[np.ndarray], method: str,
                weights: Sequence[float] = DEFAULT_WEIGHTS, metric: str = "recall@10") -> FusionChoice:
    """The generative-run weight with the best validation ``metric`` (ties: the first in the grid)."""
    if not weights:
        raise ValueError("the fusion weight grid is empty")
    k_metric = int(metric.split("@")[1]) if "@" in metric else 10
    best: FusionChoice | None = None
    grid = []
    for w in weights:
        items, _ = fuse([lexical, generative], method, [1.0, float(w)], k=max(k_metric, 50))
        m = evaluate_rankings(items, valid_targets, ks=sorted({k_metric, 10, 50}))["all"]
        m = {k: float(v) for k, v in m.items() if k != "n"}
        grid.append({"weight": float(w), "valid": m})
        if best is None or m[metric] > best.valid[metric]:
            best = FusionChoice(method, float(w), m, metric)
    best.grid = grid  # type: ignore[union-attr]
    return best  # type: ignore[return-value]


@dataclass
class Hit:
    """One search result, named like pyserini's (``docid``, ``score``)."""

    docid: str
    score: float


class HybridSearcher:
    """Generative retriever + BM25 fused with a fixed (validation-chosen) setting.

    ``generative`` has ``retrieve_text(queries, top_k, beam_size) -> (items, scores)`` (a
    ``GenerativeRetrieverRunner``); ``lexical`` has ``rank(queries, k) -> (items, scores)`` (a
    ``BM25Retriever``); ``item_ids`` maps internal ids to external ones.
    """

    def __init__(self, generative: Any, lexical: Any, item_ids: Sequence[str], method: str, weight: float,
                 depth: int = 100, beam_size: int = 100) -> None:
        if method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion {method!r}; use {' or '.join(FUSION_METHODS)}")
        self.generative, self.lexical, self.item_ids = generative, lexical, list(item_ids)
        self.method, self.weight, self.depth, self.beam_size = method, float(weight), int(depth), int(beam_size)

    def _rank(self, queries: list[str], k: int) -> Run:
        depth = max(self.depth, k)
        gen = self.generative.retrieve_text(queries, top_k=depth, beam_size=max(self.beam_size, depth))
        lex = self.lexical.rank(queries, k=depth)
        return fuse([lex, gen], self.method, [1.0, self.weight], k)

    def search(self, q: str, k: int = 10) -> list[Hit]:
        return self.batch_search([q], ["q"], k)["q"]

    def batch_search(self, queries: list[str], qids: list[str], k: int = 10, threads: int = 1) -> dict[str, list[Hit]]:
        if len(queries) != len(qids):
            raise ValueError(f"{len(queries)} queries for {len(qids)} qids")
        items, scores = self._rank(list(queries), k)
        return {qid: [Hit(self.item_ids[i], float(s)) for i, s in zip(row, srow, strict=True) if i >= 0]
                for qid, row, srow in zip(qids, items.tolist(), scores.tolist(), strict=True)}


#: BM25 settings tried on validation before fusing (k1/b, with and without RM3), as in the baselines.
BM25_GRID = ((0.9, 0.4, False), (1.2, 0.75, False), (0.9, 0.4, True), (1.2, 0.75, True))


def tuned_bm25(catalog: Any, valid: Any, index_dir: Any, metric: str = "recall@10", threads: int = 2,
               log: Any = None) -> tuple[Any, dict[str, Any]]:
    """A ``BM25Retriever`` over ``catalog`` set to the ``BM25_GRID`` entry best on ``valid`` (Examples)."""
    from dataclasses import asdict

    from gr_toolkit.baselines.bm25 import BM25Config, BM25Retriever

    grid = [BM25Config(k1=k1, b=b, rm3=rm3, threads=threads) for k1, b, rm3 in BM25_GRID]
    bm25 = BM25Retriever(catalog, index_dir, grid[0])
    rows, best = [], None
    for cfg in grid:
        bm25.configure(cfg)
        m = evaluate_rankings(bm25.rank(valid.queries, k=50)[0], valid.targets, ks=(10, 50))["all"]
        rows.append({"config": asdict(cfg), "valid": {k: float(v) for k, v in m.items() if k != "n"}})
        if log is not None:
            log(f"  bm25 k1={cfg.k1} b={cfg.b} rm3={cfg.rm3}: valid {metric} {m[metric]:.4f}")
        if best is None or m[metric] > best[1]:
            best = (cfg, m[metric])
    bm25.configure(best[0])  # type: ignore[index]
    return bm25, {"config": asdict(best[0]), "grid": rows}  # type: ignore[index]


def hybrid_results(runner: Any, dataset: Any, split: str, split_run: Run, ks: Sequence[int], beam: int,
                   batch_size: int, fusions: Sequence[str], weights: Sequence[float], bm25_dir: Any,
                   log: Any = None) -> list[dict[str, Any]]:
    """For each fusion method: the ``split`` metrics per bucket of ``<run> + BM25`` with the weight (and the
    BM25 setting) chosen on the validation split. ``split_run`` is the run's own ranking of ``split``."""
    from gr_toolkit.data.buckets import assign_buckets

    if split == "valid":
        raise ValueError("fusion weights are chosen on the validation split: evaluate a fused row on test (or train)")
    valid = dataset.valid
    if len(valid) == 0:
        raise ValueError(f"dataset {dataset.name!r} has no validation examples to choose the fusion weight on")
    depth = max(100, max(ks))
    gen_valid = runner.retrieve(valid, top_k=depth, beam_size=max(beam, depth), batch_size=batch_size)
    bm25, bm25_choice = tuned_bm25(dataset.catalog, valid, bm25_dir, log=log)
    try:
        lex_valid = bm25.rank(valid.queries, k=depth)
        examples = dataset.split(split)
        lex_split = bm25.rank(examples.queries, k=depth)
    finally:
        bm25.close()
    buckets = assign_buckets(dataset, examples)
    out = []
    for method in fusions:
        choice = tune_fusion(gen_valid, lex_valid, valid.targets, method, weights)
        if log is not None:
            log(f"  fusion {method}: generative weight {choice.weight} (valid {choice.metric} "
                f"{choice.valid[choice.metric]:.4f})")
        items, _ = fuse([lex_split, split_run], method, [1.0, choice.weight], k=max(ks))
        out.append({"fusion": method, "metrics": evaluate_rankings(items, examples.targets, ks, buckets),
                    "items": items, "choice": choice, "bm25": bm25_choice, "bm25_items": lex_split[0]})
    return out
