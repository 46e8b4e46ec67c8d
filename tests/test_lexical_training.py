"""The lexical scheme end to end with the shared trainer: query-dependent targets, wide-candidate
scoring, the index's preferred normalisation, and a tiny train -> retrieve run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gr_toolkit.data.featurize import FeaturizerConfig, SourceFeaturizer
from gr_toolkit.data.synthetic import make_synthetic
from gr_toolkit.decoding.beam_search import beam_search
from gr_toolkit.identifiers.base import SCHEMES
from gr_toolkit.identifiers.lexical import LexicalConfig
from gr_toolkit.losses import build_losses
from gr_toolkit.losses.base import LossContext
from gr_toolkit.models.scoring import candidate_logits, use_full_projection
from gr_toolkit.models.seater import SeaterConfig, SeaterModel
from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner, retrieve_batch
from gr_toolkit.training.config import TrainConfig
from gr_toolkit.training.sft import train_model, train_step
from gr_toolkit.training.targets import targets_for

TINY = SeaterConfig(d_model=16, heads=2, ffn=32, dropout=0.0)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    ds = make_synthetic(seed=0, n_items=30, n_queries=90, n_events=400, n_users=50, kind="query")
    idx = SCHEMES.get("lexical")(LexicalConfig(vocab_size=120, max_span_len=4, n_spans=2)).build(ds.catalog, None)
    fz = SourceFeaturizer(FeaturizerConfig(vocab_size=120)).fit(ds)
    return ds, idx, fz


def test_wide_candidates_project_then_gather_with_the_same_logits():
    torch.manual_seed(0)
    table = torch.randn(50, 8)
    hidden = torch.randn(6, 8)
    narrow = torch.randint(0, 50, (6, 3))  # 3 * 8 < 50: embedding gather
    wide = torch.randint(0, 50, (6, 40))  # 40 * 8 > 50: full projection + column gather
    assert not use_full_projection(3, 50, 8) and use_full_projection(40, 50, 8)
    full = hidden @ table.T
    for cand in (narrow, wide):
        expected = full.gather(1, cand)
        torch.testing.assert_close(candidate_logits(hidden, table, cand), expected)
    # negative (padding) ids are clamped to token 0 on both paths, like before
    pad = wide.clone()
    pad[:, -1] = -1
    torch.testing.assert_close(candidate_logits(hidden, table, pad)[:, -1], full[:, 0])
    # gradients agree too (the loss trains through this)
    t1, t2 = table.clone().requires_grad_(), table.clone().requires_grad_()
    (candidate_logits(hidden, t1, wide) ** 2).sum().backward()
    (F.embedding(wide, t2) @ hidden.unsqueeze(-1)).squeeze(-1).pow(2).sum().backward()
    torch.testing.assert_close(t1.grad, t2.grad)


def test_seater_score_wide_path_matches_full_logits(setup):
    ds, idx, fz = setup
    m = SeaterModel.build(idx, fz, TINY)
    hidden = torch.randn(4, m.hidden_size)
    cand = torch.arange(idx.vocab_size).expand(4, -1)  # every identifier token: a span start
    torch.testing.assert_close(m.score(hidden, cand), (hidden @ m.token_emb.weight.T)[:, : idx.vocab_size])


def test_targets_for_passes_each_pairs_query(setup):
    ds, idx, _ = setup
    ex, items = ds.train.pairs()
    sel = np.arange(40)
    got = targets_for(idx, ds.train, ex[sel], items[sel])
    want = idx.decoder_targets(items[sel], queries=[ds.train.queries[i] for i in ex[sel]])
    assert torch.equal(got, want)
    rarity_only = idx.decoder_targets(items[sel])
    assert got.shape != rarity_only.shape or not torch.equal(got, rarity_only)  # the query changes the spans
    with pytest.raises(ValueError, match="example ids"):
        targets_for(idx, ds.train, ex[:3], items[:4])


def test_train_step_uses_query_targets_and_full_softmax(setup):
    ds, idx, fz = setup
    torch.manual_seed(0)
    m = SeaterModel.build(idx, fz, TINY)
    (gen,) = build_losses(["gen"], m.hidden_size, {"gen": {"full_softmax": False}})
    ex, items = ds.train.pairs()
    sel = np.arange(16)
    parts = train_step(m, idx, ds, fz, [gen], ex[sel], items[sel], torch.device("cpu"))
    # by hand: query-chosen targets, softmax over the whole decoder vocabulary (the index asks for it)
    batch = fz.batch(ds.train, ex[sel])
    targets = idx.decoder_targets(items[sel], queries=[ds.train.queries[i] for i in ex[sel]])
    dec_in = torch.cat([targets.new_full((len(targets), 1), idx.bos_id), targets[:, :-1]], dim=1)
    hidden = m.decode(m.encode(batch), batch, dec_in)
    active = targets >= 0
    expected = F.cross_entropy(hidden[active] @ m.token_emb.weight.T, targets[active])
    torch.testing.assert_close(parts["gen"], expected)
    ctx = LossContext(m, idx, batch, torch.as_tensor(items[sel]), targets, None, hidden)
    torch.testing.assert_close(gen(ctx), expected)


def test_tiny_lexical_train_then_retrieve_with_evidence(setup, tmp_path):
    ds, idx, fz = setup
    torch.manual_seed(0)
    m = SeaterModel.build(idx, fz, TINY)
    cfg = TrainConfig(losses="gen", epochs=2, batch_size=32, eval_beam=5, progress=False, max_steps_per_epoch=3,
                      threads=1, eval_max_examples=10, lr=1e-2)
    losses = build_losses(cfg.loss_names(), m.hidden_size, cfg.loss_options())
    res = train_model(m, idx, ds, fz, losses, cfg, tmp_path / "run", log=lambda *_: None)
    assert res.epochs_done == 2 and all(np.isfinite(h["loss_gen"]) for h in res.history)
    runner = GenerativeRetrieverRunner.load(tmp_path / "run", device="cpu")
    items, scores = runner.retrieve(ds.test.subset(np.arange(6)), top_k=5, beam_size=5)
    assert items.shape == (6, 5) and (items >= 0).any()
    assert ((items >= -1) & (items < idx.n_items)).all()
    # retrieval decodes with the index's preferred ("full") normalisation
    batch = runner.featurizer.batch(ds.test, np.arange(6))
    got, _ = retrieve_batch(runner.model, runner.index, batch, 5, 5)
    with torch.inference_mode():
        out = beam_search(runner.model, runner.index.constraint(), batch, beam_size=5, bos_id=runner.index.bos_id,
                          normalize="full")
    ranked = runner.index.rank(out, 5)
    assert torch.equal(got, ranked.items)
    titles = [t.lower() for t in ds.catalog.text("title")]
    for b in range(6):
        for j, item in enumerate(ranked.items[b].tolist()):
            if item >= 0:
                assert ranked.evidence[b][j] and all(s in titles[item] for s in ranked.evidence[b][j])


def test_beam_search_token_scores_sum_to_the_beam_score(setup):
    ds, idx, fz = setup
    torch.manual_seed(1)
    m = SeaterModel.build(idx, fz, TINY).eval()
    batch = fz.batch(ds.test, np.arange(4))
    with torch.inference_mode():
        out = beam_search(m, idx.constraint(), batch, beam_size=6, bos_id=idx.bos_id, normalize="full")
    assert out.token_scores is not None and out.token_scores.shape == out.tokens.shape
    alive = out.alive
    torch.testing.assert_close(out.token_scores.sum(-1)[alive], out.scores[alive])
    assert (out.token_scores[out.tokens < 0] == 0).all() and (out.token_scores[out.tokens >= 0] <= 0).all()


def test_dpo_logprobs_score_the_query_dependent_identifiers(setup):
    """DPO's chosen/rejected log-probs must be of the identifiers the model was trained on (query spans)."""
    from gr_toolkit.training.dpo import pair_logprobs, sequence_logprobs
    from gr_toolkit.training.preferences import PreferencePairs

    ds, idx, fz = setup
    torch.manual_seed(0)
    m = SeaterModel.build(idx, fz, TINY).eval()
    ex, items = ds.train.pairs()
    sel = np.arange(6)
    rejected = (items[sel] + 1) % idx.n_items
    pairs = PreferencePairs(ex[sel], items[sel], rejected)
    with torch.no_grad():
        got_c, got_r = pair_logprobs(m, idx, fz, ds.train, pairs, np.arange(6), torch.device("cpu"), "full")
        batch = fz.batch(ds.train, ex[sel])
        memory = m.encode(batch)
        want_c = sequence_logprobs(m, idx, memory, batch, targets_for(idx, ds.train, ex[sel], items[sel]), "full")
        want_r = sequence_logprobs(m, idx, memory, batch, targets_for(idx, ds.train, ex[sel], rejected), "full")
        rarity = sequence_logprobs(m, idx, memory, batch, idx.decoder_targets(items[sel]), "full")
    torch.testing.assert_close(got_c, want_c)
    torch.testing.assert_close(got_r, want_r)
    assert not torch.allclose(got_c, rarity)  # the rarity-only identifiers are different sequences


def test_rank_loss_refuses_query_dependent_identifiers(setup):
    ds, idx, fz = setup
    m = SeaterModel.build(idx, fz, TINY)
    (rank,) = build_losses(["rank"], m.hidden_size, {"rank": {}})
    ex, items = ds.train.pairs()
    batch = fz.batch(ds.train, ex[:4])
    tgt = targets_for(idx, ds.train, ex[:4], items[:4])
    dec_in = torch.cat([tgt.new_full((4, 1), idx.bos_id), tgt[:, :-1].clamp_min(0)], dim=1)
    memory = m.encode(batch)
    ctx = LossContext(model=m, index=idx, batch=batch, target_items=torch.from_numpy(items[:4]), targets=tgt,
                      memory=memory, hidden=m.decode(memory, batch, dec_in))
    with pytest.raises(ValueError, match="rank loss needs an index with one fixed identifier"):
        rank(ctx)
