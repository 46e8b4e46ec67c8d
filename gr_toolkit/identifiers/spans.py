"""Training targets for lexical identifiers: "query -> multi-span" (and the SEAL / title baselines).

A target is a few spans of the clicked item's title, in title order, joined by the separator
token and ending with EOS: ``span SEP span SEP span EOS``. Which spans:

* Candidates are the maximal runs of title tokens that also occur in the query (token-id overlap;
  the tokenizer is case-folded, and sentencepiece segments a word the same way wherever it
  appears), cut into pieces of at most ``max_span_len`` tokens.
* Each candidate is scored by the information it carries about the query and the item:
  ``sum(info(t) for its tokens) + rarity_weight * rarity(span)``, where ``info(t) = log(N / count(t))``
  and ``rarity(span) = log(N / count(span))`` come from the corpus counts of the suffix-array index
  (``N`` corpus tokens). Rare, query-matching spans score highest.
* The ``n_spans`` best candidates are kept (distinct token sequences, none inside another chosen
  one), then put back in title order.
* A query that shares no token with the title (typos, synonyms) still gets a target: the single
  most informative window of ``fallback_span_len`` title tokens (lowest corpus count).

``seal`` mode keeps only the best single span (SEAL's n-gram target); ``title`` mode is the title
itself (cut at ``max_span_len`` tokens), the "query -> title" baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gr_toolkit.identifiers.fm_index import TokenSuffixIndex

TARGET_MODES = ("multispan", "seal", "title")


@dataclass(frozen=True)
class SpanChoice:
    start: int
    length: int
    score: float


def matched_runs(query_tokens: np.ndarray, title_tokens: np.ndarray, max_span_len: int) -> list[tuple[int, int]]:
    """``(start, length)`` of the maximal runs of title tokens present in the query, cut to ``max_span_len``."""
    title_tokens = np.asarray(title_tokens, dtype=np.int64)
    hit = np.isin(title_tokens, np.asarray(query_tokens, dtype=np.int64))
    if not hit.any():
        return []
    padded = np.concatenate([[False], hit, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    out = []
    for a, b in zip(edges[0::2], edges[1::2], strict=True):
        for s in range(a, b, max_span_len):
            out.append((int(s), int(min(max_span_len, b - s))))
    return out


def _contains(longer: tuple[int, ...], shorter: tuple[int, ...]) -> bool:
    m = len(shorter)
    return m < len(longer) and any(longer[i : i + m] == shorter for i in range(len(longer) - m + 1))


def _windows(n: int, length: int) -> list[tuple[int, int]]:
    length = max(1, min(length, n))
    return [(s, length) for s in range(n - length + 1)]


def select_spans_batch(
    queries: list[np.ndarray],
    titles: list[np.ndarray],
    index: TokenSuffixIndex,
    n_spans: int = 3,
    max_span_len: int = 8,
    rarity_weight: float = 0.5,
    fallback_span_len: int = 3,
) -> list[list[SpanChoice]]:
    """The spans to generate for each (query tokens, title tokens) pair, in title order.

    Corpus counts of every candidate span of every pair come from one batched index lookup.
    """
    if len(queries) != len(titles):
        raise ValueError(f"{len(queries)} queries for {len(titles)} titles")
    titles = [np.asarray(t, dtype=np.int64) for t in titles]
    cands: list[list[tuple[int, int]]] = []
    matched: list[bool] = []
    for q, t in zip(queries, titles, strict=True):
        c = matched_runs(q, t, max_span_len) if len(t) else []
        matched.append(bool(c))
        if not c and len(t):
            c = _windows(len(t), min(fallback_span_len, max_span_len))
        cands.append(c)
    n_c = np.array([len(c) for c in cands], dtype=np.int64)
    total = int(n_c.sum())
    spans = np.full((total, max_span_len), -1, dtype=np.int64)
    info_sum = np.zeros(total)
    n_tok = max(index.n_tokens, 1)
    token_info = np.log(n_tok / np.maximum(index.unigram_counts(), 1))
    k = 0
    for t, c in zip(titles, cands, strict=True):
        for s, length in c:
            spans[k, :length] = t[s : s + length]
            info_sum[k] = token_info[t[s : s + length]].sum()
            k += 1
    rarity = np.log(n_tok / np.maximum(index.count_batch(spans), 1)) if total else np.zeros(0)
    out: list[list[SpanChoice]] = []
    first = np.concatenate([[0], np.cumsum(n_c)])
    for i, (t, c) in enumerate(zip(titles, cands, strict=True)):
        if not c:
            out.append([])
            continue
        sl = slice(first[i], first[i + 1])
        # Matched spans: information about the query + how identifying the span is; fallback: rarity only.
        score = info_sum[sl] + rarity_weight * rarity[sl] if matched[i] else rarity[sl]
        keep = n_spans if matched[i] else 1
        order = np.lexsort((np.array([s for s, _ in c]), -score))  # best first, ties: earlier span
        chosen: list[SpanChoice] = []
        seen: set[tuple[int, ...]] = set()
        for j in order:
            s, length = c[j]
            key = tuple(t[s : s + length].tolist())
            # The same token sequence twice, or one inside a span already chosen, adds nothing:
            # every title containing the longer span contains it too.
            if key in seen or any(_contains(other, key) for other in seen):
                continue
            seen.add(key)
            chosen.append(SpanChoice(s, length, float(score[j])))
            if len(chosen) == keep:
                break
        out.append(sorted(chosen, key=lambda x: x.start))
    return out


def select_spans(
    query_tokens: np.ndarray,
    title_tokens: np.ndarray,
    index: TokenSuffixIndex,
    n_spans: int = 3,
    max_span_len: int = 8,
    rarity_weight: float = 0.5,
    fallback_span_len: int = 3,
) -> list[SpanChoice]:
    """The spans of one title to generate for one query, in title order (see module docstring)."""
    return select_spans_batch(
        [query_tokens], [title_tokens], index, n_spans, max_span_len, rarity_weight, fallback_span_len
    )[0]


def join_spans(title_tokens: np.ndarray, spans: list[SpanChoice], separator_id: int, eos_id: int) -> np.ndarray:
    """``span SEP span ... EOS`` as token ids."""
    title = np.asarray(title_tokens, dtype=np.int64)
    parts: list[np.ndarray] = []
    for i, c in enumerate(spans):
        if i:
            parts.append(np.array([separator_id], dtype=np.int64))
        parts.append(title[c.start : c.start + c.length])
    parts.append(np.array([eos_id], dtype=np.int64))
    return np.concatenate(parts)


def multispan_targets(
    queries: list[np.ndarray],
    titles: list[np.ndarray],
    index: TokenSuffixIndex,
    separator_id: int,
    eos_id: int,
    n_spans: int = 3,
    max_span_len: int = 8,
    rarity_weight: float = 0.5,
    fallback_span_len: int = 3,
    mode: str = "multispan",
) -> list[np.ndarray]:
    """Decoder targets (token ids, EOS-terminated) for (query tokens, clicked title tokens) pairs.

    An empty title gives just ``[EOS]`` (such an item cannot be retrieved by spans).
    """
    if mode not in TARGET_MODES:
        raise ValueError(f"unknown target mode {mode!r}; use one of {', '.join(TARGET_MODES)}")
    titles = [np.asarray(t, dtype=np.int64) for t in titles]
    if mode == "title":
        return [np.concatenate([t[:max_span_len], [eos_id]]).astype(np.int64) for t in titles]
    chosen = select_spans_batch(
        queries, titles, index, 1 if mode == "seal" else n_spans, max_span_len, rarity_weight, fallback_span_len
    )
    return [join_spans(t, c, separator_id, eos_id) for t, c in zip(titles, chosen, strict=True)]


def multispan_target(
    query_tokens: np.ndarray,
    title_tokens: np.ndarray,
    index: TokenSuffixIndex,
    separator_id: int,
    eos_id: int,
    n_spans: int = 3,
    max_span_len: int = 8,
    rarity_weight: float = 0.5,
    fallback_span_len: int = 3,
    mode: str = "multispan",
) -> np.ndarray:
    """The decoder target of one (query, clicked title) pair; see :func:`multispan_targets`."""
    return multispan_targets(
        [query_tokens], [title_tokens], index, separator_id, eos_id, n_spans, max_span_len,
        rarity_weight, fallback_span_len, mode,
    )[0]
