"""Teacher-forcing targets for (example, item) pairs: the one place trainers build them.

Most indexes identify an item by itself (``index.decoder_targets(items)``). An index whose identifier
of an item depends on the query that led to it (``targets_need_queries``, e.g. the lexical scheme:
the title spans the query matches) also gets each pair's query text when the examples are queries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gr_toolkit.data.types import Examples


def needs_queries(index: Any, examples: Examples) -> bool:
    return bool(getattr(index, "targets_need_queries", False)) and examples.kind == "query"


def targets_for(
    index: Any, examples: Examples, example_ids: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor
) -> torch.Tensor:
    """Decoder targets ``[B, T]`` for pairs ``(examples[example_ids[i]], items[i])`` (padded with -1)."""
    if isinstance(items, torch.Tensor):
        items = items.cpu()
    if not needs_queries(index, examples):
        return index.decoder_targets(items)
    ids = np.asarray(example_ids.cpu() if isinstance(example_ids, torch.Tensor) else example_ids, dtype=np.int64)
    if ids.shape[0] != len(items):
        raise ValueError(f"{ids.shape[0]} example ids for {len(items)} target items")
    return index.decoder_targets(items, queries=[examples.queries[i] for i in ids.tolist()])
