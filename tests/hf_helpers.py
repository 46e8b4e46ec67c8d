"""Tiny indexes, featurizers and HF models for the HF wrapper / training tests (CPU, built from configs)."""

from __future__ import annotations

import numpy as np
import torch

from gr_toolkit.data.types import Examples
from gr_toolkit.identifiers.codes import CodeIndex
from gr_toolkit.models.base import SourceBatch
from gr_toolkit.models.hf_causal import CausalRetrieverConfig, HFCausalRetriever
from gr_toolkit.models.hf_seq2seq import HFSeq2SeqRetriever, T5RetrieverConfig

N_ITEMS = 16
SOURCE_VOCAB = 16


def tree_index() -> CodeIndex:
    """A 2-level tree over 16 items: first token 0..3 (node), second 4..19 (leaf under that node)."""
    codes = np.array([[a, 4 + a * 4 + b] for a in range(4) for b in range(4)])
    parent = np.array([-1] * 4 + [i // 4 for i in range(16)])
    level = np.array([0] * 4 + [1] * 16)
    return CodeIndex("tree", codes, np.full(16, 2), 20, parent, level, "fp")


def variable_index() -> CodeIndex:
    """Variable-length codes (pruned-RQ-like): some identifiers are prefixes of others, so EOS is needed."""
    seqs = [[0], [0, 2], [0, 2, 5], [0, 3], [0, 3, 6], [0, 4], [1], [1, 2], [1, 2, 5], [1, 2, 6], [1, 3],
            [1, 3, 5], [1, 4], [1, 4, 7], [0, 4, 7], [0, 2, 6]]
    codes = np.full((N_ITEMS, 3), -1)
    lengths = np.array([len(q) for q in seqs])
    for i, q in enumerate(seqs):
        codes[i, : len(q)] = q
    vocab = int(codes.max()) + 1
    return CodeIndex("varlen", codes, lengths, vocab, np.full(vocab, -1), np.zeros(vocab, dtype=np.int64), "fp")


class HistoryFeaturizer:
    """Item-id histories, right-padded (the ``SourceFeaturizer`` layout)."""

    kind = "history"
    vocab_size = N_ITEMS

    def batch(self, examples: Examples, idx) -> SourceBatch:
        hist = [np.asarray(examples.histories[i]) for i in idx]
        width = max(len(h) for h in hist)
        tokens = torch.zeros(len(hist), width, dtype=torch.long)
        mask = torch.zeros(len(hist), width, dtype=torch.bool)
        for r, h in enumerate(hist):
            tokens[r, : len(h)] = torch.from_numpy(h)
            mask[r, : len(h)] = True
        return SourceBatch(tokens, mask, "history")


def learnable_examples(n: int = 32, seed: int = 0) -> Examples:
    """Target = (last history item + 1) mod 16: a rule a tiny model learns in a few steps."""
    rng = np.random.default_rng(seed)
    hist = [rng.integers(0, N_ITEMS, rng.integers(1, 5)) for _ in range(n)]
    return Examples("history", targets=[np.array([(h[-1] + 1) % N_ITEMS]) for h in hist], histories=hist)


def tiny_t5(index: CodeIndex, seed: int = 0) -> HFSeq2SeqRetriever:
    cfg = T5RetrieverConfig(d_model=32, num_layers=2, num_decoder_layers=2, num_heads=4, d_ff=64, dropout=0.0, seed=seed)
    return HFSeq2SeqRetriever(cfg, index.decoder_vocab_size, SOURCE_VOCAB, "history", index.token_parent, index.token_level)


def tiny_causal(index: CodeIndex, arch: str = "qwen2", seed: int = 0, lora: bool = False) -> HFCausalRetriever:
    cfg = CausalRetrieverConfig(arch=arch, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
                                intermediate_size=64, seed=seed, lora=lora, lora_r=4, lora_alpha=8)
    return HFCausalRetriever(cfg, index.decoder_vocab_size, SOURCE_VOCAB, "history", index.token_parent, index.token_level)


def ragged_batch(seed: int = 0) -> SourceBatch:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, SOURCE_VOCAB, (4, 5), generator=g)
    lens = torch.tensor([5, 2, 1, 4])
    mask = torch.arange(5)[None, :] < lens[:, None]
    return SourceBatch(tokens.masked_fill(~mask, 0), mask, "history")
