import pytest
import torch

from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.models import MODELS
from gr_toolkit.models.base import SourceBatch
from gr_toolkit.models.seater import SeaterConfig, SeaterModel
from tests.seater_helpers import binary_tree_index


def _model(kind="history", layers=2, **kw):
    torch.manual_seed(0)
    idx = binary_tree_index(8)
    m = SeaterModel(SeaterConfig(layers=layers, d_model=16, heads=2, ffn=32, **kw), idx.decoder_vocab_size, 8, kind,
                    source_vocab_size=50 if kind == "query" else None, leaf_is_item=True)
    return idx, m.eval()


def _batch(kind="history"):
    hi = 8 if kind == "history" else 50
    tok = torch.randint(0, hi, (3, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 2:] = False
    return SourceBatch(tok, mask, kind)


def test_registered_and_shapes():
    assert MODELS.get("seater") is SeaterModel
    idx, m = _model()
    b = _batch()
    mem = m.encode(b)
    assert mem["states"].shape == (3, 5, 16)
    dec_in = torch.cat([torch.full((3, 1), idx.bos_id), idx.decoder_targets([0, 3, 7])[:, :-1]], 1)
    h = m.decode(mem, b, dec_in)
    assert h.shape == (3, 3, 16)
    assert m.score(h, None).shape == (3, 3, idx.decoder_vocab_size)
    assert m.score(h, torch.zeros(3, 3, 2, dtype=torch.long)).shape == (3, 3, 2)
    assert m.pool_memory(mem, b).shape == (3, 16)


def test_leaf_tokens_are_the_item_embeddings():
    idx, m = _model()
    assert m.item_emb is None
    b = _batch()
    emb = m.source_embeddings(b.tokens)
    torch.testing.assert_close(emb, m.token_embeddings()[b.tokens])


def test_padding_does_not_change_the_encoding():
    _, m = _model()
    b = _batch()
    mem = m.encode(b)
    tok2 = b.tokens.clone()
    tok2[1, 2:] = 7  # change only padded positions of row 1
    mem2 = m.encode(SourceBatch(tok2, b.mask, "history"))
    torch.testing.assert_close(m.pool_memory(mem, b), m.pool_memory(mem2, b))


@pytest.mark.parametrize("kind", ["history", "query"])
def test_incremental_step_matches_teacher_forcing(kind):
    idx, m = _model(kind)
    b = _batch(kind)
    mem = m.encode(b)
    dec_in = torch.cat([torch.full((3, 1), idx.bos_id), idx.decoder_targets([1, 4, 6])], 1)
    full = m.score(m.decode(mem, b, dec_in), None)
    cands = torch.arange(idx.decoder_vocab_size).expand(3, -1)
    cache = None
    for t in range(dec_in.shape[1]):
        logits, cache = m.step(mem, b.mask, dec_in[:, t], cache, cands)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)
    # Reordering the cache (beam search) keeps rows consistent.
    order = torch.tensor([2, 0, 1])
    mem_r = m.expand_memory(mem, order)
    cache_r = m.reorder_cache(cache, order)
    logits_r, _ = m.step(mem_r, b.mask[order], dec_in[order, -1], cache_r, cands)
    logits_o, _ = m.step(mem, b.mask, dec_in[:, -1], cache, cands)
    torch.testing.assert_close(logits_r, logits_o[order], atol=1e-5, rtol=1e-5)


def test_beam_search_returns_valid_items():
    idx, m = _model()
    b = _batch()
    with torch.no_grad():
        out = beam_search(m, idx.constraint(), b, beam_size=4, bos_id=idx.bos_id)
    ranked = idx.rank(out, 4)
    assert ranked.items.shape == (3, 4)
    assert ((ranked.items >= 0) & (ranked.items < 8)).all()
    assert all(len(set(r.tolist())) == 4 for r in ranked.items)


def test_query_model_needs_vocab_and_bad_lengths_fail():
    idx = binary_tree_index(8)
    with pytest.raises(ValueError, match="source_vocab_size"):
        SeaterModel(SeaterConfig(), idx.decoder_vocab_size, 8, "query")
    _, m = _model(max_history=4)
    with pytest.raises(ValueError, match="exceeds"):
        m.encode(_batch())


@pytest.mark.parametrize("kind", ["history", "query"])
def test_broadcast_memory_equals_copied_memory(kind):
    """Beams read their query's memory through grouped cross-attention: same numbers as a per-beam copy."""
    idx, m = _model(kind)
    b = _batch(kind)
    mem = m.encode(b)
    width = 4
    rows = torch.arange(3).repeat_interleave(width)
    grouped, copied = m.broadcast_memory(mem, width), m.expand_memory(mem, rows)
    assert grouped["cross_k0"].data_ptr() == mem["cross_k0"].data_ptr()  # nothing copied
    targets = idx.decoder_targets(torch.arange(12) % 8)
    dec_in = torch.cat([torch.full((12, 1), idx.bos_id), targets], 1)
    torch.testing.assert_close(m.decode(grouped, None, dec_in), m.decode(copied, None, dec_in), atol=1e-5, rtol=1e-5)
    cands = torch.arange(idx.decoder_vocab_size).expand(12, -1)
    lg, cg = m.step(grouped, b.mask[rows], dec_in[:, 0], None, cands)
    lc, cc = m.step(copied, b.mask[rows], dec_in[:, 0], None, cands)
    torch.testing.assert_close(lg, lc, atol=1e-5, rtol=1e-5)
    lg, _ = m.step(grouped, b.mask[rows], dec_in[:, 1], cg, cands)
    lc, _ = m.step(copied, b.mask[rows], dec_in[:, 1], cc, cands)
    torch.testing.assert_close(lg, lc, atol=1e-5, rtol=1e-5)
    # Expanding a broadcast memory reads source row // width.
    again = m.expand_memory(grouped, torch.tensor([5, 0]))
    torch.testing.assert_close(again["cross_v0"], mem["cross_v0"][torch.tensor([1, 0])])
    with pytest.raises(ValueError, match="already broadcast"):
        m.broadcast_memory(grouped, 2)


def test_beam_search_same_with_and_without_broadcast(monkeypatch):
    idx, m = _model()
    b = _batch()
    fast = beam_search(m, idx.constraint("cpu"), b, beam_size=4)
    monkeypatch.setattr(SeaterModel, "broadcast_memory", lambda self, mem, w: self.expand_memory(
        mem, torch.arange(len(mem["states"])).repeat_interleave(w)))
    slow = beam_search(m, idx.constraint("cpu"), b, beam_size=4)
    assert torch.equal(fast.tokens, slow.tokens)
    torch.testing.assert_close(fast.scores, slow.scores, atol=1e-5, rtol=1e-5)
