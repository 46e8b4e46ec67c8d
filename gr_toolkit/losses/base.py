"""Loss plug-ins. Each is a callable on a ``LossContext`` returning a scalar; the trainer sums
``weight * loss`` over the configured plug-ins (``--losses gen,align,rank``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from gr_toolkit.identifiers.base import ItemIndex
from gr_toolkit.models.base import GenerativeRetriever, SourceBatch
from gr_toolkit.registry import Registry


@dataclass
class LossContext:
    """Everything a loss may need for one batch; computed once by the trainer and shared."""

    model: GenerativeRetriever
    index: ItemIndex
    batch: SourceBatch
    target_items: torch.Tensor  # [B] internal item ids
    targets: torch.Tensor  # [B, T] decoder-vocab target tokens (padded -1)
    memory: Any
    hidden: torch.Tensor  # [B, T, d] decoder states for BOS + targets[:, :-1]
    cache: dict[str, Any] = field(default_factory=dict)  # plug-ins may share derived tensors here


def decoder_inputs(targets: torch.Tensor, bos_id: int) -> torch.Tensor:
    """Teacher-forcing decoder input for ``targets [B, T]``: ``[BOS] + targets[:, :-1]`` (each position
    sees the token before it; padding -1 stays where it was, shifted one step)."""
    return torch.cat([targets.new_full((len(targets), 1), bos_id), targets[:, :-1]], dim=1)


class LossPlugin(Protocol):
    name: str

    def __call__(self, ctx: LossContext) -> torch.Tensor: ...


LOSSES: Registry[Any] = Registry("loss")
