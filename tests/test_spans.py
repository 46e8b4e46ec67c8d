"""Multi-span training targets: spans of the clicked title, in title order, joined by separators, EOS-terminated."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gr_toolkit.identifiers.fm_index import TokenSuffixIndex
from gr_toolkit.identifiers.spans import matched_runs, multispan_target, multispan_targets, select_spans

V = 12
SEP, EOS = V, V + 2


def find(title: list[int], span: list[int], start: int = 0) -> int:
    for i in range(start, len(title) - len(span) + 1):
        if title[i : i + len(span)] == span:
            return i
    return -1


@settings(max_examples=80, deadline=None)
@given(
    titles=st.lists(st.lists(st.integers(0, V - 1), min_size=1, max_size=15), min_size=1, max_size=10),
    query=st.lists(st.integers(0, V - 1), max_size=6),
    n_spans=st.integers(1, 4),
    max_len=st.integers(1, 5),
    pick=st.integers(0, 100),
)
def test_targets_are_ordered_non_overlapping_title_spans(titles, query, n_spans, max_len, pick):
    fm = TokenSuffixIndex.build(titles, vocab_size=V)
    title = titles[pick % len(titles)]
    target = multispan_target(np.array(query), np.array(title), fm, SEP, EOS, n_spans=n_spans, max_span_len=max_len)
    seq = target.tolist()
    assert seq[-1] == EOS and EOS not in seq[:-1]
    spans, cur = [], []
    for t in seq[:-1]:
        if t == SEP:
            spans.append(cur)
            cur = []
        else:
            cur.append(t)
    spans.append(cur)
    assert 1 <= len(spans) <= n_spans
    pos = 0
    for span in spans:
        assert 1 <= len(span) <= max_len
        at = find(title, span, pos)
        assert at >= 0, f"span {span} is not in the title {title} after position {pos}"
        pos = at + len(span)
    if set(query) & set(title):  # with any overlap, every chosen span is made of query tokens
        assert all(t in set(query) for span in spans for t in span)


def test_query_matched_spans_win_and_rarity_breaks_ties():
    titles = [[1, 2, 3, 4, 5, 6], [1, 2, 7], [1, 8, 9], [1, 10]]
    fm = TokenSuffixIndex.build(titles, vocab_size=V)
    # Query shares 1,2 (common) and 5 (rare) with title 0.
    chosen = select_spans(np.array([1, 2, 5]), np.array(titles[0]), fm, n_spans=2)
    assert [(c.start, c.length) for c in chosen] == [(0, 2), (4, 1)]
    # Scores by hand (N = 14 corpus tokens; count 1: 4, 2: 2, 5: 1, [1, 2]: 2):
    # [1, 2]: log(14/4) + log(14/2) + 0.5 * log(14/2) = 4.1685;  [5]: log(14) + 0.5 * log(14) = 3.9585.
    one = select_spans(np.array([1, 2, 5]), np.array(titles[0]), fm, n_spans=1)
    assert [(c.start, c.length) for c in one] == [(0, 2)]
    assert one[0].score == pytest.approx(np.log(14 / 4) + 1.5 * np.log(14 / 2))
    # A heavier rarity weight prefers the rare span: [5] 2 * log 14 = 5.278 > [1, 2] 1.2528 + 2 * 1.9459 = 5.145.
    rare = select_spans(np.array([1, 2, 5]), np.array(titles[0]), fm, n_spans=1, rarity_weight=1.0)
    assert [(c.start, c.length) for c in rare] == [(4, 1)]
    target = multispan_target(np.array([1, 2, 5]), np.array(titles[0]), fm, SEP, EOS, n_spans=3)
    assert target.tolist() == [1, 2, SEP, 5, EOS]


def test_no_overlap_falls_back_to_the_rarest_window():
    titles = [[1, 2, 3, 4], [1, 2, 3, 9], [1, 2, 5, 6]]
    fm = TokenSuffixIndex.build(titles, vocab_size=V)
    target = multispan_target(np.array([11]), np.array(titles[0]), fm, SEP, EOS, fallback_span_len=2)
    assert target.tolist() == [3, 4, EOS]  # [3, 4] occurs once; [1, 2] three times, [2, 3] twice


def test_modes_and_runs():
    titles = [[1, 2, 3, 4, 5]]
    fm = TokenSuffixIndex.build(titles, vocab_size=V)
    q = np.array([1, 2, 4, 5])
    assert matched_runs(q, np.array(titles[0]), max_span_len=8) == [(0, 2), (3, 2)]
    assert matched_runs(q, np.array(titles[0]), max_span_len=1) == [(0, 1), (1, 1), (3, 1), (4, 1)]
    seal = multispan_target(q, np.array(titles[0]), fm, SEP, EOS, mode="seal")
    assert seal.tolist() in ([1, 2, EOS], [4, 5, EOS]) and SEP not in seal.tolist()
    assert multispan_target(q, np.array(titles[0]), fm, SEP, EOS, mode="title", max_span_len=3).tolist() == [1, 2, 3, EOS]
    assert multispan_targets([q], [np.zeros(0, dtype=np.int64)], fm, SEP, EOS)[0].tolist() == [EOS]
    with pytest.raises(ValueError, match="unknown target mode"):
        multispan_target(q, np.array(titles[0]), fm, SEP, EOS, mode="bogus")


def test_a_span_inside_a_chosen_span_is_not_repeated():
    titles = [[1, 2, 3, 1, 4], [5, 6]]
    fm = TokenSuffixIndex.build(titles, vocab_size=V)
    # Runs matching the query: [1, 2] at 0 and [1] at 3; [1] lies inside [1, 2], so it is dropped.
    target = multispan_target(np.array([1, 2]), np.array(titles[0]), fm, SEP, EOS, n_spans=3)
    assert target.tolist() == [1, 2, EOS]
