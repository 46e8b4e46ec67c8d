"""FMIndexConstraint: every decoded span occurs in some title; dead ends finish spans; decoding terminates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.decoding.fm_constraint import DONE, SPAN_LEN, FMIndexConstraint
from gr_toolkit.identifiers.fm_index import TokenSuffixIndex
from tests.fakes import TinyGRURetriever, random_batch

V = 7  # corpus tokens 0..6; separator 7, BOS 8, EOS 9
SEP, EOS = V, V + 2


def corpus(seed: int = 0, n_docs: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, V, size=rng.integers(1, 9)).tolist() for _ in range(n_docs)]


def occurs(docs: list[list[int]], span: list[int]) -> bool:
    m = len(span)
    return any(d[i : i + m] == span for d in docs for i in range(len(d) - m + 1))


def split(seq: list[int]) -> list[list[int]]:
    spans, cur = [], []
    for t in seq:
        if t < V:
            cur.append(t)
        else:
            spans.append(cur)
            cur = []
    return spans


def test_random_walks_produce_existing_spans():
    docs = corpus()
    fm = TokenSuffixIndex.build(docs, vocab_size=V, wide_threshold=4, cache_depth=2)
    c = FMIndexConstraint(fm, SEP, EOS, n_spans=3, max_span_len=4)
    gen = np.random.default_rng(0)
    n = 64
    states = c.start(n)
    seqs: list[list[int]] = [[] for _ in range(n)]
    for _ in range(c.max_steps):
        done = c.is_done(states)
        if done.all():
            break
        cand, valid = c.candidates(states)
        assert not (valid & done[:, None]).any()  # finished beams have no candidates
        assert valid[~done].any(dim=1).all()  # a live walk always has a way to go on or end
        pick = torch.tensor([gen.choice(np.flatnonzero(v.numpy())) if v.any() else 0 for v in valid])
        tok = cand[torch.arange(n), pick]
        live = (~done).nonzero().squeeze(1)
        states[live] = c.advance(states[live], tok[live])
        for i in live.tolist():
            seqs[i].append(int(tok[i]))
    assert c.is_done(states).all(), "decoding must terminate within max_steps"
    for s in seqs:
        assert s[-1] == EOS and EOS not in s[:-1]
        spans = split(s)
        assert 1 <= len(spans) <= 3
        for span in spans:
            assert 1 <= len(span) <= 4 and occurs(docs, span), (s, span)


def test_candidates_follow_the_corpus_and_rules():
    docs = [[1, 2, 3], [1, 2, 4], [5]]
    fm = TokenSuffixIndex.build(docs, vocab_size=V)
    c = FMIndexConstraint(fm, SEP, EOS, n_spans=2, max_span_len=3, min_span_tokens=2)

    def allowed(seq: list[int]) -> list[int]:
        st = c.start(1)
        for t in seq:
            st = c.advance(st, torch.tensor([t]))
        cand, valid = c.candidates(st)
        return sorted(cand[0][valid[0]].tolist())

    assert allowed([]) == [1, 2, 3, 4, 5]  # no SEP/EOS before a span starts
    assert allowed([1]) == [2]  # shorter than min_span_tokens and can continue: no end yet
    assert allowed([5]) == [SEP, EOS]  # dead end: the span ends even below min_span_tokens
    assert allowed([1, 2]) == [3, 4, SEP, EOS]
    assert allowed([1, 2, 3]) == [SEP, EOS]  # title end
    assert allowed([1, 2, SEP]) == [1, 2, 3, 4, 5]  # a new span starts from the whole corpus
    assert allowed([1, 2, SEP, 2, 3]) == [EOS]  # n_spans reached: only EOS
    assert allowed([1, 2, SEP, 2, 3, EOS]) == []
    # A token that was not a candidate makes a dead end (no candidate, not done), never free decoding.
    st = c.advance(c.start(1), torch.tensor([1]))
    st = c.advance(st, torch.tensor([5]))
    cand, valid = c.candidates(st)
    assert not valid.any() and not c.is_done(st).any()


def test_max_span_len_bounds_spans():
    docs = [[1] * 20]
    fm = TokenSuffixIndex.build(docs, vocab_size=V)
    c = FMIndexConstraint(fm, SEP, EOS, n_spans=1, max_span_len=3)
    st = c.start(1)
    for _ in range(3):
        st = c.advance(st, torch.tensor([1]))
    cand, valid = c.candidates(st)
    assert sorted(cand[0][valid[0]].tolist()) == [EOS]
    assert int(st[0, SPAN_LEN]) == 3 and int(st[0, DONE]) == 0


def test_bad_configuration_is_rejected():
    fm = TokenSuffixIndex.build([[1, 2]], vocab_size=V)
    with pytest.raises(ValueError, match="collides"):
        FMIndexConstraint(fm, 3, EOS)
    with pytest.raises(ValueError, match="min_span_tokens"):
        FMIndexConstraint(fm, SEP, EOS, max_span_len=2, min_span_tokens=3)


def test_beam_search_with_fm_constraint_returns_existing_spans():
    docs = corpus(seed=3, n_docs=30)
    fm = TokenSuffixIndex.build(docs, vocab_size=V, wide_threshold=8)
    c = FMIndexConstraint(fm, SEP, EOS, n_spans=2, max_span_len=3)
    model = TinyGRURetriever(source_vocab=50, vocab_size=V + 1)  # identifier vocab = corpus + separator
    out = beam_search(model, c, random_batch(4), beam_size=6, bos_id=V + 1)
    assert out.alive.any()
    for b in range(4):
        for j in range(6):
            if not out.alive[b, j]:
                continue
            seq = [t for t in out.tokens[b, j].tolist() if t >= 0]
            assert seq[-1] == EOS
            for span in split(seq):
                assert occurs(docs, span)


def test_logits_processor_adapter_keeps_generate_on_existing_spans():
    from gr_toolkit.decoding.logits_processor import ConstraintLogitsProcessor

    docs = corpus(seed=5, n_docs=20)
    fm = TokenSuffixIndex.build(docs, vocab_size=V)
    c = FMIndexConstraint(fm, SEP, EOS, n_spans=2, max_span_len=3)
    hf_eos, hf_vocab = 20, 24
    proc = ConstraintLogitsProcessor(c, token_map=np.arange(V + 1) + 2, eos_token_id=hf_eos, prefix_length=1)
    gen = np.random.default_rng(1)
    ids = torch.zeros(16, 1, dtype=torch.long)  # decoder start token 0
    for _ in range(c.max_steps + 1):
        allowed = torch.isfinite(proc(ids, torch.zeros(16, hf_vocab)))
        assert allowed.any(dim=1).all()
        nxt = torch.tensor([gen.choice(np.flatnonzero(a.numpy())) for a in allowed])
        ids = torch.cat([ids, nxt[:, None]], dim=1)
    for row in ids[:, 1:].tolist():
        end = row.index(hf_eos)  # every row ended
        seq = [t - 2 for t in row[:end]] + [EOS]
        for span in split(seq):
            assert 1 <= len(span) <= 3 and occurs(docs, span)
