"""Exponential moving average of the trained weights, used for validation and the saved best model.

Averaging the weights of the last few thousand steps smooths the step-to-step noise of Adam on small,
sparse datasets (the Amazon sequences); the average, not the raw weights, is what gets validated,
selected and saved. The update is one fused ``_foreach`` call per step, not a loop over tensors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """EMA ``shadow <- decay_t * shadow + (1 - decay_t) * param`` over a fixed list of named tensors.

    ``decay_t = min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so the first steps are not
    dominated by the random initialisation (the usual warm-up of TF/timm EMAs).
    """

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) (0 turns the average off); got {decay}")
        names = [n for n, _ in named_params]
        if len(set(names)) != len(names):
            raise ValueError("WeightAverage needs unique parameter names")
        self.decay = decay
        self.names = names
        self.params = [p for _, p in named_params]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current parameters into the average (call after each optimiser step)."""
        d = self.current_decay()
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average from the current parameters (after the weights were reloaded)."""
        torch._foreach_copy_(self.shadow, [p.detach() for p in self.params])
        self.updates = 0

    @torch.no_grad()
    def _swap(self) -> None:
        raw = [p.detach().clone() for p in self.params]
        torch._foreach_copy_([p.detach() for p in self.params], self.shadow)
        torch._foreach_copy_(self.shadow, raw)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside the block the parameters hold the average; the raw weights come back afterwards."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    # checkpoints: the average is part of the training state, so a resumed run continues it exactly
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {n: s.detach().contiguous().cpu() for n, s in zip(self.names, self.shadow, strict=True)}

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, torch.Tensor], updates: int) -> None:
        missing = sorted(set(self.names) - set(tensors))
        if missing:
            raise ValueError(f"the EMA checkpoint lacks {', '.join(missing[:5])}")
        for n, s in zip(self.names, self.shadow, strict=True):
            s.copy_(tensors[n].to(s.device))
        self.updates = int(updates)
