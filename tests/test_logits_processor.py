import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from gr_toolkit.decoding.logits_processor import ConstraintLogitsProcessor
from gr_toolkit.decoding.trie import TrieConstraint
from tests.test_trie import random_codes

OFFSET = 3  # HF ids 0=pad (decoder start), 1=eos, 2=unk; identifier token t -> HF id t + 3


def tiny_t5(vocab: int, seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=vocab + OFFSET, d_model=32, d_ff=64, d_kv=16, num_layers=1, num_decoder_layers=1,
        num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0,
    )  # fmt: skip
    return T5ForConditionalGeneration(cfg).eval()


def _decode(seq, eos_in_code: bool):
    out = []
    for hf in seq[1:]:  # skip decoder start
        if hf in (1, 0):
            break
        out.append(hf - OFFSET)
    return tuple(out)


@pytest.mark.parametrize("variable", [False, True])
def test_every_generated_sequence_is_a_valid_identifier(variable):
    if variable:
        codes, lengths = random_codes(7, True, n_max=40, vocab=5)
        vocab = 5
        eos = vocab + 1  # identifier EOS id (index convention), mapped to the HF eos by the processor
    else:
        k, depth = 4, 3
        perm = np.random.default_rng(1).permutation(k**depth)[:40]
        codes = np.stack([(perm // k ** (depth - 1 - j)) % k for j in range(depth)], 1)
        lengths, vocab, eos = np.full(len(codes), depth), k, None
    trie = TrieConstraint.from_codes(codes, lengths, eos_id=eos)
    proc = ConstraintLogitsProcessor(trie, np.arange(vocab) + OFFSET, eos_token_id=1, pad_token_id=0)
    model = tiny_t5(vocab)
    valid = {tuple(c[:n]) for c, n in zip(codes, lengths, strict=True)}
    src = torch.randint(3, vocab + OFFSET, (4, 7), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = model.generate(
            input_ids=src, num_beams=5, num_return_sequences=5, max_new_tokens=trie.max_steps + 1,
            logits_processor=LogitsProcessorList([proc]), do_sample=False,
        )  # fmt: skip
        greedy = model.generate(
            input_ids=src, max_new_tokens=trie.max_steps + 1, logits_processor=LogitsProcessorList([proc])
        )
    seqs = [_decode(s, variable) for s in out.tolist()]
    assert all(s in valid for s in seqs), [s for s in seqs if s not in valid]
    for q in range(4):  # the 5 returned beams of a query are distinct identifiers
        assert len(set(seqs[q * 5 : q * 5 + 5])) == 5
    assert all(_decode(s, variable) in valid for s in greedy.tolist())
    # every sequence ends with EOS (the identifier is complete, not cut by max_new_tokens)
    assert all(1 in s[1:] for s in out.tolist())


def test_mask_allows_only_children_and_eos_for_complete_or_dead_rows():
    trie = TrieConstraint.from_codes(np.array([[0, 1], [0, 2], [3, 0]]))
    proc = ConstraintLogitsProcessor(trie, np.arange(4) + OFFSET, eos_token_id=1, pad_token_id=0)
    h = OFFSET  # HF id of identifier token 0
    # prefixes: [0] -> {1, 2}; [3] -> {0}; [1] is not an identifier prefix -> dead
    out = proc(torch.tensor([[0, h + 0], [0, h + 3], [0, h + 1]]), torch.zeros(3, 4 + OFFSET))
    allowed = torch.isfinite(out)
    assert allowed[0].nonzero().squeeze(1).tolist() == [h + 1, h + 2]
    assert allowed[1].nonzero().squeeze(1).tolist() == [h + 0]
    assert allowed[2].nonzero().squeeze(1).tolist() == [1] and out[2, 1].item() == proc.dead_end_score
    # complete identifiers ([0, 2], [3, 0]) allow only EOS; finished rows (after EOS) EOS or pad
    out = proc(torch.tensor([[0, h, h + 2], [0, h + 3, h], [0, h + 3, h]]), torch.zeros(3, 4 + OFFSET))
    assert [torch.isfinite(r).nonzero().squeeze(1).tolist() for r in out] == [[1], [1], [1]]
    out = proc(torch.tensor([[0, h, h + 2, 1, 0]]), torch.zeros(1, 4 + OFFSET))
    assert torch.isfinite(out[0]).nonzero().squeeze(1).tolist() == [0, 1]


def test_token_map_must_be_injective_and_fit_the_vocab():
    trie = TrieConstraint.from_codes(np.array([[0], [1]]))
    with pytest.raises(ValueError, match="distinct"):
        ConstraintLogitsProcessor(trie, [5, 5], eos_token_id=1)
    proc = ConstraintLogitsProcessor(trie, [5, 9], eos_token_id=1)
    with pytest.raises(ValueError, match="scores have only"):
        proc(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 6))
