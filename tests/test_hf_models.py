"""HF T5 / causal-LM wrappers: incremental == teacher-forced, valid identifiers through both decoding
routes, padding invariance, LoRA adapter round trip, local-directory loading, registry factories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.models.base import MODELS, SourceBatch
from gr_toolkit.models.prompts import PromptLayout, id_tokenizer, ids_to_text
from tests.hf_helpers import (
    SOURCE_VOCAB,
    HistoryFeaturizer,
    ragged_batch,
    tiny_causal,
    tiny_t5,
    tree_index,
    variable_index,
)


@pytest.fixture(scope="module")
def indexes():
    return {"tree": tree_index(), "varlen": variable_index()}


@pytest.fixture(scope="module")
def models(indexes):
    out = {}
    for name, index in indexes.items():
        out[("t5", name)] = tiny_t5(index, seed=1).eval()
        out[("qwen2", name)] = tiny_causal(index, "qwen2", seed=2).eval()
    out[("llama", "tree")] = tiny_causal(indexes["tree"], "llama", seed=3).eval()
    return out


KEYS = [("t5", "tree"), ("t5", "varlen"), ("qwen2", "tree"), ("qwen2", "varlen"), ("llama", "tree")]


def _teacher_forced_logits(model, index, batch, items):
    targets = index.decoder_targets(items)
    dec_in = torch.cat([torch.full((len(items), 1), index.bos_id), targets[:, :-1]], dim=1)
    memory = model.encode(batch)
    return model.score(model.decode(memory, batch, dec_in), None), targets, memory


@pytest.mark.parametrize("key", KEYS)
@torch.no_grad()
def test_step_logits_equal_teacher_forced(models, indexes, key):
    model, index = models[key], indexes[key[1]]
    batch = ragged_batch()
    items = np.array([2, 7, 11, 14])
    full, targets, memory = _teacher_forced_logits(model, index, batch, items)
    cache, last = None, torch.full((4,), index.bos_id)
    mem = model.expand_memory(memory, torch.arange(4))
    for t in range(targets.shape[1]):
        active = targets[:, t] >= 0
        logits, cache = model.step(mem, batch.mask, last, cache, None)
        assert torch.allclose(logits[active], full[active, t], atol=1e-4), f"step {t}"
        cache = model.reorder_cache(cache, torch.arange(4))  # identity reorder keeps the numbers
        last = torch.where(active, targets[:, t], index.eos_id)
    # the candidate-restricted score is the same numbers as the full one
    cand = torch.tensor([[0, 3, 1]] * 4)
    hidden = model.decode(memory, batch, torch.full((4, 1), index.bos_id))[:, 0]
    assert torch.allclose(model.score(hidden, cand), model.score(hidden, None).gather(1, cand), atol=1e-5)


@pytest.mark.parametrize("key", [("t5", "tree"), ("qwen2", "tree")])
@torch.no_grad()
def test_padding_does_not_change_scores(models, indexes, key):
    """A short source scored alone equals the same source inside a padded batch."""
    model, index = models[key], indexes[key[1]]
    batch = ragged_batch()
    items = np.array([2, 7, 11, 14])
    full, _, _ = _teacher_forced_logits(model, index, batch, items)
    single = SourceBatch(batch.tokens[1:2, :2], batch.mask[1:2, :2], "history")
    alone, _, _ = _teacher_forced_logits(model, index, single, items[1:2])
    assert torch.allclose(alone[0], full[1], atol=1e-4)


def _known(index):
    return {tuple(c[:n]) for c, n in zip(index.codes.tolist(), index.lengths.tolist(), strict=True)}


def _as_identifier(row, index):
    out = []
    for t in row:
        if t == index.eos_id or t < 0:
            break
        out.append(int(t))
    return tuple(out)


@pytest.mark.parametrize("key", KEYS)
@torch.no_grad()
def test_both_decoding_routes_return_only_valid_identifiers(models, indexes, key):
    model, index = models[key], indexes[key[1]]
    batch = ragged_batch(seed=5)
    constraint = index.constraint()
    known = _known(index)
    beam = 6
    # 1) the unified beam search
    out = beam_search(model, constraint, batch, beam)
    assert out.alive.all()
    ids = {_as_identifier(r, index) for r in out.tokens.reshape(-1, out.tokens.shape[-1]).tolist()}
    assert ids <= known
    ranked = index.rank(out, beam).items
    assert (ranked >= 0).all() and all(len(set(r)) == beam for r in ranked.tolist())
    # 2) transformers' generate + our ConstraintLogitsProcessor
    seqs, scores = model.generate_constrained(batch, beam, constraint.max_steps,
                                              logits_processor=[model.constraint_processor(constraint, batch)])
    assert torch.isfinite(scores).all()
    gen_ids = [_as_identifier(r, index) for r in seqs.reshape(-1, seqs.shape[-1]).tolist()]
    assert set(gen_ids) <= known
    # both routes normalise over the allowed tokens (generate: renormalize_logits): same best identifier
    best_unified = [_as_identifier(r, index) for r in out.tokens[:, 0].tolist()]
    best_generate = [_as_identifier(r, index) for r in seqs[:, 0].tolist()]
    assert best_unified == best_generate


@torch.no_grad()
def test_reorder_and_expand_do_not_mutate_prompt_cache(models, indexes):
    model, index = models[("qwen2", "tree")], indexes["tree"]
    batch = ragged_batch()
    memory = model.encode(batch)
    before = [layer.keys.clone() for layer in memory["kv"].layers]
    mem = model.expand_memory(memory, torch.tensor([0, 0, 3]))
    _, cache = model.step(mem, None, torch.full((3,), index.bos_id), None, None)
    model.reorder_cache(cache, torch.tensor([2, 1, 0]))
    after = [layer.keys for layer in memory["kv"].layers]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert memory["kv"].get_seq_length() == before[0].shape[2]


def test_lora_adapter_saves_and_loads(tmp_path, indexes):
    index = indexes["tree"]
    base = tiny_causal(index, seed=4)
    clean = tiny_causal(index, seed=4)  # the same base weights (same seed)
    base.enable_lora()
    assert base.is_lora
    trainable = [n for n, p in base.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in trainable) and any("embed_tokens" in n for n in trainable)
    with torch.no_grad():  # move the adapter and the new-token rows away from their init
        for p in base.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    base.save_adapter(tmp_path / "adapter")
    clean.load_adapter(tmp_path / "adapter")
    batch = ragged_batch()
    with torch.no_grad():
        a, _, _ = _teacher_forced_logits(base.eval(), index, batch, np.array([0, 5, 9, 15]))
        b, _, _ = _teacher_forced_logits(clean.eval(), index, batch, np.array([0, 5, 9, 15]))
        plain = tiny_causal(index, seed=4).eval()
        c, _, _ = _teacher_forced_logits(plain, index, batch, np.array([0, 5, 9, 15]))
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)  # the adapter changed the outputs


def test_registry_factories_and_structured_init(indexes):
    index = indexes["tree"]
    fz = HistoryFeaturizer()
    t5 = MODELS.get("t5").build(index, fz, MODELS.get("t5").config_class(d_model=32, num_layers=1, num_decoder_layers=1,
                                                                          num_heads=2, d_ff=32))
    lm = MODELS.get("causal").build(index, fz, MODELS.get("causal").config_class(hidden_size=32, num_layers=1,
                                                                                  num_heads=2, num_kv_heads=1,
                                                                                  intermediate_size=32))
    assert t5.token_embeddings().shape == (index.decoder_vocab_size, 32)
    assert lm.token_embeddings().shape == (index.decoder_vocab_size, 32)
    assert lm.token_map.tolist() == list(range(3 + SOURCE_VOCAB, 3 + SOURCE_VOCAB + index.decoder_vocab_size))
    # structure-aware init: a leaf is closer to its own parent than to the other first-level tokens
    emb = t5.token_embeddings().detach()
    leaves = torch.arange(4, 20)
    parents = torch.from_numpy(index.token_parent[4:20])
    d = torch.cdist(emb[leaves], emb[:4])
    assert (d.argmin(1) == parents).float().mean() >= 0.9


def test_t5_from_local_directory(tmp_path, indexes):
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, dropout_rate=0.0)
    T5ForConditionalGeneration(cfg).save_pretrained(tmp_path / "t5")
    index = indexes["varlen"]
    model = MODELS.get("t5").build(index, HistoryFeaturizer(),
                                   MODELS.get("t5").config_class(pretrained_path=str(tmp_path / "t5"), dropout=0.0))
    assert model.hidden_size == 16 and model.t5.lm_head.weight.shape[0] == index.decoder_vocab_size
    out = beam_search(model.eval(), index.constraint(), ragged_batch(), 3)
    assert out.alive.all()
    with pytest.raises(ValueError, match="larger than the model"):
        fz = HistoryFeaturizer()
        fz.vocab_size = 100
        MODELS.get("t5").build(index, fz, MODELS.get("t5").config_class(pretrained_path=str(tmp_path / "t5")))


def test_prompt_layout_left_pads_and_counts_positions():
    batch = SourceBatch(torch.tensor([[5, 6, 7], [8, 0, 0]]), torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool), "query")
    ids, mask, pos = PromptLayout().build(batch)
    assert ids.tolist() == [[1, 8, 9, 10], [0, 0, 1, 11]]
    assert mask.tolist() == [[True] * 4, [False, False, True, True]]
    assert pos[1, 2:].tolist() == [0, 1] and pos[0].tolist() == [0, 1, 2, 3]


def test_id_tokenizer_round_trips_exact_ids():
    tok = id_tokenizer(50, pad_id=0, eos_id=49)
    ids = [3, 17, 49, 0, 12]
    assert tok(ids_to_text(ids), add_special_tokens=False)["input_ids"] == ids
    assert tok.eos_token_id == 49 and tok.pad_token_id == 0


@pytest.mark.parametrize("kind", ["t5", "qwen2"])
def test_safetensors_round_trip_through_build(tmp_path, indexes, kind):
    """The run directory persists weights with safetensors save_model/load_model on the built module."""
    from safetensors.torch import load_model, save_model

    index = indexes["tree"]
    make = (lambda s: tiny_t5(index, seed=s)) if kind == "t5" else (lambda s: tiny_causal(index, seed=s))
    a, b = make(11).eval(), make(12).eval()
    save_model(a, str(tmp_path / "m.safetensors"))
    load_model(b, str(tmp_path / "m.safetensors"), strict=True)
    batch = ragged_batch()
    with torch.no_grad():
        la, _, _ = _teacher_forced_logits(a, index, batch, np.array([1, 2, 3, 4]))
        lb, _, _ = _teacher_forced_logits(b, index, batch, np.array([1, 2, 3, 4]))
    assert torch.equal(la, lb)


def test_causal_from_local_directory_appends_identifier_tokens(tmp_path, indexes):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from gr_toolkit.models.hf_causal import CausalRetrieverConfig, HFCausalRetriever

    cfg = Qwen2Config(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, pad_token_id=0)
    Qwen2ForCausalLM(cfg).save_pretrained(tmp_path / "lm")
    index = indexes["varlen"]
    model = HFCausalRetriever(CausalRetrieverConfig(pretrained_path=str(tmp_path / "lm")), index.decoder_vocab_size,
                              source_vocab_size=60, source_kind="query").eval()
    # identifier tokens are new rows after the model's 60; prompts are the model's own ids (no markers)
    assert model.token_map.tolist() == list(range(60, 60 + index.decoder_vocab_size))
    assert not model.layout.use_markers and model.layout.source_offset == 0
    batch = SourceBatch(torch.tensor([[5, 9, 13], [7, 0, 0]]), torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool),
                        "query")
    out = beam_search(model, index.constraint(), batch, 4)
    assert out.alive.all()
    assert {_as_identifier(r, index) for r in out.tokens.reshape(-1, out.tokens.shape[-1]).tolist()} <= _known(index)
