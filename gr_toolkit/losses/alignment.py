"""Alignment loss (SEATER eq. 6, section 3.3.2): InfoNCE that pulls each identifier token towards
its parent token and pushes it away from the other tokens of the batch.

Pairs (token j, parent p) are read from the batch's target identifiers: the token before j in the
identifier is its parent (for a tree index this equals ``index.token_parent[j]``; for per-level
codebooks such as RQ it is the previous level's code of that item). First-level tokens have no parent
token: by default their parent is the BOS token, which plays the root ("start") node of the tree as in
the paper's Figure 2 (``root="bos"``); ``root="skip"`` leaves them out. EOS is not a tree node and is
never aligned. Each distinct (j, p) pair of the batch counts once.

For pair (j, p) the candidates are all distinct tokens B of the batch (identifier tokens and their
parents) except j itself; with ``exclude_family`` (default, as in the paper) the children of j and j's
other parents (possible with codebooks that are not a tree) are removed from the negatives too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gr_toolkit.losses.base import LOSSES, LossContext, decoder_inputs


def parent_pairs(targets: torch.Tensor, bos_id: int, eos_id: int, root: str = "bos") -> torch.Tensor:
    """Distinct ``(token, parent) [P, 2]`` pairs of identifier targets ``[B, T]`` (padded -1)."""
    parents = decoder_inputs(targets, bos_id)  # the token before each one (BOS before the first)
    keep = (targets >= 0) & (targets != eos_id)
    if root == "skip":
        keep[:, 0] = False
    elif root != "bos":
        raise ValueError(f"root must be 'bos' or 'skip', got {root!r}")
    pairs = torch.stack([targets[keep], parents[keep]], dim=1)
    return torch.unique(pairs, dim=0)


def alignment_logits(
    emb: torch.Tensor, pairs: torch.Tensor, tau: float, exclude_family: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [P, U], positive [P])`` over the batch's distinct tokens U, masked entries -inf."""
    tokens, inv = torch.unique(pairs.reshape(-1), return_inverse=True)
    inv = inv.view(-1, 2)
    child, parent = inv[:, 0], inv[:, 1]
    e = F.normalize(emb[tokens], dim=-1)
    cos = e[child] @ e.T  # [P, U]
    u = len(tokens)
    drop = F.one_hot(child, u).bool()
    if exclude_family:
        is_parent_of = torch.zeros(u, u, dtype=torch.bool, device=emb.device)
        is_parent_of[parent, child] = True  # [a, b]: a is a parent of b
        kids = is_parent_of[child]  # children of j
        other_parents = is_parent_of[:, child].T & ~F.one_hot(parent, u).bool()
        drop |= kids | other_parents
    return (cos / tau).masked_fill(drop, float("-inf")), parent


@LOSSES.register("align")
@dataclass
class AlignmentLoss:
    weight: float = 0.05
    tau: float = 0.1
    exclude_family: bool = True
    root: str = "bos"
    name: str = "align"

    def __call__(self, ctx: LossContext) -> torch.Tensor:
        emb = ctx.model.token_embeddings()
        targets = ctx.targets.to(emb.device)
        pairs = parent_pairs(targets, ctx.index.bos_id, ctx.index.eos_id, self.root)
        if len(pairs) == 0:
            return emb.sum() * 0.0
        logits, positive = alignment_logits(emb, pairs, self.tau, self.exclude_family)
        return F.cross_entropy(logits, positive)
