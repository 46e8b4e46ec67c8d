"""Generation loss (SEATER eq. 5): teacher-forced cross-entropy over identifier tokens.

By default the softmax at each position is over the tokens the index's ``Constraint`` allows after
the target's prefix (for a tree: the children of the current node, paper eq. 4), which is also what
beam search normalises over at inference. ``full_softmax=True`` uses the whole decoder vocabulary, and
so does an index whose ``preferred_normalize`` is ``"full"`` (it is decoded that way too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gr_toolkit.identifiers.base import ItemIndex
from gr_toolkit.losses.base import LOSSES, LossContext


def teacher_forced_candidates(
    index: ItemIndex, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Walk the constraint along ``targets [B, T]`` (padded -1) for the whole batch at once.

    Returns ``tokens [B, T, W]`` and ``valid [B, T, W]`` (allowed next tokens at each position) and
    ``gold [B, T]``, the position of the target token among them (-1 on padding). A target the
    constraint does not allow is an error: the index and the targets disagree.
    """
    constraint = index.constraint(targets.device)
    b, t = targets.shape
    states = constraint.start(b, targets.device)
    toks, valids = [], []
    for step in range(t):  # loop over positions (a handful), never over examples
        tok, valid = constraint.candidates(states)
        toks.append(tok)
        valids.append(valid)
        active = targets[:, step] >= 0
        if step + 1 < t and bool(active.any()):
            nxt = states.clone()
            nxt[active] = constraint.advance(states[active], targets[active, step])
            states = nxt
    width = max(x.shape[1] for x in toks)
    tokens = torch.stack([F.pad(x, (0, width - x.shape[1]), value=0) for x in toks], dim=1)
    valid = torch.stack([F.pad(x, (0, width - x.shape[1]), value=False) for x in valids], dim=1)
    match = (tokens == targets.unsqueeze(-1)) & valid
    active = targets >= 0
    if bool((active & ~match.any(-1)).any()):
        row, col = (active & ~match.any(-1)).nonzero()[0].tolist()
        raise ValueError(
            f"target token {int(targets[row, col])} at position {col} of row {row} is not allowed by the "
            f"index constraint (targets built for a different index?)"
        )
    gold = torch.where(active, match.float().argmax(-1), torch.full_like(targets, -1))
    return tokens, valid, gold


@LOSSES.register("gen")
@dataclass
class GenerationLoss:
    """Mean over target tokens of ``-log p(y_i | x, y_<i)``."""

    weight: float = 1.0
    full_softmax: bool = False
    name: str = "gen"

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        targets = ctx.targets.to(ctx.hidden.device)
        active = targets >= 0
        # The index may ask for the full softmax (what its beam search normalises over, see retriever).
        if self.full_softmax or getattr(ctx.index, "preferred_normalize", "allowed") == "full":
            logits = ctx.model.score(ctx.hidden[active], None)
            return F.cross_entropy(logits, targets[active])
        key = "gen_candidates"
        if key not in ctx.cache:
            ctx.cache[key] = teacher_forced_candidates(ctx.index, targets)
        tokens, valid, gold = ctx.cache[key]
        logits = ctx.model.score(ctx.hidden[active], tokens[active])  # [P, W]
        logits = logits.masked_fill(~valid[active], float("-inf"))
        return F.cross_entropy(logits, gold[active])
