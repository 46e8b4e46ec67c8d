"""Hand-made tiny indexes for the SEATER model/loss/trainer tests."""

from __future__ import annotations

import numpy as np

from gr_toolkit.data.types import Catalog
from gr_toolkit.identifiers.codes import CodeIndex


def binary_tree_index(n_items: int = 8) -> CodeIndex:
    """A complete binary tree over ``n_items`` (a power of two, >= 4) with every node its own token.

    Leaves are tokens ``0..n-1`` (token i = item i); internal nodes follow level by level. For 8 items:
    level-1 tokens 8, 9 (children of the root), level-2 tokens 10..13, codes
    ``item i -> [8 + i // 4, 10 + i // 2, i]``.
    """
    depth = int(np.log2(n_items))
    assert 2**depth == n_items and depth >= 2
    codes = np.zeros((n_items, depth), dtype=np.int64)
    parent = []
    next_tok = n_items
    level_start = []
    for level in range(depth - 1):  # internal levels 1..depth-1
        level_start.append(next_tok)
        next_tok += 2 ** (level + 1)
    vocab = next_tok
    token_parent = np.full(vocab, -1, dtype=np.int64)
    token_level = np.zeros(vocab, dtype=np.int64)
    for i in range(n_items):
        for level in range(depth - 1):
            group = i // (n_items // 2 ** (level + 1))
            codes[i, level] = level_start[level] + group
        codes[i, depth - 1] = i
    for i in range(n_items):
        path = codes[i]
        for lv in range(depth):
            token_level[path[lv]] = lv
            token_parent[path[lv]] = -1 if lv == 0 else path[lv - 1]
    del parent
    cat = Catalog("tiny", [f"item{i}" for i in range(n_items)])
    return CodeIndex(
        scheme="seater", codes=codes, lengths=np.full(n_items, depth), vocab_size=vocab,
        token_parent=token_parent, token_level=token_level, catalog_fingerprint=cat.fingerprint(),
        leaf_is_item=True,
    )


def tiny_catalog(n_items: int = 8) -> Catalog:
    return Catalog("tiny", [f"item{i}" for i in range(n_items)])


def digit_tree_index(catalog: Catalog, k: int = 4, seed: int = 0) -> CodeIndex:
    """A k-ary tree over a random item order (base-k digits of the position): every node its own token,
    leaf token = item id, internal tokens numbered after the items. Valid for any catalog size."""
    n = len(catalog)
    depth = 1
    while k**depth < n:
        depth += 1
    depth = max(depth, 2)
    pos = np.random.default_rng(seed).permutation(n)
    digits = np.stack([(pos // k ** (depth - 1 - lv)) % k for lv in range(depth)], axis=1)
    codes = np.zeros((n, depth), dtype=np.int64)
    token_parent: list[int] = [-1] * n
    token_level: list[int] = [depth - 1] * n
    node_of: dict[tuple, int] = {}
    for i in range(n):
        prev = -1
        for lv in range(depth - 1):
            key = tuple(digits[i, : lv + 1])
            if key not in node_of:
                node_of[key] = n + len(node_of)
                token_parent.append(prev)
                token_level.append(lv)
            codes[i, lv] = prev = node_of[key]
        codes[i, depth - 1] = i
        token_parent[i] = prev
    vocab = n + len(node_of)
    return CodeIndex(
        scheme="seater", codes=codes, lengths=np.full(n, depth), vocab_size=vocab,
        token_parent=np.array(token_parent), token_level=np.array(token_level),
        catalog_fingerprint=catalog.fingerprint(), leaf_is_item=True,
    )
