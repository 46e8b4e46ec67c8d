"""A token-level suffix-array index with FM-index semantics over a corpus of token-id documents.

What the lexical scheme needs from an "FM index" is: how often a span occurs (``count``), which
tokens follow a span somewhere in the corpus and how often (``next_tokens``, the constraint of
SEAL-style decoding), and which documents contain it (``locate``). This module answers all three
from a plain suffix array (built by ``pydivsufsort`` over the integer token array) and binary
search; there is no BWT/occurrence table, so it is honestly a *suffix-array index with FM-index
semantics*: ``count`` is O(|span| log n), not O(|span|), and memory is one int32 per token for the
suffix array plus the token array itself.

Layout: documents (titles) are concatenated, each followed by ``doc_sep`` (a symbol larger than
every token), so a span never crosses a document boundary: no query span contains ``doc_sep``, and
``doc_sep`` is never reported as a next token. ``doc_starts`` maps text positions back to
documents, and ``doc_items`` documents to item ids (identity when each item has one title).

The key fact used everywhere: within the suffix-array range ``[lo, hi)`` of a prefix of length
``d``, the tokens at ``text[sa[i] + d]`` are *sorted* (the suffixes are), so the range of
``prefix + t`` is found by binary search inside ``[lo, hi)``, and the distinct next tokens with
their counts are the runs of that sorted slice. Ranges that are wide (the root, frequent
unigrams...) are answered from a small precomputed table so a batch of beams never scans
millions of positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gr_toolkit.artifacts import ArtifactError, read_arrays, write_arrays

FORMAT = "gr-toolkit-token-suffix-index"


@dataclass
class NextTokens:
    """Next-token sets of a batch of prefixes, as CSR: row ``i`` is ``[offsets[i], offsets[i+1])``.

    ``tokens`` are sorted ascending within a row; ``counts[j]`` is how often ``prefix_i + tokens[j]``
    occurs; ``child_lo[j]`` is where that extension's suffix-array range starts (its range is
    ``[child_lo[j], child_lo[j] + counts[j])``), so a caller can narrow without another search.
    """

    offsets: np.ndarray  # [N + 1] int64
    tokens: np.ndarray  # [M] integer (int32 where they come from the precomputed table)
    counts: np.ndarray  # [M] integer; empty when asked for tokens only
    child_lo: np.ndarray  # [M] integer; empty when asked for tokens only

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.tokens[a:b], self.counts[a:b]

    @property
    def widths(self) -> np.ndarray:
        return np.diff(self.offsets)


def _segment_positions(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattened ``concat(arange(lo_i, hi_i))`` and the segment id of every element."""
    widths = (hi - lo).astype(np.int64)
    total = int(widths.sum())
    seg = np.repeat(np.arange(len(lo), dtype=np.int64), widths)
    starts = np.cumsum(widths) - widths
    pos = np.arange(total, dtype=np.int64) - np.repeat(starts - lo, widths)
    return pos, seg


