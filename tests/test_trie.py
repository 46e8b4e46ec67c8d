import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gr_toolkit.decoding.trie import InvalidTokenError, TrieConstraint


def random_codes(seed: int, variable: bool, n_max: int = 40, depth: int = 4, vocab: int = 6):
    """Unique random codes (tokens 0..vocab-1); variable-length sets include prefixes of other codes."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, n_max))
    lens = rng.integers(1, depth + 1, n) if variable else np.full(n, depth)
    rows = {tuple(int(x) for x in rng.integers(0, rng.integers(1, vocab + 1), size=m)) for m in lens}
    if variable and len(rows) > 1:  # make sure some codes are prefixes of others
        longest = max(rows, key=len)
        rows.update(longest[:j] for j in range(1, len(longest)))
    rows = sorted(rows)
    rng.shuffle(rows)
    width = max(len(r) for r in rows)
    codes = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        codes[i, : len(r)] = r
    return codes, np.array([len(r) for r in rows])


def brute_children(codes, lengths, prefix, eos_id):
    out = set()
    for c, n in zip(codes, lengths, strict=True):
        c = tuple(c[:n])
        if len(c) > len(prefix) and c[: len(prefix)] == prefix:
            out.add(c[len(prefix)])
        if eos_id is not None and c == prefix:
            out.add(eos_id)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), variable=st.booleans(), dense=st.sampled_from([None, False, True]))
def test_candidates_match_brute_force_and_walks_reach_items(seed, variable, dense):
    codes, lengths = random_codes(seed, variable)
    eos = 99 if variable else None
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=eos, dense=dense)
    seqs = [tuple(c[:n]) + ((eos,) if variable else ()) for c, n in zip(codes, lengths, strict=True)]
    # Walk every item's sequence in one batch, comparing candidate sets with brute force at each step.
    n, steps = len(seqs), max(len(s) for s in seqs)
    states = trie.start(n)
    for j in range(steps):
        cand, valid = trie.candidates(states)
        live = [i for i in range(n) if len(seqs[i]) > j]
        for i in live:
            got = set(cand[i][valid[i]].tolist())
            assert got == brute_children(codes, lengths, seqs[i][:j], eos)
            assert sorted(cand[i][valid[i]].tolist()) == cand[i][valid[i]].tolist()
        assert not trie.is_done(states[live]).any()
        idx = torch.tensor(live)
        states[idx] = trie.advance(states[idx], torch.tensor([seqs[i][j] for i in live]))
    assert trie.is_done(states).all()
    assert trie.items_of(states).tolist() == list(range(n))
    # Terminal states have no candidates.
    _, valid = trie.candidates(states)
    assert not valid.any()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), variable=st.booleans())
def test_advance_with_non_candidate_raises(seed, variable):
    codes, lengths = random_codes(seed, variable)
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=99 if variable else None)
    root = trie.start(1)
    allowed = set(trie.candidates(root)[0][0].tolist())
    bad = next(t for t in range(200) if t not in allowed)
    with pytest.raises(InvalidTokenError, match="not an allowed continuation"):
        trie.advance(root, torch.tensor([bad]))
    # A finished state accepts nothing.
    done = trie.advance(root, torch.tensor([int(codes[0, 0])]))
    for tok in codes[0, 1 : lengths[0]]:
        done = trie.advance(done, torch.tensor([int(tok)]))
    if variable:
        done = trie.advance(done, torch.tensor([99]))
    with pytest.raises(InvalidTokenError):
        trie.advance(done, torch.tensor([0]))


def test_hand_built_variable_trie_layout():
    codes = np.array([[0, 1, -1], [0, 1, 2], [3, -1, -1]])
    trie = TrieConstraint.from_codes(codes, np.array([2, 3, 1]), eos_id=9)
    # root -> {0, 3}; 0 -> {1}; 3 -> {EOS}; 0,1 -> {2, EOS}
    assert trie.child_token[trie.child_offset[0] : trie.child_offset[0] + trie.child_count[0]].tolist() == [0, 3]
    s = trie.advance(trie.start(2), torch.tensor([0, 0]))
    s = trie.advance(s, torch.tensor([1, 1]))
    s = trie.advance(s, torch.tensor([9, 2]))
    assert trie.is_done(s).tolist() == [True, False]
    assert trie.items_of(s)[0].item() == 0
    s2 = trie.advance(s[1:], torch.tensor([9]))
    assert trie.items_of(s2).tolist() == [1]
    assert trie.max_steps == 4


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="share the identifier"):
        TrieConstraint.from_codes(np.array([[0, 1], [0, 1]]))
    with pytest.raises(ValueError, match="prefix of another code"):
        TrieConstraint.from_codes(np.array([[0, -1], [0, 1]]), np.array([1, 2]))
    with pytest.raises(ValueError, match="padded with -1"):
        TrieConstraint.from_codes(np.array([[0, 5], [1, 1]]), np.array([1, 2]))
    with pytest.raises(ValueError, match="eos_id"):
        TrieConstraint.from_codes(np.array([[0, 5], [1, 1]]), eos_id=5)


def test_balanced_tree_uses_dense_table_and_matches_csr():
    k, depth = 4, 3
    rng = np.random.default_rng(0)
    perm = rng.permutation(k**depth)[:50]
    codes = np.stack([(perm // k ** (depth - 1 - j)) % k for j in range(depth)], 1)
    dense = TrieConstraint.from_codes(codes)
    csr = TrieConstraint.from_codes(codes, dense=False)
    assert dense.dense and not csr.dense
    states = torch.arange(dense.n_nodes)
    for a, b in zip(dense.candidates(states), csr.candidates(states), strict=True):
        w = b.shape[1]
        assert torch.equal(a[:, :w], b) and (a[:, w:] == (-1 if a.dtype == torch.long else False)).all()


def test_build_is_fast_for_a_million_codes():
    import time

    k, depth, n = 16, 5, 1_000_000
    perm = np.random.default_rng(0).permutation(k**depth)[:n]
    codes = np.stack([(perm // k ** (depth - 1 - j)) % k for j in range(depth)], 1)
    t0 = time.process_time()  # CPU time: robust to a shared machine
    trie = TrieConstraint.from_codes(codes)
    assert time.process_time() - t0 < 10.0
    assert int(trie.node_done.sum()) == n
    # spot-check: walking item 123456's code ends at item 123456
    s = trie.start(1)
    for tok in codes[123456]:
        s = trie.advance(s, torch.tensor([int(tok)]))
    assert trie.items_of(s).item() == 123456
