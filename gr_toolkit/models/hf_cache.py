"""Row selection for Hugging Face ``Cache`` objects without mutating the original.

``Cache.reorder_cache`` works in place; the beam search and ``expand_memory`` need a NEW cache whose
rows are ``index`` of the old one, while the old one (e.g. a prompt cache kept as encoder memory) stays
usable. Each layer object is shallow-copied and its key/value tensors are replaced by one
``index_select`` each (the layer's own ``reorder_cache``), so no tensor is modified in place.
"""

from __future__ import annotations

import copy

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, EncoderDecoderCache


def select_cache(cache: Cache | None, index: torch.Tensor | None) -> Cache | None:
    """A new cache holding rows ``index`` of ``cache`` (``index=None``: same rows, new container, so
    that a forward pass appending to the copy leaves ``cache`` untouched)."""
    if cache is None:
        return None
    if isinstance(cache, EncoderDecoderCache):
        out = EncoderDecoderCache(
            select_cache(cache.self_attention_cache, index), select_cache(cache.cross_attention_cache, index)
        )
        out.is_updated = dict(cache.is_updated)
        return out
    out = copy.copy(cache)
    layers = []
    for layer in cache.layers:
        new = copy.copy(layer)
        if index is not None:
            new.reorder_cache(index)  # rebinds keys/values to index_select'ed tensors
        layers.append(new)
    out.layers = layers
    return out


def cache_length(cache: Cache | None) -> int:
    return 0 if cache is None else int(cache.get_seq_length())


def fixed_cache(key_values: list[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A ``DynamicCache`` whose layers ARE the given tensors (no concatenation copy), for K/V that are
    computed once and only read afterwards (cross-attention)."""
    cache = DynamicCache()
    layers = []
    for k, v in key_values:
        layer = DynamicLayer()
        layer.lazy_initialization(k, v)
        layer.keys, layer.values = k, v
        layers.append(layer)
    cache.layers = layers
    return cache
