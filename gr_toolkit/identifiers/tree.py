"""SEATER balanced k-ary tree identifiers (SEATER, SIGIR-AP 2024, Section 3.2.2 and Algorithm 1).

Items are split recursively into balanced clusters (sizes floor(m/c) or floor(m/c)+1) until a group
fits under one node; every tree node is its own token, and the leaf token IS the item: tokens
``0..n-1`` are the items, internal nodes are ``n..M-1`` (numbered level by level). The root has no
token; ``token_parent`` is -1 for its children.

Equal length. Algorithm 1 splits every node k ways with floor/+1 sizes and stops at groups of <= k
items; when a level holds both groups of exactly k items and groups of k+1, the former stop one level
earlier and the identifiers get different lengths. Here every identifier has exactly
``depth = ceil(log_k n)`` tokens (1 when n <= k), the leaf included. A node with ``m`` items and
``rem`` tokens left below it (the root has ``rem = depth``) holds at most ``k**rem`` items, and:

- ``layout="compact"`` (default) splits it into ``c = ceil(m / k**(rem-1))`` children: the fewest
  that each fit in ``rem-1`` levels, with balanced sizes floor(m/c)/floor(m/c)+1. Then every child has
  more than ``k**(rem-1) / 2`` items, so for k >= 3 no single-child chain is ever needed, the lower
  levels are full (leaf parents hold about k items), and the slack of a catalog that is not a power
  of k goes to the top level (e.g. 12,101 items, k=8: 3 -> 8 -> 8 -> 8 -> ~8 children; about
  n/(k-1) internal tokens, as the paper states).
- ``layout="paper"`` splits every node ``min(k, m)`` ways, as Algorithm 1 does, and keeps splitting
  groups that are already small so that all leaves reach the same depth; those groups become chains
  of single-child nodes (decoded with probability 1, but extra tokens).

Both give: every identifier the same length, every node at most k children, balanced split sizes.

Splitters (``gr_toolkit.identifiers.splitters``): ``fast`` (default) or ``exact`` (k-means-constrained).
With ``splitter="fast"`` and ``exact_below=N`` nodes with fewer than N items use the exact splitter:
exact is cheap there (~15 ms for 250 items into 16) and the big top nodes, where it is hopeless, use
the fast one.

Ablations registered here: ``seater-imbalanced`` (plain k-means splits, stop at <= k items; identifiers
of variable length that end with EOS in decoding, via ``CodeIndex``'s variable-length support; a node
whose k-means puts every item in one cluster, e.g. duplicates, is split at random instead) and
``seater-random`` (random balanced splits, same shape as ``seater``, ignores the vectors).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.base import SCHEMES, IdentifierScheme
from gr_toolkit.identifiers.codes import CodeIndex
from gr_toolkit.identifiers.splitters import (
    SPLITTERS,
    RandomSplitter,
    SplitError,
    cluster_means,
    get_splitter,
)

LAYOUTS = ("compact", "paper")


@dataclass
class TreeConfig:
    """Options of the balanced-tree scheme (``gr-toolkit index DATASET --scheme seater --k 8 ...``)."""

    #: Maximum children per node (the paper's branch number k).
    k: int = 8
    #: fast | exact | kmeans | random (see gr_toolkit.identifiers.splitters).
    splitter: str = "fast"
    #: With splitter=fast: nodes with fewer items than this use the exact splitter (0 = never).
    #: Costs ~15 ms per 250-item node; at 1M items / k=16 that is ~4k nodes (+~60 s CPU), so very
    #: large catalogs may prefer 0 (indexes/configs/seater_large.yaml).
    exact_below: int = 1000
    #: compact (fewest children that keep equal depth) | paper (k-way at every node, chains pad).
    layout: str = "compact"
    seed: int = 0
    #: exact splitter: k-means-constrained restarts (library default 10; 1 is 10x cheaper) and iterations.
    n_init: int = 1
    max_iter: int = 300
    #: fast splitter: sample for the initial k-means, balanced-Lloyd iterations, dual sweeps.
    sample_size: int = 20000
    refine_iters: int = 8
    sweeps: int = 6
    #: BLAS threads during the build (1 is fastest for the many small matrix products on a busy
    #: machine; None leaves the process setting alone).
    blas_threads: int | None = 1
    #: Save the mean item vector of every internal node (``extras["internal_centroids"]``).
    store_centroids: bool = True
    #: Show a rich progress bar per tree level for builds of at least this many items (0 = never).
    progress_min_items: int = 50000


@dataclass
class TreeBuild:
    """A built tree before it is wrapped in an index: per item codes and per token structure."""

    codes: np.ndarray  # [n, L] int64, -1 padded; codes[i, lengths[i]-1] == i
    lengths: np.ndarray  # [n]
    token_parent: np.ndarray  # [M]
    token_level: np.ndarray  # [M]
    token_size: np.ndarray  # [M] items under each token (1 for items)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return int(len(self.lengths))

    @property
    def vocab_size(self) -> int:
        return int(len(self.token_parent))


def tree_depth(n: int, k: int) -> int:
    """Identifier length of a balanced k-ary tree over n items: ceil(log_k n), at least 1."""
    depth, cap = 1, k
    while cap < n:  # integer loop: float log is off by one at exact powers
        depth += 1
        cap *= k
    return depth


def children_count(m: int, rem: int, k: int, layout: str) -> int:
    """How many children a node with ``m`` items and ``rem`` code positions below it gets."""
    if rem <= 1:
        return m  # the items themselves
    if layout == "paper":
        return min(k, m)
    return -(-m // k ** (rem - 1))  # ceil: fewest children that each fit in rem-1 levels


def node_seed(seed: int, node_token: int) -> int:
    """A per-node seed that does not depend on the order nodes are processed in."""
    return int(np.random.SeedSequence([seed % (2**32), node_token + 1]).generate_state(1)[0])


def _validate(cfg: TreeConfig) -> None:
    if cfg.k < 2:
        raise ValueError(f"k must be >= 2 (got {cfg.k})")
    if cfg.splitter not in SPLITTERS:
        raise ValueError(f"unknown splitter {cfg.splitter!r}; valid: {', '.join(SPLITTERS.names())}")
    if cfg.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {cfg.layout!r}; valid: {', '.join(LAYOUTS)}")


def _splitter_options(cfg: TreeConfig, name: str) -> dict[str, Any]:
    if name == "exact":
        return {"n_init": cfg.n_init, "max_iter": cfg.max_iter}
    if name == "fast":
        return {"sample_size": cfg.sample_size, "refine_iters": cfg.refine_iters, "sweeps": cfg.sweeps}
    return {}


def build_tree(vectors: np.ndarray | None, n_items: int, cfg: TreeConfig) -> TreeBuild:
    """Build the tree (level by level, no recursion) and return codes and token structure.

    ``vectors`` may be None only for the ``random`` splitter.
    """
    _validate(cfg)
    n, k = int(n_items), cfg.k
    if n < 1:
        raise ValueError("cannot build a tree over an empty catalog")
    main = get_splitter(cfg.splitter, **_splitter_options(cfg, cfg.splitter))
    if vectors is None and cfg.splitter != "random":
        raise ValueError(f"splitter {cfg.splitter!r} needs item vectors")
    balanced = bool(type(main).balanced)
    exact = get_splitter("exact", **_splitter_options(cfg, "exact")) if cfg.splitter == "fast" else None
    fallback = RandomSplitter()
    x = None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)

    depth = tree_depth(n, k) if balanced else None
    # path[l][i]: item i's internal token at level l (grown as levels are added).
    path: list[np.ndarray] = []
    item_depth = np.zeros(n, dtype=np.int64)  # level of item i's leaf token
    item_parent = np.full(n, -1, dtype=np.int64)
    int_parent: list[int] = []
    int_level: list[int] = []
    int_size: list[int] = []
    counts = {"fast": 0, "exact": 0, "kmeans": 0, "random": 0, "trivial": 0, "fallback_random": 0}

    # A frontier entry: (items, token of the node or -1 for the root, code positions left below it).
    frontier: list[tuple[np.ndarray, int, int | None]] = [(np.arange(n), -1, depth)]
    level = 0
    progress = _progress(n >= cfg.progress_min_items > 0)
    with progress, _blas_limit(cfg.blas_threads):
        while frontier:
            task = progress.add_task(f"tree level {level}", total=len(frontier)) if progress else None
            nxt: list[tuple[np.ndarray, int, int | None]] = []
            level_tokens = np.full(n, -1, dtype=np.int64)
            for items, token, rem in frontier:
                m = len(items)
                leaves_here = (rem == 1) if balanced else (m <= k)
                if leaves_here:
                    item_depth[items] = level
                    item_parent[items] = token
                else:
                    c = children_count(m, rem, k, cfg.layout) if balanced else k
                    labels, used = _split_node(x, items, c, cfg, main, exact, fallback, token, balanced)
                    counts[used] += 1
                    order = np.argsort(labels, kind="stable")
                    sizes = np.bincount(labels, minlength=c)
                    for group in np.split(items[order], np.cumsum(sizes)[:-1]):
                        if len(group) == 0:
                            continue
                        child = n + len(int_parent)
                        int_parent.append(token)
                        int_level.append(level)
                        int_size.append(len(group))
                        level_tokens[group] = child
                        nxt.append((group, child, None if rem is None else rem - 1))
                if progress:
                    progress.advance(task)
            if nxt:
                path.append(level_tokens)
            frontier = nxt
            level += 1

    lengths = item_depth + 1
    width = int(lengths.max())
    codes = np.full((n, width), -1, dtype=np.int64)
    for lv, toks in enumerate(path):
        inside = item_depth > lv
        codes[inside, lv] = toks[inside]
    codes[np.arange(n), item_depth] = np.arange(n)

    vocab = n + len(int_parent)
    token_parent = np.concatenate([item_parent, np.asarray(int_parent, dtype=np.int64)])
    token_level = np.concatenate([item_depth, np.asarray(int_level, dtype=np.int64)])
    token_size = np.concatenate([np.ones(n, dtype=np.int64), np.asarray(int_size, dtype=np.int64)])
    fanout = np.bincount(token_parent[token_parent >= 0] - n, minlength=vocab - n) if vocab > n else np.zeros(0)
    stats = {
        "depth": width,
        "n_internal": vocab - n,
        "max_children": int(max(np.bincount(token_parent + 1).max(), 0)),
        "single_child_nodes": int((fanout == 1).sum()),
        "splits": {key: v for key, v in counts.items() if v},
    }
    return TreeBuild(codes, lengths, token_parent, token_level, token_size, stats)


def _split_node(x, items, c, cfg, main, exact, fallback, token, balanced) -> tuple[np.ndarray, str]:
    """Labels ``0..c-1`` for one node's items and the name of what produced them."""
    m = len(items)
    if c == 1:
        return np.zeros(m, dtype=np.int64), "trivial"
    if c >= m:
        return np.arange(m, dtype=np.int64), "trivial"
    seed = node_seed(cfg.seed, token)
    sub = None if x is None else x[items]
    if exact is not None and m < cfg.exact_below:
        return exact.split(sub, c, seed), "exact"
    labels = main.split(sub if sub is not None else np.zeros((m, 1), np.float32), c, seed)
    if not balanced and labels.max() == 0:
        # k-means put everything in one cluster (duplicate vectors): no progress, split at random.
        return fallback.split(np.zeros((m, 1), np.float32), c, seed), "fallback_random"
    return labels, cfg.splitter


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __bool__(self) -> bool:
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # stderr: stdout carries command output (summaries, JSON) that users pipe.
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _blas_limit(threads: int | None):
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(threads))


