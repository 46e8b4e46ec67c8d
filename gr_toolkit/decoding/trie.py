"""``TrieConstraint``: the prefix tree of a set of per-item codes, as compact CSR arrays.

Node 0 is the root (the empty prefix). Nodes are numbered breadth-first in lexicographic order, so
the children of a node are contiguous and sorted by token: node ``p`` has ``child_count[p]`` children
at edge positions ``child_offset[p] .. child_offset[p] + child_count[p] - 1`` with tokens
``child_token[e]`` and node ids ``child_node[e]``. ``node_item[v]`` is the item whose identifier ends at
``v`` (-1 elsewhere) and ``node_done[v]`` says nothing more is decoded after ``v``.

* Equal-length codes (balanced tree, no EOS): the leaves are the terminal nodes.
* Variable-length codes (``eos_id`` given): every complete code gets an EOS child leading to a terminal
  node, so a code that is a prefix of another code stays decodable.

States are node ids ``[N]`` (long). ``candidates`` is one gather: with a dense children table (used when
the trie is well filled, e.g. a balanced k-ary tree: ``[n_nodes, max_fanout]``) or CSR offsets +
``arange(W)`` otherwise. Costs per call: O(N * W) time and memory, W = widest node in the batch (dense:
widest node in the trie). Building from n codes of length L is O(n L log n) in vectorised numpy (one
lexicographic sort, then one pass per level).
"""

from __future__ import annotations

import numpy as np
import torch

from gr_toolkit.decoding.constraint import Constraint

#: Build a dense ``[n_nodes, max_fanout]`` children table when it holds at most this many cells per edge
#: (a balanced k-ary tree has ~k cells per edge because leaves get empty rows; an RQ trie with a 256-way
#: root and sparse leaves far more) ...
DENSE_MAX_CELLS_PER_EDGE = 40.0
#: ... and at most this many cells in total (int32 tokens + node ids: 8 bytes per cell).
DENSE_MAX_CELLS = 8_000_000


class InvalidTokenError(ValueError):
    """``advance`` was given a token that is not an allowed continuation of its state."""


