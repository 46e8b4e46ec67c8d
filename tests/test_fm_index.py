"""TokenSuffixIndex: count / next_tokens / locate equal a brute-force scan; spans never cross documents."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gr_toolkit.artifacts import ArtifactError
from gr_toolkit.identifiers.fm_index import TokenSuffixIndex


def brute_occurrences(docs: list[list[int]], span: list[int]) -> list[tuple[int, int]]:
    m = len(span)
    return [(d, i) for d, doc in enumerate(docs) for i in range(len(doc) - m + 1) if doc[i : i + m] == span]


def brute_next(docs: list[list[int]], span: list[int]) -> dict[int, int]:
    m = len(span)
    c: Counter[int] = Counter()
    for d, i in brute_occurrences(docs, span):
        if i + m < len(docs[d]):
            c[docs[d][i + m]] += 1
    return dict(c)


corpora = st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=12), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(docs=corpora, threshold=st.sampled_from([1, 3, 1000]), data=st.data())
def test_next_tokens_count_locate_match_brute_force(docs, threshold, data):
    index = TokenSuffixIndex.build(docs, vocab_size=6, wide_threshold=threshold, cache_depth=2)
    drawn = data.draw(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=4), max_size=8))
    spans = [[]] + [list(s) for s in drawn]
    # Also spans that certainly exist: slices of the documents.
    for doc in docs:
        if doc:
            a = data.draw(st.integers(0, len(doc) - 1))
            spans.append(doc[a : a + data.draw(st.integers(1, 4))])
    for span in spans:
        tokens, counts = index.next_tokens(span)
        assert dict(zip(tokens.tolist(), counts.tolist(), strict=True)) == brute_next(docs, span)
        assert list(tokens) == sorted(tokens)
        if span:
            occ = brute_occurrences(docs, span)
            assert index.count(span) == len(occ)
            items, per_item = index.locate(span)
            want = Counter(d for d, _ in occ)
            assert items.tolist() == sorted(want)
            assert per_item.tolist() == [want[d] for d in sorted(want)]
    # Batched answers and child ranges agree with one-at-a-time narrowing.
    real = [s for s in spans if s and index.count(s)]
    if real:
        width = max(len(s) for s in real)
        padded = np.full((len(real), width), -1)
        for i, s in enumerate(real):
            padded[i, : len(s)] = s
        lo, hi = index.ranges(padded)
        nt = index.next_tokens_batch(np.stack([lo, hi], 1), np.array([len(s) for s in real]))
        for i, s in enumerate(real):
            toks, cnts = nt.row(i)
            assert dict(zip(toks.tolist(), cnts.tolist(), strict=True)) == brute_next(docs, s)
            a = nt.offsets[i]
            for j, t in enumerate(toks.tolist()):
                c_lo, c_hi = index.ranges(np.array([s + [t]]))
                assert (nt.child_lo[a + j], nt.child_lo[a + j] + cnts[j]) == (c_lo[0], c_hi[0])


def test_spans_never_cross_documents():
    index = TokenSuffixIndex.build([[1, 2], [3, 4]], vocab_size=5)
    assert index.count([2, 3]) == 0
    assert index.next_tokens([2])[0].tolist() == []  # 2 ends its title: nothing follows
    assert index.next_tokens([])[0].tolist() == [1, 2, 3, 4]
    assert index.count([1, 2]) == 1 and index.count([3, 4]) == 1


def test_doc_items_map_documents_to_items():
    index = TokenSuffixIndex.build([[1, 2], [2, 3], [2]], vocab_size=4, doc_items=np.array([7, 7, 9]))
    items, occ = index.locate([2])
    assert items.tolist() == [7, 9] and occ.tolist() == [2, 1]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="outside 0..3"):
        TokenSuffixIndex.build([[1, 4]], vocab_size=4)
    with pytest.raises(ValueError, match="empty corpus"):
        TokenSuffixIndex.build([], vocab_size=4)
    index = TokenSuffixIndex.build([[1, 2]], vocab_size=4)
    assert index.count([9]) == 0 and index.count([-1]) == 0


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 30, size=rng.integers(1, 20)).tolist() for _ in range(200)]
    index = TokenSuffixIndex.build(docs, vocab_size=30, wide_threshold=4)
    entries = index.save(tmp_path)
    again = TokenSuffixIndex.load(tmp_path, entries)
    for name, arr in index.arrays().items():
        np.testing.assert_array_equal(arr, again.arrays()[name], err_msg=name)
    for span in ([], [docs[0][0]], docs[5][:3]):
        assert [a.tolist() for a in index.next_tokens(span)] == [a.tolist() for a in again.next_tokens(span)]
    (tmp_path / "sa.npy").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="checksum"):
        TokenSuffixIndex.load(tmp_path, entries)


def test_wide_prefixes_use_the_precomputed_table_and_agree_with_scanning():
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 8, size=20).tolist() for _ in range(300)]
    cached = TokenSuffixIndex.build(docs, vocab_size=8, wide_threshold=16, cache_depth=3)
    scanned = TokenSuffixIndex.build(docs, vocab_size=8, wide_threshold=10**9, cache_depth=3)
    assert len(cached.cache_keys) > 9  # root + unigrams + some bigrams are wide here
    for span in ([], [0], [1, 2], [3, 3, 3], [7, 0, 1, 2]):
        a, b = cached.next_tokens(span), scanned.next_tokens(span)
        assert a[0].tolist() == b[0].tolist() and a[1].tolist() == b[1].tolist()
    # Batched narrowing (table lookups for wide prefixes, binary search otherwise) = plain binary search.
    spans = rng.integers(-1, 9, size=(500, 4))  # includes absent spans and out-of-alphabet tokens
    lengths = rng.integers(1, 5, size=500)
    got = cached.ranges(spans, lengths)
    want = [scanned._narrow_one(0, len(scanned.text), 0, int(s[0])) for s in spans]
    for i, s in enumerate(spans):
        lo, hi = want[i]
        for d in range(1, lengths[i]):
            lo, hi = scanned._narrow_one(lo, hi, d, int(s[d])) if lo < hi else (lo, hi)
        assert (got[0][i], got[1][i]) == (lo, hi) or (got[1][i] - got[0][i] == 0 and hi - lo == 0)
