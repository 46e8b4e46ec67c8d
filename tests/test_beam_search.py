import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.decoding.constraint import Constraint
from gr_toolkit.decoding.trie import TrieConstraint
from tests.fakes import TinyGRURetriever, random_batch
from tests.test_trie import random_codes


def _valid_identifiers(out, codes, lengths, eos):
    """Every alive beam's tokens are exactly one item's code (+EOS) and its state names that item."""
    seqs = {tuple(c[:n]) + ((eos,) if eos is not None else ()): i for i, (c, n) in enumerate(zip(codes, lengths, strict=True))}
    b, k, _ = out.tokens.shape
    items = []
    for q in range(b):
        row = []
        for j in range(k):
            if not out.alive[q, j]:
                assert torch.isinf(out.scores[q, j])
                continue
            toks = tuple(t for t in out.tokens[q, j].tolist() if t >= 0)
            assert toks in seqs, f"decoded {toks} is not an identifier"
            row.append(seqs[toks])
        assert len(row) == len(set(row)), "duplicate identifiers in one query's beams"
        items.append(row)
    return items


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), variable=st.booleans(), beam=st.integers(1, 12))
def test_every_alive_beam_is_exactly_one_items_code(seed, variable, beam):
    codes, lengths = random_codes(seed, variable)
    vocab = 100
    eos = vocab + 1 if variable else None
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=eos)
    model = TinyGRURetriever(source_vocab=50, vocab_size=vocab, dim=8, seed=seed % 7)
    batch = random_batch(3, seed=seed)
    with torch.inference_mode():
        out = beam_search(model, trie, batch, beam_size=beam)
    items = _valid_identifiers(out, codes, lengths, eos)
    flat = trie.items_of(out.states).view(3, beam)
    for q in range(3):
        alive_items = flat[q][out.alive[q]].tolist()
        assert alive_items == items[q]
        # beam covers min(beam, n_items) identifiers; scores are sorted and are log-probs
        assert len(alive_items) == min(beam, len(codes))
        s = out.scores[q][out.alive[q]]
        assert (s <= 1e-6).all() and torch.all(s[:-1] >= s[1:])


def test_beam_search_shapes_and_finished_beams_carry_scores():
    codes = np.array([[0, -1, -1], [1, 2, -1], [1, 3, 4]])
    lengths = np.array([1, 2, 3])
    vocab = 5
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=vocab + 1)
    model = TinyGRURetriever(source_vocab=50, vocab_size=vocab, dim=8)
    out = beam_search(model, trie, random_batch(2), beam_size=4)
    assert out.tokens.shape == (2, 4, 4) and out.scores.shape == (2, 4) and out.states.shape == (8,)
    assert out.alive.sum(1).tolist() == [3, 3]
    # the short identifier [0, EOS] finished at step 2 and was padded with -1 afterwards
    for q in range(2):
        rows = [out.tokens[q, j].tolist() for j in range(3)]
        assert [0, vocab + 1, -1, -1] in rows


def test_dead_ends_are_dropped_never_decoded_unconstrained():
    class DeadEndConstraint(TrieConstraint):
        """Trie where item 0's last node pretends to have no children and not to be done."""

        def is_done(self, states):
            return super().is_done(states) & (states != self.blocked)

    codes = np.array([[0, 1], [0, 2], [1, 0]])
    base = TrieConstraint.from_codes(codes)
    cons = DeadEndConstraint.__new__(DeadEndConstraint)
    cons.__dict__.update(base.__dict__)
    s = base.advance(base.advance(base.start(1), torch.tensor([0])), torch.tensor([1]))
    cons.blocked = int(s[0])
    model = TinyGRURetriever(source_vocab=50, vocab_size=4, dim=8)
    out = beam_search(model, cons, random_batch(2), beam_size=3, max_steps=4)
    for q in range(2):
        alive = out.alive[q]
        assert alive.sum() == 2
        for j in range(3):
            toks = [t for t in out.tokens[q, j].tolist() if t >= 0]
            if alive[j]:
                assert toks in ([0, 2], [1, 0])
            else:
                assert torch.isinf(out.scores[q, j])


def test_full_normalization_and_length_normalize_run_and_stay_valid():
    codes, lengths = random_codes(3, True)
    vocab = 100
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=vocab + 1)
    model = TinyGRURetriever(source_vocab=50, vocab_size=vocab, dim=8)
    batch = random_batch(2)
    allowed = beam_search(model, trie, batch, beam_size=5)
    full = beam_search(model, trie, batch, beam_size=5, normalize="full")
    _valid_identifiers(full, codes, lengths, vocab + 1)
    # full-vocab log-probs are lower than children-only ones
    assert full.scores[:, 0].max() < allowed.scores[:, 0].max()
    normed = beam_search(model, trie, batch, beam_size=5, length_normalize=True)
    _valid_identifiers(normed, codes, lengths, vocab + 1)
    with pytest.raises(ValueError, match="normalize"):
        beam_search(model, trie, batch, beam_size=5, normalize="nope")


def test_bos_id_required_without_model_attribute():
    trie = TrieConstraint.from_codes(np.array([[0], [1]]))
    model = TinyGRURetriever(source_vocab=50, vocab_size=2, dim=8)
    del model.bos_id
    with pytest.raises(ValueError, match="bos_id"):
        beam_search(model, trie, random_batch(1), beam_size=2)
    out = beam_search(model, trie, random_batch(1), beam_size=2, bos_id=2)
    assert out.alive.all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    codes, lengths = random_codes(5, True)
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=101)
    model = TinyGRURetriever(source_vocab=50, vocab_size=100, dim=8)
    batch = random_batch(3)
    cpu = beam_search(model, trie, batch, beam_size=6)
    gpu = beam_search(model.cuda(), trie.to("cuda"), batch.to("cuda"), beam_size=6)
    assert torch.equal(cpu.tokens, gpu.tokens.cpu())
    torch.testing.assert_close(cpu.scores, gpu.scores.cpu(), rtol=1e-4, atol=1e-4)


class _GenericView(Constraint):
    """A plain ``Constraint`` around a trie (no ``advance_slot``): exercises the generic advance path."""

    def __init__(self, trie):
        self.trie, self.max_steps = trie, trie.max_steps

    def start(self, n, device="cpu"):
        return self.trie.start(n, device)

    def candidates(self, states):
        return self.trie.candidates(states)

    def advance(self, states, tokens):
        return self.trie.advance(states, tokens)

    def is_done(self, states):
        return self.trie.is_done(states)

    def items_of(self, states):
        return self.trie.items_of(states)


@pytest.mark.parametrize("dense", [True, False])
def test_generic_and_fast_advance_paths_agree(dense):
    codes, lengths = random_codes(21, True, n_max=60)
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=101, dense=dense)
    model = TinyGRURetriever(source_vocab=50, vocab_size=100, dim=8)
    batch = random_batch(3)
    fast = beam_search(model, trie, batch, beam_size=7)
    slow = beam_search(model, _GenericView(trie), batch, beam_size=7)
    assert torch.equal(fast.tokens, slow.tokens) and torch.equal(fast.states, slow.states)
    torch.testing.assert_close(fast.scores, slow.scores)