class TrieConstraint(Constraint):
    """Prefix-tree constraint over per-item codes. Build with :meth:`from_codes`."""

    def __init__(
        self,
        child_offset: torch.Tensor,
        child_count: torch.Tensor,
        child_token: torch.Tensor,
        child_node: torch.Tensor,
        node_item: torch.Tensor,
        node_done: torch.Tensor,
        max_steps: int,
        eos_id: int | None = None,
        dense: bool | None = None,
    ) -> None:
        self.child_offset = child_offset.long()
        self.child_count = child_count.long()
        self.child_token = child_token.long()
        self.child_node = child_node.long()
        self.node_item = node_item.long()
        self.node_done = node_done.bool()
        self.max_steps = int(max_steps)
        self.eos_id = eos_id
        self.n_nodes = int(self.child_offset.shape[0])
        self.max_fanout = int(self.child_count.max()) if self.n_nodes else 0
        n_edges = int(self.child_token.shape[0])
        cells = self.n_nodes * self.max_fanout
        if dense is None:
            dense = cells <= DENSE_MAX_CELLS and cells <= DENSE_MAX_CELLS_PER_EDGE * max(n_edges, 1) + 1024
        self.dense = bool(dense)
        if self.dense:
            # Dense tables: row v = candidates of node v (token -1 / node -1 in empty slots).
            idx, valid = self._csr_gather(torch.arange(self.n_nodes, device=self.child_offset.device), self.max_fanout)
            self.dense_token = torch.where(valid, self.child_token[idx], -1).int()
            self.dense_node = torch.where(valid, self.child_node[idx], -1).int()

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_codes(
        cls, codes: np.ndarray, lengths: np.ndarray | None = None, eos_id: int | None = None, dense: bool | None = None
    ) -> TrieConstraint:
        """Build from ``codes [n, L]`` (padded with -1 after ``lengths[i]``; all tokens >= 0).

        With ``eos_id`` every code is followed by an EOS edge (variable-length identifiers); without it,
        the last token of each code must land on a leaf (no code may be a proper prefix of another).
        Raises ``ValueError`` on duplicate codes, bad padding or a prefix conflict without EOS.
        """
        codes = np.asarray(codes, dtype=np.int64)
        if codes.ndim != 2:
            raise ValueError(f"codes must be [n_items, max_len]; got shape {codes.shape}")
        n, width = codes.shape
        if n == 0:
            raise ValueError("codes: need at least one item")
        lengths = np.full(n, width, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (n,) or (lengths < 1).any() or (lengths > width).any():
            raise ValueError(f"lengths must be [n_items] with values in 1..{width}")
        inside = np.arange(width)[None, :] < lengths[:, None]
        if (codes[inside] < 0).any():
            bad = int(np.argwhere((codes < 0) & inside)[0, 0])
            raise ValueError(f"item {bad}: code {codes[bad].tolist()} has a negative token inside its length")
        if (codes[~inside] != -1).any():
            bad = int(np.argwhere((codes != -1) & ~inside)[0, 0])
            raise ValueError(f"item {bad}: code {codes[bad].tolist()} must be padded with -1 after length {lengths[bad]}")
        if eos_id is not None:
            if eos_id < 0 or (codes == eos_id).any():
                raise ValueError(f"eos_id {eos_id} must be >= 0 and must not occur inside codes")
            seqs = np.concatenate([codes, np.full((n, 1), -1, dtype=np.int64)], axis=1)
            seqs[np.arange(n), lengths] = eos_id
            seq_len = lengths + 1
        else:
            seqs, seq_len = codes, lengths
        depth = seqs.shape[1]

        # Lexicographic sort (padding -1 sorts first, so a prefix comes before its extensions).
        order = np.lexsort(seqs.T[::-1])
        s = seqs[order]
        slen = seq_len[order]
        # lcp[i] = first position where sorted row i differs from row i-1 (depth if identical).
        diff = s[1:] != s[:-1]
        lcp = np.where(diff.any(1), diff.argmax(1), depth)
        if (lcp == depth).any():
            i = int(np.flatnonzero(lcp == depth)[0]) + 1
            raise ValueError(
                f"items {int(order[i - 1])} and {int(order[i])} share the identifier {codes[order[i]][: lengths[order[i]]].tolist()}"
            )
        lcp = np.concatenate([[-1], lcp])  # row 0 starts a node at every level

        node_at = np.full((n, depth), -1, dtype=np.int64)
        parents, tokens = [], []
        next_id = 1
        for level in range(depth):  # one vectorised pass per level (depth is small)
            valid = slen > level
            new = valid & (lcp <= level)
            ids = next_id + np.cumsum(new) - 1
            node_at[:, level] = np.where(valid, ids, -1)
            rows = np.flatnonzero(new)
            parents.append(np.zeros(len(rows), np.int64) if level == 0 else node_at[rows, level - 1])
            tokens.append(s[rows, level])
            next_id += len(rows)
        n_nodes = next_id
        parent = np.concatenate(parents)  # parent of node 1..n_nodes-1, non-decreasing
        child_token = np.concatenate(tokens)
        child_count = np.bincount(parent, minlength=n_nodes).astype(np.int64)
        child_offset = np.concatenate([[0], np.cumsum(child_count)[:-1]]).astype(np.int64)
        child_node = np.arange(1, n_nodes, dtype=np.int64)

        end_node = node_at[np.arange(n), slen - 1]
        node_item = np.full(n_nodes, -1, dtype=np.int64)
        node_item[end_node] = order
        node_done = node_item >= 0
        if eos_id is None and (child_count[end_node] > 0).any():
            i = int(order[np.flatnonzero(child_count[end_node] > 0)[0]])
            raise ValueError(
                f"item {i}: code {codes[i][: lengths[i]].tolist()} is a prefix of another code; "
                "pass eos_id for variable-length identifiers"
            )
        t = torch.from_numpy
        return cls(
            t(child_offset), t(child_count), t(child_token), t(child_node), t(node_item), t(node_done),
            max_steps=depth, eos_id=eos_id, dense=dense,
        )  # fmt: skip

    def to(self, device: torch.device | str) -> TrieConstraint:
        device = torch.device(device)
        if self.child_offset.device == device:
            return self
        out = TrieConstraint.__new__(TrieConstraint)
        out.__dict__.update(
            {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        )
        return out

    @property
    def device(self) -> torch.device:
        return self.child_offset.device

    # -- Constraint API --------------------------------------------------------------------------
    def start(self, n: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(n, dtype=torch.long, device=device if device is not None else self.device)

    def _csr_gather(self, states: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Edge index ``[N, width]`` of each state's children (clamped) and the valid mask."""
        slots = torch.arange(width, device=states.device)
        valid = slots < self.child_count[states].unsqueeze(1)
        idx = (self.child_offset[states].unsqueeze(1) + slots).clamp_(max=max(self.child_token.shape[0] - 1, 0))
        return idx, valid

    def candidates(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [N, W], valid [N, W])``; tokens are -1 in empty slots. O(N * W), no Python loop."""
        if self.dense:
            tokens = self.dense_token.index_select(0, states).long()
            return tokens, tokens >= 0
        if states.numel() == 0:
            return states.new_empty((0, 0)), torch.zeros((0, 0), dtype=torch.bool, device=states.device)
        width = int(self.child_count[states].max())
        idx, valid = self._csr_gather(states, width)
        return torch.where(valid, self.child_token[idx], -1), valid

    def children(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [N, W], nodes [N, W])`` of each state's children, -1 in empty slots."""
        if self.dense:
            return self.dense_token.index_select(0, states).long(), self.dense_node.index_select(0, states).long()
        tokens, valid = self.candidates(states)
        width = tokens.shape[1]
        idx, _ = self._csr_gather(states, width)
        return tokens, torch.where(valid, self.child_node[idx], -1)

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Child of each state along ``tokens [N]``. Raises :class:`InvalidTokenError` when a token is not
        a child (never moves anywhere else). O(N * W)."""
        tokens = tokens.to(states.device).long()
        cand, nodes = self.children(states)
        hit = (cand == tokens.unsqueeze(1)) & (cand >= 0)
        found = hit.any(1)
        if not bool(found.all()):
            i = int((~found).nonzero()[0, 0])
            allowed = cand[i][cand[i] >= 0].tolist()
            raise InvalidTokenError(
                f"token {int(tokens[i])} is not an allowed continuation of trie node {int(states[i])} "
                f"(beam {i}); allowed: {allowed[:20]}{' ...' if len(allowed) > 20 else ''}"
            )
        return nodes.gather(1, hit.to(torch.uint8).argmax(1, keepdim=True)).squeeze(1)

    def advance_slot(self, states: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Child in candidate column ``slots [N]`` of each state (the column of ``candidates(states)``).
        The beam search's fast path: no token search. Slots must be valid (not checked). O(N)."""
        if self.dense:
            return self.dense_node[states, slots].long()
        edge = (self.child_offset[states] + slots).clamp_(max=max(self.child_node.shape[0] - 1, 0))
        return self.child_node[edge]

    def is_done(self, states: torch.Tensor) -> torch.Tensor:
        return self.node_done[states]

    def items_of(self, states: torch.Tensor) -> torch.Tensor:
        return self.node_item[states]

    # -- helpers ---------------------------------------------------------------------------------
    def paths(self, codes: np.ndarray, lengths: np.ndarray | None = None) -> torch.Tensor:
        """Node ids ``[n, T]`` visited by each code (position j = state BEFORE emitting token j; -1 after
        the end), EOS step included when the trie has one. Used by teacher-forced exact scoring."""
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long, device=self.device)
        n, width = codes.shape
        lengths_t = (
            torch.full((n,), width, dtype=torch.long, device=self.device)
            if lengths is None
            else torch.as_tensor(np.asarray(lengths), dtype=torch.long, device=self.device)
        )
        if self.eos_id is not None:
            codes = torch.cat([codes, codes.new_full((n, 1), -1)], dim=1)
            codes[torch.arange(n, device=self.device), lengths_t] = self.eos_id
            lengths_t = lengths_t + 1
        out = torch.full((n, codes.shape[1]), -1, dtype=torch.long, device=self.device)
        states = self.start(n)
        for j in range(codes.shape[1]):  # loop over positions only
            live = (lengths_t > j).nonzero().squeeze(1)
            out[live, j] = states[live]
            states[live] = self.advance(states[live], codes[live, j])
        return out
