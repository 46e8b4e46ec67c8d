"""Model selection on a validation score with early stopping (shared by the DSSM and SASRec loops)."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn


class BestStateKeeper:
    """Keeps a copy of the model state with the best validation score so far.

    ``update`` after each evaluation; ``should_stop`` once ``patience`` evaluations in a row did not
    improve (``patience`` 0 = never); ``restore`` loads the best state back (no-op if none was kept).
    ``best`` starts at -1.0, below any metric in [0, 1], so the first evaluation is always kept.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -1.0
        self.best_epoch = 0
        self.stale = 0
        self._state: dict[str, Any] | None = None

    def update(self, model: nn.Module, score: float, epoch: int) -> None:
        if score > self.best:
            self.best, self.best_epoch, self.stale = score, epoch, 0
            self._state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self._state is not None:
            model.load_state_dict(self._state)


def validation_metrics(ranked: Any, targets: Any) -> dict[str, float]:
    """Recall/NDCG-style metrics at 10 and 20 of ``ranked`` item ids over all validation rows (no count)."""
    from gr_toolkit.evaluation.metrics import evaluate_rankings

    m = evaluate_rankings(ranked, targets, ks=(10, 20))["all"]
    return {k: v for k, v in m.items() if k != "n"}


def epoch_line(name: str, rec: dict[str, float], select_metric: str) -> str:
    """One progress line for an epoch record (``epoch``, ``loss``, ``seconds`` and any validation metrics)."""
    valid = f" valid {select_metric} {rec[select_metric]:.4f}" if select_metric in rec else ""
    return f"{name} epoch {rec['epoch']}: loss {rec['loss']:.4f}{valid} ({rec['seconds']:.0f}s)"