def internal_centroids(x: np.ndarray, build: TreeBuild) -> np.ndarray:
    """Mean item vector under every internal token ``n..M-1`` (row ``t - n``)."""
    n, m = build.n_items, build.vocab_size - build.n_items
    out = np.zeros((m, x.shape[1]), dtype=np.float32)
    for lv in range(build.codes.shape[1] - 1):
        toks = build.codes[:, lv]
        sel = (toks >= n) & (lv < build.lengths - 1)
        if not sel.any():
            continue
        ids = toks[sel] - n
        base = int(ids.min())
        means, counts = cluster_means(x[sel], ids - base, int(ids.max()) - base + 1)
        present = counts > 0
        out[np.flatnonzero(present) + base] = means[present]
    return out


def _check_vectors(vectors: np.ndarray | None, catalog: Catalog, scheme: str) -> np.ndarray:
    if vectors is None:
        raise ValueError(f"scheme {scheme!r} needs item vectors (pass --vectors FILE.npy or run `gr-toolkit embed`)")
    x = np.asarray(vectors)
    if x.ndim != 2 or x.shape[0] != len(catalog):
        raise ValueError(
            f"scheme {scheme!r}: vectors must be [n_items={len(catalog)}, dim]; got shape {tuple(x.shape)}"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise SplitError(f"scheme {scheme!r}: {int((~np.isfinite(x)).any(1).sum())} item vector(s) contain NaN/inf")
    return x


@SCHEMES.register("seater")
class BalancedTreeScheme(IdentifierScheme):
    """SEATER's balanced k-ary tree: equal-length identifiers, one token per node, leaf token = item."""

    name: ClassVar[str] = "seater"
    config_class: ClassVar[type] = TreeConfig
    needs_vectors: ClassVar[bool] = True

    def build(self, catalog: Catalog, vectors: np.ndarray | None) -> CodeIndex:
        cfg: TreeConfig = self.config
        x = _check_vectors(vectors, catalog, self.name) if self.needs_vectors else None
        start = time.perf_counter()
        tree = build_tree(x, len(catalog), cfg)
        seconds = time.perf_counter() - start
        extras = {"token_size": tree.token_size}
        if cfg.store_centroids and x is not None and tree.vocab_size > tree.n_items:
            extras["internal_centroids"] = internal_centroids(x, tree)
        return CodeIndex(
            scheme=self.name,
            codes=tree.codes,
            lengths=tree.lengths,
            vocab_size=tree.vocab_size,
            token_parent=tree.token_parent,
            token_level=tree.token_level,
            catalog_fingerprint=catalog.fingerprint(),
            config=dataclasses.asdict(cfg),
            leaf_is_item=True,
            extras=extras,
            meta_extra={**tree.stats, "build_seconds": round(seconds, 3)},
        )

    def report(self, index: CodeIndex, out_dir: str | Path) -> Path:
        """Write ``tree_report.json``: per level the node count, children per node and items per node."""
        n = index.n_items
        parent = index.token_parent
        internal = np.arange(n, index.vocab_size)
        children = np.bincount(parent[parent >= 0], minlength=index.vocab_size)
        sizes = index.extras.get("token_size")
        levels = []
        for lv in range(index.max_length):
            toks = internal[index.token_level[internal] == lv]
            if len(toks) == 0:
                continue
            row = {
                "level": lv,
                "nodes": int(len(toks)),
                "children_min": int(children[toks].min()),
                "children_max": int(children[toks].max()),
                "children_mean": round(float(children[toks].mean()), 3),
            }
            if sizes is not None:
                row.update(items_min=int(sizes[toks].min()), items_max=int(sizes[toks].max()))
            levels.append(row)
        root_children = int((parent == -1).sum())
        report = {
            "scheme": index.scheme,
            "n_items": n,
            "vocab_size": index.vocab_size,
            "identifier_length": {"min": int(index.lengths.min()), "max": int(index.lengths.max())},
            "root_children": root_children,
            "levels": levels,
        }
        path = Path(out_dir) / "tree_report.json"
        path.write_text(json.dumps(report, indent=2))
        return path


@dataclass
class ImbalancedTreeConfig(TreeConfig):
    """Plain k-means splits (the paper's imbalanced-tree ablation)."""

    splitter: str = "kmeans"


@SCHEMES.register("seater-imbalanced")
class ImbalancedTreeScheme(BalancedTreeScheme):
    """Recursive plain k-means until a group has <= k items: variable-length identifiers (EOS-ended)."""

    name: ClassVar[str] = "seater-imbalanced"
    config_class: ClassVar[type] = ImbalancedTreeConfig


@dataclass
class RandomTreeConfig(TreeConfig):
    """Random balanced splits (same tree shape as ``seater``; vectors are ignored)."""

    splitter: str = "random"


@SCHEMES.register("seater-random")
class RandomTreeScheme(BalancedTreeScheme):
    """A balanced tree over a random partition: the "random identifiers" ablation of the tree."""

    name: ClassVar[str] = "seater-random"
    config_class: ClassVar[type] = RandomTreeConfig
    needs_vectors: ClassVar[bool] = False


__all__ = [
    "BalancedTreeScheme",
    "ImbalancedTreeScheme",
    "RandomTreeScheme",
    "TreeBuild",
    "TreeConfig",
    "build_tree",
    "children_count",
    "internal_centroids",
    "tree_depth",
]