class TokenSuffixIndex:
    """Suffix-array index over token-id documents (see the module docstring).

    Build with :meth:`build`; ``vocab_size`` is the number of token ids (tokens are ``0..V-1``);
    the document separator is ``V``. ``wide_threshold``: prefixes occurring more than this many
    times (up to ``cache_depth`` tokens long) get their next-token sets precomputed.
    """

    def __init__(
        self,
        text: np.ndarray,
        sa: np.ndarray,
        doc_starts: np.ndarray,
        doc_items: np.ndarray,
        vocab_size: int,
        cache_keys: np.ndarray,
        cache_offsets: np.ndarray,
        cache_tokens: np.ndarray,
        cache_counts: np.ndarray,
        wide_threshold: int,
        cache_depth: int,
    ) -> None:
        self.text = text
        self.sa = sa
        self.doc_starts = np.asarray(doc_starts, dtype=np.int64)
        self.doc_items = np.asarray(doc_items, dtype=np.int64)
        self.vocab_size = int(vocab_size)
        self.doc_sep = int(vocab_size)
        self.cache_keys = np.asarray(cache_keys, dtype=np.int64)
        self.cache_offsets = np.asarray(cache_offsets, dtype=np.int64)
        small = np.int32 if len(text) < 2**31 else np.int64
        self.cache_tokens = np.asarray(cache_tokens, dtype=np.int32)
        self.cache_counts = np.asarray(cache_counts, dtype=small)
        self.wide_threshold = int(wide_threshold)
        self.cache_depth = int(cache_depth)
        self.cache_child_rel = self._child_rel()
        self._unigram: np.ndarray | None = None
        self._keys_of_entries: np.ndarray | None = None
        self._doc_of_pos: np.ndarray | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        docs: list[np.ndarray] | list[list[int]],
        vocab_size: int,
        doc_items: np.ndarray | None = None,
        wide_threshold: int = 256,
        cache_depth: int = 8,
    ) -> TokenSuffixIndex:
        """Index ``docs`` (token-id sequences, ids in ``0..vocab_size-1``; empty docs allowed)."""
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        flat = (
            np.concatenate([np.asarray(d, dtype=np.int64).ravel() for d in docs])
            if len(docs) and lengths.sum()
            else np.zeros(0, dtype=np.int64)
        )
        return cls.from_flat(flat, lengths, vocab_size, doc_items, wide_threshold, cache_depth)

    @classmethod
    def from_flat(
        cls,
        flat: np.ndarray,
        lengths: np.ndarray,
        vocab_size: int,
        doc_items: np.ndarray | None = None,
        wide_threshold: int = 256,
        cache_depth: int = 8,
    ) -> TokenSuffixIndex:
        """Index documents given as one flat token array and per-document lengths."""
        import pydivsufsort
        flat = np.asarray(flat, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(lengths) == 0:
            raise ValueError("cannot index an empty corpus (no documents)")
        if (lengths < 0).any() or int(lengths.sum()) != len(flat):
            raise ValueError(f"document lengths sum to {int(lengths.sum())} but there are {len(flat)} tokens")
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if len(flat) and (flat.min() < 0 or flat.max() >= vocab_size):
            bad = int(flat[(flat < 0) | (flat >= vocab_size)][0])
            raise ValueError(f"token id {bad} is outside 0..{vocab_size - 1}")
        n_docs = len(lengths)
        dtype = np.uint16 if vocab_size < np.iinfo(np.uint16).max else np.uint32
        # Interleave: doc i occupies [doc_starts[i], doc_starts[i] + len_i), then one separator.
        doc_starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
        text = np.full(int(lengths.sum()) + n_docs, vocab_size, dtype=dtype)
        keep = np.ones(len(text), dtype=bool)
        keep[doc_starts + lengths] = False
        text[keep] = flat
        sa = np.asarray(pydivsufsort.divsufsort(text))
        if sa.dtype != np.int32 and len(text) < 2**31:
            sa = sa.astype(np.int32)
        items = np.arange(n_docs, dtype=np.int64) if doc_items is None else np.asarray(doc_items, dtype=np.int64)
        if items.shape != (n_docs,):
            raise ValueError(f"doc_items has shape {items.shape}, expected ({n_docs},)")
        index = cls(text, sa, doc_starts, items, vocab_size, np.zeros(0), np.zeros(1), np.zeros(0), np.zeros(0),
                    wide_threshold, cache_depth)
        index._build_cache()
        return index

    def _build_cache(self) -> None:
        """Precompute next-token sets of every prefix (<= cache_depth tokens) seen > wide_threshold times.

        Level by level: the wide ranges of one depth are disjoint, so each level costs at most one
        pass over the suffix array; their wide children form the next level.
        """
        n = len(self.text)
        lo = np.array([0], dtype=np.int64)
        hi = np.array([n], dtype=np.int64)
        depth = 0
        keys, rows_tok, rows_cnt, row_len = [], [], [], []
        while len(lo) and depth <= self.cache_depth:
            nt = self._scan(lo, hi, np.full(len(lo), depth, dtype=np.int64))
            keys.append(self._key(lo, np.full(len(lo), depth)))
            rows_tok.append(nt.tokens)
            rows_cnt.append(nt.counts)
            row_len.append(nt.widths)
            wide = nt.counts > self.wide_threshold
            lo, hi = nt.child_lo[wide], nt.child_lo[wide] + nt.counts[wide]
            depth += 1
        k = np.concatenate(keys)
        order = np.argsort(k, kind="stable")
        lens = np.concatenate(row_len)
        starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
        tok, cnt = np.concatenate(rows_tok), np.concatenate(rows_cnt)
        pos, _ = _segment_positions(starts[order], starts[order] + lens[order])
        self.cache_keys = k[order]
        self.cache_offsets = np.concatenate([[0], np.cumsum(lens[order])]).astype(np.int64)
        small = np.int32 if len(self.text) < 2**31 else np.int64
        self.cache_tokens, self.cache_counts = tok[pos].astype(np.int32), cnt[pos].astype(small)
        self.cache_child_rel = self._child_rel()

    def _child_rel(self) -> np.ndarray:
        """Start of each cached child's range relative to its parent's ``lo``: exclusive cumsum per row."""
        csum = np.cumsum(self.cache_counts)
        row_start = np.repeat(self.cache_offsets[:-1], np.diff(self.cache_offsets))
        base = np.where(row_start > 0, csum[np.maximum(row_start - 1, 0)], 0)
        return (csum - self.cache_counts - base).astype(self.cache_counts.dtype)

    def _key(self, lo: np.ndarray, depth: np.ndarray) -> np.ndarray:
        # (lo, depth) names a prefix range uniquely: the prefix is text[sa[lo] : sa[lo] + depth].
        return np.asarray(lo, dtype=np.int64) * (self.cache_depth + 2) + np.asarray(depth, dtype=np.int64)

    # ------------------------------------------------------------------ properties
    @property
    def n_docs(self) -> int:
        return len(self.doc_starts)

    @property
    def n_tokens(self) -> int:
        """Corpus tokens, separators excluded (the denominator of a span's corpus probability)."""
        return len(self.text) - self.n_docs

    @property
    def root(self) -> tuple[int, int]:
        return 0, len(self.text)

    def unigram_counts(self) -> np.ndarray:
        """Occurrences of every token ``0..vocab_size-1`` in the corpus."""
        if self._unigram is None:
            self._unigram = np.bincount(self.text, minlength=self.vocab_size + 1)[: self.vocab_size].astype(np.int64)
        return self._unigram

    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays().values()))

    def doc_tokens(self, doc: int) -> np.ndarray:
        start = self.doc_starts[doc]
        end = self.doc_starts[doc + 1] - 1 if doc + 1 < self.n_docs else len(self.text) - 1
        return self.text[start:end].astype(np.int64)

    # ------------------------------------------------------------------ ranges
    def _at(self, rows: np.ndarray, depth: np.ndarray) -> np.ndarray:
        return self.text[self.sa[rows].astype(np.int64) + depth]

    def narrow(
        self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, token: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ranges of ``prefix_i + token_i`` given the ranges ``[lo_i, hi_i)`` of prefixes of length ``depth_i``.

        Vectorised binary search (lower and upper bound at once) over all rows; an absent
        extension gives an empty range (``lo == hi``).
        """
        lo = np.asarray(lo, dtype=np.int64).copy()
        hi = np.asarray(hi, dtype=np.int64).copy()
        depth = np.asarray(depth, dtype=np.int64)
        token = np.asarray(token, dtype=np.int64)
        if len(lo) <= 4:  # a few rows: scalar binary search beats ~20 rounds of numpy calls
            for i in range(len(lo)):
                lo[i], hi[i] = self._narrow_one(int(lo[i]), int(hi[i]), int(depth[i]), int(token[i]))
            return lo, hi
        # A token outside the alphabet (or the separator) never follows a span.
        bad = (token < 0) | (token >= self.vocab_size)
        # Wide prefixes: their children are rows of the precomputed table; one searchsorted finds them.
        rows, slots = self._cached(lo, hi, depth)
        rows_ok = ~bad[rows]
        rows, slots = rows[rows_ok], slots[rows_ok]
        done = np.zeros(len(lo), dtype=bool)
        if len(rows):
            keys = self._entry_keys()
            want = slots * (self.vocab_size + 1) + token[rows]
            j = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
            found = keys[j] == want
            start = lo[rows] + np.where(found, self.cache_child_rel[j], 0)
            lo[rows], hi[rows] = start, start + np.where(found, self.cache_counts[j], 0)
            done[rows] = True
        a_lo, a_hi = lo.copy(), hi.copy()  # search for first x >= token
        b_lo, b_hi = lo.copy(), hi.copy()  # search for first x > token
        active = np.flatnonzero(((a_lo < a_hi) | (b_lo < b_hi)) & ~bad & ~done)
        while len(active):
            al, ah, bl, bh = a_lo[active], a_hi[active], b_lo[active], b_hi[active]
            d, t = depth[active], token[active]
            am = (al + ah) // 2
            bm = (bl + bh) // 2
            go_a = al < ah
            go_b = bl < bh
            xa = self._at(np.where(go_a, am, 0), d)
            xb = self._at(np.where(go_b, bm, 0), d)
            right_a = go_a & (xa < t)
            right_b = go_b & (xb <= t)
            a_lo[active] = np.where(right_a, am + 1, al)
            a_hi[active] = np.where(go_a & ~right_a, am, ah)
            b_lo[active] = np.where(right_b, bm + 1, bl)
            b_hi[active] = np.where(go_b & ~right_b, bm, bh)
            active = active[(a_lo[active] < a_hi[active]) | (b_lo[active] < b_hi[active])]
        new_lo = np.where(bad, lo, np.where(done, lo, a_lo))
        new_hi = np.where(bad, lo, np.where(done, hi, b_lo))
        return new_lo, new_hi

    def _cached(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, slots)``: which of the given prefix ranges have a precomputed table row, and which."""
        wide = np.flatnonzero((hi - lo > self.wide_threshold) & (depth <= self.cache_depth))
        if not len(wide) or not len(self.cache_keys):
            z = np.zeros(0, dtype=np.int64)
            return z, z
        keys = self._key(lo[wide], depth[wide])
        pos = np.minimum(np.searchsorted(self.cache_keys, keys), len(self.cache_keys) - 1)
        found = self.cache_keys[pos] == keys
        return wide[found], pos[found]

    def _doc_of_position(self) -> np.ndarray:
        """Document of every text position (built on first use, 4 bytes per token; not saved)."""
        if self._doc_of_pos is None:
            sizes = np.diff(np.append(self.doc_starts, len(self.text)))
            self._doc_of_pos = np.repeat(np.arange(self.n_docs, dtype=np.int32), sizes)
        return self._doc_of_pos

    def _entry_keys(self) -> np.ndarray:
        """``slot * (V + 1) + token`` of every table entry: increasing, so children are found by searchsorted."""
        if self._keys_of_entries is None:
            slot_of = np.repeat(np.arange(len(self.cache_keys), dtype=np.int64), np.diff(self.cache_offsets))
            self._keys_of_entries = slot_of * (self.vocab_size + 1) + self.cache_tokens
        return self._keys_of_entries

    def _narrow_one(self, lo: int, hi: int, depth: int, token: int) -> tuple[int, int]:
        if not 0 <= token < self.vocab_size:
            return lo, lo
        text, sa = self.text, self.sa
        a, b = lo, hi
        while a < b:  # first row whose token at ``depth`` is >= token
            mid = (a + b) // 2
            if text[sa[mid] + depth] < token:
                a = mid + 1
            else:
                b = mid
        start, b = a, hi
        while a < b:  # first row whose token is > token
            mid = (a + b) // 2
            if text[sa[mid] + depth] <= token:
                a = mid + 1
            else:
                b = mid
        return start, a

    def ranges(self, spans: np.ndarray, lengths: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Suffix-array ranges of many spans at once: ``spans [N, L]`` padded with -1 (or given ``lengths``)."""
        spans = np.atleast_2d(np.asarray(spans, dtype=np.int64))
        if lengths is None:
            lengths = (spans >= 0).sum(axis=1)
        lengths = np.asarray(lengths, dtype=np.int64)
        n = len(spans)
        lo = np.zeros(n, dtype=np.int64)
        hi = np.full(n, len(self.text), dtype=np.int64)
        for d in range(spans.shape[1] if n else 0):
            act = np.flatnonzero((lengths > d) & (lo < hi))
            if not len(act):
                break
            lo[act], hi[act] = self.narrow(lo[act], hi[act], np.full(len(act), d), spans[act, d])
        # An empty span "occurs" everywhere; callers asking for one get the root range.
        return lo, hi

    def count(self, span: np.ndarray | list[int]) -> int:
        """Occurrences of ``span`` in the corpus (0 for spans that do not occur; never across documents)."""
        span = np.asarray(span, dtype=np.int64).ravel()
        if len(span) == 0:
            return self.n_tokens
        lo, hi = self.ranges(span[None, :], np.array([len(span)]))
        return int(hi[0] - lo[0])

    def count_batch(self, spans: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        lo, hi = self.ranges(spans, lengths)
        return hi - lo

    # ------------------------------------------------------------------ next tokens
    def _scan(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray) -> NextTokens:
        """Next tokens by run-length over the (sorted) slices ``text[sa[lo:hi] + depth]``."""
        n = len(lo)
        rows, seg = _segment_positions(lo, hi)
        if len(rows) == 0:
            z = np.zeros(0, dtype=np.int64)
            return NextTokens(np.zeros(n + 1, dtype=np.int64), z, z, z)
        x = self._at(rows, depth[seg]).astype(np.int64)
        change = np.empty(len(x), dtype=bool)
        change[0] = True
        np.not_equal(x[1:], x[:-1], out=change[1:])
        change[1:] |= seg[1:] != seg[:-1]
        starts = np.flatnonzero(change)
        counts = np.diff(np.append(starts, len(x)))
        toks, rseg, child_lo = x[starts], seg[starts], rows[starts]
        keep = toks != self.doc_sep
        toks, rseg, counts, child_lo = toks[keep], rseg[keep], counts[keep], child_lo[keep]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rseg, minlength=n), out=offsets[1:])
        return NextTokens(offsets, toks, counts.astype(np.int64), child_lo.astype(np.int64))

    def next_tokens_batch(self, ranges: np.ndarray, depth: np.ndarray, with_counts: bool = True) -> NextTokens:
        """Tokens that follow each prefix, with counts: ``ranges [N, 2]`` (lo, hi) of prefixes of length ``depth [N]``.

        The ranges must be prefix ranges as returned by :meth:`ranges` / :meth:`narrow` (or the
        root ``(0, len(text))`` with depth 0). Wide ones are answered from the precomputed table;
        the rest by scanning their (short) sorted slices. ``with_counts=False`` skips counts and
        child ranges (the decoding constraint needs only the tokens); they are then empty arrays.
        """
        ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        lo, hi = ranges[:, 0], ranges[:, 1]
        depth = np.broadcast_to(np.asarray(depth, dtype=np.int64), lo.shape)
        n = len(lo)
        hit = np.zeros(n, dtype=bool)
        slot = np.zeros(n, dtype=np.int64)
        rows, slots = self._cached(lo, hi, depth)
        hit[rows], slot[rows] = True, slots
        miss = np.flatnonzero(~hit)
        scanned = self._scan(lo[miss], hi[miss], depth[miss])
        hits = np.flatnonzero(hit)
        # Every output row is one contiguous block. Cached rows copy a block of the table, so the
        # whole output is ONE gather from the table at ``src``; the (short) scanned rows are then
        # written over their blocks.
        src_start = np.zeros(n, dtype=np.int64)
        widths = np.zeros(n, dtype=np.int64)
        src_start[hits] = self.cache_offsets[slot[hits]]
        widths[hits] = self.cache_offsets[slot[hits] + 1] - src_start[hits]
        widths[miss] = scanned.widths
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(widths, out=offsets[1:])
        m = int(offsets[-1])
        if len(hits):
            src = np.arange(m, dtype=np.int64)
            src += np.repeat(src_start - offsets[:-1], widths)
            tokens = np.take(self.cache_tokens, src, mode="clip")
        else:
            tokens = np.empty(m, dtype=self.cache_tokens.dtype)
        if with_counts:
            counts = np.take(self.cache_counts, src, mode="clip") if len(hits) else np.empty(m, dtype=np.int64)
            child = np.take(self.cache_child_rel, src, mode="clip") if len(hits) else np.empty(m, dtype=np.int64)
            if len(hits):
                child += np.repeat(np.where(hit, lo, 0), widths).astype(child.dtype)
        if len(miss) and len(scanned.tokens):
            dest, _ = _segment_positions(offsets[miss], offsets[miss] + scanned.widths)
            tokens[dest] = scanned.tokens
            if with_counts:
                counts[dest], child[dest] = scanned.counts, scanned.child_lo
        if not with_counts:
            counts = child = np.zeros(0, dtype=np.int64)
        return NextTokens(offsets, tokens, counts, child)

    def next_tokens(self, prefix: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, counts)``: every token that follows ``prefix`` somewhere, sorted, with its count."""
        prefix = np.asarray(prefix, dtype=np.int64).ravel()
        lo, hi = self.ranges(prefix[None, :], np.array([len(prefix)]))
        nt = self.next_tokens_batch(np.stack([lo, hi], axis=1), np.array([len(prefix)]))
        return nt.row(0)

    # ------------------------------------------------------------------ locate
    def locate_ranges(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every occurrence in the ranges: ``(row, doc, offset)`` = which range, which document, start within it."""
        rows, seg = _segment_positions(np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64))
        pos = self.sa[rows].astype(np.int64)
        doc = self._doc_of_position()[pos].astype(np.int64)
        return seg, doc, pos - self.doc_starts[doc]

    def locate(self, span: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(items, occurrences)``: the items whose documents contain ``span`` (unique, sorted) and how often."""
        span = np.asarray(span, dtype=np.int64).ravel()
        if len(span) == 0:
            raise ValueError("locate needs a non-empty span")
        lo, hi = self.ranges(span[None, :], np.array([len(span)]))
        _, doc, _ = self.locate_ranges(lo, hi)
        items, counts = np.unique(self.doc_items[doc], return_counts=True)
        return items, counts

    # ------------------------------------------------------------------ persistence
    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}text": self.text,
            f"{prefix}sa": self.sa,
            f"{prefix}doc_starts": self.doc_starts,
            f"{prefix}doc_items": self.doc_items,
            f"{prefix}cache_keys": self.cache_keys,
            f"{prefix}cache_offsets": self.cache_offsets,
            f"{prefix}cache_tokens": self.cache_tokens,
            f"{prefix}cache_counts": self.cache_counts,
        }

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "vocab_size": self.vocab_size,
            "wide_threshold": self.wide_threshold,
            "cache_depth": self.cache_depth,
        }

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = "") -> TokenSuffixIndex:
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"not a token suffix index (format={meta.get('format')!r})")
        try:
            a = {k: arrays[f"{prefix}{k}"] for k in
                 ("text", "sa", "doc_starts", "doc_items", "cache_keys", "cache_offsets", "cache_tokens", "cache_counts")}
        except KeyError as e:
            raise ArtifactError(f"token suffix index array {e.args[0]!r} is missing") from None
        if len(a["sa"]) != len(a["text"]) or len(a["doc_items"]) != len(a["doc_starts"]):
            raise ArtifactError(
                f"token suffix index arrays disagree: text {len(a['text'])} vs sa {len(a['sa'])}, "
                f"doc_starts {len(a['doc_starts'])} vs doc_items {len(a['doc_items'])}"
            )
        return cls(vocab_size=meta["vocab_size"], wide_threshold=meta["wide_threshold"],
                   cache_depth=meta["cache_depth"], **a)

    def save(self, directory: str | Path) -> dict[str, Any]:
        """Write the arrays into an existing directory; returns the manifest entries (meta + arrays)."""
        entries = write_arrays(Path(directory), self.arrays())
        return {"meta": self.meta(), "arrays": entries}

    @classmethod
    def load(cls, directory: str | Path, manifest: dict[str, Any]) -> TokenSuffixIndex:
        return cls.from_arrays(manifest["meta"], read_arrays(Path(directory), manifest["arrays"]))
