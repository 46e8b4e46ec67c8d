"""Pretrained MiniLM source states (``encoder: minilm``) and indexing examples (every item taught)."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gr_toolkit.cli.main import app
from gr_toolkit.data.featurize import FeaturizerConfig, SourceFeaturizer
from gr_toolkit.data.indexing import (
    IndexingOptions,
    concat_examples,
    indexing_examples,
    with_indexing_examples,
)
from gr_toolkit.data.loaders import load_dataset
from gr_toolkit.data.types import Catalog, DataError, Examples
from gr_toolkit.models.hf_seq2seq import HFSeq2SeqRetriever, T5RetrieverConfig
from gr_toolkit.models.seater import SeaterConfig, SeaterModel
from gr_toolkit.training.sft import epoch_order
from tests.seater_helpers import digit_tree_index


@pytest.fixture(scope="module")
def minilm_featurizer(tiny_query_dataset):
    return SourceFeaturizer(FeaturizerConfig(encoder="minilm", max_query_len=16)).fit(tiny_query_dataset)


def test_minilm_featurizer_gives_frozen_token_states(minilm_featurizer, tiny_query_dataset):
    ex = tiny_query_dataset.valid
    b = minilm_featurizer.batch(ex, [0, 1, 2])
    assert b.features is not None and b.features.shape[0] == 3 and b.features.shape[2] == 384
    assert b.features.shape[:2] == b.mask.shape and bool(b.mask[:, 0].all())  # [CLS] is always real
    assert float(b.features[~b.mask].abs().sum()) == 0.0  # padding carries nothing
    # cached per text: the same text gives the same states, whatever batch it comes in
    again = minilm_featurizer.encode_text([ex.queries[1]])
    n = int(again.mask.sum())
    assert torch.equal(again.features[0, :n], b.features[1, :n])
    assert minilm_featurizer.feature_dim == 384
    with pytest.raises(DataError, match="no token vocabulary"):
        _ = minilm_featurizer.vocab_size


def test_minilm_featurizer_round_trips(minilm_featurizer, tiny_query_dataset, tmp_path):
    minilm_featurizer.save(tmp_path / "f")
    back = SourceFeaturizer.load(tmp_path / "f", catalog=tiny_query_dataset.catalog)
    assert back.config.encoder == "minilm" and back.feature_dim == 384
    assert not (tmp_path / "f" / "tokenizer.model").exists()
    a = minilm_featurizer.encode_text(["cordless drill"]).features
    assert torch.allclose(back.encode_text(["cordless drill"]).features, a)


def test_minilm_encoder_rejects_histories_and_unknown_names(tiny_history_dataset):
    with pytest.raises(DataError, match="reads query text"):
        SourceFeaturizer(FeaturizerConfig(encoder="minilm")).fit(tiny_history_dataset)
    with pytest.raises(ValueError, match="unknown source encoder 'bert'"):
        SourceFeaturizer(FeaturizerConfig(encoder="bert"))


@pytest.mark.parametrize("model_name", ["seater", "t5"])
def test_models_read_features_through_a_trainable_projection(minilm_featurizer, tiny_query_dataset, model_name):
    idx = digit_tree_index(tiny_query_dataset.catalog, k=8)
    if model_name == "seater":
        net = SeaterModel.build(idx, minilm_featurizer, SeaterConfig(d_model=16, ffn=32, max_query_len=16))
        assert net.text_emb is None
    else:
        net = HFSeq2SeqRetriever.build(idx, minilm_featurizer, T5RetrieverConfig(d_model=16, d_ff=32, num_layers=1,
                                                                                  num_decoder_layers=1, num_heads=2))
        assert net.source_embed is None
    batch = minilm_featurizer.batch(tiny_query_dataset.train, np.arange(4))
    memory = net.encode(batch)
    assert memory["states"].shape[:2] == batch.mask.shape
    memory["states"].sum().backward()
    assert net.feature_proj[1].weight.grad is not None and float(net.feature_proj[1].weight.grad.abs().sum()) > 0
    # different texts give different states: the model sees the text, not a constant
    assert not torch.allclose(memory["states"][0, 0], memory["states"][1, 0])


def _catalog():
    return Catalog("c", ["a", "b", "c"], {"title": ["red cordless drill kit with battery", "", "hammer"]})


def test_indexing_examples_cover_every_item_with_text():
    ex, notes = indexing_examples(_catalog(), IndexingOptions(spans_per_item=3, min_words=2, max_words=3, seed=1))
    by_item = {}
    for q, t, k in zip(ex.queries, ex.targets, ex.keys, strict=True):
        by_item.setdefault(int(t[0]), []).append((q, k))
    assert set(by_item) == {0, 2}  # item 1 has no title ...
    assert notes == ["1 of 3 items have an empty 'title': no indexing example for them"]  # ... and that is said
    titles = [q for q, k in by_item[0] if k.startswith("index:title")]
    spans = [q for q, k in by_item[0] if k.startswith("index:span")]
    assert titles == ["red cordless drill kit with battery"] and len(spans) == 3
    for s in spans:  # a contiguous run of 2..3 title words
        assert 2 <= len(s.split()) <= 3 and s in "red cordless drill kit with battery"
    assert [q for q, _ in by_item[2]] == ["hammer", "hammer", "hammer", "hammer"]  # short text: whole-text spans
    again, _ = indexing_examples(_catalog(), IndexingOptions(spans_per_item=3, min_words=2, max_words=3, seed=1))
    assert again.queries == ex.queries  # seeded


def test_indexing_examples_reject_bad_options_and_empty_catalogs():
    with pytest.raises(ValueError, match="subset of title, spans"):
        IndexingOptions(kinds=("titel",))
    with pytest.raises(DataError, match="no item has 'title' text"):
        indexing_examples(Catalog("e", ["a"], {"title": [""]}), IndexingOptions())


def test_with_indexing_examples_keeps_the_training_split_first(tiny_query_dataset, tiny_history_dataset):
    ds, n_train, _ = with_indexing_examples(tiny_query_dataset, IndexingOptions(kinds=("title",)))
    assert n_train == len(tiny_query_dataset.train)
    assert ds.train.queries[:n_train] == tiny_query_dataset.train.queries
    assert len(ds.train) == n_train + len(tiny_query_dataset.catalog)
    assert ds.valid is tiny_query_dataset.valid and ds.test is tiny_query_dataset.test
    with pytest.raises(DataError, match="need query text"):
        with_indexing_examples(tiny_history_dataset, IndexingOptions())


def test_concat_fills_fields_one_side_lacks():
    a = Examples("query", [np.array([0])], queries=["x"], target_grades=[np.array([3.0])],
                 negatives=[np.array([2])])
    b = Examples("query", [np.array([1])], queries=["y"])
    c = concat_examples(a, b)
    assert c.queries == ["x", "y"] and np.isnan(c.target_grades[1]).all() and len(c.negatives[1]) == 0


def test_epoch_order_mixes_indexing_pairs_at_the_ratio():
    rng = np.random.default_rng(0)
    task, index = np.arange(10), np.arange(10, 40)
    order = epoch_order(rng, task, index, 5, np.ones(40), weighted=False)
    assert len(order) == 15 and set(task) <= set(order.tolist())
    assert len(set(order.tolist()) & set(index.tolist())) == 5  # without replacement while the pool lasts
    big = epoch_order(rng, task, index, 60, np.ones(40), weighted=False)
    assert len(big) == 70 and (big >= 10).sum() == 60  # more than the pool: drawn with replacement
    plain = epoch_order(np.random.default_rng(3), task, index[:0], 0, np.ones(10), weighted=False)
    assert np.array_equal(plain, np.random.default_rng(3).permutation(10))  # no indexing: the old order


def test_train_cli_with_minilm_and_indexing(tmp_path):
    from gr_toolkit.vectors.io import save_vectors
    from gr_toolkit.vectors.text import item_text_vectors

    ds = load_dataset("synthetic")
    digit_tree_index(ds.catalog, k=8).save(tmp_path / "idx")
    save_vectors(tmp_path / "v.npy", item_text_vectors(ds.catalog, field="title"),
                 {"catalog_fingerprint": ds.catalog.fingerprint()})
    args = ["train", "synthetic", "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "run"),
            "--losses", "gen", "--epochs", "1", "--max_steps_per_epoch", "2", "--eval_max_examples", "20",
            "--eval_beam", "5", "--d_model", "16", "--ffn", "32", "--progress", "false", "--threads", "1",
            "--encoder", "minilm", "--max_query_len", "16", "--indexing", "title,spans", "--indexing_ratio", "0.5",
            "--source_skip", "true", "--init_token_vectors", str(tmp_path / "v.npy"), "--freeze", "token_emb,skip_proj"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "frozen:" in res.output and "identifier-token embeddings start from" in res.output
    assert f"indexing examples (title,spans): {3 * len(ds.catalog):,}" in res.output
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["train_config"]["indexing"] == "title,spans"
    fman = json.loads((tmp_path / "run" / "featurizer" / "manifest.json").read_text())
    assert fman["config"]["encoder"] == "minilm"
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "synthetic", "--run", str(tmp_path / "run"), "--k", "5", "--beam", "5",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["metrics"]["all"]["n"] == len(ds.test)


def test_token_states_persist_across_processes(tmp_path, monkeypatch):
    from gr_toolkit.text import pretrained

    monkeypatch.setenv("GR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(pretrained, "_STORES", {})
    monkeypatch.setattr(pretrained, "_LOADED", {})
    first = pretrained.TokenStateCache(max_len=12, persist=True)
    feats, mask = first.states(["cordless drill", "red running shoes"])
    assert len(list((tmp_path / "text-states" / "all-MiniLM-L6-v2-len12").glob("*.npz"))) == 1
    # a "new process": empty memory, and the encoder must not be needed for cached texts
    monkeypatch.setattr(pretrained, "_STORES", {})
    monkeypatch.setattr(pretrained, "_LOADED", {})
    second = pretrained.TokenStateCache(max_len=12, persist=True)
    monkeypatch.setattr(second, "_model", lambda: (_ for _ in ()).throw(AssertionError("re-encoded")))
    again, mask2 = second.states(["red running shoes", "cordless drill"])
    assert np.array_equal(mask2, mask[::-1]) and np.allclose(again, feats[::-1])


def test_source_skip_makes_the_untrained_decoder_rank_like_a_dense_retriever(minilm_featurizer, tiny_query_dataset):
    """With the skip started from the same encoder's item vectors (PCA inside) and the decoder's own
    contribution at zero, an UNTRAINED model already retrieves by query-item similarity."""
    from gr_toolkit.cli.index import build_index
    from gr_toolkit.evaluation.metrics import evaluate_rankings
    from gr_toolkit.models.vector_init import init_tokens_from_item_vectors
    from gr_toolkit.retrieval.retriever import retrieve_items
    from gr_toolkit.vectors.text import item_text_vectors

    ds = tiny_query_dataset
    vectors = item_text_vectors(ds.catalog, field="title")
    index = build_index(ds.catalog, vectors, "seater", {"k": 8, "seed": 0})
    cfg = SeaterConfig(d_model=16, ffn=32, max_query_len=16, dropout=0.0, source_skip=True)
    torch.manual_seed(0)
    net = SeaterModel.build(index, minilm_featurizer, cfg)
    assert net.item_vector_widths() == (16, 384) and float(net.dec_norm.weight.abs().sum()) == 0.0
    init_tokens_from_item_vectors(net, index, vectors)
    batch = minilm_featurizer.batch(ds.valid, np.arange(3))
    memory = net.encode(batch)
    assert memory["skip"].shape == (3, 16)
    hidden = net.decode(memory, batch, torch.full((3, 1), index.bos_id))
    assert torch.allclose(hidden[:, 0], memory["skip"] + net.dec_norm.bias, atol=1e-6)  # skip only, at init
    skip_r = evaluate_rankings(retrieve_items(net, index, minilm_featurizer, ds.valid, 10, 10)[0], ds.valid.targets,
                               (10,))["all"]["recall@10"]
    torch.manual_seed(0)
    plain = SeaterModel.build(index, minilm_featurizer, SeaterConfig(d_model=16, ffn=32, max_query_len=16, dropout=0.0))
    plain_r = evaluate_rankings(retrieve_items(plain, index, minilm_featurizer, ds.valid, 10, 10)[0], ds.valid.targets,
                                (10,))["all"]["recall@10"]
    assert skip_r > 3 * plain_r and skip_r > 0.1
    with pytest.raises(ValueError, match="source_skip needs precomputed text features"):
        SeaterModel(SeaterConfig(source_skip=True), 20, 10, "query", source_vocab_size=50)
