"""Loss plug-ins, registered in ``LOSSES``: ``gen`` (cross-entropy), ``align`` and ``rank`` (SEATER).

The trainer minimises ``sum(loss.weight * loss(ctx))`` (paper eq. 9: ``L_gen + lambda_a L_ali +
lambda_r L_rank``). Losses with parameters (``rank``'s ``W``) are ``nn.Module``s: the trainer optimises
and checkpoints them with the model.
"""

from __future__ import annotations

import inspect
from typing import Any

from gr_toolkit.losses.alignment import AlignmentLoss
from gr_toolkit.losses.base import LOSSES, LossContext, LossPlugin
from gr_toolkit.losses.generation import GenerationLoss
from gr_toolkit.losses.ranking import RankingLoss


def build_losses(names: list[str] | str, hidden_size: int, options: dict[str, dict[str, Any]] | None = None) -> list[Any]:
    """Instantiate the named plug-ins; ``options[name]`` holds keyword options (``weight``, ``tau``, ...).

    ``hidden_size`` is passed to plug-ins that need it (the ranking loss's ``W``).
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError("at least one loss is needed (e.g. --losses gen)")
    options = options or {}
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ValueError(f"options given for loss(es) not in use: {', '.join(unknown)} (losses: {', '.join(names)})")
    out = []
    for name in names:
        cls = LOSSES.get(name)
        opts = dict(options.get(name, {}))
        params = inspect.signature(cls).parameters
        bad = sorted(set(opts) - set(params))
        if bad:
            valid = ", ".join(p for p in params if p not in ("hidden_size", "name"))
            raise ValueError(f"loss {name!r} has no option(s) {', '.join(bad)}; valid: {valid}")
        if "hidden_size" in params:
            opts["hidden_size"] = hidden_size
        out.append(cls(**opts))
    return out


__all__ = ["LOSSES", "LossContext", "LossPlugin", "GenerationLoss", "AlignmentLoss", "RankingLoss", "build_losses"]
